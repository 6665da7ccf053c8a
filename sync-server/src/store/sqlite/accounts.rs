//! Schools, users and their login sessions, devices and provisioning codes.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{insert_error, word};
use crate::domain::provisioning::HeldCode;
use crate::domain::settings::SchoolSettings;
use crate::store::{
    AuthSession, BoxState, Device, DeviceActivity, Millis, ProvisioningCode, School, Seen,
    StoreError, User,
};

pub fn create_school(conn: &Connection, school: &School) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO schools (id, name) VALUES (?1, ?2)")?
        .execute(params![school.id, school.name])
        .map_err(|e| insert_error(e, &format!("school {}", school.id), "school"))?;
    Ok(())
}

pub fn schools(conn: &Connection) -> Result<Vec<School>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM schools ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        Ok(School {
            id: r.get(0)?,
            name: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn school(conn: &Connection, id: &str) -> Result<Option<School>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id, name FROM schools WHERE id = ?1")?
        .query_row([id], |r| {
            Ok(School {
                id: r.get(0)?,
                name: r.get(1)?,
            })
        })
        .optional()?)
}

/// The settings column holds `SchoolSettings`' JSON; NULL (never saved) reads as the defaults.
pub fn school_settings(conn: &Connection, id: &str) -> Result<SchoolSettings, StoreError> {
    let stored: Option<Option<String>> = conn
        .prepare_cached("SELECT settings FROM schools WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    match stored {
        None => Err(StoreError::NotFound(format!("school {id}"))),
        Some(None) => Ok(SchoolSettings::default()),
        Some(Some(json)) => serde_json::from_str(&json)
            .map_err(|e| StoreError::Backend(format!("settings of school {id}: {e}"))),
    }
}

pub fn set_school_settings(
    conn: &Connection,
    id: &str,
    settings: &SchoolSettings,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(settings)
        .map_err(|e| StoreError::Backend(format!("cannot encode settings: {e}")))?;
    let changed = conn
        .prepare_cached("UPDATE schools SET settings = ?2 WHERE id = ?1")?
        .execute([id, &json])?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("school {id}")));
    }
    Ok(())
}

const USER_COLUMNS: &str = "u.id, u.username, u.password_hash, u.role, u.school_id, u.teacher_id";

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        role: word(r, 3)?,
        school_id: r.get(4)?,
        teacher_id: r.get(5)?,
    })
}

pub fn create_user(conn: &Connection, user: &User) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO users (id, username, password_hash, role, school_id, teacher_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        user.id,
        user.username,
        user.password_hash,
        user.role.as_str(),
        user.school_id,
        user.teacher_id
    ])
    .map_err(|e| {
        insert_error(
            e,
            &format!("user {}", user.username),
            &format!("school {}", user.school_id.as_deref().unwrap_or("")),
        )
    })?;
    Ok(())
}

pub fn user_by_name(conn: &Connection, username: &str) -> Result<Option<User>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.username = ?1"
        ))?
        .query_row([username], user_from_row)
        .optional()?)
}

pub fn users(conn: &Connection, school_id: &str) -> Result<Vec<User>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users u WHERE u.school_id = ?1 ORDER BY u.username"
    ))?;
    let rows = stmt.query_map([school_id], user_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Within the writer's transaction: the hash replaced and the user's sessions gone together.
pub fn set_password(
    conn: &Connection,
    school_id: &str,
    user_id: &str,
    password_hash: &str,
) -> Result<(), StoreError> {
    let changed = conn
        .prepare_cached("UPDATE users SET password_hash = ?3 WHERE id = ?2 AND school_id = ?1")?
        .execute(params![school_id, user_id, password_hash])?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!("user {user_id}")));
    }
    conn.prepare_cached("DELETE FROM auth_sessions WHERE user_id = ?1")?
        .execute([user_id])?;
    Ok(())
}

pub fn count_admins(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM users WHERE role = 'admin'")?
        .query_row([], |r| r.get(0))?;
    Ok(n as u64)
}

pub fn create_auth_session(conn: &Connection, session: &AuthSession) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO auth_sessions (token_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        session.token_hash,
        session.user_id,
        session.expires_at
    ])
    .map_err(|e| insert_error(e, "session token", &format!("user {}", session.user_id)))?;
    Ok(())
}

pub fn user_by_session(
    conn: &Connection,
    token_hash: &str,
    now: Millis,
) -> Result<Option<User>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM auth_sessions a JOIN users u ON u.id = a.user_id
             WHERE a.token_hash = ?1 AND a.expires_at > ?2"
        ))?
        .query_row(params![token_hash, now], user_from_row)
        .optional()?)
}

pub fn delete_auth_session(conn: &Connection, token_hash: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM auth_sessions WHERE token_hash = ?1")?
        .execute([token_hash])?;
    Ok(())
}

pub fn create_provisioning_code(
    conn: &Connection,
    code: &ProvisioningCode,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO provisioning_codes (code_hash, school_id, device_name, created_by, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        code.code_hash,
        code.school_id,
        code.device_name,
        code.created_by,
        code.expires_at
    ])
    .map_err(|e| {
        insert_error(
            e,
            "provisioning code",
            &format!("school {}", code.school_id),
        )
    })?;
    Ok(())
}

pub fn provisioning_code(
    conn: &Connection,
    code_hash: &str,
) -> Result<Option<HeldCode>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT school_id, used_at, expires_at, device_name FROM provisioning_codes WHERE code_hash = ?1",
        )?
        .query_row([code_hash], |r| {
            Ok(HeldCode {
                school_id: r.get(0)?,
                used_at: r.get(1)?,
                expires_at: r.get(2)?,
                device_name: r.get(3)?,
            })
        })
        .optional()?)
}

/// Adds the device a code was redeemed for and marks the code used (the single writer: no other
/// redemption can come between the read and this).
pub fn redeem(
    conn: &Connection,
    code_hash: &str,
    device: &Device,
    now: Millis,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO devices (id, school_id, name, token_hash, created_at, revoked_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)",
    )?
    .execute(params![
        device.id,
        device.school_id,
        device.name,
        device.token_hash,
        device.created_at,
        device.last_seen_at
    ])
    .map_err(|e| insert_error(e, &format!("device {}", device.id), "school"))?;
    conn.prepare_cached(
        "UPDATE provisioning_codes SET used_at = ?2, device_id = ?3 WHERE code_hash = ?1",
    )?
    .execute(params![code_hash, now, device.id])?;
    Ok(())
}

const DEVICE_COLUMNS: &str =
    "id, school_id, name, token_hash, created_at, revoked_at, last_seen_at,
    last_push_at, last_pull_at, app_version, outbox_waiting, acked_seq, embedding_space,
    clock_offset_ms";

fn device_from_row(r: &Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        id: r.get(0)?,
        school_id: r.get(1)?,
        name: r.get(2)?,
        token_hash: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
        last_seen_at: r.get(6)?,
        activity: DeviceActivity {
            last_push_at: r.get(7)?,
            last_pull_at: r.get(8)?,
            state: match (r.get::<_, Option<String>>(9)?, r.get::<_, Option<i64>>(10)?) {
                (Some(app_version), Some(waiting)) => Some(BoxState {
                    app_version,
                    outbox_waiting: waiting.max(0) as u64,
                    clock_offset_ms: r.get(13)?,
                }),
                _ => None,
            },
            acked_seq: r.get::<_, i64>(11)?.max(0) as u64,
            embedding_space: r.get(12)?,
        },
    })
}

pub fn device_by_token(conn: &Connection, token_hash: &str) -> Result<Option<Device>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE token_hash = ?1"
        ))?
        .query_row([token_hash], device_from_row)
        .optional()?)
}

pub fn devices(conn: &Connection, school_id: &str) -> Result<Vec<Device>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE school_id = ?1 ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([school_id], device_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revoking twice keeps the first time: that is when the token stopped being trusted.
pub fn revoke_device(
    conn: &Connection,
    school_id: &str,
    device_id: &str,
    now: Millis,
) -> Result<(), StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?3)
             WHERE id = ?1 AND school_id = ?2",
        )?
        .execute(params![device_id, school_id, now])?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("device {device_id}")));
    }
    Ok(())
}

pub fn device_seen(
    conn: &Connection,
    device_id: &str,
    seen: &Seen,
    now: Millis,
) -> Result<(), StoreError> {
    match seen {
        Seen::Push(state, space) => {
            conn.prepare_cached(
                "UPDATE devices SET last_seen_at = ?2, last_push_at = ?2,
                     app_version = COALESCE(?3, app_version),
                     outbox_waiting = COALESCE(?4, outbox_waiting),
                     embedding_space = COALESCE(?5, embedding_space),
                     -- A report replaces the clock, a box's that says none too; no report
                     -- (protocol 1) leaves it.
                     clock_offset_ms = CASE WHEN ?3 IS NULL THEN clock_offset_ms ELSE ?6 END
                 WHERE id = ?1",
            )?
            .execute(params![
                device_id,
                now,
                state.as_ref().map(|s| s.app_version.as_str()),
                state.as_ref().map(|s| s.outbox_waiting as i64),
                space.as_deref(),
                state.as_ref().and_then(|s| s.clock_offset_ms)
            ])?;
        }
        Seen::Pull(cursor) => {
            conn.prepare_cached(
                "UPDATE devices SET last_seen_at = ?2, last_pull_at = ?2,
                     acked_seq = MAX(acked_seq, ?3)
                 WHERE id = ?1",
            )?
            .execute(params![device_id, now, *cursor as i64])?;
        }
    }
    Ok(())
}
