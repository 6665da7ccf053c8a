//! `Embedding`: a face vector on the wire, as base64 of little-endian f32 plus the model id and the
//! embedding space, which is a third of the size of a JSON number list and round-trips every bit.
//!
//! `space` came after protocol v1 shipped, as an optional field: an older peer ignores it (serde
//! skips unknown fields), and a vector that arrives without it is put in
//! [`EmbeddingSpace::of_model`] of its model id, the same answer on box and server.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{EmbeddingSpace, ModelId};

/// Longest vector accepted: far above any face model's, small enough to bound a decode.
pub const MAX_DIMENSIONS: usize = 4096;

#[derive(Clone, Debug, PartialEq)]
pub struct Embedding {
    /// The file that made it: provenance.
    pub model: ModelId,
    /// What its numbers mean: vectors are compared only within one space.
    pub space: EmbeddingSpace,
    pub vector: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmbeddingError {
    #[error("embedding is not valid base64: {0}")]
    Base64(String),
    #[error("embedding has {0} bytes, not a whole number of f32 values")]
    Ragged(usize),
    #[error("embedding has {0} dimensions; expected 1 to {MAX_DIMENSIONS}")]
    Dimensions(usize),
    #[error("embedding holds a NaN or infinite value")]
    NotFinite,
}

/// How an embedding looks in JSON.
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Embedding))]
struct Wire {
    /// `name@sha256-prefix` of the model file that made it.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    model: ModelId,
    /// What the numbers mean; absent from older boxes (then the model's space).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    space: Option<EmbeddingSpace>,
    /// Base64 (standard alphabet, padded) of the vector as little-endian f32.
    f32le: String,
}

// The document describes what the JSON is, which is the wire form, not the struct.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Embedding {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <Wire as utoipa::PartialSchema>::schema()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Embedding {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Embedding")
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <Wire as utoipa::ToSchema>::schemas(schemas);
    }
}

impl Embedding {
    pub fn to_base64(&self) -> String {
        f32le_encode(&self.vector)
    }

    pub fn from_base64(
        model: ModelId,
        space: EmbeddingSpace,
        text: &str,
    ) -> Result<Embedding, EmbeddingError> {
        Ok(Embedding {
            model,
            space,
            vector: f32le_decode(text)?,
        })
    }
}

/// A vector as base64 (standard alphabet, padded) of little-endian f32: how vectors travel.
pub fn f32le_encode(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    STANDARD.encode(bytes)
}

/// The vector `f32le_encode` made, checked: whole f32 values, 1 to `MAX_DIMENSIONS`, finite.
pub fn f32le_decode(text: &str) -> Result<Vec<f32>, EmbeddingError> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|e| EmbeddingError::Base64(e.to_string()))?;
    if bytes.len() % 4 != 0 {
        return Err(EmbeddingError::Ragged(bytes.len()));
    }
    let dims = bytes.len() / 4;
    if dims == 0 || dims > MAX_DIMENSIONS {
        return Err(EmbeddingError::Dimensions(dims));
    }
    let vector: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if !vector.iter().all(|v| v.is_finite()) {
        return Err(EmbeddingError::NotFinite);
    }
    Ok(vector)
}

impl Serialize for Embedding {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            model: self.model.clone(),
            space: Some(self.space.clone()),
            f32le: self.to_base64(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Embedding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Embedding, D::Error> {
        let wire = Wire::deserialize(d)?;
        let space = wire
            .space
            .unwrap_or_else(|| EmbeddingSpace::of_model(&wire.model));
        Embedding::from_base64(wire.model, space, &wire.f32le).map_err(serde::de::Error::custom)
    }
}
