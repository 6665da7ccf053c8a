//! The wire: serde types that cross a process boundary (the sync protocol, the ML API), their ids and
//! error codes. No I/O, no tokio, no storage types: both daemons convert to and from their own types.

pub mod ids;
pub mod ml;
pub mod oneroster;
pub mod roster;
pub mod sync;
pub mod vocabulary;

mod model_id;
mod space;

pub use model_id::{ModelId, ModelIdError};
pub use space::{EmbeddingSpace, EmbeddingSpaceError, MAX_SPACE_LEN};

/// Version of the sync protocol and ML API spoken by this build. A peer sending a newer version is
/// refused with a machine-readable code rather than half-understood.
pub const PROTOCOL_VERSION: u32 = 1;
