//! What a box's record says of it, for every caller that tells people (the devices page, the
//! admins' digest, the offline alert): when it is offline, which erasures it has yet to purge, and
//! whether its clock is off.

use shared_proto::clock::{self, ClockVerdict};

use crate::store::{Device, Millis};

/// A live box not heard from for more than `offline_after` (or never) is offline; a revoked one
/// is not (it is gone on purpose).
pub fn offline(device: &Device, now: Millis, offline_after: Millis) -> bool {
    device.revoked_at.is_none()
        && device
            .last_seen_at
            .is_none_or(|at| now - at > offline_after)
}

/// A live box's clock against the server's at its last report, when the clock rule
/// (`shared_proto::clock`, the box's own) finds it off: (offset, `Warn` or `Fail`). At `Fail` its
/// marks carry the wrong time. `None` for a clock in time, one never reported, or a revoked box.
pub fn clock_off(device: &Device) -> Option<(Millis, ClockVerdict)> {
    if device.revoked_at.is_some() {
        return None;
    }
    let offset = device.activity.state.as_ref()?.clock_offset_ms?;
    match clock::verdict(offset) {
        ClockVerdict::Ok => None,
        verdict => Some((offset, verdict)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BoxState, DeviceActivity};

    fn reporting(clock_offset_ms: Option<Millis>) -> Device {
        Device {
            id: "d1".into(),
            school_id: "hill".into(),
            name: "Room 3".into(),
            token_hash: String::new(),
            created_at: 0,
            revoked_at: None,
            last_seen_at: Some(0),
            activity: DeviceActivity {
                state: Some(BoxState {
                    app_version: "0.9.8".into(),
                    outbox_waiting: 0,
                    clock_offset_ms,
                }),
                ..DeviceActivity::default()
            },
        }
    }

    #[test]
    fn a_live_boxs_clock_is_off_by_the_boxs_own_rule() {
        let days = -3 * 86_400_000;
        assert_eq!(
            clock_off(&reporting(Some(days))),
            Some((days, ClockVerdict::Fail))
        );
        assert_eq!(
            clock_off(&reporting(Some(20_000))),
            Some((20_000, ClockVerdict::Warn))
        );
        assert_eq!(clock_off(&reporting(Some(900))), None);
        assert_eq!(clock_off(&reporting(None)), None);
        // A revoked box is gone on purpose: nobody need set its clock.
        let revoked = Device {
            revoked_at: Some(1),
            ..reporting(Some(days))
        };
        assert_eq!(clock_off(&revoked), None);
        let unreported = Device {
            activity: DeviceActivity::default(),
            ..reporting(None)
        };
        assert_eq!(clock_off(&unreported), None);
    }
}
