//! Guardians (`domain::guardian`) on MongoDB: one document per contact, its children's ids in
//! `student_ids` (a link is `$addToSet`, an unlink `$pull`).

use mongodb::bson::{Document, doc};
use serde::{Deserialize, Serialize};

use super::error::DbError;
use super::names::GUARDIANS;
use super::tx::Tx;
use crate::domain::guardian::Guardian;
use crate::store::Millis;

/// A contact as stored; its relationship is `Relationship`'s word. A word the build does not know,
/// or a field of the wrong type, is corruption, never a default: an unsubscribe misread as none
/// would mail a family that asked not to be.
#[derive(Debug, Serialize, Deserialize)]
pub struct GuardianDoc {
    #[serde(rename = "_id")]
    id: String,
    school_id: String,
    given_name: String,
    family_name: String,
    email: String,
    relationship: String,
    opted_out_at: Option<Millis>,
    student_ids: Vec<String>,
}

impl GuardianDoc {
    pub fn of(g: &Guardian) -> GuardianDoc {
        GuardianDoc {
            id: g.id.clone(),
            school_id: g.school_id.clone(),
            given_name: g.given_name.clone(),
            family_name: g.family_name.clone(),
            email: g.email.clone(),
            relationship: g.relationship.as_str().to_owned(),
            opted_out_at: g.opted_out_at,
            student_ids: g.student_ids.clone(),
        }
    }

    fn into_guardian(self) -> Result<Guardian, DbError> {
        let relationship = self.relationship.parse().map_err(|e| {
            DbError::corrupt(format!("guardian {}: its relationship: {e}", self.id))
        })?;
        let mut student_ids = self.student_ids;
        student_ids.sort();
        Ok(Guardian {
            id: self.id,
            school_id: self.school_id,
            given_name: self.given_name,
            family_name: self.family_name,
            email: self.email,
            relationship,
            opted_out_at: self.opted_out_at,
            student_ids,
        })
    }
}

/// The contacts `filter` finds, by family and given name.
pub async fn find(tx: &mut Tx<'_>, filter: Document) -> Result<Vec<Guardian>, DbError> {
    let found: Vec<GuardianDoc> = tx
        .find_all(
            GUARDIANS,
            filter,
            doc! { "family_name": 1, "given_name": 1, "_id": 1 },
        )
        .await?;
    found.into_iter().map(GuardianDoc::into_guardian).collect()
}
