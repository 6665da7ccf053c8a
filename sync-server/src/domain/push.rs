//! A push from one box, decided: which events apply, which are refused and why, and what each one
//! writes. The rules per event kind are in `store::rules`'s module comment; they are carried out
//! here, once, for every backend.
//!
//! A backend runs a push in three steps inside one transaction: `Wanted::of` names the records the
//! push needs, the backend reads them into `Facts` (and the trips booked for the sections of its
//! lessons, `Facts::lesson_sections`), and `plan` returns the answer for the box and the writes to
//! make, which the backend carries out in order.

use std::collections::{BTreeSet, HashMap, HashSet};

use shared_proto::sync::{MarkSource, MarkStatus, RejectCode, mark_wins};

use super::event::{Body, Event, Template};
use super::excusal::{self, Excusal};
use super::feed::Change;
use super::{MarkWrite, Write, consent};
use crate::store::rules::{self, Owner, Refusal};
use crate::store::{Device, Millis, Student};

/// The records a push names, for the backend to read in one go (one query per kind where the
/// database allows it).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wanted<'e> {
    pub event_ids: BTreeSet<&'e str>,
    pub sections: BTreeSet<&'e str>,
    pub students: BTreeSet<&'e str>,
    pub sessions: BTreeSet<&'e str>,
    /// (session, student).
    pub marks: BTreeSet<(&'e str, &'e str)>,
    pub templates: BTreeSet<&'e str>,
    /// Students whose consent the push may change: their live templates' ids are needed.
    pub live_templates_of: BTreeSet<&'e str>,
}

impl<'e> Wanted<'e> {
    /// What `plan` will ask `Facts` about for these events. Events refused before any look-up
    /// (`rules::validate`) name nothing.
    pub fn of(events: &'e [Event]) -> Wanted<'e> {
        let mut wanted = Wanted::default();
        for event in events.iter().filter(|e| rules::validate(e).is_ok()) {
            wanted.event_ids.insert(&event.id);
            match &event.body {
                Body::SessionOpened {
                    session, section, ..
                } => {
                    wanted.sections.insert(section);
                    wanted.sessions.insert(session);
                }
                Body::SessionClosed { session } => {
                    wanted.sessions.insert(session);
                }
                Body::MarkSet {
                    session, student, ..
                } => {
                    wanted.students.insert(student);
                    wanted.sessions.insert(session);
                    wanted.marks.insert((session, student));
                }
                Body::TemplateAdded(template) => {
                    wanted.students.insert(&template.student);
                    wanted.templates.insert(&template.id);
                }
                Body::TemplateDeleted { template, student } => {
                    wanted.students.insert(student);
                    wanted.templates.insert(template);
                }
                Body::ConsentChanged { student, .. } => {
                    wanted.students.insert(student);
                    wanted.live_templates_of.insert(student);
                }
            }
        }
        wanted
    }
}

/// A session as a push sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldSession {
    pub school_id: String,
    /// The box that opened it: office corrections are filed under it.
    pub device_id: String,
    pub section_id: String,
    pub started_at: Millis,
    pub closed_at: Option<Millis>,
}

/// The mark a new decision must beat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldMark {
    pub status: MarkStatus,
    pub source: MarkSource,
    pub decided_at: Millis,
    pub event_id: String,
    /// What the machine decided for this student in this session, kept when a person's decision
    /// replaces it: the recognition self-audit (`domain::recognition`) compares the two.
    pub machine: Option<MarkStatus>,
}

impl HeldMark {
    /// The machine's decision a new mark of `source` and `status` keeps when it replaces `held`:
    /// its own when the machine decided it, else the one it replaces. `None` where no machine
    /// decided (a person marked first, or the mark predates the column).
    pub fn machine_after(
        source: MarkSource,
        status: MarkStatus,
        held: Option<&HeldMark>,
    ) -> Option<MarkStatus> {
        if source.is_human() {
            // A machine's mark is its own decision, whether or not the store kept it as such.
            held.and_then(|h| h.machine.or((!h.source.is_human()).then_some(h.status)))
        } else {
            Some(status)
        }
    }
}

/// What is held under a template id, in whichever school.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldTemplate {
    pub school_id: String,
    pub tombstone: bool,
}

/// What the store holds of the records in `Wanted`, across every school (a record of another
/// school is refused as such, not taken for missing). A record not found is left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// Event ids applied by earlier pushes.
    pub applied: HashSet<String>,
    /// Section id to its school.
    pub sections: HashMap<String, String>,
    pub students: HashMap<String, Student>,
    pub sessions: HashMap<String, HeldSession>,
    /// By session, then student.
    pub marks: HashMap<String, HashMap<String, HeldMark>>,
    pub templates: HashMap<String, HeldTemplate>,
    /// For each student of `Wanted::live_templates_of`, the ids of their live templates, sorted
    /// (an empty list when they have none).
    pub live_templates: HashMap<String, Vec<String>>,
}

impl Facts {
    /// The sections of the lessons a push names: those of the sessions held and of the sessions it
    /// opens. `plan` needs the trips booked for these.
    pub fn lesson_sections<'a>(&'a self, wanted: &Wanted<'a>) -> BTreeSet<&'a str> {
        let held = self.sessions.values().map(|s| s.section_id.as_str());
        wanted.sections.iter().copied().chain(held).collect()
    }
}

/// What a push comes to: every event id is either acked (applied now or earlier) or refused.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub acked: Vec<String>,
    pub refused: Vec<Refused>,
}

/// An event the store will not apply, and why. The box keeps it and shows the reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Refused {
    pub id: String,
    pub code: RejectCode,
    pub reason: String,
}

/// A decided push.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan<'e> {
    pub outcome: Outcome,
    /// Events applied now, with their kind: recorded so a retry is acked without being applied.
    pub applied: Vec<(&'e str, &'static str)>,
    /// In order.
    pub writes: Vec<Write<'e>>,
}

/// Decides a push from `device` against `facts`. Each event id is answered once (a repeat in the
/// batch is ignored); an id applied before is acked and looked at no further; a refused event
/// writes nothing, so a retry after the roster arrives can succeed.
/// `excusals`: the trips booked for `Facts::lesson_sections` (others may be among them).
pub fn plan<'e>(
    device: &'e Device,
    events: &'e [Event],
    mut facts: Facts,
    excusals: &'e [Excusal],
) -> Plan<'e> {
    let mut plan = Plan::default();
    let mut answered: HashSet<&str> = HashSet::with_capacity(events.len());
    for event in events {
        if !answered.insert(event.id.as_str()) {
            continue;
        }
        if let Err(refused) = rules::validate(event) {
            plan.outcome.refused.push(refused);
            continue;
        }
        if facts.applied.contains(&event.id) {
            plan.outcome.acked.push(event.id.clone());
            continue;
        }
        let n_writes = plan.writes.len();
        match decide(&mut facts, excusals, device, event, &mut plan.writes) {
            Ok(()) => {
                plan.applied.push((&event.id, event.body.kind()));
                plan.outcome.acked.push(event.id.clone());
            }
            Err(Refusal(code, reason)) => {
                debug_assert_eq!(plan.writes.len(), n_writes, "a refusal wrote something");
                plan.outcome.refused.push(Refused {
                    id: event.id.clone(),
                    code,
                    reason,
                });
            }
        }
    }
    plan
}

/// The student must be one of this school's.
fn check_student(facts: &Facts, school: &str, student: &str) -> Result<(), Refusal> {
    Owner::of(
        facts.students.get(student).map(|s| s.school_id.as_str()),
        school,
    )
    .check("student", student, RejectCode::UnknownStudent, "")
}

/// Checks everything first and writes (and updates `facts`) only once the event is known to be
/// accepted.
fn decide<'e>(
    facts: &mut Facts,
    excusals: &'e [Excusal],
    device: &'e Device,
    event: &'e Event,
    writes: &mut Vec<Write<'e>>,
) -> Result<(), Refusal> {
    let school = device.school_id.as_str();
    let device = device.id.as_str();
    match &event.body {
        Body::SessionOpened {
            session,
            section,
            started_at,
        } => {
            Owner::of(facts.sections.get(section).map(String::as_str), school).check(
                "section",
                section,
                RejectCode::UnknownSection,
                "",
            )?;
            match facts.sessions.get(session) {
                Some(held) if held.school_id != school => Err(Refusal(
                    RejectCode::WrongSchool,
                    format!("session {session} belongs to another school"),
                )),
                Some(held) if held.section_id != *section => Err(Refusal(
                    RejectCode::InvalidEvent,
                    format!(
                        "session {session} was opened for section {}",
                        held.section_id
                    ),
                )),
                Some(_) => Ok(()),
                None => {
                    writes.push(Write::OpenSession {
                        session: session.clone(),
                        device: device.to_owned(),
                        section: section.clone(),
                        started_at: *started_at,
                    });
                    facts.sessions.insert(
                        session.clone(),
                        HeldSession {
                            school_id: school.to_owned(),
                            device_id: device.to_owned(),
                            section_id: section.clone(),
                            started_at: *started_at,
                            closed_at: None,
                        },
                    );
                    Ok(())
                }
            }
        }
        Body::SessionClosed { session } => {
            let held = facts.sessions.get_mut(session);
            Owner::of(held.as_ref().map(|s| s.school_id.as_str()), school).check(
                "session",
                session,
                RejectCode::UnknownSession,
                " (its session_opened has not arrived)",
            )?;
            // The first close counts; a repeated close from a retry changes nothing.
            if let Some(held) = held.filter(|s| s.closed_at.is_none()) {
                held.closed_at = Some(event.at);
                writes.push(Write::CloseSession {
                    session: session.clone(),
                    at: event.at,
                });
            }
            Ok(())
        }
        Body::MarkSet {
            session,
            student,
            status,
            source,
            score,
            decided_at,
            by,
        } => {
            check_student(facts, school, student)?;
            // The session may not have arrived yet (events of one box may arrive out of order),
            // but it may not be another school's.
            let held_session = facts.sessions.get(session);
            if held_session.is_some_and(|s| s.school_id != school) {
                return Err(Refusal(
                    RejectCode::WrongSchool,
                    format!("session {session} belongs to another school"),
                ));
            }
            let held = facts.marks.get(session).and_then(|m| m.get(student));
            let machine = HeldMark::machine_after(*source, *status, held);
            // A trip booked for the lesson: the office's excuse, decided when it was booked.
            let trip = held_session.and_then(|s| {
                excusal::excusing(
                    excusals,
                    school,
                    &s.section_id,
                    s.started_at,
                    *source,
                    *status,
                )
            });
            let (status, source, score, decided_at, by) = match trip {
                Some(trip) => (
                    MarkStatus::Excused,
                    MarkSource::Office,
                    None,
                    trip.at,
                    Some(trip.by.as_str()),
                ),
                None => (*status, *source, *score, *decided_at, by.as_deref()),
            };
            if let Some(held) = held {
                let wins = mark_wins(
                    (source, decided_at, &event.id),
                    (held.source, held.decided_at, &held.event_id),
                );
                if !wins {
                    // Acked all the same: the decision is known, it just lost.
                    return Ok(());
                }
            }
            writes.push(Write::SetMark(MarkWrite {
                session,
                student,
                device,
                status,
                source,
                score,
                decided_at,
                decided_by: by,
                event_id: &event.id,
                filed_under: held_session.map(|s| (s.section_id.clone(), s.started_at)),
                machine,
            }));
            if trip.is_some() {
                // The box holds its own "absent": the feed tells it of the excuse, as it tells it
                // of an office correction.
                writes.push(Write::Change(Change::Mark {
                    session: session.clone(),
                    student: student.clone(),
                    status,
                    source,
                    decided_at,
                    by: by.map(str::to_owned),
                    event: event.id.clone(),
                }));
            }
            let held = HeldMark {
                status,
                source,
                decided_at,
                event_id: event.id.clone(),
                machine,
            };
            match facts.marks.get_mut(session) {
                Some(marks) => {
                    marks.insert(student.clone(), held);
                }
                None => {
                    let marks = HashMap::from([(student.clone(), held)]);
                    facts.marks.insert(session.clone(), marks);
                }
            }
            Ok(())
        }
        Body::TemplateAdded(template) => template_added(facts, school, template, writes),
        Body::TemplateDeleted { template, student } => {
            check_student(facts, school, student)?;
            match facts.templates.get(template) {
                Some(held) if held.school_id != school => Err(Refusal(
                    RejectCode::WrongSchool,
                    format!("template {template} belongs to another school"),
                )),
                Some(held) if held.tombstone => Ok(()),
                // Live, or not seen yet: the tombstone keeps a late `template_added` out.
                Some(_) | None => {
                    tombstone(facts, school, template, student);
                    writes.extend(Write::tombstone(template, student));
                    Ok(())
                }
            }
        }
        Body::ConsentChanged {
            student,
            consent,
            by,
        } => {
            check_student(facts, school, student)?;
            let Some(held) = facts.students.get_mut(student) else {
                unreachable!("check_student found the student");
            };
            let live = facts.live_templates.entry(student.clone()).or_default();
            let tombstoned = consent::decide(held, live, *consent, by, event.at, writes);
            // Templates tombstoned by the decision are tombstones for the rest of the push.
            for template in tombstoned {
                tombstone(facts, school, &template, student);
            }
            Ok(())
        }
    }
}

fn template_added(
    facts: &mut Facts,
    school: &str,
    template: &Template,
    writes: &mut Vec<Write<'_>>,
) -> Result<(), Refusal> {
    check_student(facts, school, &template.student)?;
    let consent = facts.students.get(&template.student).map(|s| s.consent);
    if !consent.is_some_and(consent::allows_templates) {
        return Err(Refusal(
            RejectCode::NoConsent,
            format!(
                "student {} has no consent for face templates",
                template.student
            ),
        ));
    }
    match facts.templates.get(&template.id) {
        Some(held) if held.school_id != school => Err(Refusal(
            RejectCode::WrongSchool,
            format!("template {} belongs to another school", template.id),
        )),
        // A template is immutable once made, and a delete that arrived first wins.
        Some(_) => Ok(()),
        None => {
            facts.templates.insert(
                template.id.clone(),
                HeldTemplate {
                    school_id: school.to_owned(),
                    tombstone: false,
                },
            );
            if let Some(live) = facts.live_templates.get_mut(&template.student) {
                let at = live.binary_search(&template.id).unwrap_or_else(|at| at);
                live.insert(at, template.id.clone());
            }
            writes.push(Write::AddTemplate(template.clone()));
            writes.push(Write::Change(Change::Template {
                template: template.clone(),
            }));
            Ok(())
        }
    }
}

/// Records in `facts` that a template of `school` is a tombstone from now on.
fn tombstone(facts: &mut Facts, school: &str, template: &str, student: &str) {
    facts.templates.insert(
        template.to_owned(),
        HeldTemplate {
            school_id: school.to_owned(),
            tombstone: true,
        },
    );
    if let Some(live) = facts.live_templates.get_mut(student) {
        live.retain(|id| id != template);
    }
}

#[cfg(test)]
mod tests {
    use shared_proto::sync::{Consent, Embedding, MarkStatus};
    use shared_proto::{EmbeddingSpace, ModelId};

    use super::*;

    const SCHOOL: &str = "north";

    /// Plans borrow their device: one that lives as long as the test process.
    fn device() -> &'static Device {
        Box::leak(Box::new(Device {
            id: "box-1".into(),
            school_id: SCHOOL.into(),
            name: "Room 1".into(),
            token_hash: String::new(),
            created_at: 0,
            revoked_at: None,
            last_seen_at: None,
            activity: Default::default(),
        }))
    }

    fn id(n: u32) -> String {
        format!("0190f1f0-0000-7000-8000-{n:012}")
    }

    fn event(n: u32, body: Body) -> Event {
        Event {
            id: id(n),
            at: 1_000 + i64::from(n),
            body,
        }
    }

    fn opened(n: u32, session: &str, section: &str) -> Event {
        event(
            n,
            Body::SessionOpened {
                session: session.into(),
                section: section.into(),
                started_at: 500,
            },
        )
    }

    fn mark(n: u32, student: &str, source: MarkSource, decided_at: Millis) -> Event {
        event(
            n,
            Body::MarkSet {
                session: "s1".into(),
                student: student.into(),
                status: MarkStatus::Present,
                source,
                score: None,
                decided_at,
                by: None,
            },
        )
    }

    fn template(n: u32, student: &str) -> Template {
        Template {
            id: id(900 + n),
            student: student.into(),
            embedding: Embedding {
                model: ModelId::new("fr_feature", "6e524bb134157e6f").unwrap(),
                space: EmbeddingSpace::new("fr_feature-v1").unwrap(),
                vector: vec![0.0; 4],
            },
            quality: 0.9,
            source: "box".into(),
            created_at: 1,
        }
    }

    fn student(id: &str, school: &str, consent: Consent) -> Student {
        Student {
            id: id.into(),
            school_id: school.into(),
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            active: true,
            consent,
            consent_by: None,
            consent_at: Some(100),
        }
    }

    /// A school with section "maths", students "ada" (consent granted) and "bob" (none), and
    /// "eve" of another school.
    fn facts() -> Facts {
        let mut facts = Facts::default();
        facts.sections.insert("maths".into(), SCHOOL.into());
        facts.sections.insert("art".into(), "south".into());
        facts
            .students
            .insert("ada".into(), student("ada", SCHOOL, Consent::Granted));
        facts
            .students
            .insert("bob".into(), student("bob", SCHOOL, Consent::None));
        facts
            .students
            .insert("eve".into(), student("eve", "south", Consent::Granted));
        facts
    }

    fn codes(plan: &Plan) -> Vec<RejectCode> {
        plan.outcome.refused.iter().map(|r| r.code).collect()
    }

    #[test]
    fn a_session_and_its_marks_in_one_push_are_filed_together() {
        let events = [
            opened(1, "s1", "maths"),
            mark(2, "ada", MarkSource::Machine, 600),
        ];
        let plan = plan(device(), &events, facts(), &[]);
        assert_eq!(plan.outcome.acked, vec![id(1), id(2)]);
        let Write::SetMark(mark) = &plan.writes[1] else {
            panic!("{:?}", plan.writes);
        };
        assert_eq!(mark.filed_under, Some(("maths".into(), 500)));
    }

    #[test]
    fn a_trip_booked_ahead_excuses_the_machines_absent_and_tells_the_box() {
        let trip = Excusal {
            id: "trip-1".into(),
            school_id: SCHOOL.into(),
            section_id: "maths".into(),
            from: 0,
            to: 1_000,
            reason: "Museum".into(),
            by: "office-ann".into(),
            at: 10,
        };
        let absent = |n, student: &str| {
            let mut event = mark(n, student, MarkSource::Machine, 600);
            if let Body::MarkSet { status, score, .. } = &mut event.body {
                *status = MarkStatus::Absent;
                *score = Some(0.1);
            }
            event
        };
        let events = [opened(1, "s1", "maths"), absent(2, "ada")];
        let decided = super::plan(device(), &events, facts(), std::slice::from_ref(&trip));
        assert_eq!(decided.outcome.acked.len(), 2);
        let Write::SetMark(ada) = &decided.writes[1] else {
            panic!("{:?}", decided.writes);
        };
        assert_eq!(
            (
                ada.status,
                ada.source,
                ada.decided_at,
                ada.decided_by,
                ada.score
            ),
            (
                MarkStatus::Excused,
                MarkSource::Office,
                10,
                Some("office-ann"),
                None
            )
        );
        assert_eq!(ada.machine, Some(MarkStatus::Absent), "kept for the audit");
        assert!(
            matches!(
                &decided.writes[2],
                Write::Change(Change::Mark {
                    status: MarkStatus::Excused,
                    ..
                })
            ),
            "{:?}",
            decided.writes
        );
        assert_eq!(decided.writes.len(), 3);

        // Ada came after all: the camera saw her.
        let events = [
            opened(1, "s1", "maths"),
            mark(3, "ada", MarkSource::Machine, 600),
        ];
        let decided = super::plan(device(), &events, facts(), std::slice::from_ref(&trip));
        let Some(Write::SetMark(seen)) = decided.writes.last() else {
            panic!("{:?}", decided.writes);
        };
        assert_eq!(
            (seen.status, seen.source),
            (MarkStatus::Present, MarkSource::Machine)
        );

        // The teacher's decision after the booking wins over the trip.
        let mut teacher = mark(4, "ada", MarkSource::Teacher, 700);
        if let Body::MarkSet { by, .. } = &mut teacher.body {
            *by = Some("t1".into());
        }
        let events = [opened(1, "s1", "maths"), absent(2, "ada"), teacher];
        let decided = super::plan(device(), &events, facts(), std::slice::from_ref(&trip));
        let Some(Write::SetMark(last)) = decided.writes.last() else {
            panic!("{:?}", decided.writes);
        };
        assert_eq!(
            (last.status, last.source),
            (MarkStatus::Present, MarkSource::Teacher)
        );
    }

    #[test]
    fn a_mark_before_its_session_is_kept_unfiled_and_a_foreign_session_is_refused() {
        let events = [mark(1, "ada", MarkSource::Machine, 600)];
        let plan = plan(device(), &events, facts(), &[]);
        assert!(matches!(&plan.writes[..], [Write::SetMark(m)] if m.filed_under.is_none()));

        let mut foreign = facts();
        foreign.sessions.insert(
            "s1".into(),
            HeldSession {
                school_id: "south".into(),
                device_id: "box-s".into(),
                section_id: "art".into(),
                started_at: 0,
                closed_at: None,
            },
        );
        let plan = super::plan(device(), &events, foreign, &[]);
        assert_eq!(codes(&plan), vec![RejectCode::WrongSchool]);
        assert!(plan.writes.is_empty() && plan.applied.is_empty());
    }

    #[test]
    fn teacher_beats_machine_within_a_push_and_the_loser_is_acked() {
        let events = [
            mark(1, "ada", MarkSource::Teacher, 600),
            mark(2, "ada", MarkSource::Machine, 700),
        ];
        let plan = plan(device(), &events, facts(), &[]);
        assert_eq!(plan.outcome.acked.len(), 2);
        assert_eq!(plan.writes.len(), 1, "{:?}", plan.writes);
        assert_eq!(plan.applied.len(), 2, "the losing event is recorded too");
    }

    #[test]
    fn repeats_and_earlier_pushes_are_acked_without_writing() {
        let mut held = facts();
        held.applied.insert(id(1));
        let events = [
            mark(1, "ada", MarkSource::Machine, 600),
            mark(2, "ada", MarkSource::Machine, 600),
            mark(2, "ada", MarkSource::Machine, 600),
        ];
        let plan = plan(device(), &events, held, &[]);
        assert_eq!(plan.outcome.acked, vec![id(1), id(2)]);
        assert_eq!(plan.applied, vec![(id(2).as_str(), "mark_set")]);
    }

    #[test]
    fn unknown_and_foreign_records_are_refused_by_name() {
        let events = [
            opened(1, "s1", "art"),
            opened(2, "s2", "nowhere"),
            mark(3, "eve", MarkSource::Machine, 600),
            mark(4, "zed", MarkSource::Machine, 600),
            event(
                5,
                Body::SessionClosed {
                    session: "s9".into(),
                },
            ),
        ];
        let plan = plan(device(), &events, facts(), &[]);
        assert_eq!(
            codes(&plan),
            vec![
                RejectCode::WrongSchool,
                RejectCode::UnknownSection,
                RejectCode::WrongSchool,
                RejectCode::UnknownStudent,
                RejectCode::UnknownSession,
            ]
        );
        assert!(plan.writes.is_empty());
    }

    #[test]
    fn a_session_is_closed_once() {
        let events = [
            opened(1, "s1", "maths"),
            event(
                2,
                Body::SessionClosed {
                    session: "s1".into(),
                },
            ),
            event(
                3,
                Body::SessionClosed {
                    session: "s1".into(),
                },
            ),
        ];
        let plan = plan(device(), &events, facts(), &[]);
        assert_eq!(plan.outcome.acked.len(), 3);
        let closes: Vec<_> = plan
            .writes
            .iter()
            .filter(|w| matches!(w, Write::CloseSession { .. }))
            .collect();
        assert_eq!(
            closes,
            vec![&Write::CloseSession {
                session: "s1".into(),
                at: 1_002
            }]
        );
    }

    #[test]
    fn templates_need_consent_and_a_delete_that_came_first_wins() {
        let ada = template(1, "ada");
        let events = [
            event(
                1,
                Body::TemplateDeleted {
                    template: ada.id.clone(),
                    student: "ada".into(),
                },
            ),
            event(2, Body::TemplateAdded(ada)),
            event(3, Body::TemplateAdded(template(2, "bob"))),
        ];
        let plan = plan(device(), &events, facts(), &[]);
        assert_eq!(codes(&plan), vec![RejectCode::NoConsent]);
        assert_eq!(plan.outcome.acked, vec![id(1), id(2)]);
        assert!(
            !plan
                .writes
                .iter()
                .any(|w| matches!(w, Write::AddTemplate(_))),
            "{:?}",
            plan.writes
        );
    }

    #[test]
    fn withdrawing_consent_tombstones_every_live_template_and_keeps_them_out() {
        let mut held = facts();
        held.live_templates
            .insert("ada".into(), vec![id(901), id(903)]);
        for n in [901, 903] {
            held.templates.insert(
                id(n),
                HeldTemplate {
                    school_id: SCHOOL.into(),
                    tombstone: false,
                },
            );
        }
        let withdraw = |n, at| Event {
            id: id(n),
            at,
            body: Body::ConsentChanged {
                student: "ada".into(),
                consent: Consent::Withdrawn,
                by: "office".into(),
            },
        };
        let events = [
            event(1, Body::TemplateAdded(template(2, "ada"))),
            withdraw(2, 200),
            event(3, Body::TemplateAdded(template(2, "ada"))),
        ];
        let plan = plan(device(), &events, held, &[]);
        let tombstoned: Vec<&str> = plan
            .writes
            .iter()
            .filter_map(|w| match w {
                Write::Tombstone { template, .. } => Some(template.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(tombstoned, vec![id(901), id(902), id(903)]);
        // The third event is refused: consent is withdrawn now.
        assert_eq!(codes(&plan), vec![RejectCode::NoConsent]);
        assert!(plan.writes.iter().any(|w| matches!(
            w,
            Write::Change(Change::Student {
                consent: Consent::Withdrawn,
                ..
            })
        )));
    }

    #[test]
    fn an_older_consent_decision_changes_nothing() {
        let events = [Event {
            id: id(1),
            at: 50,
            body: Body::ConsentChanged {
                student: "ada".into(),
                consent: Consent::Withdrawn,
                by: "office".into(),
            },
        }];
        let plan = plan(device(), &events, facts(), &[]);
        assert_eq!(plan.outcome.acked, vec![id(1)]);
        assert!(plan.writes.is_empty(), "{:?}", plan.writes);
    }

    #[test]
    fn wanted_names_only_what_valid_events_need() {
        let mut bad = mark(2, "zed", MarkSource::Machine, 600);
        bad.id = "not-a-uuid".into();
        let events = [mark(1, "ada", MarkSource::Machine, 600), bad];
        let wanted = Wanted::of(&events);
        assert_eq!(wanted.students, BTreeSet::from(["ada"]));
        assert_eq!(wanted.marks, BTreeSet::from([("s1", "ada")]));
        assert!(wanted.live_templates_of.is_empty());
    }
}
