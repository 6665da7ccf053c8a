//! The wire: serde types that cross a process boundary (the sync protocol, the ML API), their ids and
//! error codes. No I/O, no tokio, no storage types: both daemons convert to and from their own types.

pub mod breaker;
pub mod clock;
pub mod crop;
pub mod ids;
pub mod metrics;
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
///
/// - 1: the first.
/// - 2: marks decided by the office (`MarkSource::Office`) and the pull feed's `mark` changes, which
///   carry office corrections to the box of the session; a push may carry the box's `report`.
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest version this build still serves: a server is upgraded before its boxes, so it must go
/// on answering boxes of the version before, in their version (`sync::speaks`).
pub const OLDEST_PROTOCOL_VERSION: u32 = 1;
