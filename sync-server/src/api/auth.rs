//! Accounts and credentials: argon2id passwords, login and logout, session and device tokens
//! (32 random bytes, base64url; only their sha256 is stored), provisioning codes, the
//! failed-login limiter, and the extractors `AdminAuth`, `UserAuth` and `DeviceAuth` that every
//! protected handler takes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{LazyLock, Mutex};

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHasher, SaltString};
use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AppState, JsonBody, Limits, openapi};
use crate::api::ApiError;
use crate::store::{AuthSession, Device, Millis, Role, User};

/// Shortest password an account may have.
pub const MIN_PASSWORD_CHARS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password has {found} characters; use at least {MIN_PASSWORD_CHARS}")]
    TooShort { found: usize },
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// An argon2id PHC string of `password` (the crate's defaults: 19 MiB, 2 passes), with a fresh
/// salt. Slow on purpose: call it off the async runtime.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let found = password.chars().count();
    if found < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort { found });
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

#[cfg(test)]
fn verify_password(phc: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash of nobody's password: a login for an unknown username verifies against it, so it
/// takes as long as a wrong password and the timing does not tell which usernames exist.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(new_token().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .unwrap_or_default()
});

/// A bearer token: 32 random bytes, base64url without padding (43 characters).
pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the store keeps of a token or code: its sha256, hex.
pub(crate) fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Letters and digits that cannot be misread for one another (no 0/O, 1/I/L).
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
const CODE_CHARS: usize = 12;

/// A provisioning code as shown to the admin: 12 characters in groups of 4 (`7KQ3-M2XP-9RDA`),
/// about 59 bits, typed once on the box.
pub(super) fn new_provisioning_code() -> String {
    let mut code = String::with_capacity(CODE_CHARS + 2);
    let mut n_chosen = 0;
    while n_chosen < CODE_CHARS {
        let mut byte = [0u8; 1];
        OsRng.fill_bytes(&mut byte);
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % CODE_ALPHABET.len();
        if usize::from(byte[0]) >= limit {
            continue;
        }
        if n_chosen > 0 && n_chosen.is_multiple_of(4) {
            code.push('-');
        }
        code.push(char::from(
            CODE_ALPHABET[usize::from(byte[0]) % CODE_ALPHABET.len()],
        ));
        n_chosen += 1;
    }
    code
}

/// The form a code is hashed in: what a person may type differently (case, dashes, spaces)
/// does not matter.
pub(super) fn normalize_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Failed attempts per key (a username, a client address) in a sliding window.
///
/// An attempt is counted as failed when it starts, in the same lock as the check, and forgiven
/// if it succeeds: checking first and recording after the 25 ms password check let 60
/// concurrent guesses all pass a check that none of them had recorded yet.
pub(super) struct FailureLimiter {
    max_failures: usize,
    window_ms: Millis,
    failures: Mutex<HashMap<String, VecDeque<Millis>>>,
}

impl FailureLimiter {
    pub(super) fn new(max_failures: usize, window_ms: Millis) -> FailureLimiter {
        FailureLimiter {
            max_failures,
            window_ms,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt at `now` against every key, or `Err(RateLimited)` (counting nothing)
    /// when any key has used up its failures in the window.
    pub(super) fn reserve(&self, keys: &[String], now: Millis) -> Result<(), ApiError> {
        let mut failures = self.lock();
        let mut wait_ms = 0;
        for key in keys {
            if let Some(times) = failures.get_mut(key) {
                times.retain(|&at| now - at < self.window_ms);
                if times.len() >= self.max_failures
                    && let Some(&oldest) = times.front()
                {
                    wait_ms = wait_ms.max(oldest + self.window_ms - now);
                }
            }
        }
        if wait_ms > 0 {
            // Round up: a client that waits exactly Retry-After seconds must get through.
            let retry_after_s = u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1);
            return Err(ApiError::RateLimited { retry_after_s });
        }
        // Forget quiet keys now and then so a scan of usernames cannot grow the map forever.
        if failures.len() > 10_000 {
            failures.retain(|_, times| times.back().is_some_and(|&at| now - at < self.window_ms));
        }
        for key in keys {
            failures.entry(key.clone()).or_default().push_back(now);
        }
        Ok(())
    }

    /// Takes back the attempt `reserve` counted at `at`: it succeeded.
    pub(super) fn forgive(&self, keys: &[String], at: Millis) {
        let mut failures = self.lock();
        for key in keys {
            if let Some(times) = failures.get_mut(key)
                && let Some(position) = times.iter().rposition(|&t| t == at)
            {
                times.remove(position);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Millis>>> {
        // A poisoned map only holds counters: keep using it.
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The limits on guessing passwords, by who is guessed and from where:
/// - per username and address (`login_failures_per_minute`, 5): one person mistyping;
/// - per address (`address_failures_per_minute`, 20): one machine trying many accounts;
/// - per username from every address (`account_failures_per_minute`, 30): many machines on one
///   account. Addresses that logged in to that account before (since this process started) are
///   exempt, so someone who floods an account from elsewhere cannot lock its owner out of their
///   usual school network.
pub(super) struct LoginThrottle {
    pair: FailureLimiter,
    address: FailureLimiter,
    account: FailureLimiter,
    known: Mutex<HashMap<String, HashSet<IpAddr>>>,
}

/// An attempt counted against the throttle; `succeeded` takes it back.
pub(super) struct LoginAttempt<'t> {
    throttle: &'t LoginThrottle,
    username: String,
    ip: Option<IpAddr>,
    keys: [Vec<String>; 3],
    at: Millis,
}

impl LoginThrottle {
    pub(super) fn new(limits: &Limits) -> LoginThrottle {
        LoginThrottle {
            pair: FailureLimiter::new(limits.login_failures_per_minute, 60_000),
            address: FailureLimiter::new(limits.address_failures_per_minute, 60_000),
            account: FailureLimiter::new(limits.account_failures_per_minute, 60_000),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a login attempt before its password is checked, or refuses it (429).
    pub(super) fn begin(
        &self,
        username: &str,
        ip: &ClientIp,
        now: Millis,
    ) -> Result<LoginAttempt<'_>, ApiError> {
        let username = username.to_lowercase();
        let address = ip.key();
        let is_known = ip.0.is_some_and(|ip| {
            self.known
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&username)
                .is_some_and(|addresses| addresses.contains(&ip))
        });
        let keys = [
            vec![format!("login:{username}@{address}")],
            vec![format!("login-from:{address}")],
            if is_known {
                Vec::new()
            } else {
                vec![format!("login-user:{username}")]
            },
        ];
        let limiters = [&self.pair, &self.address, &self.account];
        for (n, (limiter, keys_n)) in limiters.iter().zip(&keys).enumerate() {
            if let Err(e) = limiter.reserve(keys_n, now) {
                for (earlier, keys_e) in limiters.iter().zip(&keys).take(n) {
                    earlier.forgive(keys_e, now);
                }
                return Err(e);
            }
        }
        Ok(LoginAttempt {
            throttle: self,
            username,
            ip: ip.0,
            keys,
            at: now,
        })
    }
}

impl LoginAttempt<'_> {
    /// The password was right: the attempt is not a failure, and the address is known.
    pub(super) fn succeeded(self) {
        let throttle = self.throttle;
        for (limiter, keys) in [&throttle.pair, &throttle.address, &throttle.account]
            .into_iter()
            .zip(&self.keys)
        {
            limiter.forgive(keys, self.at);
        }
        if let Some(ip) = self.ip {
            let mut known = throttle.known.lock().unwrap_or_else(|p| p.into_inner());
            if known.len() > 100_000 {
                known.clear();
            }
            known.entry(self.username).or_default().insert(ip);
        }
    }
}

/// The client's address, when the server was started with connection info.
pub(crate) struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

impl ClientIp {
    pub(super) fn key(&self) -> String {
        match self.0 {
            Some(ip) => format!("ip:{ip}"),
            None => "ip:unknown".to_owned(),
        }
    }
}

/// The token of `Authorization: Bearer <token>`, the scheme in any case.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

const NO_TOKEN: &str = "no bearer token: send Authorization: Bearer <token>";
const UNKNOWN_TOKEN: &str = "unknown or expired token: log in again";

/// A logged-in admin or teacher.
pub(crate) struct UserAuth {
    pub user: User,
    pub token_hash: String,
}

/// A logged-in admin: a district admin (`school_id` None) or a school's admin.
pub(crate) struct AdminAuth {
    pub user: User,
}

/// A provisioned, unrevoked box.
pub(crate) struct DeviceAuth {
    pub device: Device,
}

impl FromRequestParts<AppState> for UserAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized(NO_TOKEN))?;
        let token_hash = secret_hash(token);
        match state
            .store()
            .user_by_session(&token_hash, state.now())
            .await?
        {
            Some(user) => Ok(UserAuth { user, token_hash }),
            None if state.store().device_by_token(&token_hash).await?.is_some() => Err(
                ApiError::Forbidden("a device token only opens /v1/sync routes".to_owned()),
            ),
            None => Err(ApiError::Unauthorized(UNKNOWN_TOKEN)),
        }
    }
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let UserAuth { user, .. } = UserAuth::from_request_parts(parts, state).await?;
        match user.role {
            Role::Admin => Ok(AdminAuth { user }),
            Role::Teacher => Err(ApiError::Forbidden(
                "this route is for admins; teachers may read attendance of their sections"
                    .to_owned(),
            )),
        }
    }
}

impl AdminAuth {
    /// A district admin may act on any school, a school admin only on their own.
    pub(super) fn check_school(&self, school_id: &str) -> Result<(), ApiError> {
        match &self.user.school_id {
            Some(own) if own != school_id => Err(ApiError::WrongSchool(school_id.to_owned())),
            _ => Ok(()),
        }
    }
}

/// An admin acting on the school named by the path's `{school}`: checked to be theirs (else
/// `wrong_school`) and to exist, before the body is read.
pub(crate) struct SchoolAdmin {
    pub user: User,
    pub school_id: String,
}

impl FromRequestParts<AppState> for SchoolAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let admin = AdminAuth::from_request_parts(parts, state).await?;
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
        let school_id = params.get("school").cloned().ok_or_else(|| {
            ApiError::Internal("SchoolAdmin on a route without {school}".to_owned())
        })?;
        admin.check_school(&school_id)?;
        if state.store().school(&school_id).await?.is_none() {
            return Err(ApiError::NotFound(format!("school {school_id}")));
        }
        Ok(SchoolAdmin {
            user: admin.user,
            school_id,
        })
    }
}

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized(NO_TOKEN))?;
        let token_hash = secret_hash(token);
        match state.store().device_by_token(&token_hash).await? {
            Some(device) if device.revoked_at.is_some() => Err(ApiError::TokenRevoked),
            Some(device) => Ok(DeviceAuth { device }),
            None if state
                .store()
                .user_by_session(&token_hash, state.now())
                .await?
                .is_some() =>
            {
                Err(ApiError::Forbidden(
                    "sync routes take a device token, not a login".to_owned(),
                ))
            }
            None => Err(ApiError::Unauthorized(
                "unknown device token: provision the box with a new code",
            )),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct LoginRequest {
    username: String,
    #[schema(format = Password)]
    password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct LoginResponse {
    token: String,
    /// Milliseconds since the Unix epoch.
    #[schema(value_type = i64)]
    expires_at: Millis,
    #[schema(value_type = crate::store::Role)]
    role: &'static str,
    school_id: Option<String>,
}

/// `POST /v1/auth/login`.
#[utoipa::path(
    post,
    path = "/v1/auth/login",
    summary = "Trade a username and password for a session token (12 h). Failures are limited per username and address (5 a minute), per address (20) and per username from new addresses (30): 429 `rate_limited` with Retry-After. More password checks at once than the server runs: 503 `unavailable` with Retry-After.",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "ok", body = LoginResponse),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 401, description = openapi::E401, body = openapi::ErrorJson),
        (status = 413, description = openapi::E413, body = openapi::ErrorJson),
        (status = 429, description = openapi::E429, body = openapi::ErrorJson),
        (status = 503, description = openapi::E503, body = openapi::ErrorJson),
    ),
)]
pub(super) async fn login(
    State(state): State<AppState>,
    client_ip: ClientIp,
    JsonBody(request): JsonBody<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let SignedIn {
        user,
        token,
        expires_at,
    } = sign_in(&state, &request.username, request.password, &client_ip).await?;
    Ok(Json(LoginResponse {
        token,
        expires_at,
        role: user.role.as_str(),
        school_id: user.school_id,
    }))
}

/// A new login session.
pub(crate) struct SignedIn {
    pub user: User,
    /// Shown once; only its sha256 is stored.
    pub token: String,
    pub expires_at: Millis,
}

/// The one sign-in of the JSON API and the web pages: the login limits, the password checked on
/// the password workers (a dummy hash for an unknown name, so both take as long), and a session
/// of `session_ttl_ms`.
pub(crate) async fn sign_in(
    state: &AppState,
    username: &str,
    password: String,
    client_ip: &ClientIp,
) -> Result<SignedIn, ApiError> {
    let now = state.now();
    let attempt = state
        .shared
        .login_throttle
        .begin(username, client_ip, now)?;
    let user = state.store().user_by_name(username).await?;
    let phc = user
        .as_ref()
        .map_or_else(|| DUMMY_HASH.clone(), |user| user.password_hash.clone());
    let password_ok = state.shared.passwords.verify(phc, password).await?;
    let Some(user) = user.filter(|_| password_ok) else {
        state.metrics().count_login_failure();
        tracing::info!(username = %username, "login refused");
        return Err(ApiError::Unauthorized("wrong username or password"));
    };
    attempt.succeeded();

    let token = new_token();
    let expires_at = now + state.limits().session_ttl_ms;
    state
        .store()
        .create_auth_session(&AuthSession {
            token_hash: secret_hash(&token),
            user_id: user.id.clone(),
            expires_at,
        })
        .await?;
    tracing::info!(username = %user.username, role = user.role.as_str(), "logged in");
    state
        .audit(
            user.school_id.as_deref(),
            &user.username,
            crate::domain::audit::Action::SignIn,
            &user.username,
            format!("as {}", user.role.as_str()),
        )
        .await?;
    Ok(SignedIn {
        user,
        token,
        expires_at,
    })
}

/// `POST /v1/auth/logout`: ends this session only.
#[utoipa::path(
    post,
    path = "/v1/auth/logout",
    summary = "End this session.",
    responses((status = 204, description = "done, no body")),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin or teacher"))),
)]
pub(super) async fn logout(
    State(state): State<AppState>,
    auth: UserAuth,
) -> Result<StatusCode, ApiError> {
    state.store().delete_auth_session(&auth.token_hash).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_grouped_and_normalize_back() {
        let code = new_provisioning_code();
        assert_eq!(code.len(), 14, "{code}");
        assert_eq!(code.matches('-').count(), 2, "{code}");
        let typed = format!(" {} ", code.to_lowercase().replace('-', " "));
        assert_eq!(normalize_code(&typed), code.replace('-', ""));
    }

    #[test]
    fn tokens_are_43_base64url_characters() {
        let token = new_token();
        assert_eq!(token.len(), 43);
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(token, new_token());
    }

    #[test]
    fn limiter_blocks_after_the_allowed_failures_and_forgets_after_the_window() {
        let limiter = FailureLimiter::new(2, 60_000);
        let keys = ["u".to_owned()];
        assert!(limiter.reserve(&keys, 0).is_ok());
        assert!(limiter.reserve(&keys, 1_000).is_ok());
        match limiter.reserve(&keys, 2_000) {
            Err(ApiError::RateLimited { retry_after_s }) => assert_eq!(retry_after_s, 58),
            other => panic!("{other:?}"),
        }
        limiter.forgive(&keys, 1_000);
        assert!(
            limiter.reserve(&keys, 2_000).is_ok(),
            "a forgiven attempt frees its place"
        );
        assert!(limiter.reserve(&keys, 61_000).is_ok());
    }

    #[test]
    fn a_flood_from_elsewhere_does_not_lock_out_a_known_address() {
        let limits = Limits {
            account_failures_per_minute: 3,
            ..Limits::default()
        };
        let throttle = LoginThrottle::new(&limits);
        let school = ClientIp(Some("10.1.2.3".parse().unwrap()));
        throttle.begin("Ms.Lee", &school, 0).unwrap().succeeded();
        for n in 0..3 {
            let attacker = ClientIp(Some(format!("198.51.100.{n}").parse().unwrap()));
            drop(throttle.begin("ms.lee", &attacker, 1).unwrap());
        }
        let stranger = ClientIp(Some("198.51.100.99".parse().unwrap()));
        assert!(matches!(
            throttle.begin("ms.lee", &stranger, 2),
            Err(ApiError::RateLimited { .. })
        ));
        assert!(throttle.begin("ms.lee", &school, 2).is_ok());
    }

    #[test]
    fn passwords_verify_and_short_ones_are_refused() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password(&phc, "correct horse battery"));
        assert!(!verify_password(&phc, "wrong horse battery"));
        assert!(matches!(
            hash_password("short"),
            Err(PasswordError::TooShort { found: 5 })
        ));
    }
}
