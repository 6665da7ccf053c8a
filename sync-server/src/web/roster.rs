//! The roster page: a OneRoster export uploaded in two steps. The upload is read as the API reads
//! it (`shared_proto::oneroster`, then `domain::roster::batch_of`); its problems are listed by
//! `file:line`, or else its warnings and a preview of what applying it changes
//! (`domain::roster::preview`, the stores' own diff). Only the click on "Apply" writes, through
//! `Store::apply_roster` as the API does. Admins only.
//!
//! Between the two steps the parsed upload waits in memory (`Caches::rosters`), under a random
//! id that only its uploader's session can apply, for `PENDING_FOR_MS`. The preview is computed
//! again at "Apply": if the school's roster changed in between, the admin sees the new preview
//! instead of a write they did not check.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::WebUser;
use super::{Chrome, WebError, admin_school};
use crate::api::auth::new_token;
use crate::api::roster::parts;
use crate::api::{ApiError, AppState};
use crate::domain::audit::Action;
use crate::domain::guardian::Contact;
use crate::domain::roster::{self, Changes, Preview, Upload, UploadRefusal};
use crate::store::{Millis, RosterBatch};

/// How long an upload waits for its "Apply".
const PENDING_FOR_MS: Millis = 30 * 60 * 1000;
/// Uploads waiting at once, over all schools; the oldest gives way.
const MAX_PENDING: usize = 16;
/// Lines shown per list of the preview; the count says how many there are.
const SHOWN: usize = 100;

/// An upload read and previewed, waiting for its uploader's "Apply".
pub struct PendingRoster {
    school_id: String,
    username: String,
    batch: RosterBatch,
    /// Linked once the batch is applied (`api::roster::link_guardians`).
    guardians: Vec<(Contact, Vec<String>)>,
    /// The parser's lenient reads, in words: shown again with a new preview.
    warnings: Vec<String>,
    preview: Preview,
    at: Millis,
}

/// The waiting uploads by id.
pub type Pending = HashMap<String, PendingRoster>;

#[derive(Template, WebTemplate)]
#[template(path = "roster.html")]
struct RosterPage {
    chrome: Chrome,
    /// `file:line: reason`, one per line, of an upload refused.
    problems: Vec<String>,
    /// The read upload: its warnings, what it changes and the id to apply it by.
    preview: Option<PreviewView>,
    notice: Option<String>,
}

struct PreviewView {
    id: String,
    /// "3 added, 1 changed, 0 deactivated".
    summary: String,
    warnings: Vec<String>,
    empty: bool,
    kinds: Vec<KindView>,
    /// Guardian links in the export (`domain::roster::Upload::guardians`), made on apply.
    guardian_links: usize,
}

/// One kind of record in the preview.
struct KindView {
    noun: &'static str,
    unchanged: usize,
    lists: Vec<ListView>,
}

struct ListView {
    what: &'static str,
    count: usize,
    shown: Vec<String>,
}

impl PreviewView {
    fn new(
        id: String,
        warnings: Vec<String>,
        preview: &Preview,
        guardians: &[(Contact, Vec<String>)],
    ) -> PreviewView {
        let guardian_links = guardians.iter().map(|(_, students)| students.len()).sum();
        let kind = |noun, changes: &Changes| KindView {
            noun,
            unchanged: changes.unchanged,
            lists: [
                ("added", &changes.added),
                ("changed", &changes.changed),
                ("deactivated", &changes.deactivated),
            ]
            .into_iter()
            .filter(|(_, lines)| !lines.is_empty())
            .map(|(what, lines)| ListView {
                what,
                count: lines.len(),
                shown: lines.iter().take(SHOWN).cloned().collect(),
            })
            .collect(),
        };
        PreviewView {
            id,
            summary: preview.summary(),
            warnings,
            empty: preview.is_empty() && guardian_links == 0,
            guardian_links,
            kinds: vec![
                kind("Sections", &preview.sections),
                kind("Students", &preview.students),
                kind("Teachers", &preview.teachers),
                kind("Enrolments", &preview.enrolments),
            ],
        }
    }
}

#[derive(Deserialize)]
pub(super) struct RosterParams {
    school: Option<String>,
    applied: Option<String>,
}

/// `GET /roster`: the upload form.
pub(super) async fn page(
    State(state): State<AppState>,
    user: WebUser,
    Query(params): Query<RosterParams>,
) -> Result<Response, WebError> {
    let Some(school_id) = admin_school(&state, &user, None, params.school, "rosters").await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let page = RosterPage {
        chrome: Chrome::of(&user, Some(school_id)),
        problems: Vec::new(),
        preview: None,
        notice: params
            .applied
            .map(|what| format!("Roster applied: {what}.")),
    };
    Ok(page.into_response())
}

/// `POST /roster`: reads the export (multipart: the CSV files, the form's `csrf` and `school`)
/// and answers its problems, or its preview.
pub(super) async fn upload(
    State(state): State<AppState>,
    user: WebUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, WebError> {
    let multipart = multipart.map_err(|e| {
        WebError(ApiError::InvalidRequest(format!(
            "the form did not arrive as an upload: {}",
            e.body_text()
        )))
    })?;
    let mut csrf = String::new();
    let mut school = None;
    let mut files = Vec::new();
    for part in parts(&state, multipart).await? {
        match (part.name.as_str(), part.file_name) {
            // A file input left empty still sends a part, without content.
            (_, Some(file_name)) if !file_name.is_empty() || !part.bytes.is_empty() => {
                files.push((file_name, part.bytes));
            }
            ("csrf", None) => csrf = String::from_utf8_lossy(&part.bytes).into_owned(),
            ("school", None) => school = Some(String::from_utf8_lossy(&part.bytes).into_owned()),
            _ => {}
        }
    }
    let Some(school_id) = admin_school(&state, &user, Some(&csrf), school, "rosters").await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let chrome = Chrome::of(&user, Some(school_id.clone()));
    let read = read_upload(&state, &school_id, files).await?;
    let (upload, warnings, preview) = match read {
        Ok(read) => read,
        Err(refusal) => {
            let page = RosterPage {
                chrome,
                problems: refusal.problems(),
                preview: None,
                notice: None,
            };
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    let id = new_token();
    let view = PreviewView::new(id.clone(), warnings.clone(), &preview, &upload.guardians);
    keep(
        &state,
        id,
        PendingRoster {
            school_id,
            username: user.user.username.clone(),
            batch: upload.batch,
            guardians: upload.guardians,
            warnings,
            preview,
            at: state.now(),
        },
    );
    let page = RosterPage {
        chrome,
        problems: Vec::new(),
        preview: Some(view),
        notice: None,
    };
    Ok(page.into_response())
}

/// The export's batch for the school, its warnings in words, and its preview against what the
/// school holds now; or why it cannot be applied.
async fn read_upload(
    state: &AppState,
    school_id: &str,
    files: Vec<(String, Vec<u8>)>,
) -> Result<Result<(Upload, Vec<String>, Preview), UploadRefusal>, WebError> {
    let upload = match roster::read(school_id, files) {
        Ok(read) => read,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let warnings = upload.warnings.iter().map(ToString::to_string).collect();
    let held = state.store().roster(school_id).await?;
    Ok(roster::preview(&held, &upload.batch).map(|preview| (upload, warnings, preview)))
}

/// Keeps an upload for its "Apply", dropping the expired and, past `MAX_PENDING`, the oldest.
fn keep(state: &AppState, id: String, pending: PendingRoster) {
    let now = state.now();
    let mut waiting = state
        .web_caches()
        .rosters
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    waiting.retain(|_, p| now - p.at < PENDING_FOR_MS);
    while waiting.len() >= MAX_PENDING {
        let oldest = waiting
            .iter()
            .min_by_key(|(_, p)| p.at)
            .map(|(id, _)| id.clone());
        match oldest {
            Some(oldest) => waiting.remove(&oldest),
            None => break,
        };
    }
    waiting.insert(id, pending);
}

#[derive(Deserialize)]
pub(super) struct ApplyForm {
    csrf: String,
    school: Option<String>,
    upload: String,
}

/// `POST /roster/apply`: applies a previewed upload of this session's user, if the school still
/// holds what the preview was made against.
pub(super) async fn apply(
    State(state): State<AppState>,
    user: WebUser,
    Form(form): Form<ApplyForm>,
) -> Result<Response, WebError> {
    let Some(school_id) =
        admin_school(&state, &user, Some(&form.csrf), form.school, "rosters").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let now = state.now();
    let pending = {
        let mut waiting = state
            .web_caches()
            .rosters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mine = waiting.get(&form.upload).is_some_and(|p| {
            p.school_id == school_id
                && p.username == user.user.username
                && now - p.at < PENDING_FOR_MS
        });
        if mine {
            waiting.remove(&form.upload)
        } else {
            None
        }
    };
    let Some(pending) = pending else {
        return Err(WebError(ApiError::InvalidRequest(
            "this upload is no longer waiting (it was applied, or 30 minutes passed): upload the files again".to_owned(),
        )));
    };
    let held = state.store().roster(&school_id).await?;
    let preview = roster::preview(&held, &pending.batch)
        .map_err(|refusal| WebError(crate::api::roster::refusal(refusal)))?;
    if preview != pending.preview {
        let id = new_token();
        let view = PreviewView::new(
            id.clone(),
            pending.warnings.clone(),
            &preview,
            &pending.guardians,
        );
        keep(
            &state,
            id,
            PendingRoster {
                preview,
                at: now,
                ..pending
            },
        );
        let page = RosterPage {
            chrome: Chrome::of(&user, Some(school_id)),
            problems: Vec::new(),
            preview: Some(view),
            notice: Some(
                "The school's roster changed since the preview, so nothing was applied: check the changes again."
                    .to_owned(),
            ),
        };
        return Ok((StatusCode::CONFLICT, page).into_response());
    }
    let summary = state
        .store()
        .apply_roster(&school_id, &pending.batch, true)
        .await?;
    let guardians = crate::api::roster::link_guardians(
        &state,
        &school_id,
        &pending.guardians,
        &user.user.username,
    )
    .await?;
    let what = guardians.after(preview.summary());
    tracing::info!(school_id = %school_id, by = %user.user.username, ?summary, "roster imported from the web page");
    state
        .audit(
            Some(&school_id),
            &user.user.username,
            Action::RosterUploaded,
            &school_id,
            what.clone(),
        )
        .await?;
    let query = serde_urlencoded::to_string([("school", school_id.as_str()), ("applied", &what)])
        .unwrap_or_default();
    Ok(Redirect::to(&format!("/roster?{query}")).into_response())
}
