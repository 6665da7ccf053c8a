//! Guardians: the people a school tells about a student's absences (issue 16's notices). One
//! contact per e-mail address in a school, linked to each of their children: a family with two
//! children is one contact, so it can get one digest. The box has no use for them; they never
//! enter the change feed.
//!
//! Decided here, for both stores and every caller (the student page now, a OneRoster import
//! later): what a valid contact is (an address that cannot carry a second header or a second
//! recipient, a name without control characters), that adding an address the school holds links
//! the contact it has (its name is kept), and that a contact left with no child is deleted rather
//! than kept.

use super::Write;
use super::audit::{Action, Entry};
use crate::store::Millis;

/// The longest address SMTP carries (RFC 5321: a path of 256 octets, less the angle brackets).
pub const MAX_EMAIL_CHARS: usize = 254;
pub const MAX_NAME_CHARS: usize = 100;

/// How the contact is related to the student, in OneRoster's words (users.csv roles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Relationship {
    Parent,
    Guardian,
    Relative,
}

shared_proto::vocabulary!(Relationship, "guardian relationship", {
    Parent => "parent",
    Guardian => "guardian",
    Relative => "relative",
});

/// A contact as the school holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guardian {
    pub id: String,
    pub school_id: String,
    pub given_name: String,
    pub family_name: String,
    /// Lower case (`Contact::check`): the key of the contact in its school.
    pub email: String,
    pub relationship: Relationship,
    /// When they unsubscribed from notices; `None`: they receive them.
    pub opted_out_at: Option<Millis>,
    /// Their children in the school, sorted.
    pub student_ids: Vec<String>,
}

/// A contact as someone typed it (or an export gave it), before `check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    pub relationship: Relationship,
}

/// Why a contact is refused (nothing is written).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "\"{0}\" is not an e-mail address a notice can go to: one address like name@school.org, at most {MAX_EMAIL_CHARS} characters, without spaces, commas or line breaks"
    )]
    Email(String),
    #[error(
        "a guardian needs a given and a family name of at most {MAX_NAME_CHARS} characters, without line breaks or control characters"
    )]
    Name,
    #[error("student {0} is not one of this school's")]
    UnknownStudent(String),
    #[error("that contact is not a guardian of student {0}")]
    NotLinked(String),
}

impl Contact {
    /// The contact as it is kept: names trimmed, the address trimmed and in lower case. Refuses
    /// what could break a mail: a CR or LF (a second header), a comma or angle bracket (a second
    /// recipient), a space, no `@` or a dotless domain.
    pub fn check(&self) -> Result<Contact, Refusal> {
        let name = |text: &str| {
            let text = text.trim();
            let fine = !text.is_empty()
                && text.chars().count() <= MAX_NAME_CHARS
                && !text.chars().any(char::is_control);
            fine.then(|| text.to_owned()).ok_or(Refusal::Name)
        };
        let email = self.email.trim().to_lowercase();
        let refused = || Refusal::Email(self.email.trim().chars().take(80).collect());
        let (local, domain) = email.split_once('@').ok_or_else(refused)?;
        let bad = |c: char| c.is_control() || c.is_whitespace() || "<>,;:\"()[]\\@".contains(c);
        if email.chars().count() > MAX_EMAIL_CHARS
            || local.is_empty()
            || local.chars().any(bad)
            || domain.chars().any(bad)
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(refused());
        }
        Ok(Contact {
            given_name: name(&self.given_name)?,
            family_name: name(&self.family_name)?,
            email,
            relationship: self.relationship,
        })
    }
}

/// What adding a contact to a student comes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linked {
    pub guardian: Guardian,
    /// The school held the address already: its contact (and name) was linked.
    pub existing: bool,
}

/// Links `contact` (checked) to `student` of `school` (`student_known`: the school holds the
/// student): a new contact, or `held`, the school's contact of that address. Writes the contact if
/// new, the link, and the audit line; nothing when the contact is the student's already.
pub fn link(
    school: &str,
    student: &str,
    student_known: bool,
    contact: &Contact,
    held: Option<Guardian>,
    by: &str,
    at: Millis,
) -> Result<(Vec<Write<'static>>, Linked), Refusal> {
    if !student_known {
        return Err(Refusal::UnknownStudent(student.to_owned()));
    }
    let existing = held.is_some();
    let mut guardian = held.unwrap_or_else(|| Guardian {
        id: uuid::Uuid::now_v7().to_string(),
        school_id: school.to_owned(),
        given_name: contact.given_name.clone(),
        family_name: contact.family_name.clone(),
        email: contact.email.clone(),
        relationship: contact.relationship,
        opted_out_at: None,
        student_ids: Vec::new(),
    });
    let mut writes = Vec::new();
    if guardian.student_ids.iter().any(|s| s == student) {
        // Already theirs: nothing to write, nothing to audit.
        return Ok((writes, Linked { guardian, existing }));
    }
    if !existing {
        writes.push(Write::AddGuardian(guardian.clone()));
    }
    writes.push(Write::LinkGuardian {
        guardian: guardian.id.clone(),
        student: student.to_owned(),
    });
    guardian.student_ids.push(student.to_owned());
    guardian.student_ids.sort();
    writes.push(Write::Audit(Entry {
        school_id: Some(school.to_owned()),
        at,
        actor: by.to_owned(),
        action: Action::GuardianLinked,
        subject: student.to_owned(),
        detail: format!(
            "{} {} <{}>, {}{}",
            guardian.given_name,
            guardian.family_name,
            guardian.email,
            guardian.relationship,
            if existing {
                " (a contact already held)"
            } else {
                ""
            }
        ),
    }));
    Ok((writes, Linked { guardian, existing }))
}

/// Unlinks `guardian` from `student`; a contact left with no child is deleted.
pub fn unlink(
    guardian: &Guardian,
    student: &str,
    by: &str,
    at: Millis,
) -> Result<Vec<Write<'static>>, Refusal> {
    if !guardian.student_ids.iter().any(|s| s == student) {
        return Err(Refusal::NotLinked(student.to_owned()));
    }
    let mut writes = vec![Write::UnlinkGuardian {
        guardian: guardian.id.clone(),
        student: student.to_owned(),
    }];
    let last = guardian.student_ids.len() == 1;
    if last {
        writes.push(Write::DeleteGuardian {
            id: guardian.id.clone(),
        });
    }
    writes.push(Write::Audit(Entry {
        school_id: Some(guardian.school_id.clone()),
        at,
        actor: by.to_owned(),
        action: Action::GuardianUnlinked,
        subject: student.to_owned(),
        detail: format!(
            "{} {} <{}>{}",
            guardian.given_name,
            guardian.family_name,
            guardian.email,
            if last {
                ": no other child, contact deleted"
            } else {
                ""
            }
        ),
    }));
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(email: &str) -> Contact {
        Contact {
            given_name: " Grace ".into(),
            family_name: "Hopper".into(),
            email: email.into(),
            relationship: Relationship::Parent,
        }
    }

    #[test]
    fn addresses_that_could_break_a_mail_are_refused() {
        let kept = contact(" Grace.Hopper@Example.ORG ")
            .check()
            .expect("valid");
        assert_eq!(kept.email, "grace.hopper@example.org");
        assert_eq!(kept.given_name, "Grace");
        for bad in [
            "grace@example.org\r\nBcc: all@example.org",
            "grace@example.org, eve@example.org",
            "Grace <grace@example.org>",
            "grace example@example.org",
            "grace@localhost",
            "grace@@example.org",
            "@example.org",
            "grace@.example.org",
            "grace@example..org",
            "grace",
            "",
        ] {
            assert!(
                matches!(contact(bad).check(), Err(Refusal::Email(_))),
                "{bad:?} was accepted"
            );
        }
        let long = format!("{}@example.org", "a".repeat(MAX_EMAIL_CHARS));
        assert!(contact(&long).check().is_err());
        let hostile = Contact {
            given_name: "Eve\r\nBcc: x@y.z".into(),
            ..contact("eve@example.org")
        };
        assert_eq!(hostile.check(), Err(Refusal::Name));
    }

    #[test]
    fn an_address_the_school_holds_links_its_contact_and_the_last_unlink_deletes_it() {
        let checked = contact("grace@example.org").check().unwrap();
        let (writes, linked) = link("north", "ada", true, &checked, None, "admin", 5).unwrap();
        assert!(!linked.existing);
        assert!(matches!(writes[0], Write::AddGuardian(_)));
        assert!(matches!(writes[1], Write::LinkGuardian { .. }));
        assert_eq!(linked.guardian.student_ids, ["ada"]);

        let other = Contact {
            given_name: "G.".into(),
            ..checked.clone()
        };
        let held = Some(linked.guardian.clone());
        let (writes, second) = link("north", "bob", true, &other, held, "admin", 6).unwrap();
        assert!(second.existing);
        assert_eq!(second.guardian.id, linked.guardian.id);
        assert_eq!(second.guardian.given_name, "Grace", "the held name is kept");
        assert_eq!(second.guardian.student_ids, ["ada", "bob"]);
        assert!(matches!(writes[0], Write::LinkGuardian { .. }));
        let held = Some(second.guardian.clone());
        let (writes, _) = link("north", "bob", true, &other, held, "admin", 6).unwrap();
        assert!(writes.is_empty(), "already linked: {writes:?}");
        assert_eq!(
            link("north", "eve", false, &checked, None, "admin", 6).map(|_| ()),
            Err(Refusal::UnknownStudent("eve".into()))
        );

        let writes = unlink(&second.guardian, "ada", "admin", 7).unwrap();
        assert!(
            !writes
                .iter()
                .any(|w| matches!(w, Write::DeleteGuardian { .. }))
        );
        let writes = unlink(&linked.guardian, "ada", "admin", 7).unwrap();
        assert!(
            writes
                .iter()
                .any(|w| matches!(w, Write::DeleteGuardian { .. }))
        );
        assert_eq!(
            unlink(&linked.guardian, "bob", "admin", 7),
            Err(Refusal::NotLinked("bob".into()))
        );
    }
}
