//! `EmbeddingSpace`: what an embedding's numbers mean. Two vectors may be compared only when they
//! are in the same space; which file made them (`ModelId`) is provenance, not a comparison key.
//!
//! A space outlives the model file: a rewrite proven to give the same vectors (the PRelu rewrite,
//! the subnormal flush: `models/fetch.py` checks 300 LFW faces within 1e-5) keeps it, so templates
//! enrolled before the rewrite stay usable. A real model change names a new space.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ModelId;

/// A space's name, `[a-z0-9_.@-]{1,64}`: `fr_feature-v1`, or a bare model id for a file whose
/// space nobody named (it is then comparable with nothing but itself).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmbeddingSpace(String);

/// Longest space name accepted.
pub const MAX_SPACE_LEN: usize = 64;

/// Model files made before spaces existed, and the space their vectors are in. Builds before the
/// change send only the model id; both the box's migration and the server read this table, so an
/// old template lands in the same space wherever it is read. Append only.
const KNOWN_MODELS: &[(&str, &str)] = &[
    // The npm package's file with the symbolic-batch rewrite (issue 2).
    ("fr_feature@6e524bb13415", "fr_feature-v1"),
    // ... plus the PRelu rewrite: outputs within 5e-7 (issue 3).
    ("fr_feature@7cf1cb7e95b9", "fr_feature-v1"),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid embedding space {0:?}: expected 1 to {MAX_SPACE_LEN} of a-z 0-9 _ . @ -")]
pub struct EmbeddingSpaceError(String);

impl EmbeddingSpace {
    pub fn new(name: &str) -> Result<EmbeddingSpace, EmbeddingSpaceError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_SPACE_LEN
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '@' | '-')
            });
        if ok {
            Ok(EmbeddingSpace(name.to_owned()))
        } else {
            Err(EmbeddingSpaceError(name.to_owned()))
        }
    }

    /// The space of a vector that arrived with only its model id (a build from before spaces):
    /// the known table, else the model id itself, so it is compared with nothing else.
    pub fn of_model(model: &ModelId) -> EmbeddingSpace {
        let id = model.to_string();
        match KNOWN_MODELS.iter().find(|(known, _)| *known == id) {
            Some((_, space)) => EmbeddingSpace((*space).to_owned()),
            None => EmbeddingSpace(id.to_ascii_lowercase()),
        }
    }

    /// [`EmbeddingSpace::of_model`] for a stored model id string; one that does not parse is a
    /// space of its own.
    pub fn of_model_str(model: &str) -> EmbeddingSpace {
        match model.parse::<ModelId>() {
            Ok(id) => EmbeddingSpace::of_model(&id),
            Err(_) => EmbeddingSpace::new(model)
                .unwrap_or_else(|_| EmbeddingSpace(format!("invalid:{}", model.len()))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmbeddingSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EmbeddingSpace {
    type Err = EmbeddingSpaceError;
    fn from_str(s: &str) -> Result<EmbeddingSpace, EmbeddingSpaceError> {
        EmbeddingSpace::new(s)
    }
}

impl TryFrom<String> for EmbeddingSpace {
    type Error = EmbeddingSpaceError;
    fn try_from(s: String) -> Result<EmbeddingSpace, EmbeddingSpaceError> {
        EmbeddingSpace::new(&s)
    }
}

impl From<EmbeddingSpace> for String {
    fn from(space: EmbeddingSpace) -> String {
        space.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_earlier_embedder_files_are_in_fr_feature_v1() {
        for id in ["fr_feature@6e524bb13415", "fr_feature@7cf1cb7e95b9"] {
            let model: ModelId = id.parse().unwrap();
            assert_eq!(EmbeddingSpace::of_model(&model).as_str(), "fr_feature-v1");
        }
    }

    #[test]
    fn an_unknown_model_is_a_space_of_its_own() {
        let model: ModelId = "w600k_mbf@0123456789ab".parse().unwrap();
        let space = EmbeddingSpace::of_model(&model);
        assert_eq!(space.as_str(), "w600k_mbf@0123456789ab");
        assert_eq!(EmbeddingSpace::new(space.as_str()), Ok(space));
    }

    #[test]
    fn names_are_checked() {
        assert!(EmbeddingSpace::new("fr_feature-v2").is_ok());
        for bad in ["", "FR", "a b", "x/y", &"a".repeat(65)] {
            assert!(EmbeddingSpace::new(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<EmbeddingSpace>("\"no way\"").is_err());
    }
}
