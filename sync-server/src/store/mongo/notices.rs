//! The notice outbox (`domain::notice`) on MongoDB: one document per notice, its `key` unique.
//! Several server processes may send from one database: a claim leases each notice with one
//! conditional update per document, so of two claims racing for a notice only one matches it.

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};

use super::MongoStore;
use super::error::{DbError, is_duplicate_key};
use super::names::{META, NOTICES};
use crate::domain::notice::{Claim, Finish, Letter, Notice, State};
use crate::store::{NoticeQuery, StoreError};

fn opt_i64(v: Option<i64>) -> Bson {
    v.map_or(Bson::Null, Bson::Int64)
}

fn opt_str(v: Option<&str>) -> Bson {
    v.map_or(Bson::Null, |s| Bson::String(s.to_owned()))
}

fn doc_of(n: &Notice) -> Document {
    doc! {
        "_id": &n.letter.id,
        "school_id": &n.letter.school_id,
        "kind": n.letter.kind.as_str(),
        "key": &n.letter.key,
        "recipient": &n.letter.recipient,
        "guardian_id": opt_str(n.letter.guardian_id.as_deref()),
        "day": &n.letter.day,
        "subject": &n.letter.subject,
        "text": &n.letter.text,
        "html": &n.letter.html,
        "facts": &n.letter.facts,
        "student_ids": &n.letter.students,
        "message_id": &n.letter.message_id,
        "state": n.state.as_str(),
        "attempts": i64::from(n.attempts),
        "next_attempt_at": n.next_attempt_at,
        "lease_owner": opt_str(n.lease_owner.as_deref()),
        "lease_until": opt_i64(n.lease_until),
        "last_error": opt_str(n.last_error.as_deref()),
        "created_at": n.created_at,
        "sent_at": opt_i64(n.sent_at),
    }
}

fn notice_of(d: &Document) -> Result<Notice, DbError> {
    let bad = |key: &str, e: &dyn std::fmt::Display| {
        DbError::Store(StoreError::Backend(format!("a notice's {key}: {e}")))
    };
    let text = |key: &str| d.get_str(key).map(str::to_owned).map_err(|e| bad(key, &e));
    let opt_text = |key: &str| d.get_str(key).ok().map(str::to_owned);
    let number = |key: &str| d.get_i64(key).map_err(|e| bad(key, &e));
    Ok(Notice {
        letter: Letter {
            id: text("_id")?,
            school_id: text("school_id")?,
            kind: text("kind")?.parse().map_err(|e| bad("kind", &e))?,
            key: text("key")?,
            recipient: text("recipient")?,
            guardian_id: opt_text("guardian_id"),
            day: text("day")?,
            subject: text("subject")?,
            text: text("text")?,
            html: text("html")?,
            facts: text("facts")?,
            students: d
                .get_array("student_ids")
                .map(|a| {
                    a.iter()
                        .filter_map(|b| b.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            message_id: text("message_id")?,
        },
        state: text("state")?.parse().map_err(|e| bad("state", &e))?,
        attempts: u32::try_from(number("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: number("next_attempt_at")?,
        lease_owner: opt_text("lease_owner"),
        lease_until: d.get_i64("lease_until").ok(),
        last_error: opt_text("last_error"),
        created_at: number("created_at")?,
        sent_at: d.get_i64("sent_at").ok(),
    })
}

/// Each notice is inserted unless its key is held: one upsert per notice, so two processes
/// enqueueing the same notice store it once (the unique index decides a race).
pub async fn enqueue(store: &MongoStore, notices: &[Notice]) -> Result<usize, DbError> {
    let coll = store.coll::<Document>(NOTICES);
    let mut added = 0;
    for n in notices {
        let result = coll
            .update_one(
                doc! { "key": &n.letter.key },
                doc! { "$setOnInsert": doc_of(n) },
            )
            .upsert(true)
            .await;
        match result {
            Ok(r) if r.upserted_id.is_some() => added += 1,
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(added)
}

fn claimable(now: i64) -> Document {
    doc! { "$or": [
        { "state": "queued", "next_attempt_at": { "$lte": now } },
        { "state": "sending", "lease_until": { "$lte": now } },
    ] }
}

/// Finds candidates, then leases each with an update that matches only while it is still
/// claimable: a notice another claim took in between is not matched, so it is never leased twice.
/// When another claim took some, the candidates after them are looked for again (a few rounds),
/// so two senders share a backlog instead of one coming back empty.
pub async fn claim(store: &MongoStore, claim: &Claim) -> Result<Vec<Notice>, DbError> {
    let coll = store.coll::<Document>(NOTICES);
    let mut held = 0;
    for _round in 0..4 {
        let want = claim.limit.saturating_sub(held);
        if want == 0 {
            break;
        }
        let candidates: Vec<Document> = coll
            .find(claimable(claim.now))
            .sort(doc! { "next_attempt_at": 1 })
            .limit(want as i64)
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        let ids: Vec<Bson> = candidates
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        if ids.is_empty() {
            break;
        }
        let found = ids.len();
        let mut filter = claimable(claim.now);
        filter.insert("_id", doc! { "$in": ids });
        let taken = coll
            .update_many(
                filter,
                doc! {
                    "$set": {
                        "state": "sending",
                        "lease_owner": &claim.owner,
                        "lease_until": claim.lease_until,
                    },
                    "$inc": { "attempts": 1_i64 },
                },
            )
            .await?
            .modified_count as usize;
        held += taken;
        if taken == found {
            break;
        }
    }
    if held == 0 {
        return Ok(Vec::new());
    }
    let held: Vec<Document> = coll
        .find(doc! { "lease_owner": &claim.owner, "state": "sending" })
        .sort(doc! { "next_attempt_at": 1 })
        .await?
        .try_collect()
        .await?;
    held.iter().map(notice_of).collect()
}

fn finish_set(f: &Finish) -> Document {
    doc! {
        "state": f.state.as_str(),
        "attempts": i64::from(f.attempts),
        "next_attempt_at": f.next_attempt_at,
        "last_error": opt_str(f.last_error.as_deref()),
        "sent_at": opt_i64(f.sent_at),
        "lease_owner": Bson::Null,
        "lease_until": Bson::Null,
    }
}

pub async fn finish(
    store: &MongoStore,
    id: &str,
    owner: &str,
    f: &Finish,
) -> Result<bool, DbError> {
    let r = store
        .coll::<Document>(NOTICES)
        .update_one(
            doc! { "_id": id, "lease_owner": owner, "state": "sending" },
            doc! { "$set": finish_set(f) },
        )
        .await?;
    Ok(r.matched_count > 0)
}

pub async fn resend(
    store: &MongoStore,
    school_id: &str,
    id: &str,
    f: &Finish,
) -> Result<bool, DbError> {
    let r = store
        .coll::<Document>(NOTICES)
        .update_one(
            doc! { "_id": id, "school_id": school_id, "state": "failed" },
            doc! { "$set": finish_set(f) },
        )
        .await?;
    Ok(r.matched_count > 0)
}

pub async fn list(store: &MongoStore, q: &NoticeQuery) -> Result<Vec<Notice>, DbError> {
    let mut filter = doc! { "school_id": &q.school_id };
    if let Some(day) = &q.day {
        filter.insert("day", day);
    }
    if let Some(state) = q.state {
        filter.insert("state", state.as_str());
    }
    let found: Vec<Document> = store
        .coll::<Document>(NOTICES)
        .find(filter)
        .sort(doc! { "created_at": -1, "_id": -1 })
        .limit(q.limit as i64)
        .await?
        .try_collect()
        .await?;
    found.iter().map(notice_of).collect()
}

pub async fn one(store: &MongoStore, school_id: &str, id: &str) -> Result<Option<Notice>, DbError> {
    store
        .coll::<Document>(NOTICES)
        .find_one(doc! { "_id": id, "school_id": school_id })
        .await?
        .as_ref()
        .map(notice_of)
        .transpose()
}

pub async fn counts(store: &MongoStore, school_id: &str) -> Result<Vec<(State, u64)>, DbError> {
    let coll = store.coll::<Document>(NOTICES);
    let mut out = Vec::new();
    for state in State::ALL {
        let n = coll
            .count_documents(doc! { "school_id": school_id, "state": state.as_str() })
            .await?;
        if n > 0 {
            out.push((*state, n));
        }
    }
    out.sort_by_key(|(s, _)| s.as_str());
    Ok(out)
}

pub async fn secret(store: &MongoStore, fresh: &str) -> Result<String, DbError> {
    let coll = store.coll::<Document>(META);
    let result = coll
        .update_one(
            doc! { "_id": "unsubscribe_secret" },
            doc! { "$setOnInsert": { "value": fresh } },
        )
        .upsert(true)
        .await;
    match result {
        Ok(_) => {}
        Err(e) if is_duplicate_key(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let held = coll
        .find_one(doc! { "_id": "unsubscribe_secret" })
        .await?
        .and_then(|d| d.get_str("value").ok().map(str::to_owned));
    Ok(held.unwrap_or_else(|| fresh.to_owned()))
}

/// Records a contact's unsubscribing, keeping the first time.
pub async fn opt_out(
    store: &MongoStore,
    school_id: &str,
    id: &str,
    at: i64,
) -> Result<bool, DbError> {
    let coll = store.coll::<Document>(super::names::GUARDIANS);
    let found = coll
        .update_one(
            doc! { "_id": id, "school_id": school_id, "opted_out_at": Bson::Null },
            doc! { "$set": { "opted_out_at": at } },
        )
        .await?;
    if found.matched_count > 0 {
        return Ok(true);
    }
    Ok(coll
        .find_one(doc! { "_id": id, "school_id": school_id })
        .await?
        .is_some())
}
