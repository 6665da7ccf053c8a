//! Gathering what `domain::notice` decides on, for one school at one instant, and rendering what
//! it decides: guardians' notices of today (and corrections of the last week), the admins' digest
//! at its time, and an alert per box offline during lessons. What is due is decided in
//! `domain::notice` (guardians), `domain::lessons` (not registered), `domain::attendance`
//! (chronic absence) and `domain::device` (offline, purges); this module only reads and renders.

use std::collections::{BTreeMap, HashMap};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use shared_proto::clock::ClockVerdict;
use shared_proto::sync::MarkStatus;

use super::mail::{self, Alert, Digest, GuardianMail, Line, long_date};
use crate::domain::attendance::Counts;
use crate::domain::device;
use crate::domain::lessons::{self, Held, Registration, clock};
use crate::domain::notice::{self, Day, Draft, Kind, Notice, Told};
use crate::domain::settings::SchoolSettings;
use crate::store::{AttendanceQuery, AttendanceRow, Millis, NoticeQuery, School, StoreError};

/// A session off the timetable is taken to last this long, for its grace period.
const OFF_TIMETABLE_LESSON_MS: Millis = 60 * 60_000;
/// Days back that a changed mark still sends a correction.
const CORRECTION_DAYS: i64 = 6;
/// The window of the admins' digest's chronic absence.
const CHRONIC_DAYS: i64 = 30;
/// More notices of one school and day than any school sends; the planner reads them all.
const DAY_NOTICES: usize = 100_000;

/// What a day's marks and timetable say: its sessions with their lessons' ends.
fn lesson_ends(
    marks: &[AttendanceRow],
    timetable: &[(String, Vec<shared_proto::sync::ScheduleSlot>)],
    day: Date,
    tz: &TimeZone,
    now: Millis,
) -> (
    HashMap<String, Millis>,
    Vec<(lessons::Lesson, Registration)>,
) {
    let mut held: BTreeMap<&str, Held> = BTreeMap::new();
    for row in marks {
        if let (Some(section), Some(started_at)) = (&row.section_id, row.started_at) {
            held.entry(&row.session_id).or_insert_with(|| Held {
                section: section.clone(),
                session: row.session_id.clone(),
                started_at,
            });
        }
    }
    let held: Vec<Held> = held.into_values().collect();
    let (registered, unclaimed) =
        lessons::register(lessons::of_day(timetable, day, tz), &held, now);
    let mut ends: HashMap<String, Millis> = unclaimed
        .into_iter()
        .map(|h| (h.session, h.started_at + OFF_TIMETABLE_LESSON_MS))
        .collect();
    for (lesson, registration) in &registered {
        if let Registration::Taken(session) = registration {
            ends.insert(session.clone(), lesson.ends);
        }
    }
    (ends, registered)
}

/// Everything one school's planning reads once.
struct Facts<'a> {
    school: &'a School,
    settings: SchoolSettings,
    tz: TimeZone,
    titles: HashMap<String, String>,
    timetable: Vec<(String, Vec<shared_proto::sync::ScheduleSlot>)>,
}

/// The notices due at `now` for `school`, rendered, not yet enqueued.
pub(super) async fn school(
    n: &super::Notifier,
    school: &School,
    now: Millis,
) -> Result<Vec<Notice>, StoreError> {
    let store = n.store.as_ref();
    let settings = store.school_settings(&school.id).await?;
    let guardians_on = settings.guardian_notices != notice::GuardianTiming::Off;
    let admins_on =
        !settings.admin_emails.is_empty() && (settings.admin_digest || settings.offline_alerts);
    if !guardians_on && !admins_on {
        return Ok(Vec::new());
    }
    let tz = settings.tz();
    let Some(today) = lessons::day_of(now, &tz) else {
        return Ok(Vec::new());
    };
    let s = Facts {
        school,
        titles: store
            .sections(&school.id)
            .await?
            .into_iter()
            .map(|s| (s.id, s.title))
            .collect(),
        timetable: store.timetable(&school.id).await?,
        tz,
        settings,
    };
    let mut out = Vec::new();
    if guardians_on {
        let guardians = store.guardians(&school.id).await?;
        if guardians.iter().any(|g| g.opted_out_at.is_none()) {
            let names: HashMap<String, String> = store
                .students(&school.id)
                .await?
                .into_iter()
                .map(|s| (s.id, s.given_name))
                .collect();
            for back in (0..=CORRECTION_DAYS).rev() {
                let Ok(day) = today.checked_sub(jiff::Span::new().days(back)) else {
                    continue;
                };
                out.extend(guardian_day(n, &s, &guardians, &names, day, back == 0, now).await?);
            }
        }
    }
    if admins_on {
        out.extend(admins(n, &s, today, now).await?);
    }
    Ok(out)
}

/// The day's notices so far (any state), oldest first.
async fn told(n: &super::Notifier, school_id: &str, day: &str) -> Result<Vec<Notice>, StoreError> {
    let mut told = n
        .store
        .notices(&NoticeQuery {
            school_id: school_id.to_owned(),
            day: Some(day.to_owned()),
            state: None,
            limit: DAY_NOTICES,
        })
        .await?;
    told.reverse();
    Ok(told)
}

async fn guardian_day(
    n: &super::Notifier,
    s: &Facts<'_>,
    guardians: &[crate::domain::guardian::Guardian],
    names: &HashMap<String, String>,
    day: Date,
    today: bool,
    now: Millis,
) -> Result<Vec<Notice>, StoreError> {
    let day_text = day.to_string();
    let told = told(n, &s.school.id, &day_text).await?;
    if !today && !told.iter().any(|t| t.letter.kind.to_guardian()) {
        // Only corrections are sent for an earlier day, and nobody was told anything of it.
        return Ok(Vec::new());
    }
    let Some((midnight, end)) = lessons::bounds(day, &s.tz) else {
        return Ok(Vec::new());
    };
    let marks = n
        .store
        .attendance(&AttendanceQuery {
            school_id: s.school.id.clone(),
            from: midnight,
            to: end,
            ..AttendanceQuery::default()
        })
        .await?;
    if marks.is_empty() && told.is_empty() {
        return Ok(Vec::new());
    }
    let (ends, _) = lesson_ends(&marks, &s.timetable, day, &s.tz, now);
    let drafts = notice::plan_guardians(
        &s.settings.guardian_rules(midnight),
        &Day {
            day: &day_text,
            school_id: &s.school.id,
            now,
            guardians,
            marks: &marks,
            lesson_ends: &ends,
            told: &told,
            first_notices: today,
        },
    );
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    let secret = n.secret().await?;
    let mut out = Vec::with_capacity(drafts.len());
    for draft in drafts {
        let unsubscribe =
            mail::unsubscribe_url(&n.public_url, secret, &s.school.id, &draft.guardian.id);
        let rendered = guardian_mail(s, names, &draft, day, unsubscribe).render();
        let rendered = match rendered {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot render a guardian's notice");
                continue;
            }
        };
        out.push(n.notice(
            &s.school.id,
            draft.kind,
            draft.key.clone(),
            &draft.guardian.email,
            Some(&draft.guardian.id),
            &day_text,
            rendered,
            serde_json::to_string(&draft.now_told).unwrap_or_default(),
            named(&draft),
            now,
        ));
    }
    Ok(out)
}

/// Every student a guardian's notice names.
fn named(draft: &Draft) -> Vec<String> {
    let mut ids: Vec<String> = draft
        .now_told
        .iter()
        .chain(&draft.change.withdrawn)
        .map(|t| t.student_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn guardian_mail(
    s: &Facts<'_>,
    names: &HashMap<String, String>,
    draft: &Draft,
    day: Date,
    unsubscribe: String,
) -> GuardianMail {
    let line = |t: &Told| Line {
        name: names
            .get(&t.student_id)
            .cloned()
            .unwrap_or_else(|| "Your child".to_owned()),
        status: t.status.clone(),
        lesson: s
            .titles
            .get(&t.section_id)
            .cloned()
            .unwrap_or_else(|| t.section_id.clone()),
        time: clock(t.starts, &s.tz),
    };
    let correction = draft.kind == Kind::Correction;
    GuardianMail {
        school: s.school.name.clone(),
        greeting: format!(
            "{} {}",
            draft.guardian.given_name, draft.guardian.family_name
        ),
        date: long_date(day),
        correction,
        lines: if correction {
            draft.change.added.iter().map(line).collect()
        } else {
            draft.now_told.iter().map(line).collect()
        },
        withdrawn: draft.change.withdrawn.iter().map(line).collect(),
        unsubscribe,
    }
}

/// The admins' digest once its time has come, and an alert per box offline during lessons; each
/// once per admin and day (per box, for alerts).
async fn admins(
    n: &super::Notifier,
    s: &Facts<'_>,
    today: Date,
    now: Millis,
) -> Result<Vec<Notice>, StoreError> {
    let Some((midnight, end)) = lessons::bounds(today, &s.tz) else {
        return Ok(Vec::new());
    };
    let day_text = today.to_string();
    let school_id = s.school.id.as_str();
    let todays = lessons::of_day(&s.timetable, today, &s.tz);
    let in_lessons = todays.first().is_some_and(|first| first.starts <= now)
        && todays.iter().any(|l| now < l.ends);
    let digest_due = s.settings.admin_digest && now >= s.settings.admin_digest_at(midnight);
    let alerts_due = s.settings.offline_alerts && in_lessons;
    if !digest_due && !alerts_due {
        return Ok(Vec::new());
    }
    let told = told(n, school_id, &day_text).await?;
    let held: std::collections::HashSet<&str> =
        told.iter().map(|t| t.letter.key.as_str()).collect();
    let devices = n.store.devices(school_id).await?;
    let offline_after = Millis::from(s.settings.offline_minutes) * 60_000;
    let mut out = Vec::new();
    let date = long_date(today);
    if alerts_due {
        for d in devices
            .iter()
            .filter(|d| device::offline(d, now, offline_after))
        {
            for admin in &s.settings.admin_emails {
                let key = notice::key(school_id, Kind::OfflineAlert, admin, &day_text, 0, &d.id);
                if held.contains(key.as_str()) {
                    continue;
                }
                let alert = Alert {
                    name: box_name(d),
                    since: d
                        .last_seen_at
                        .map_or_else(|| "never".to_owned(), |at| seen_at(at, now, &s.tz)),
                    minutes: s.settings.offline_minutes,
                };
                let rendered =
                    mail::render_admin(&s.school.name, &date, &Digest::default(), Some(&alert));
                if let Ok(rendered) = rendered {
                    out.push(n.notice(
                        school_id,
                        Kind::OfflineAlert,
                        key,
                        admin,
                        None,
                        &day_text,
                        rendered,
                        String::new(),
                        Vec::new(),
                        now,
                    ));
                }
            }
        }
    }
    if digest_due {
        let keys: Vec<(String, &String)> = s
            .settings
            .admin_emails
            .iter()
            .map(|a| {
                (
                    notice::key(school_id, Kind::AdminDigest, a, &day_text, 0, ""),
                    a,
                )
            })
            .filter(|(k, _)| !held.contains(k.as_str()))
            .collect();
        if !keys.is_empty() {
            let digest = digest(n, s, today, midnight, end, now, &devices, &told).await?;
            let rendered = mail::render_admin(&s.school.name, &date, &digest, None);
            match rendered {
                Ok(rendered) => {
                    for (key, admin) in keys {
                        out.push(n.notice(
                            school_id,
                            Kind::AdminDigest,
                            key,
                            admin,
                            None,
                            &day_text,
                            rendered.clone(),
                            String::new(),
                            digest.named.clone(),
                            now,
                        ));
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot render the admins' digest"),
            }
        }
    }
    Ok(out)
}

fn box_name(d: &crate::store::Device) -> String {
    if d.name.is_empty() {
        format!("box {}", d.id)
    } else {
        d.name.clone()
    }
}

/// `08:10`, or the date too when it was not today.
fn seen_at(at: Millis, now: Millis, tz: &TimeZone) -> String {
    match (lessons::day_of(at, tz), lessons::day_of(now, tz)) {
        (Some(a), Some(b)) if a == b => clock(at, tz),
        (Some(a), _) => format!("{} {}", a.strftime("%-d %b"), clock(at, tz)),
        _ => "never".to_owned(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn digest(
    n: &super::Notifier,
    s: &Facts<'_>,
    today: Date,
    midnight: Millis,
    end: Millis,
    now: Millis,
    devices: &[crate::store::Device],
    told: &[Notice],
) -> Result<Digest, StoreError> {
    let store = n.store.as_ref();
    let school_id = &s.school.id;
    let marks = store
        .attendance(&AttendanceQuery {
            school_id: school_id.clone(),
            from: midnight,
            to: end,
            ..AttendanceQuery::default()
        })
        .await?;
    let (_, registered) = lesson_ends(&marks, &s.timetable, today, &s.tz, now);
    let title = |id: &str| s.titles.get(id).cloned().unwrap_or_else(|| id.to_owned());
    let not_registered = registered
        .iter()
        .filter(|(_, r)| *r == Registration::NotRegistered)
        .map(|(l, _)| {
            format!(
                "{}, {}-{}",
                title(&l.section),
                clock(l.starts, &s.tz),
                clock(l.ends, &s.tz)
            )
        })
        .collect();
    let mut absences: BTreeMap<String, u64> = BTreeMap::new();
    for m in marks.iter().filter(|m| m.status == MarkStatus::Absent) {
        if let Some(section) = &m.section_id {
            *absences.entry(title(section)).or_default() += 1;
        }
    }
    // Newly chronic: at or over the threshold over the window ending tonight, not over the one
    // ending last night.
    let window = CHRONIC_DAYS * 86_400_000;
    let per_student = |tally: crate::store::Tally| {
        let mut c: HashMap<String, Counts> = HashMap::new();
        for row in tally.marks {
            c.entry(row.student_id)
                .or_default()
                .add_n(row.status, row.count as usize);
        }
        c
    };
    let query = |from, to| AttendanceQuery {
        school_id: school_id.clone(),
        from,
        to,
        ..AttendanceQuery::default()
    };
    let threshold = s.settings.chronic_threshold();
    let now_counts = per_student(store.tally(&query(end - window, end)).await?);
    let before = per_student(store.tally(&query(midnight - window, midnight)).await?);
    let mut newly: Vec<(String, f64)> = now_counts
        .iter()
        .filter(|(id, c)| {
            c.chronically_absent(threshold)
                && !before
                    .get(*id)
                    .is_some_and(|b| b.chronically_absent(threshold))
        })
        .map(|(id, c)| (id.clone(), c.missed_percent().unwrap_or(0.0)))
        .collect();
    newly.sort_by(|a, b| a.0.cmp(&b.0));
    let named = newly.iter().map(|(id, _)| id.clone()).collect();
    let newly_chronic = if newly.is_empty() {
        Vec::new()
    } else {
        let students: HashMap<String, String> = store
            .students(school_id)
            .await?
            .into_iter()
            .map(|st| (st.id, format!("{} {}", st.given_name, st.family_name)))
            .collect();
        newly
            .into_iter()
            .map(|(id, pct)| {
                let name = students.get(&id).cloned().unwrap_or(id);
                format!("{name} ({pct:.0} %)")
            })
            .collect()
    };
    let offline_after = Millis::from(s.settings.offline_minutes) * 60_000;
    let offline = devices
        .iter()
        .filter(|d| device::offline(d, now, offline_after))
        .map(|d| {
            let seen = d
                .last_seen_at
                .map_or_else(|| "never".to_owned(), |at| seen_at(at, now, &s.tz));
            format!("{}, last heard {seen}", box_name(d))
        })
        .collect();
    let clock_off = devices
        .iter()
        .filter_map(|d| match device::clock_off(d)? {
            (offset, ClockVerdict::Fail) => Some(format!(
                "{}, clock {}",
                box_name(d),
                shared_proto::clock::describe(offset)
            )),
            _ => None,
        })
        .collect();
    let erasures = match device::least_acked(devices) {
        Some(least) => store.erasures_since(school_id, least).await?,
        None => Vec::new(),
    };
    let mut pending: std::collections::HashSet<&str> = Default::default();
    for d in devices.iter().filter(|d| d.revoked_at.is_none()) {
        pending.extend(device::purges_pending(d, &erasures));
    }
    Ok(Digest {
        not_registered,
        absences: absences.into_iter().collect(),
        chronic_percent: s.settings.chronic_percent,
        newly_chronic,
        offline,
        clock_off,
        purges_pending: pending.len(),
        failed_notices: told
            .iter()
            .filter(|t| t.state == notice::State::Failed)
            .count(),
        named,
    })
}
