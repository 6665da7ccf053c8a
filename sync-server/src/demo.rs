//! `sync-server demo-data`: a plausible school in a store, so a new user sees a living dashboard
//! (and the page benchmarks have a year to read). Sections of 25 with a weekly timetable of five
//! lessons a day, one box per section, and school days of rolls: most students in nearly every
//! lesson, some often absent (chronic absentees), Mondays and Fridays a little worse, some late,
//! some excused, a few faces the camera was unsure of, teachers correcting a few machine marks, and
//! one camera knocked askew a week ago (the recognition self-audit's rising line).
//! Every roll goes in through `Store::apply_events`, the boxes' own path, so the data obeys every
//! rule a real one does. Deterministic for a given school id: the same command makes the same school.

use shared_proto::sync::{EnrolmentRole, MarkSource, MarkStatus, ScheduleSlot};

use crate::domain::event::{Body, Event};
use crate::domain::excusal::Excusal;
use crate::domain::guardian::{Contact, Relationship};
use crate::store::{
    Device, Enrolment, Millis, RosterBatch, School, Section, Store, StoreError, Student, Teacher,
};

/// What to make.
#[derive(Clone, Debug)]
pub struct DemoSpec {
    pub school_id: String,
    pub students: usize,
    /// School days (Monday to Friday) of rolls, ending on the day of `now`.
    pub days: usize,
}

/// What was made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DemoSummary {
    pub sections: usize,
    pub sessions: usize,
    pub marks: usize,
}

const CLASS_SIZE: usize = 25;
const DAY_MS: Millis = 24 * 60 * 60 * 1000;
/// Lesson starts, minutes after midnight UTC, and their length.
const PERIODS: [i64; 5] = [8 * 60, 9 * 60, 10 * 60 + 15, 11 * 60 + 15, 13 * 60];
const LESSON_MINUTES: i64 = 45;
/// Events per `apply_events` call: a box's batch.
const BATCH: usize = 1000;

const GIVEN: [&str; 24] = [
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "Edsger",
    "Radia",
    "Tim",
    "Katherine",
    "John",
    "Hedy",
    "Claude",
    "Annie",
    "Niklaus",
    "Sophie",
    "Donald",
    "Mary",
    "Bjarne",
    "Karen",
    "Guido",
];
const FAMILY: [&str; 20] = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Berners-Lee",
    "Johnson",
    "Backus",
    "Lamarr",
    "Shannon",
    "Easley",
    "Wirth",
    "Wilson",
    "Knuth",
];

/// splitmix64: a small deterministic generator (no dependency, same output everywhere).
struct Rng(u64);

impl Rng {
    fn of(seed: &str) -> Rng {
        Rng(seed.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x1_0000_01b3)
        }))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// An event id: UUIDv7-shaped from the time and the generator, so ids sort by time as a box's do.
fn event_id(at: Millis, rng: &mut Rng) -> String {
    let r = rng.next();
    format!(
        "{:08x}-{:04x}-7{:03x}-8{:03x}-{:012x}",
        (at >> 16) as u32,
        (at & 0xffff) as u16,
        r & 0xfff,
        (r >> 12) & 0xfff,
        (r >> 24) & 0xffff_ffff_ffff
    )
}

/// The school days, Monday to Friday, of the `days` ending on `now`'s day (UTC), oldest first.
fn school_days(now: Millis, days: usize) -> Vec<Millis> {
    let mut day = now.div_euclid(DAY_MS) * DAY_MS;
    let mut out = Vec::with_capacity(days);
    while out.len() < days {
        // 1970-01-01 was a Thursday: day 0 -> weekday 4 (Monday = 1).
        let weekday = (day.div_euclid(DAY_MS) + 3).rem_euclid(7) + 1;
        if weekday <= 5 {
            out.push(day);
        }
        day -= DAY_MS;
    }
    out.reverse();
    out
}

/// Fills `store` with the school `spec` describes, rolls up to `now`. `Conflict` when the school
/// exists already.
pub async fn fill(
    store: &dyn Store,
    spec: &DemoSpec,
    now: Millis,
    mut progress: impl FnMut(usize, usize),
) -> Result<DemoSummary, StoreError> {
    let school = spec.school_id.as_str();
    let mut rng = Rng::of(school);
    store
        .create_school(&School {
            id: school.to_owned(),
            name: format!("{school} school (demo)"),
        })
        .await?;
    let n_sections = spec.students.div_ceil(CLASS_SIZE).max(1);
    let mut batch = RosterBatch::default();
    for s in 0..n_sections {
        let year = 7 + s % 6;
        let section = format!("{school}-{year}{}", (b'A' + (s / 6) as u8 % 26) as char);
        batch.sections.push(Section {
            id: section.clone(),
            school_id: school.to_owned(),
            title: format!("Year {year} form {}", (b'A' + (s / 6) as u8 % 26) as char),
            active: true,
        });
        let teacher = format!("{school}-t{s:03}");
        batch.teachers.push(Teacher {
            id: teacher.clone(),
            school_id: school.to_owned(),
            given_name: GIVEN[(s * 7) % GIVEN.len()].to_owned(),
            family_name: FAMILY[(s * 3) % FAMILY.len()].to_owned(),
            active: true,
        });
        batch.enrolments.push(Enrolment {
            section_id: section,
            person_id: teacher,
            role: EnrolmentRole::Teacher,
            active: true,
        });
    }
    // Each student's usual chance to miss a lesson: most rarely, one in twelve often.
    let mut absence_rate = Vec::with_capacity(spec.students);
    for i in 0..spec.students {
        let id = format!("{school}-s{i:05}");
        batch.students.push(Student {
            id: id.clone(),
            school_id: school.to_owned(),
            given_name: GIVEN[(rng.next() % GIVEN.len() as u64) as usize].to_owned(),
            family_name: FAMILY[(rng.next() % FAMILY.len() as u64) as usize].to_owned(),
            active: true,
            consent: shared_proto::sync::Consent::None,
            consent_by: None,
            consent_at: None,
        });
        batch.enrolments.push(Enrolment {
            section_id: batch.sections[i / CLASS_SIZE].id.clone(),
            person_id: id,
            role: EnrolmentRole::Student,
            active: true,
        });
        let chronic = rng.unit() < 1.0 / 12.0;
        absence_rate.push(if chronic {
            0.12 + 0.15 * rng.unit()
        } else {
            0.01 + 0.04 * rng.unit()
        });
    }
    store.apply_roster(school, &batch, true).await?;
    // A guardian each; one student in seven is the brother or sister of the one before, and
    // shares that family's contact (one contact, one notice: `domain::guardian`).
    let mut family = 0;
    for (i, student) in batch.students.iter().enumerate() {
        if i % 7 != 1 {
            family = i;
        }
        let contact = Contact {
            given_name: GIVEN[(i * 7 + 3) % GIVEN.len()].to_owned(),
            family_name: batch.students[family].family_name.clone(),
            email: format!("family{family:05}@example.org"),
            relationship: if i % 11 == 0 {
                Relationship::Guardian
            } else {
                Relationship::Parent
            },
        };
        store
            .link_guardian(school, &student.id, &contact, "demo-data", now)
            .await?
            .map_err(|refusal| StoreError::Backend(format!("demo guardian: {refusal}")))?;
    }
    let slots: Vec<ScheduleSlot> = (1..=5u8)
        .flat_map(|weekday| {
            PERIODS.iter().map(move |start| ScheduleSlot {
                weekday,
                starts: format!("{:02}:{:02}", start / 60, start % 60),
                ends: format!(
                    "{:02}:{:02}",
                    (start + LESSON_MINUTES) / 60,
                    (start + LESSON_MINUTES) % 60
                ),
                room: None,
            })
        })
        .collect();
    let mut devices = Vec::with_capacity(n_sections);
    for (s, section) in batch.sections.iter().enumerate() {
        store.set_schedule(school, &section.id, &slots).await?;
        let code_hash = format!("demo-code-{school}-{s}");
        store
            .create_provisioning_code(&crate::store::ProvisioningCode {
                code_hash: code_hash.clone(),
                school_id: school.to_owned(),
                device_name: Some(format!("Room {}", 100 + s)),
                created_by: "demo-data".to_owned(),
                expires_at: now + DAY_MS,
            })
            .await?;
        let asking = Device {
            id: format!("{school}-box-{s:03}"),
            school_id: String::new(),
            name: String::new(),
            token_hash: format!("demo-token-{school}-{s}"),
            created_at: now - (spec.days as Millis + 7) * DAY_MS,
            revoked_at: None,
            last_seen_at: Some(now),
            activity: Default::default(),
        };
        let device = store
            .redeem_provisioning_code(&code_hash, &asking, now)
            .await?
            .map_err(|refusal| StoreError::Backend(format!("demo box code: {refusal:?}")))?;
        devices.push(device);
    }

    // The first section's trip next week, booked ahead.
    let next_monday =
        (now.div_euclid(DAY_MS) + 7 - (now.div_euclid(DAY_MS) + 3).rem_euclid(7)) * DAY_MS;
    let trip = Excusal {
        id: format!("{school}-trip-1"),
        school_id: school.to_owned(),
        section_id: batch.sections[0].id.clone(),
        from: next_monday,
        to: next_monday + 2 * DAY_MS,
        reason: "Field trip to the science museum".to_owned(),
        by: "demo-data".to_owned(),
        at: now,
    };
    store
        .book_excusal(&trip, &[], &jiff::tz::TimeZone::UTC)
        .await?
        .map_err(|refusal| StoreError::Backend(format!("demo trip: {refusal}")))?;

    let days = school_days(now, spec.days);
    let mut summary = DemoSummary {
        sections: n_sections,
        ..DemoSummary::default()
    };
    for (d, &day) in days.iter().enumerate() {
        let weekday = (day.div_euclid(DAY_MS) + 3).rem_euclid(7) + 1;
        // Mondays and Fridays are a little worse.
        let day_factor = if weekday == 1 || weekday == 5 {
            1.4
        } else {
            1.0
        };
        for (s, device) in devices.iter().enumerate() {
            let students = s * CLASS_SIZE..((s + 1) * CLASS_SIZE).min(spec.students);
            let mut events = Vec::with_capacity(PERIODS.len() * (CLASS_SIZE + 4));
            for start in PERIODS {
                let started_at = day + start * 60_000;
                if started_at > now {
                    continue;
                }
                let session = event_id(started_at, &mut rng);
                events.push(Event {
                    id: event_id(started_at, &mut rng),
                    at: started_at,
                    body: Body::SessionOpened {
                        session: session.clone(),
                        section: batch.sections[s].id.clone(),
                        started_at,
                    },
                });
                summary.sessions += 1;
                for i in students.clone() {
                    let roll = rng.unit();
                    let p_absent = absence_rate[i] * day_factor;
                    let (status, score) = if roll < p_absent {
                        (MarkStatus::Absent, None)
                    } else if roll < p_absent + 0.03 {
                        (MarkStatus::Late, Some(0.55 + 0.3 * rng.unit() as f32))
                    } else if roll < p_absent + 0.045 {
                        (MarkStatus::Review, Some(0.35 + 0.1 * rng.unit() as f32))
                    } else {
                        (MarkStatus::Present, Some(0.6 + 0.35 * rng.unit() as f32))
                    };
                    // The first section's camera was knocked askew a school week ago: it
                    // misses one present student in ten, whom the teacher then marks present,
                    // which is what the recognition self-audit is there to catch.
                    let askew = s == 0 && d + 6 >= days.len();
                    let missed = askew && status == MarkStatus::Present && rng.unit() < 0.1;
                    let (status, score) = if missed {
                        (MarkStatus::Absent, None)
                    } else {
                        (status, score)
                    };
                    let decided_at = started_at + 60_000;
                    events.push(Event {
                        id: event_id(decided_at, &mut rng),
                        at: decided_at,
                        body: Body::MarkSet {
                            session: session.clone(),
                            student: batch.students[i].id.clone(),
                            status,
                            source: MarkSource::Machine,
                            score,
                            decided_at,
                            by: None,
                        },
                    });
                    summary.marks += 1;
                    // The teacher settles every review, excuses a third of absences (a note
                    // came) and corrects one machine mark in a hundred.
                    let corrected = match status {
                        _ if missed => Some(MarkStatus::Present),
                        MarkStatus::Review => Some(if rng.unit() < 0.8 {
                            MarkStatus::Present
                        } else {
                            MarkStatus::Absent
                        }),
                        MarkStatus::Absent if rng.unit() < 0.33 => Some(MarkStatus::Excused),
                        MarkStatus::Present if rng.unit() < 0.01 => Some(MarkStatus::Absent),
                        MarkStatus::Absent if rng.unit() < 0.02 => Some(MarkStatus::Present),
                        _ => None,
                    };
                    // Today's last reviews stay open, as on a real morning.
                    if let Some(corrected) = corrected.filter(|_| d + 1 < days.len()) {
                        let at = decided_at + 10 * 60_000;
                        events.push(Event {
                            id: event_id(at, &mut rng),
                            at,
                            body: Body::MarkSet {
                                session: session.clone(),
                                student: batch.students[i].id.clone(),
                                status: corrected,
                                source: MarkSource::Teacher,
                                score: None,
                                decided_at: at,
                                by: Some(batch.teachers[s].id.clone()),
                            },
                        });
                    }
                }
                let closed = started_at + LESSON_MINUTES * 60_000;
                if closed <= now {
                    events.push(Event {
                        id: event_id(closed, &mut rng),
                        at: closed,
                        body: Body::SessionClosed { session },
                    });
                }
            }
            for chunk in events.chunks(BATCH) {
                let outcome = store.apply_events(device, chunk, now).await?;
                if let Some(refused) = outcome.refused.first() {
                    return Err(StoreError::Backend(format!(
                        "a demo event was refused: {}",
                        refused.reason
                    )));
                }
            }
        }
        progress(d + 1, days.len());
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn school_days_are_weekdays_ending_today() {
        // 2024-09-06 was a Friday.
        let friday_noon = 1_725_624_000_000;
        let days = school_days(friday_noon, 6);
        assert_eq!(days.len(), 6);
        assert_eq!(*days.last().unwrap(), 1_725_580_800_000);
        // The Friday before, then Monday to Friday.
        assert_eq!(days[1] - days[0], 3 * DAY_MS);
        let mut a = Rng::of("north");
        let mut b = Rng::of("north");
        assert_eq!(a.next(), b.next());
        let id = event_id(friday_noon, &mut a);
        assert_eq!(id.len(), 36);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
}
