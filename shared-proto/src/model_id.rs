//! `ModelId`: which model made an embedding. Vectors of different ids are never compared.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A model's name plus the first 12 hex digits of its file's sha256, written `name@sha256prefix`.
///
/// The hash is part of the id so that a re-exported or rewritten file with the same name can never
/// have its vectors mixed with the old one's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelId {
    name: String,
    sha256_prefix: String,
}

/// Length of the sha256 prefix kept in a [`ModelId`]: 48 bits, ample to tell model files apart.
pub const SHA256_PREFIX_LEN: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdError(String);

impl fmt::Display for ModelIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid model id {:?}: expected NAME@SHA256PREFIX ({SHA256_PREFIX_LEN} lowercase hex digits)",
            self.0
        )
    }
}

impl std::error::Error for ModelIdError {}

impl ModelId {
    /// Builds the id of a model file from its name and full (or prefix of its) sha256 in hex.
    pub fn new(name: &str, sha256_hex: &str) -> Result<ModelId, ModelIdError> {
        let bad = || ModelIdError(format!("{name}@{sha256_hex}"));
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        let prefix = sha256_hex.get(..SHA256_PREFIX_LEN).ok_or_else(bad)?;
        let hex_ok = prefix
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        if !name_ok || !hex_ok {
            return Err(bad());
        }
        Ok(ModelId {
            name: name.to_owned(),
            sha256_prefix: prefix.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.sha256_prefix)
    }
}

impl FromStr for ModelId {
    type Err = ModelIdError;
    fn from_str(s: &str) -> Result<ModelId, ModelIdError> {
        let (name, hash) = s
            .split_once('@')
            .ok_or_else(|| ModelIdError(s.to_owned()))?;
        if hash.len() != SHA256_PREFIX_LEN {
            return Err(ModelIdError(s.to_owned()));
        }
        ModelId::new(name, hash)
    }
}

impl TryFrom<String> for ModelId {
    type Error = ModelIdError;
    fn try_from(s: String) -> Result<ModelId, ModelIdError> {
        s.parse()
    }
}

impl From<ModelId> for String {
    fn from(id: ModelId) -> String {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let id = ModelId::new("fr_feature", "6e524bb134157e6f9b3f2afd").unwrap();
        assert_eq!(id.to_string(), "fr_feature@6e524bb13415");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"fr_feature@6e524bb13415\"");
        assert_eq!(serde_json::from_str::<ModelId>(&json).unwrap(), id);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "fr_feature",
            "fr_feature@",
            "fr_feature@6E524BB13415",
            "a b@6e524bb13415",
            "x@6e524bb134",
        ] {
            assert!(
                bad.parse::<ModelId>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(serde_json::from_str::<ModelId>("\"nope\"").is_err());
    }
}
