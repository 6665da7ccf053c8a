//! What a box's record says of it, for every caller that tells people (the devices page, the
//! admins' digest, the offline alert): when it is offline, and which erasures it has yet to purge.

use crate::store::{Device, Millis};

/// A live box not heard from for more than `offline_after` (or never) is offline; a revoked one
/// is not (it is gone on purpose).
pub fn offline(device: &Device, now: Millis, offline_after: Millis) -> bool {
    device.revoked_at.is_none()
        && device
            .last_seen_at
            .is_none_or(|at| now - at > offline_after)
}

/// The erasures (seq, student) that `device` has not purged yet: those after the feed position
/// it has applied.
pub fn purges_pending<'e>(
    device: &Device,
    erasures: &'e [(u64, String)],
) -> impl Iterator<Item = &'e str> + use<'e> {
    let acked = device.activity.acked_seq;
    erasures
        .iter()
        .filter(move |(seq, _)| *seq > acked)
        .map(|(_, student)| student.as_str())
}

/// The seq from which `Store::erasures_since` holds every live box's pending purges: the least
/// advanced live box's position, `None` when the school has no live box.
pub fn least_acked(devices: &[Device]) -> Option<u64> {
    devices
        .iter()
        .filter(|d| d.revoked_at.is_none())
        .map(|d| d.activity.acked_seq)
        .min()
}
