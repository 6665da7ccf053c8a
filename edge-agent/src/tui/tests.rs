//! The teacher screen without a terminal: events in, effects, state and the rendered buffer out
//! (ratatui's `TestBackend`).

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::SyncIndicator;
use super::app::{
    App, AppEvent, CaptureSummary, Effect, EnrolPhase, EnrolPreview, Screen, SessionState,
    StoreJob, VisionJob, VisionStatus,
};
use super::ui;
use crate::attendance::capture::Scored;
use crate::attendance::roll::{ReviewDecision, Roll, RollRow};
use crate::store::{Consent, MarkSource, MarkStatus, SectionRecord};
use crate::sync::{Breaker, Status};

const SECTION: &str = "c1";

fn key(c: char) -> AppEvent {
    AppEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn code(code: KeyCode) -> AppEvent {
    AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn row(student: &str, status: Option<MarkStatus>, score: Option<f32>) -> RollRow {
    RollRow {
        student: student.to_owned(),
        name: format!("{student} Smith"),
        status,
        source: status.map(|_| MarkSource::Machine),
        score,
        candidates: Vec::new(),
        consent: if student == "dan" {
            Consent::None
        } else {
            Consent::Granted
        },
        n_templates: 1,
    }
}

/// Ana present, Ben in review (looks like Ben or Cy), Cy and Dan absent; Dan has no consent.
fn captured_roll(session: Option<&str>) -> Roll {
    let mut ben = row("ben", Some(MarkStatus::Review), Some(0.40));
    ben.candidates = vec![
        Scored {
            student: "ben".into(),
            score: 0.40,
        },
        Scored {
            student: "cy".into(),
            score: 0.36,
        },
    ];
    Roll {
        section: SECTION.into(),
        session: session.map(str::to_owned),
        rows: vec![
            row("ana", Some(MarkStatus::Present), Some(0.62)),
            ben,
            row("cy", Some(MarkStatus::Absent), None),
            row("dan", Some(MarkStatus::Absent), None),
        ],
    }
}

fn unmarked_roll() -> Roll {
    let mut roll = captured_roll(None);
    for r in &mut roll.rows {
        r.status = None;
        r.source = None;
        r.score = None;
        r.candidates.clear();
    }
    roll
}

fn sections() -> AppEvent {
    AppEvent::Sections {
        sections: vec![
            SectionRecord {
                id: SECTION.into(),
                title: "Year 3 Maths".into(),
            },
            SectionRecord {
                id: "c2".into(),
                title: "Year 4 Art".into(),
            },
        ],
        now: vec![SECTION.into()],
    }
}

/// The rendered screen as lines of text.
fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| ui::render(frame, app)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first line holding `needle`, a review row's candidates line aside.
fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle) && (!l.contains("looks like") || needle == "looks like"))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
}

/// An app on section c1 with its roll loaded (nothing stored yet) and the camera ready.
fn started(recognition: bool) -> App {
    let mut app = App::new(recognition, None);
    assert_eq!(app.start(), vec![Effect::Store(StoreJob::Sections)]);
    let effects = app.handle(sections());
    assert_eq!(
        effects,
        vec![Effect::Store(StoreJob::Load {
            seq: 1,
            section: SECTION.into(),
            session: None
        })]
    );
    app.handle(AppEvent::Roll {
        seq: 1,
        roll: unmarked_roll(),
        waiting: 3,
    });
    if recognition {
        app.handle(AppEvent::Vision(VisionStatus::Ready {
            source: "images:/photos".into(),
        }));
    }
    app
}

/// `started`, then a capture that opened session s1 and whose roll has arrived.
fn after_capture() -> App {
    let mut app = started(true);
    assert_eq!(
        app.handle(key('c')),
        vec![Effect::Vision(VisionJob::Capture {
            section: SECTION.into(),
            session: None
        })]
    );
    let effects = app.handle(AppEvent::Captured(Ok(summary("s1"))));
    assert_eq!(
        effects,
        vec![Effect::Store(StoreJob::Load {
            seq: 2,
            section: SECTION.into(),
            session: Some("s1".into())
        })]
    );
    app.handle(AppEvent::Roll {
        seq: 2,
        roll: captured_roll(Some("s1")),
        waiting: 6,
    });
    app
}

fn summary(session: &str) -> CaptureSummary {
    CaptureSummary {
        session: session.into(),
        n_frames: 5,
        unknown_faces: 1,
        too_small_faces: 2,
        not_on_roster: vec!["eve".into()],
        reenrolment: None,
        elapsed_ms: 1400,
    }
}

#[test]
fn opens_the_lesson_now_with_its_roll_and_the_sync_state() {
    let app = started(true);
    assert_eq!(app.screen, Screen::Roster);
    assert_eq!(app.section.as_deref(), Some(SECTION));
    let text = screen(&app, 80, 24);
    assert!(text.contains("Year 3 Maths (c1)"), "{text}");
    assert!(text.contains("sync: not set up · 3 waiting"), "{text}");
    assert!(text.contains("NOT MARKED (4)"), "{text}");
    assert!(text.contains("capture from images:/photos"), "{text}");
    assert!(text.contains(" c capture"), "{text}");
    assert!(text.contains(" q quit"), "{text}");
}

#[test]
fn without_a_lesson_now_the_teacher_picks_a_section() {
    let mut app = App::new(true, None);
    app.start();
    let AppEvent::Sections { sections, .. } = sections() else {
        unreachable!()
    };
    app.handle(AppEvent::Sections {
        sections,
        now: Vec::new(),
    });
    assert_eq!(app.screen, Screen::Picker);
    assert!(screen(&app, 80, 24).contains("Year 4 Art (c2)"));
    app.handle(code(KeyCode::Down));
    let effects = app.handle(code(KeyCode::Enter));
    assert_eq!(
        effects,
        vec![Effect::Store(StoreJob::Load {
            seq: 1,
            section: "c2".into(),
            session: None
        })]
    );
    assert_eq!(app.screen, Screen::Roster);
}

#[test]
fn a_capture_shows_progress_then_groups_the_roll() {
    let mut app = started(true);
    app.handle(key('c'));
    assert!(app.capturing);
    assert_eq!(app.session, SessionState::Opening);
    app.handle(AppEvent::Tick);
    let text = screen(&app, 80, 24);
    assert!(text.contains("capturing"), "{text}");
    // A second press while it runs starts nothing.
    assert!(app.handle(key('c')).is_empty());

    let app = {
        let mut app = after_capture();
        app.handle(AppEvent::Tick);
        app
    };
    assert_eq!(app.session, SessionState::Open("s1".into()));
    let text = screen(&app, 80, 24);
    // Review first, then absent, then present; the review row names its candidates.
    let review = text.find("NEEDS REVIEW (1)").expect(&text);
    let absent = text.find("ABSENT (2)").expect(&text);
    let present = text.find("PRESENT (1)").expect(&text);
    assert!(review < absent && absent < present, "{text}");
    assert!(
        line_with(&text, "looks like").contains("ben Smith 0.40 · cy Smith 0.36"),
        "{text}"
    );
    assert!(line_with(&text, "ana Smith").contains("present"), "{text}");
    assert!(
        text.contains("last capture: unknown faces 1 · too small to match 2"),
        "{text}"
    );
    assert!(text.contains("not on this roster: eve"), "{text}");
    assert!(text.contains("6 waiting"), "{text}");
}

#[test]
fn marks_made_during_the_first_capture_wait_for_its_session() {
    let mut app = started(true);
    app.handle(key('c'));
    // Unmarked rows sort by name: ana is selected. Late, shown at once, stored once s1 exists.
    assert!(app.handle(key('l')).is_empty());
    assert_eq!(app.rows.last().unwrap().status, Some(MarkStatus::Late));
    let effects = app.handle(AppEvent::Captured(Ok(summary("s1"))));
    assert_eq!(
        effects,
        vec![
            Effect::Store(StoreJob::Mark {
                seq: 1 + 1,
                session: "s1".into(),
                student: "ana".into(),
                status: MarkStatus::Late
            }),
            Effect::Store(StoreJob::Load {
                seq: 3,
                section: SECTION.into(),
                session: Some("s1".into())
            }),
        ]
    );
}

#[test]
fn review_is_settled_with_one_key_and_only_for_review_items() {
    let mut app = after_capture();
    assert_eq!(app.rows[app.selected].student, "ben");
    let effects = app.handle(key('y'));
    assert_eq!(
        effects,
        vec![Effect::Store(StoreJob::Review {
            seq: 3,
            session: "s1".into(),
            student: "ben".into(),
            decision: ReviewDecision::Confirm
        })]
    );
    // Ben moves to the present group at once; the cursor stays in place, on the next item.
    let ben = app.rows.iter().find(|r| r.student == "ben").unwrap();
    assert_eq!(ben.status, Some(MarkStatus::Present));
    assert_eq!(ben.source, Some(MarkSource::Teacher));
    assert_eq!(app.rows[app.selected].student, "cy");
    assert!(app.handle(key('n')).is_empty());
    let text = screen(&app, 80, 24);
    assert!(text.contains("not waiting for review"), "{text}");

    // An older roll (read before the review was stored) does not undo it on screen.
    app.handle(AppEvent::Roll {
        seq: 2,
        roll: captured_roll(Some("s1")),
        waiting: 6,
    });
    let ben = app.rows.iter().find(|r| r.student == "ben").unwrap();
    assert_eq!(ben.status, Some(MarkStatus::Present));
}

#[test]
fn every_student_can_be_marked_by_hand() {
    let mut app = after_capture();
    app.handle(code(KeyCode::Down));
    let cy = app.rows[app.selected].student.clone();
    assert_eq!(cy, "cy");
    let effects = app.handle(key('e'));
    assert_eq!(
        effects,
        vec![Effect::Store(StoreJob::Mark {
            seq: 3,
            session: "s1".into(),
            student: "cy".into(),
            status: MarkStatus::Excused
        })]
    );
    let text = screen(&app, 80, 24);
    assert!(line_with(&text, "cy Smith").contains("excused"), "{text}");
    assert!(line_with(&text, "cy Smith").contains("teacher"), "{text}");
    // A failed write is said, and the roll that follows shows what is really stored.
    app.handle(AppEvent::StoreFailed {
        seq: 3,
        message: "database is locked".into(),
    });
    app.handle(AppEvent::Roll {
        seq: 3,
        roll: captured_roll(Some("s1")),
        waiting: 6,
    });
    let text = screen(&app, 80, 24);
    assert!(text.contains("database is locked"), "{text}");
    assert!(line_with(&text, "cy Smith").contains("absent"), "{text}");
}

#[test]
fn with_recognition_off_it_is_a_manual_roll_call() {
    let mut app = started(false);
    assert!(app.handle(key('c')).is_empty());
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("face recognition is disabled at this school"),
        "{text}"
    );
    assert!(text.contains("manual roll call"), "{text}");
    assert!(app.handle(key('E')).is_empty());
    assert_eq!(app.screen, Screen::Roster);
    // The first mark opens a session; marks wait for its id, and quitting waits for them.
    let effects = app.handle(key('p'));
    assert_eq!(
        effects,
        vec![Effect::Store(StoreJob::Open {
            seq: 2,
            section: SECTION.into()
        })]
    );
    // Ana moved to the present group: the cursor is now on Ben.
    assert!(app.handle(key('a')).is_empty());
    assert!(app.handle(key('q')).is_empty());
    let mut roll = unmarked_roll();
    roll.session = Some("s7".into());
    let effects = app.handle(AppEvent::Roll {
        seq: 2,
        roll,
        waiting: 1,
    });
    assert_eq!(
        effects,
        vec![
            Effect::Store(StoreJob::Mark {
                seq: 3,
                session: "s7".into(),
                student: "ana".into(),
                status: MarkStatus::Present
            }),
            Effect::Store(StoreJob::Mark {
                seq: 4,
                session: "s7".into(),
                student: "ben".into(),
                status: MarkStatus::Absent
            }),
            // Quitting leaves the roll: the session closes, after the marks.
            Effect::Store(StoreJob::Close {
                session: "s7".into()
            }),
            Effect::Quit,
        ]
    );
}

#[test]
fn without_a_camera_the_screen_says_so_and_marking_still_works() {
    let mut app = started(true);
    let reason = "no camera found: connect a USB camera (or pass --source images:DIR); attendance can still be marked by hand";
    app.handle(AppEvent::Vision(VisionStatus::Unavailable(reason.into())));
    let text = screen(&app, 80, 24);
    assert!(text.contains("no camera found"), "{text}");
    assert!(text.contains("no capture: manual marking only"), "{text}");
    assert!(app.handle(key('c')).is_empty());
    assert!(!app.capturing);
    assert!(matches!(
        app.handle(key('l')).as_slice(),
        [Effect::Store(StoreJob::Open { .. })]
    ));
}

#[test]
fn enrolment_shows_the_verdict_before_the_template_is_kept() {
    let mut app = after_capture();
    app.handle(key('E'));
    assert_eq!(app.screen, Screen::Enrol);
    // Dan has no consent: refused before the camera is used.
    app.enrol_selected = app.rows.iter().position(|r| r.student == "dan").unwrap();
    assert!(app.handle(key('c')).is_empty());
    let text = screen(&app, 80, 24);
    assert!(text.contains("no recorded consent"), "{text}");

    app.enrol_selected = app.rows.iter().position(|r| r.student == "ana").unwrap();
    assert_eq!(
        app.handle(key('c')),
        vec![Effect::Vision(VisionJob::EnrolCheck {
            student: "ana".into()
        })]
    );
    app.handle(AppEvent::EnrolChecked(Ok(EnrolPreview {
        student: "ana".into(),
        eye_distance: 34.0,
        min_eye_distance: 12.0,
        sharpness: 80.0,
        min_sharpness: 8.0,
        yaw_degrees: -7.0,
        max_yaw_degrees: 45.0,
    })));
    let text = screen(&app, 80, 24);
    for expected in [
        "one face found",
        "eyes 34 px apart",
        "sharpness 80",
        "turned 7°",
        "k keeps it",
    ] {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }
    assert_eq!(
        app.handle(key('k')),
        vec![Effect::Vision(VisionJob::EnrolKeep)]
    );
    let effects = app.handle(AppEvent::EnrolKept(Ok("enrolled ana".into())));
    assert!(matches!(
        effects.as_slice(),
        [Effect::Store(StoreJob::Load { .. })]
    ));
    assert_eq!(app.enrol, EnrolPhase::Idle);
    // A refused photo says why; Esc goes back to the roll.
    app.handle(key('c'));
    app.handle(AppEvent::EnrolChecked(Err(
        "the face is too blurry: sharpness 3.0, at least 8 needed".into(),
    )));
    assert!(screen(&app, 80, 24).contains("too blurry"));
    app.handle(code(KeyCode::Esc));
    assert_eq!(app.screen, Screen::Roster);
}

#[test]
fn the_sync_indicator_follows_the_sync_loop() {
    let mut app = started(true);
    app.handle(AppEvent::Sync(SyncIndicator {
        online: Some(false),
        waiting: 12,
        last_sync_ms: None,
        detail: "connection refused".into(),
        clock_offset_ms: None,
    }));
    assert!(screen(&app, 80, 24).contains("○ offline · 12 waiting"));
    app.handle(AppEvent::Sync(SyncIndicator {
        online: Some(true),
        waiting: 0,
        last_sync_ms: Some(1_700_000_000_000),
        detail: String::new(),
        clock_offset_ms: Some(900),
    }));
    let text = screen(&app, 80, 24);
    assert!(text.contains("● online · 0 waiting · last sync "), "{text}");
    assert!(!text.contains("Clock"), "{text}");
}

/// A box that came back from a holiday with last term's time (no RTC battery, no network time):
/// the teacher sees it on a row of its own under the header, whatever else the screen says.
#[test]
fn a_clock_far_from_the_servers_is_on_the_screen() {
    let mut app = started(true);
    let behind = SyncIndicator {
        online: Some(true),
        waiting: 0,
        last_sync_ms: Some(1_700_000_000_000),
        detail: String::new(),
        clock_offset_ms: Some(-3 * 86_400_000 - 20_000),
    };
    app.handle(AppEvent::Sync(behind.clone()));
    let text = screen(&app, 80, 24);
    assert!(
        text.contains(
            "⚠ Clock 3 days behind the server's: marks get the wrong time. Ask IT to set it."
        ),
        "{text}"
    );
    assert!(text.contains("● online · 0 waiting"), "{text}");
    // A capture's own line comes and goes; the clock's row stays.
    app.handle(key('c'));
    let text = screen(&app, 80, 24);
    assert!(text.contains("capturing"), "{text}");
    assert!(text.contains("⚠ Clock 3 days behind"), "{text}");
    // Within the rule (a few seconds of a whole-second Date header): nothing is said.
    app.handle(AppEvent::Sync(SyncIndicator {
        clock_offset_ms: Some(4_000),
        ..behind
    }));
    assert!(!screen(&app, 80, 24).contains("Clock"));
}

#[test]
fn renders_at_any_size_on_every_screen() {
    let mut app = after_capture();
    let mut apps = Vec::new();
    for setup in [Screen::Roster, Screen::Picker, Screen::Enrol] {
        app.screen = setup;
        if setup == Screen::Enrol {
            app.enrol = EnrolPhase::Refused {
                student: "ana".into(),
                reason: "a long reason ".repeat(20),
            };
        }
        for clock_offset_ms in [None, Some(-3 * 86_400_000)] {
            app.sync = Some(SyncIndicator {
                clock_offset_ms,
                ..SyncIndicator::default()
            });
            for (width, height) in [(80, 24), (60, 20), (200, 60), (20, 5), (1, 1), (0, 0)] {
                let text = screen(&app, width, height);
                if width >= 60 {
                    assert!(text.contains("Rollcall"), "{width}x{height}:\n{text}");
                }
                if width >= 80 && height >= 20 {
                    assert_eq!(
                        text.contains("⚠ Clock 3 days behind"),
                        clock_offset_ms.is_some(),
                        "{width}x{height}:\n{text}"
                    );
                }
            }
        }
        apps.push(setup);
    }
    assert_eq!(apps.len(), 3);
}

/// Restarted mid-lesson: the store hands back the lesson's session with the roll, and the next
/// mark goes into it instead of opening a second session.
#[test]
fn a_restarted_screen_continues_the_lessons_session() {
    let mut app = App::new(true, None);
    app.start();
    app.handle(sections());
    app.handle(AppEvent::Roll {
        seq: 1,
        roll: captured_roll(Some("s0")),
        waiting: 0,
    });
    assert_eq!(app.session, SessionState::Open("s0".into()));
    let effects = app.handle(key('l'));
    assert!(
        matches!(
            effects.first(),
            Some(Effect::Store(StoreJob::Mark { session, status: MarkStatus::Late, .. }))
                if session == "s0"
        ),
        "{effects:?}"
    );
}

/// Issue 14 (item 7): picking another section leaves the roll, and its session is closed.
#[test]
fn picking_another_section_closes_the_session() {
    let mut app = App::new(true, None);
    app.start();
    app.handle(sections());
    app.handle(AppEvent::Roll {
        seq: 1,
        roll: captured_roll(Some("s0")),
        waiting: 0,
    });
    app.handle(key('s'));
    assert_eq!(app.screen, Screen::Picker);
    // The same section again: nothing is left, nothing closes.
    assert!(app.handle(code(KeyCode::Enter)).is_empty());
    app.handle(key('s'));
    app.handle(code(KeyCode::Down));
    let effects = app.handle(code(KeyCode::Enter));
    assert_eq!(
        effects,
        vec![
            Effect::Store(StoreJob::Close {
                session: "s0".into()
            }),
            Effect::Store(StoreJob::Load {
                seq: 2,
                section: "c2".into(),
                session: None
            }),
        ]
    );
    assert_eq!(app.session, SessionState::None);
}

fn sync_status(device: Option<&str>) -> Status {
    Status {
        device_id: device.map(str::to_owned),
        school_id: None,
        server: None,
        link: Default::default(),
        breaker: Breaker::Closed,
        outbox: Default::default(),
        rejected: Vec::new(),
        cursor: None,
        templates_by_space: Vec::new(),
        running_space: String::new(),
    }
}

/// No cycle of its own: not provisioned without a device; with one, the daemon's state as
/// it recorded it in the store.
#[test]
fn the_screen_shows_the_daemons_state_when_the_daemon_syncs() {
    let unprovisioned = SyncIndicator::from_report(&Ok((None, sync_status(None))));
    assert_eq!(
        (unprovisioned.online, unprovisioned.detail.as_str()),
        (None, "not provisioned")
    );
    let mut held = sync_status(Some("dev-1"));
    held.outbox.waiting = 3;
    // The daemon has not tried yet.
    let quiet = SyncIndicator::from_report(&Ok((None, held.clone())));
    assert_eq!(
        (quiet.online, quiet.waiting, quiet.detail.as_str()),
        (None, 3, "")
    );
    // It synced a minute ago.
    held.link.last_attempt_at = Some(1_000);
    held.link.last_pull_at = Some(1_000);
    let online = SyncIndicator::from_report(&Ok((None, held.clone())));
    assert_eq!(
        (online.online, online.last_sync_ms),
        (Some(true), Some(1_000))
    );
    // Its last calls failed: offline, with its error.
    held.link.breaker.consecutive_failures = 2;
    held.link.last_error = Some("server unreachable: timed out".into());
    let offline = SyncIndicator::from_report(&Ok((None, held.clone())));
    assert_eq!(
        (offline.online, offline.detail.as_str()),
        (Some(false), "server unreachable: timed out")
    );
    // The clock's offset the daemon recorded reaches the screen.
    held.link.clock_offset_ms = Some(-90_000);
    let skewed = SyncIndicator::from_report(&Ok((None, held)));
    assert_eq!(skewed.clock_offset_ms, Some(-90_000));
}
