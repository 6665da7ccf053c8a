//! Provisioning: when a one-time code may be traded for a device, and what device it makes.

use crate::store::{Device, Millis, RedeemRefusal};

/// A provisioning code as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldCode {
    pub school_id: String,
    pub device_name: Option<String>,
    pub expires_at: Millis,
    pub used_at: Option<Millis>,
}

/// The device a box asking as `device` gets for `code` at `now`, or why it gets none. The store
/// then records the device and marks the code used in one transaction; of two boxes racing with
/// one code, the store lets exactly one of those transactions through.
pub fn redeem(
    code: Option<HeldCode>,
    device: &Device,
    now: Millis,
) -> Result<Device, RedeemRefusal> {
    let code = match code {
        None => return Err(RedeemRefusal::Unknown),
        Some(code) if code.used_at.is_some() => return Err(RedeemRefusal::AlreadyUsed),
        Some(code) if code.expires_at <= now => return Err(RedeemRefusal::Expired),
        Some(code) => code,
    };
    // A box that gives no name takes the one the admin put on its code.
    let name = match (device.name.trim().is_empty(), code.device_name) {
        (true, Some(name)) => name,
        _ => device.name.clone(),
    };
    Ok(Device {
        school_id: code.school_id,
        name,
        revoked_at: None,
        ..device.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(name: &str) -> Device {
        Device {
            id: "d1".into(),
            school_id: String::new(),
            name: name.into(),
            token_hash: "h".into(),
            created_at: 5,
            revoked_at: Some(1),
            last_seen_at: None,
            activity: Default::default(),
        }
    }

    fn code(used_at: Option<Millis>) -> Option<HeldCode> {
        Some(HeldCode {
            school_id: "north".into(),
            device_name: Some("Room 12".into()),
            expires_at: 100,
            used_at,
        })
    }

    #[test]
    fn a_fresh_code_makes_a_device_of_its_school_named_by_the_box_or_the_code() {
        let made = redeem(code(None), &asking("  "), 50).unwrap();
        assert_eq!(
            (made.school_id.as_str(), made.name.as_str()),
            ("north", "Room 12")
        );
        assert_eq!(made.revoked_at, None);
        assert_eq!(redeem(code(None), &asking("Lab"), 50).unwrap().name, "Lab");
    }

    #[test]
    fn unknown_used_and_expired_codes_are_refused() {
        assert_eq!(redeem(None, &asking(""), 50), Err(RedeemRefusal::Unknown));
        assert_eq!(
            redeem(code(Some(10)), &asking(""), 50),
            Err(RedeemRefusal::AlreadyUsed)
        );
        assert_eq!(
            redeem(code(None), &asking(""), 100),
            Err(RedeemRefusal::Expired)
        );
    }
}
