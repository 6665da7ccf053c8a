//! The notice outbox (`domain::notice`) on MongoDB: one document per notice, its `key` unique.
//! Several server processes may send from one database: a claim leases each notice with one
//! conditional update per document, so of two claims racing for a notice only one matches it.

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use serde::{Deserialize, Serialize};

use super::MongoStore;
use super::docs::to_document;
use super::error::{DbError, is_duplicate_key};
use super::names::{META, NOTICES};
use crate::domain::notice::{Claim, Finish, Letter, Notice, State};
use crate::store::{Millis, NoticeQuery};

/// A notice as stored. Its kind and state are their words (`Kind`, `State`); a word the build does
/// not know, or a field of the wrong type, is corruption naming the notice, never a default.
#[derive(Debug, Serialize, Deserialize)]
struct NoticeDoc {
    #[serde(rename = "_id")]
    id: String,
    school_id: String,
    kind: String,
    key: String,
    recipient: String,
    guardian_id: Option<String>,
    day: String,
    subject: String,
    text: String,
    html: String,
    facts: String,
    student_ids: Vec<String>,
    message_id: String,
    state: String,
    attempts: i64,
    next_attempt_at: Millis,
    lease_owner: Option<String>,
    lease_until: Option<Millis>,
    last_error: Option<String>,
    created_at: Millis,
    sent_at: Option<Millis>,
}

impl NoticeDoc {
    fn of(n: &Notice) -> NoticeDoc {
        let l = &n.letter;
        NoticeDoc {
            id: l.id.clone(),
            school_id: l.school_id.clone(),
            kind: l.kind.as_str().to_owned(),
            key: l.key.clone(),
            recipient: l.recipient.clone(),
            guardian_id: l.guardian_id.clone(),
            day: l.day.clone(),
            subject: l.subject.clone(),
            text: l.text.clone(),
            html: l.html.clone(),
            facts: l.facts.clone(),
            student_ids: l.students.clone(),
            message_id: l.message_id.clone(),
            state: n.state.as_str().to_owned(),
            attempts: i64::from(n.attempts),
            next_attempt_at: n.next_attempt_at,
            lease_owner: n.lease_owner.clone(),
            lease_until: n.lease_until,
            last_error: n.last_error.clone(),
            created_at: n.created_at,
            sent_at: n.sent_at,
        }
    }

    fn into_notice(self) -> Result<Notice, DbError> {
        let id = self.id;
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            DbError::corrupt(format!("notice {id}: its {what}: {e}"))
        };
        let kind = self.kind.parse().map_err(|e| bad("kind", &e))?;
        let state = self.state.parse().map_err(|e| bad("state", &e))?;
        let attempts = u32::try_from(self.attempts).map_err(|e| bad("attempts", &e))?;
        Ok(Notice {
            letter: Letter {
                id,
                school_id: self.school_id,
                kind,
                key: self.key,
                recipient: self.recipient,
                guardian_id: self.guardian_id,
                day: self.day,
                subject: self.subject,
                text: self.text,
                html: self.html,
                facts: self.facts,
                students: self.student_ids,
                message_id: self.message_id,
            },
            state,
            attempts,
            next_attempt_at: self.next_attempt_at,
            lease_owner: self.lease_owner,
            lease_until: self.lease_until,
            last_error: self.last_error,
            created_at: self.created_at,
            sent_at: self.sent_at,
        })
    }
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
                doc! { "$setOnInsert": to_document(&NoticeDoc::of(n))? },
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
    let held: Vec<NoticeDoc> = coll
        .clone_with_type()
        .find(doc! { "lease_owner": &claim.owner, "state": "sending" })
        .sort(doc! { "next_attempt_at": 1 })
        .await?
        .try_collect()
        .await?;
    held.into_iter().map(NoticeDoc::into_notice).collect()
}

fn finish_set(f: &Finish) -> Document {
    doc! {
        "state": f.state.as_str(),
        "attempts": i64::from(f.attempts),
        "next_attempt_at": f.next_attempt_at,
        "last_error": f.last_error.clone(),
        "sent_at": f.sent_at,
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
    let found: Vec<NoticeDoc> = store
        .coll::<NoticeDoc>(NOTICES)
        .find(filter)
        .sort(doc! { "created_at": -1, "_id": -1 })
        .limit(q.limit as i64)
        .await?
        .try_collect()
        .await?;
    found.into_iter().map(NoticeDoc::into_notice).collect()
}

pub async fn one(store: &MongoStore, school_id: &str, id: &str) -> Result<Option<Notice>, DbError> {
    store
        .coll::<NoticeDoc>(NOTICES)
        .find_one(doc! { "_id": id, "school_id": school_id })
        .await?
        .map(NoticeDoc::into_notice)
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
