//! The school's accounts, for its admins: who can sign in and as what; a new teacher or admin
//! account; a new password for someone who lost theirs (which signs them out everywhere). The
//! rules are the API's (`api::admin::create_account`, `reset_password`).

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::WebUser;
use super::{Chrome, WebError, admin_school, given};
use crate::api::admin::{create_account, reset_password};
use crate::api::{ApiError, AppState};
use crate::store::Role;

#[derive(Deserialize)]
pub(super) struct UsersParams {
    school: Option<String>,
    /// After a change: what to say.
    done: Option<String>,
}

struct UserLine {
    id: String,
    username: String,
    role: &'static str,
    teacher_id: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    lines: Vec<UserLine>,
    notice: Option<String>,
    /// The form's entries, kept when it is refused.
    error: Option<String>,
    username: String,
    teacher_id: String,
}

async fn users_page(
    state: &AppState,
    user: &WebUser,
    school_id: String,
    notice: Option<String>,
    error: Option<(String, String, String)>,
) -> Result<Response, WebError> {
    let lines = state
        .store()
        .users(&school_id)
        .await?
        .into_iter()
        .map(|u| UserLine {
            role: match u.role {
                Role::Admin => "school admin",
                Role::Teacher => "teacher",
            },
            teacher_id: u.teacher_id.unwrap_or_default(),
            username: u.username,
            id: u.id,
        })
        .collect();
    let (error, username, teacher_id) = match error {
        Some((why, username, teacher_id)) => (Some(why), username, teacher_id),
        None => (None, String::new(), String::new()),
    };
    let page = UsersPage {
        chrome: Chrome::of(user, Some(school_id)),
        lines,
        notice,
        error,
        username,
        teacher_id,
    };
    Ok(page.into_response())
}

/// `GET /users`.
pub(super) async fn page(
    State(state): State<AppState>,
    user: WebUser,
    Query(params): Query<UsersParams>,
) -> Result<Response, WebError> {
    let Some(school_id) = admin_school(&state, &user, None, params.school, "accounts").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let notice = params.done.map(|who| format!("Saved: {who}."));
    users_page(&state, &user, school_id, notice, None).await
}

/// Back to the list by GET, saying what was done, so a reload posts nothing.
fn done(school_id: &str, what: &str) -> Response {
    let query =
        serde_urlencoded::to_string([("school", school_id), ("done", what)]).unwrap_or_default();
    Redirect::to(&format!("/users?{query}")).into_response()
}

#[derive(Deserialize)]
pub(super) struct NewAccountForm {
    csrf: String,
    school: Option<String>,
    username: String,
    password: String,
    role: String,
    teacher_id: Option<String>,
}

/// `POST /users`: a new account; a refusal shows the form again with why.
pub(super) async fn create(
    State(state): State<AppState>,
    user: WebUser,
    Form(form): Form<NewAccountForm>,
) -> Result<Response, WebError> {
    let Some(school_id) =
        admin_school(&state, &user, Some(&form.csrf), form.school, "accounts").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let username = form.username.trim().to_owned();
    let teacher_id = given(form.teacher_id).map(|id| id.trim().to_owned());
    let created = create_account(
        &state,
        &school_id,
        &user.user,
        username.clone(),
        form.password,
        &form.role,
        teacher_id.clone(),
    )
    .await;
    match created {
        Ok(account) => Ok(done(
            &school_id,
            &format!("account {} created", account.username),
        )),
        Err(refused @ (ApiError::InvalidRequest(_) | ApiError::Conflict(_))) => {
            let kept = (
                refused.to_string(),
                username,
                teacher_id.unwrap_or_default(),
            );
            users_page(&state, &user, school_id, None, Some(kept)).await
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    csrf: String,
    school: Option<String>,
    password: String,
}

/// `POST /users/{user}/password`: a new password, and every session of theirs ends.
pub(super) async fn set_password(
    State(state): State<AppState>,
    user: WebUser,
    Path(user_id): Path<String>,
    Form(form): Form<PasswordForm>,
) -> Result<Response, WebError> {
    let Some(school_id) =
        admin_school(&state, &user, Some(&form.csrf), form.school, "accounts").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let account = state
        .store()
        .users(&school_id)
        .await?
        .into_iter()
        .find(|u| u.id == user_id)
        .ok_or_else(|| WebError::from(ApiError::NotFound(format!("user {user_id}"))))?;
    match reset_password(&state, &school_id, &user_id, form.password, &user.user).await {
        Ok(()) => Ok(done(
            &school_id,
            &format!(
                "new password for {}; they are signed out everywhere",
                account.username
            ),
        )),
        Err(refused @ ApiError::InvalidRequest(_)) => {
            let why = format!("{} (for {})", refused, account.username);
            users_page(
                &state,
                &user,
                school_id,
                None,
                Some((why, String::new(), String::new())),
            )
            .await
        }
        Err(other) => Err(other.into()),
    }
}
