//! The box's clock against the server's. A box without an RTC battery or a network time source
//! comes back from a holiday with last term's time, and nothing else would say so: every answer
//! of the server carries its clock (`Date`), and the sync cycle records how far the box's is from
//! it for the teacher's screen, `status` and `doctor`. What an offset means is
//! `shared_proto::clock`'s, the rule the server's devices page applies too.

pub use shared_proto::clock::{CLOCK_FIX, ClockVerdict, describe, verdict};

/// One answer's clock: the server's `Date`, and when (by the box's clock) and how fast it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub server_ms: i64,
    /// The box's clock when the answer's headers arrived.
    pub received_ms: i64,
    pub round_trip_ms: i64,
}

impl Reading {
    /// The server's `Date` header of an answer that arrived at `received_ms` after `round_trip_ms`;
    /// `None` without one or with one that is not an HTTP date.
    pub fn from_date(date: Option<&str>, received_ms: i64, round_trip_ms: i64) -> Option<Reading> {
        let date = jiff::fmt::rfc2822::parse(date?).ok()?;
        Some(Reading {
            server_ms: date.timestamp().as_millisecond(),
            received_ms,
            round_trip_ms,
        })
    }

    /// How far the box's clock is ahead of the server's (behind when negative). The server
    /// stamped `Date` about half the round trip before the answer arrived.
    pub fn offset_ms(&self) -> i64 {
        self.received_ms - self.server_ms - self.round_trip_ms / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_header_gives_the_offset_less_half_the_round_trip() {
        // Fri, 04 Dec 2026 09:00:00 GMT
        let server = 1_796_374_800_000;
        let reading =
            Reading::from_date(Some("Fri, 04 Dec 2026 09:00:00 GMT"), server + 250, 100).unwrap();
        assert_eq!(reading.server_ms, server);
        assert_eq!(reading.offset_ms(), 200);
        let behind = Reading::from_date(
            Some("Fri, 04 Dec 2026 09:00:00 GMT"),
            server - 3 * 86_400_000,
            0,
        )
        .unwrap();
        assert_eq!(behind.offset_ms(), -3 * 86_400_000);
        assert_eq!(Reading::from_date(None, 0, 0), None);
        assert_eq!(Reading::from_date(Some("yesterday"), 0, 0), None);
    }
}
