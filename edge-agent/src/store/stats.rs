//! How long the latest captures took, stage by stage, and how many faces they saw: written by
//! whoever captures (the screen, the CLI), read by the daemon's `/metrics`. Only the latest
//! [`KEPT_CAPTURES`] are kept: they are for watching a box, not for history.

use rusqlite::params;

use super::{Store, StoreError};

/// Captures kept.
pub const KEPT_CAPTURES: i64 = 500;

/// One capture's stages, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CaptureStats {
    pub at: i64,
    pub frames: usize,
    /// Faces detected in all frames, too small ones included.
    pub faces: usize,
    /// The section's gallery loaded from the store.
    pub gallery_ms: f64,
    /// Detection, embedding and matching of every frame.
    pub frames_ms: f64,
    /// The school-wide lookup of faces that matched nobody of the section.
    pub school_ms: f64,
    /// Fusing the burst and deciding each student's mark.
    pub decide_ms: f64,
    /// The session and its marks written (with their outbox events).
    pub record_ms: f64,
}

impl CaptureStats {
    /// The capture from its gallery to its stored marks: the stages' sum.
    pub fn total_ms(&self) -> f64 {
        self.gallery_ms + self.frames_ms + self.school_ms + self.decide_ms + self.record_ms
    }
}

impl Store {
    /// Keeps one capture's stats; the oldest beyond [`KEPT_CAPTURES`] go.
    pub fn record_capture_stats(&self, stats: &CaptureStats) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO capture_stats (at, frames, faces, gallery_ms, frames_ms, school_ms,
                 decide_ms, record_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                stats.at,
                stats.frames as i64,
                stats.faces as i64,
                stats.gallery_ms,
                stats.frames_ms,
                stats.school_ms,
                stats.decide_ms,
                stats.record_ms
            ])?;
        self.conn
            .prepare_cached(
                "DELETE FROM capture_stats WHERE id <= (SELECT MAX(id) FROM capture_stats) - ?1",
            )?
            .execute([KEPT_CAPTURES])?;
        Ok(())
    }

    /// The kept captures' stats after row `after` (0: all), oldest first, with their row ids.
    pub fn capture_stats_after(&self, after: i64) -> Result<Vec<(i64, CaptureStats)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, at, frames, faces, gallery_ms, frames_ms, school_ms, decide_ms, record_ms
             FROM capture_stats WHERE id > ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([after], |r| {
            Ok((
                r.get(0)?,
                CaptureStats {
                    at: r.get(1)?,
                    frames: r.get::<_, i64>(2)? as usize,
                    faces: r.get::<_, i64>(3)? as usize,
                    gallery_ms: r.get(4)?,
                    frames_ms: r.get(5)?,
                    school_ms: r.get(6)?,
                    decide_ms: r.get(7)?,
                    record_ms: r.get(8)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
