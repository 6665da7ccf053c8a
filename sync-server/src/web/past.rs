//! Figures of a school's past days, kept for a few minutes: Today's line, the recognition audit
//! and reports read weeks of marks, which takes longer than a page may (PERFORMANCE.md, issue
//! 15), and days before today change only by a late box or a correction. Today is always read
//! live by the caller. A correction or an erasure made here forgets the school's figures at once
//! (`Past::forget`); a box that syncs a past day late shows within `FOR_MS`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use super::WebError;
use crate::store::Millis;

/// How long past days are kept.
pub(super) const FOR_MS: Millis = 5 * 60 * 1000;

/// One kind of figure, by school and what else the page asked (a first day, a section).
pub(super) struct Past<T> {
    held: Mutex<HashMap<(String, String), Held<T>>>,
}

struct Held<T> {
    /// Where the past ends: the first millisecond of today, as the page counts days.
    until: Millis,
    read_at: Millis,
    value: Arc<T>,
}

impl<T> Default for Past<T> {
    fn default() -> Self {
        Past {
            held: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> Past<T> {
    /// The figure of `school` and `key` up to `until`, as held when it was read less than `FOR_MS`
    /// ago for the same `until`; else `read` now, kept from `now`.
    pub(super) async fn get_or_read<F, Fut>(
        &self,
        school: &str,
        key: String,
        until: Millis,
        now: Millis,
        read: F,
    ) -> Result<Arc<T>, WebError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, WebError>>,
    {
        let fresh =
            |held: &Held<T>| held.until == until && (0..FOR_MS).contains(&(now - held.read_at));
        let key = (school.to_owned(), key);
        if let Some(held) = self.lock().get(&key).filter(|held| fresh(held)) {
            return Ok(Arc::clone(&held.value));
        }
        let value = Arc::new(read().await?);
        let mut held = self.lock();
        held.retain(|_, held| fresh(held));
        held.insert(
            key,
            Held {
                until,
                read_at: now,
                value: Arc::clone(&value),
            },
        );
        Ok(value)
    }

    /// Drops what is held of `school`: its marks changed here.
    pub(super) fn forget(&self, school: &str) {
        self.lock().retain(|(held, _), _| held != school);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Held<T>>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
