//! Guardians (`domain::guardian`) on MongoDB: one document per contact, its children's ids in
//! `student_ids` (a link is `$addToSet`, an unlink `$pull`).

use mongodb::bson::{Bson, Document, doc};

use super::error::DbError;
use super::names::GUARDIANS;
use super::tx::Tx;
use crate::domain::guardian::Guardian;
use crate::store::StoreError;

pub fn doc_of(g: &Guardian) -> Document {
    doc! {
        "_id": &g.id,
        "school_id": &g.school_id,
        "given_name": &g.given_name,
        "family_name": &g.family_name,
        "email": &g.email,
        "relationship": g.relationship.as_str(),
        "opted_out_at": g.opted_out_at.map_or(Bson::Null, Bson::Int64),
        "student_ids": &g.student_ids,
    }
}

fn guardian_of(d: &Document) -> Result<Guardian, DbError> {
    let bad = |key: &str, e: &dyn std::fmt::Display| {
        DbError::Store(StoreError::Backend(format!("a guardian's {key}: {e}")))
    };
    let text = |key: &str| d.get_str(key).map(str::to_owned).map_err(|e| bad(key, &e));
    let relationship = text("relationship")?;
    Ok(Guardian {
        id: text("_id")?,
        school_id: text("school_id")?,
        given_name: text("given_name")?,
        family_name: text("family_name")?,
        email: text("email")?,
        relationship: relationship.parse().map_err(|e| bad("relationship", &e))?,
        opted_out_at: d.get_i64("opted_out_at").ok(),
        student_ids: d
            .get_array("student_ids")
            .map_err(|e| bad("student_ids", &e))?
            .iter()
            .filter_map(|b| b.as_str().map(str::to_owned))
            .collect(),
    })
}

/// The contacts `filter` finds, by family and given name.
pub async fn find(tx: &mut Tx<'_>, filter: Document) -> Result<Vec<Guardian>, DbError> {
    let found: Vec<Document> = tx
        .find_all(
            GUARDIANS,
            filter,
            doc! { "family_name": 1, "given_name": 1, "_id": 1 },
        )
        .await?;
    let mut out: Vec<Guardian> = found.iter().map(guardian_of).collect::<Result<_, _>>()?;
    for g in &mut out {
        g.student_ids.sort();
    }
    Ok(out)
}
