//! Schools, users and their login sessions, devices and provisioning codes.

use mongodb::bson::{Document, doc};

use super::docs::{AuthSessionDoc, DeviceDoc, ProvisioningCodeDoc, SchoolDoc, UserDoc};
use super::error::{DbError, insert_error};
use super::names::*;
use super::tx::Tx;
use super::{MongoStore, collect};
use crate::domain::provisioning::HeldCode;
use crate::domain::settings::SchoolSettings;
use crate::store::{
    AuthSession, Device, Millis, ProvisioningCode, Role, School, Seen, StoreError, User,
};

pub async fn create_school(store: &MongoStore, school: &School) -> Result<(), DbError> {
    let doc = SchoolDoc {
        id: school.id.clone(),
        name: school.name.clone(),
        settings: None,
    };
    store
        .coll::<SchoolDoc>(SCHOOLS)
        .insert_one(doc)
        .await
        .map_err(|e| insert_error(e, &format!("school {}", school.id)))?;
    Ok(())
}

pub async fn schools(store: &MongoStore) -> Result<Vec<School>, DbError> {
    let cursor = store
        .coll::<SchoolDoc>(SCHOOLS)
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await?;
    Ok(collect(cursor)
        .await?
        .into_iter()
        .map(SchoolDoc::into_school)
        .collect())
}

pub async fn school(store: &MongoStore, id: &str) -> Result<Option<School>, DbError> {
    Ok(store
        .coll::<SchoolDoc>(SCHOOLS)
        .find_one(doc! { "_id": id })
        .await?
        .map(SchoolDoc::into_school))
}

pub async fn school_settings(store: &MongoStore, id: &str) -> Result<SchoolSettings, DbError> {
    let found = store
        .coll::<SchoolDoc>(SCHOOLS)
        .find_one(doc! { "_id": id })
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("school {id}")))?;
    Ok(found.settings.unwrap_or_default())
}

pub async fn set_school_settings(
    store: &MongoStore,
    id: &str,
    settings: &SchoolSettings,
) -> Result<(), DbError> {
    let settings = mongodb::bson::to_bson(settings)
        .map_err(|e| StoreError::Backend(format!("cannot encode settings: {e}")))?;
    let result = store
        .coll::<SchoolDoc>(SCHOOLS)
        .update_one(
            doc! { "_id": id },
            doc! { "$set": { "settings": settings } },
        )
        .await?;
    if result.matched_count == 0 {
        return Err(StoreError::NotFound(format!("school {id}")).into());
    }
    Ok(())
}

async fn require_school(store: &MongoStore, school_id: &str) -> Result<(), DbError> {
    if school(store, school_id).await?.is_none() {
        return Err(StoreError::NotFound(format!("school {school_id}")).into());
    }
    Ok(())
}

/// The school is checked first, as a foreign key would; the username's unique index decides a
/// race between two creations.
pub async fn create_user(store: &MongoStore, user: &User) -> Result<(), DbError> {
    if let Some(school_id) = &user.school_id {
        require_school(store, school_id).await?;
    }
    store
        .coll::<UserDoc>(USERS)
        .insert_one(UserDoc::from_user(user))
        .await
        .map_err(|e| insert_error(e, &format!("user {}", user.username)))?;
    Ok(())
}

pub async fn user_by_name(store: &MongoStore, username: &str) -> Result<Option<User>, DbError> {
    Ok(store
        .coll::<UserDoc>(USERS)
        .find_one(doc! { "username": username })
        .await?
        .map(UserDoc::into_user))
}

pub async fn users(store: &MongoStore, school_id: &str) -> Result<Vec<User>, DbError> {
    let cursor = store
        .coll::<UserDoc>(USERS)
        .find(doc! { "school_id": school_id })
        .sort(doc! { "username": 1 })
        .await?;
    Ok(collect(cursor)
        .await?
        .into_iter()
        .map(UserDoc::into_user)
        .collect())
}

/// In one transaction: the hash replaced and the user's sessions gone together.
pub async fn set_password(
    tx: &mut Tx<'_>,
    school_id: &str,
    user_id: &str,
    password_hash: &str,
) -> Result<(), DbError> {
    let changed = tx
        .coll::<Document>(USERS)
        .update_one(
            doc! { "_id": user_id, "school_id": school_id },
            doc! { "$set": { "password_hash": password_hash } },
        )
        .session(&mut tx.session)
        .await?;
    if changed.matched_count == 0 {
        return Err(StoreError::NotFound(format!("user {user_id}")).into());
    }
    tx.coll::<Document>(AUTH_SESSIONS)
        .delete_many(doc! { "user_id": user_id })
        .session(&mut tx.session)
        .await?;
    Ok(())
}

pub async fn count_admins(store: &MongoStore) -> Result<u64, DbError> {
    Ok(store
        .coll::<Document>(USERS)
        .count_documents(doc! { "role": Role::Admin.as_str() })
        .await?)
}

pub async fn create_auth_session(store: &MongoStore, session: &AuthSession) -> Result<(), DbError> {
    let user = store
        .coll::<Document>(USERS)
        .find_one(doc! { "_id": &session.user_id })
        .await?;
    if user.is_none() {
        return Err(StoreError::NotFound(format!("user {}", session.user_id)).into());
    }
    store
        .coll::<AuthSessionDoc>(AUTH_SESSIONS)
        .insert_one(AuthSessionDoc::from_session(session))
        .await
        .map_err(|e| insert_error(e, "session token"))?;
    Ok(())
}

pub async fn user_by_session(
    store: &MongoStore,
    token_hash: &str,
    now: Millis,
) -> Result<Option<User>, DbError> {
    let session = store
        .coll::<AuthSessionDoc>(AUTH_SESSIONS)
        .find_one(doc! { "_id": token_hash, "expires_at": { "$gt": now } })
        .await?;
    let Some(session) = session else {
        return Ok(None);
    };
    Ok(store
        .coll::<UserDoc>(USERS)
        .find_one(doc! { "_id": &session.user_id })
        .await?
        .map(UserDoc::into_user))
}

pub async fn delete_auth_session(store: &MongoStore, token_hash: &str) -> Result<(), DbError> {
    store
        .coll::<Document>(AUTH_SESSIONS)
        .delete_one(doc! { "_id": token_hash })
        .await?;
    Ok(())
}

pub async fn create_provisioning_code(
    store: &MongoStore,
    code: &ProvisioningCode,
) -> Result<(), DbError> {
    require_school(store, &code.school_id).await?;
    let doc = ProvisioningCodeDoc {
        code_hash: code.code_hash.clone(),
        school_id: code.school_id.clone(),
        device_name: code.device_name.clone(),
        created_by: code.created_by.clone(),
        expires_at: code.expires_at,
        used_at: None,
        device_id: None,
    };
    store
        .coll::<ProvisioningCodeDoc>(PROVISIONING_CODES)
        .insert_one(doc)
        .await
        .map_err(|e| insert_error(e, "provisioning code"))?;
    Ok(())
}

pub async fn provisioning_code(
    tx: &mut Tx<'_>,
    code_hash: &str,
) -> Result<Option<HeldCode>, DbError> {
    Ok(tx
        .coll::<ProvisioningCodeDoc>(PROVISIONING_CODES)
        .find_one(doc! { "_id": code_hash })
        .session(&mut tx.session)
        .await?
        .map(|code| HeldCode {
            school_id: code.school_id,
            device_name: code.device_name,
            expires_at: code.expires_at,
            used_at: code.used_at,
        }))
}

/// Marks the code used and adds the device it was redeemed for. The code is claimed by one
/// conditional update: of two boxes racing with one code, the second one's update conflicts with
/// the first's, its transaction runs again and finds the code used.
pub async fn redeem(
    tx: &mut Tx<'_>,
    code_hash: &str,
    device: &Device,
    now: Millis,
) -> Result<(), DbError> {
    let claimed = tx
        .coll::<ProvisioningCodeDoc>(PROVISIONING_CODES)
        .update_one(
            doc! { "_id": code_hash, "used_at": null },
            doc! { "$set": { "used_at": now, "device_id": &device.id } },
        )
        .session(&mut tx.session)
        .await?;
    if claimed.modified_count != 1 {
        return Err(DbError::Race("a provisioning code".to_owned()));
    }
    tx.coll::<DeviceDoc>(DEVICES)
        .insert_one(DeviceDoc::from_device(device))
        .session(&mut tx.session)
        .await
        .map_err(|e| insert_error(e, &format!("device {}", device.id)))?;
    Ok(())
}

pub async fn device_by_token(
    store: &MongoStore,
    token_hash: &str,
) -> Result<Option<Device>, DbError> {
    Ok(store
        .coll::<DeviceDoc>(DEVICES)
        .find_one(doc! { "token_hash": token_hash })
        .await?
        .map(DeviceDoc::into_device))
}

pub async fn devices(store: &MongoStore, school_id: &str) -> Result<Vec<Device>, DbError> {
    let cursor = store
        .coll::<DeviceDoc>(DEVICES)
        .find(doc! { "school_id": school_id })
        .sort(doc! { "created_at": 1, "_id": 1 })
        .await?;
    Ok(collect(cursor)
        .await?
        .into_iter()
        .map(DeviceDoc::into_device)
        .collect())
}

/// Revoking twice keeps the first time: that is when the token stopped being trusted.
pub async fn revoke_device(
    store: &MongoStore,
    school_id: &str,
    device_id: &str,
    now: Millis,
) -> Result<(), DbError> {
    let devices = store.coll::<Document>(DEVICES);
    let revoked = devices
        .update_one(
            doc! { "_id": device_id, "school_id": school_id, "revoked_at": null },
            doc! { "$set": { "revoked_at": now } },
        )
        .await?;
    if revoked.matched_count == 0
        && devices
            .count_documents(doc! { "_id": device_id, "school_id": school_id })
            .await?
            == 0
    {
        return Err(StoreError::NotFound(format!("device {device_id}")).into());
    }
    Ok(())
}

pub async fn device_seen(
    store: &MongoStore,
    device_id: &str,
    seen: &Seen,
    now: Millis,
) -> Result<(), DbError> {
    // `$max` keeps the latest time, and the furthest cursor, when two requests of one box
    // finish out of order.
    let update = match seen {
        Seen::Push(state, space) => {
            let mut update = doc! { "$max": { "last_seen_at": now, "last_push_at": now } };
            let mut set = Document::new();
            let mut unset = Document::new();
            if let Some(state) = state {
                set.insert("app_version", &state.app_version);
                set.insert("outbox_waiting", state.outbox_waiting as i64);
                // A report replaces the clock, a box's that says none too.
                match state.clock_offset_ms {
                    Some(offset) => set.insert("clock_offset_ms", offset),
                    None => unset.insert("clock_offset_ms", ""),
                };
            }
            if let Some(space) = space {
                set.insert("embedding_space", space);
            }
            if !set.is_empty() {
                update.insert("$set", set);
            }
            if !unset.is_empty() {
                update.insert("$unset", unset);
            }
            update
        }
        Seen::Pull(cursor) => doc! {
            "$max": { "last_seen_at": now, "last_pull_at": now, "acked_seq": *cursor as i64 },
        },
    };
    let touched = store
        .coll::<Document>(DEVICES)
        .update_one(doc! { "_id": device_id }, update)
        .await?;
    if touched.matched_count == 0 {
        return Err(StoreError::NotFound(format!("device {device_id}")).into());
    }
    Ok(())
}
