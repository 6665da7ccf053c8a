//! Who is signed in to the web pages, and the checks every form carries.
//!
//! - The session is the JSON API's login session (`auth::sign_in`), its token in a cookie that
//!   scripts cannot read (`HttpOnly`), that no other site's page sends (`SameSite=Strict`), and
//!   that only travels over TLS when the server serves TLS (`Secure`).
//! - Every form of a signed-in page carries a CSRF token derived from the session's secret token
//!   (sha256 of a label and the token): a page of another site cannot read it, and the server keeps
//!   nothing more. The sign-in form, before any session, uses a double-submit cookie instead.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use crate::api::AppState;
use crate::api::auth::secret_hash;
use crate::store::{Millis, Role, User};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "rollcall_session";
/// The sign-in form's double-submit cookie.
pub const LOGIN_CSRF_COOKIE: &str = "rollcall_login_csrf";

/// A signed-in person on a web page; without one, a page redirects to `/login`.
pub struct WebUser {
    pub user: User,
    /// The session's token hash: what signing out deletes.
    pub token_hash: String,
    /// What this session's forms must carry.
    pub csrf: String,
}

impl WebUser {
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// Checks a submitted form's CSRF token.
    pub fn check_csrf(&self, submitted: &str) -> bool {
        same_secret(&self.csrf, submitted)
    }
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_login = || Redirect::to("/login").into_response();
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let token_hash = secret_hash(token);
        match state
            .store()
            .user_by_session(&token_hash, state.now())
            .await
        {
            Ok(Some(user)) => Ok(WebUser {
                csrf: csrf_of(token),
                user,
                token_hash,
            }),
            Ok(None) => Err(to_login()),
            Err(e) => Err(super::WebError::from(e).into_response()),
        }
    }
}

/// The CSRF token of a session: not the session token, and not computable without it.
pub fn csrf_of(session_token: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"rollcall web form\0");
    hasher.update(session_token.as_bytes());
    hex::encode(hasher.finalize())
}

/// Compares two secrets in time that does not depend on where they first differ.
pub fn same_secret(expected: &str, submitted: &str) -> bool {
    let (a, b) = (expected.as_bytes(), submitted.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, `Secure` when served over TLS.
/// `max_age_ms` 0 clears the cookie.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age_ms: Millis,
    secure: bool,
) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        max_age_ms / 1000
    );
    HeaderValue::from_str(&text).expect("cookie names and tokens are ASCII without separators")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others_and_secrets_compare_whole() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; rollcall_session=tok"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "rollcall"), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd") && !same_secret("abc", "ab"));
        assert_ne!(csrf_of("tok"), csrf_of("tol"));
        let set = set_cookie(SESSION_COOKIE, "tok", "/", 3_600_000, true);
        assert_eq!(
            set.to_str().unwrap(),
            "rollcall_session=tok; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict; Secure"
        );
    }
}
