//! Crash safety: the real `edge-agent` binary is killed with SIGKILL at random moments of enrolment
//! and capture, again and again; after every kill the database is intact, agrees with its outbox,
//! and holds each command's writes wholly or not at all.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Student;
use edge_agent::store::Store;

const SECTION: &str = "c1";
const N_STUDENTS: usize = 6;
const N_RUNS: usize = 60;
const FRAMES_PER_CAPTURE: usize = 3;
/// Kills land uniformly between the start and this multiple of the command's usual run time, so
/// about a third of the runs finish and the rest die in start-up, model loading, inference or the
/// commit.
const KILL_WINDOW: f64 = 1.5;
const SIGKILL: i32 = 9;
/// Any constant: the same kill moments on every run of the test.
const SEED: u64 = 0x5eed_0fc0_ffee;

/// splitmix64, small and good enough to spread kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn edge_agent(data_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edge-agent"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn assert_succeeded(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs to the end; returns how long it took.
fn run_to_end(command: &mut Command, what: &str) -> Duration {
    let started = Instant::now();
    let output = command.output().unwrap();
    assert_succeeded(&output, what);
    started.elapsed()
}

/// Every outbox event, which grows by exactly one command's writes or not at all; fails the test
/// when the database is damaged or disagrees with its outbox.
fn check_store(database: &Path, after: &str) -> usize {
    let store = Store::open(database).unwrap_or_else(|e| panic!("after {after}: {e}"));
    assert_eq!(store.integrity_check().unwrap(), "ok", "after {after}");
    assert_eq!(
        store.check_invariants().unwrap(),
        Vec::<String>::new(),
        "after {after}"
    );
    store.pending_events().unwrap().len()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The runs of one command: how long it usually takes, what it writes, and how each run ended.
#[derive(Default)]
struct Runs {
    usual: Duration,
    /// Outbox events one finished run adds.
    events_per_run: usize,
    /// Killed before its transaction committed: nothing of it is stored.
    killed_before_commit: usize,
    /// Killed between its commit and its exit: all of it is stored.
    killed_after_commit: usize,
    finished: usize,
}

#[test]
fn sigkill_during_enrolment_and_capture_never_leaves_a_half_written_store() {
    let started = Instant::now();
    let students = common::students(N_STUDENTS);
    let data = tempfile::tempdir().unwrap();
    let export = tempfile::tempdir().unwrap();
    common::write_oneroster(export.path(), &students);
    let export_dir = export.path().to_str().unwrap();
    run_to_end(
        &mut edge_agent(data.path(), &["roster", "import", export_dir]),
        "roster import",
    );
    for student in &students {
        run_to_end(
            &mut edge_agent(
                data.path(),
                &["consent", &student.id, "grant", "--by", "guardian"],
            ),
            "consent",
        );
    }
    let database = data.path().join("rollcall.sqlite");

    let enrol_args = |student: &Student| -> Vec<String> {
        vec![
            "enroll".into(),
            "--student".into(),
            student.id.clone(),
            student.enrol_photo.to_str().unwrap().into(),
        ]
    };
    let capture_args = |rng: &mut Rng| -> Vec<String> {
        let mut args = vec![
            "capture".into(),
            "--section".into(),
            SECTION.into(),
            "--images".into(),
        ];
        for _ in 0..FRAMES_PER_CAPTURE {
            let student = &students[rng.below(students.len())];
            args.push(student.class_photo.to_str().unwrap().into());
        }
        args
    };
    let command = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        edge_agent(data.path(), &args)
    };

    // Everyone enrolled once and a few captures, undisturbed: captures need templates, and these
    // runs time the commands whose run time the kills are spread over.
    let mut enrol_times: Vec<Duration> = students
        .iter()
        .map(|student| run_to_end(&mut command(&enrol_args(student)), "enroll"))
        .collect();
    let mut rng = Rng(SEED);
    let mut capture_times: Vec<Duration> = (0..3)
        .map(|_| run_to_end(&mut command(&capture_args(&mut rng)), "capture"))
        .collect();
    let mut enrolments = Runs {
        usual: median(&mut enrol_times),
        events_per_run: 1,
        ..Runs::default()
    };
    let mut captures = Runs {
        usual: median(&mut capture_times),
        events_per_run: 1 + students.len(),
        ..Runs::default()
    };
    let mut n_events = check_store(&database, "the undisturbed runs");
    eprintln!(
        "setup {:.1} s; an enrolment takes {} ms, a capture of {FRAMES_PER_CAPTURE} frames {} ms",
        started.elapsed().as_secs_f64(),
        enrolments.usual.as_millis(),
        captures.usual.as_millis()
    );

    let loop_started = Instant::now();
    for run in 0..N_RUNS {
        let (op, args, runs) = if rng.below(2) == 0 {
            let student = &students[rng.below(students.len())];
            ("enroll", enrol_args(student), &mut enrolments)
        } else {
            ("capture", capture_args(&mut rng), &mut captures)
        };
        let delay = runs.usual.mul_f64(KILL_WINDOW * rng.unit());
        let spawned = Instant::now();
        let mut child = command(&args).spawn().unwrap();
        let mut took = None;
        while took.is_none() && spawned.elapsed() < delay {
            std::thread::sleep(Duration::from_millis(2));
            took = child.try_wait().unwrap().map(|_| spawned.elapsed());
        }
        // A child that has exited meanwhile is not signalled: its exit status says which happened.
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        let what = format!("run {run} ({op}, killed at {} ms)", delay.as_millis());

        let n_events_now = check_store(&database, &what);
        let written = n_events_now - n_events;
        n_events = n_events_now;
        assert!(
            written == 0 || written == runs.events_per_run,
            "{what}: {written} outbox events written, expected 0 or {}",
            runs.events_per_run
        );
        if output.status.signal() == Some(SIGKILL) {
            if written == 0 {
                runs.killed_before_commit += 1;
            } else {
                runs.killed_after_commit += 1;
            }
            // Still running after longer than usual: other work on the machine slows it now.
            if delay > runs.usual {
                runs.usual = (runs.usual + delay) / 2;
            }
        } else {
            assert_succeeded(&output, &what);
            assert_eq!(written, runs.events_per_run, "{what} finished");
            runs.finished += 1;
            runs.usual = (runs.usual + took.unwrap_or(delay)) / 2;
        }
    }

    for (name, runs) in [("enrolments", &enrolments), ("captures", &captures)] {
        eprintln!(
            "{name}: {} killed before commit, {} killed after commit, {} finished; usual run {} ms",
            runs.killed_before_commit,
            runs.killed_after_commit,
            runs.finished,
            runs.usual.as_millis()
        );
    }
    eprintln!(
        "{N_RUNS} runs in {:.1} s, whole test {:.1} s",
        loop_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    for runs in [&enrolments, &captures] {
        let killed = runs.killed_before_commit + runs.killed_after_commit;
        assert!(
            killed > 0 && runs.finished > 0,
            "{killed} killed, {} finished: the kill moments no longer straddle the run time",
            runs.finished
        );
    }
}
