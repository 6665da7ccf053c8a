//! Memory benchmark: peak resident memory (VmHWM) of the release binary in the two shapes a box
//! runs it, with ONNX Runtime's CPU arena and memory patterns on and off:
//! - `edge-agent capture` on one composed 1280x720 frame of 30 enrolled faces (a 40-student
//!   section), and the same process on a burst of 5 such frames, which also gives the per-frame
//!   vision time from the capture's debug log;
//! - the teacher screen (`edge-agent --source images:DIR`, in a tmux terminal as `tests/tui.rs`
//!   drives it), idle after start-up and after one `c` capture (a burst of 5 frames);
//! - where it goes: this bench run again as a child (`--stages`) that loads the pipeline and runs
//!   the frame through it step by step, printing its resident memory after each step.
//!
//! `cargo bench -p edge-agent --bench memory [-- --quick]`. Each figure is the median of 3 runs
//! (1 with `--quick`), the variants taking turns so that a busy spell of the machine hits all of
//! them; a variant is chosen with `ROLLCALL_ORT_ARENA` / `ROLLCALL_ORT_MEM_PATTERN` (`on` / `off`)
//! in the child's environment, as `vision/runtime.rs` reads them.

mod common;
#[path = "../tests/common/mod.rs"]
mod fixtures;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edge_agent::capture::{ImageLimits, load_image};
use edge_agent::enrolment::{EnrolOptions, enrol};
use edge_agent::store::{Consent, Store};
use edge_agent::vision::{Pipeline, PipelineOptions};

const SECTION: &str = "c1";
const SECTION_SIZE: usize = 40;
const N_FACES: usize = 30;
const BURST: usize = 5;
const BINARY: &str = env!("CARGO_BIN_EXE_edge-agent");

/// The ONNX Runtime memory options of one row, as environment values for the child.
/// Each of ONNX Runtime's two memory options forced on or off, or `None`: left to `runtime.rs`.
#[derive(Clone, Copy)]
struct Variant {
    arena: Option<bool>,
    memory_pattern: Option<bool>,
}

impl Variant {
    fn label(self) -> String {
        match (self.arena, self.memory_pattern) {
            (None, None) => "the defaults (no variables set)".into(),
            (arena, pattern) => format!(
                "arena {}, memory pattern {}",
                on_off(arena),
                on_off(pattern)
            ),
        }
    }

    /// `(variable, value)`; `None` unsets it.
    fn environment(self) -> [(&'static str, Option<&'static str>); 2] {
        let value = |b: Option<bool>| b.map(|b| if b { "on" } else { "off" });
        [
            ("ROLLCALL_ORT_ARENA", value(self.arena)),
            ("ROLLCALL_ORT_MEM_PATTERN", value(self.memory_pattern)),
        ]
    }

    fn apply(self, command: &mut Command) {
        for (name, value) in self.environment() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
    }

    /// The same, as arguments of `env(1)`.
    fn env_args(self) -> String {
        self.environment()
            .iter()
            .map(|(name, value)| match value {
                Some(value) => format!("{name}={value}"),
                None => format!("-u {name}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn on_off(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "on",
        Some(false) => "off",
        None => "default",
    }
}

const VARIANTS: [Variant; 5] = [
    Variant {
        arena: Some(true),
        memory_pattern: Some(true),
    },
    Variant {
        arena: Some(false),
        memory_pattern: Some(true),
    },
    Variant {
        arena: Some(true),
        memory_pattern: Some(false),
    },
    Variant {
        arena: Some(false),
        memory_pattern: Some(false),
    },
    Variant {
        arena: None,
        memory_pattern: None,
    },
];

/// A data folder whose store holds a 40-student section enrolled from one LFW photo each, and a
/// folder holding one composed frame of 30 of them (their other photo, 90 px faces).
fn set_up(root: &Path) -> (PathBuf, PathBuf) {
    let (data, roster, frames) = (root.join("data"), root.join("roster"), root.join("frames"));
    for dir in [&data, &roster, &frames] {
        std::fs::create_dir_all(dir).unwrap();
    }
    // A few spare people: enrolment refuses a face that already matches another student.
    let candidates = fixtures::students(SECTION_SIZE + 5);
    fixtures::write_oneroster(&roster, &candidates);
    let mut store = Store::open(&data.join("rollcall.sqlite")).unwrap();
    let import = |store: &mut Store| {
        let import = edge_agent::roster::read_oneroster(&roster).unwrap();
        store.apply_roster(&import, "bench").unwrap();
    };
    import(&mut store);
    let mut pipeline = fixtures::pipeline();
    let mut enrolled = Vec::new();
    for student in candidates {
        if enrolled.len() == SECTION_SIZE {
            break;
        }
        store
            .set_consent(&student.id, Consent::Granted, "guardian")
            .unwrap();
        let photo = load_image(&student.enrol_photo, &ImageLimits::default()).unwrap();
        let options = EnrolOptions::default();
        if enrol(&mut pipeline, &mut store, &student.id, &photo, &options).is_ok() {
            enrolled.push(student);
        }
    }
    assert_eq!(enrolled.len(), SECTION_SIZE, "too few LFW people enrol");
    // The section is the 40 who enrolled: a bulk import deactivates the others.
    fixtures::write_oneroster(&roster, &enrolled);
    import(&mut store);
    drop(store);
    let photos: Vec<&PathBuf> = enrolled[..N_FACES].iter().map(|s| &s.class_photo).collect();
    let frame = common::compose_frame(1280, 720, &photos, 90);
    frame.save(frames.join("frame.png")).unwrap();
    (data, frames.join("frame.png"))
}

/// What one run of a process came to.
#[derive(Clone, Copy, Default)]
struct Run {
    peak_mib: f64,
    wall_ms: f64,
    /// Median per-frame detect + align + embed time from the capture's debug log, frames after
    /// the first (the first also pays for the sessions' first allocations).
    vision_ms: f64,
    first_frame_ms: f64,
    /// User + system CPU time of the whole process: less moved by other work on the machine
    /// than wall time.
    cpu_s: f64,
}

/// Runs `edge-agent capture` on `n_frames` copies of the frame and waits for it with `wait4`,
/// whose `ru_maxrss` is the child's own peak resident set, exact to the end of the process.
#[expect(
    clippy::zombie_processes,
    reason = "`wait4` reaps the child: `Child::wait` would not give its rusage"
)]
fn run_capture(data: &Path, frame: &Path, n_frames: usize, variant: Variant) -> Run {
    let mut command = Command::new(BINARY);
    command
        .arg("--data-dir")
        .arg(data)
        .args(["capture", "--section", SECTION, "--json", "--images"])
        .args(std::iter::repeat_n(frame, n_frames))
        .env("ROLLCALL_LOG", "edge_agent=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    variant.apply(&mut command);
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    // Read stderr on a thread: a full pipe would stall the child before it exits.
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our child's and has not been waited for; both pointers are valid.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    let log = log.join().unwrap();
    assert!(
        pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "capture failed: {log}"
    );
    let log = without_colours(&log);
    let frame_ms: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("capture: frame done"))
        .filter_map(|l| {
            let value = l.split("vision_ms=").nth(1)?.split_whitespace().next()?;
            value.parse().ok()
        })
        .collect();
    assert_eq!(frame_ms.len(), n_frames, "{log}");
    Run {
        // Linux reports ru_maxrss in KiB.
        peak_mib: usage.ru_maxrss as f64 / 1024.0,
        wall_ms,
        vision_ms: if n_frames > 1 {
            median(frame_ms[1..].to_vec())
        } else {
            f64::NAN
        },
        first_frame_ms: frame_ms[0],
        cpu_s: seconds(usage.ru_utime) + seconds(usage.ru_stime),
    }
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// The log with its ANSI colour codes (`ESC [ ... m`) taken out.
fn without_colours(log: &str) -> String {
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

/// A tmux server of its own (`-L`), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux is installed (scripts/test installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let screen = self.run(&["capture-pane", "-p", "-t", "t"]);
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// A field of `/proc/PID/status` in MiB (`VmHWM`, `VmRSS`, `RssAnon`, `RssFile`).
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

struct ScreenRun {
    idle_peak_mib: f64,
    capture_peak_mib: f64,
    anon_mib: f64,
    file_mib: f64,
    capture_s: f64,
}

/// The teacher screen on `data` replaying the frame folder: peak after start-up (models loaded,
/// school gallery built), then after one capture of a 5-frame burst.
fn run_screen(data: &Path, frames: &Path, variant: Variant, n: usize) -> ScreenRun {
    let tmux = Tmux {
        socket: format!("rollcall-memory-{}-{n}", std::process::id()),
    };
    let command = format!(
        "exec env {} {BINARY} --data-dir {} --source images:{} --section {SECTION}",
        variant.env_args(),
        data.display(),
        frames.display()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "80",
        "-y",
        "24",
        &command,
    ]);
    let pid: u32 = tmux
        .run(&["display-message", "-p", "-t", "t", "#{pane_pid}"])
        .trim()
        .parse()
        .unwrap();
    tmux.wait_for("the camera and the models", |s| {
        s.contains("capture from images:")
    });
    // The vision worker builds its school gallery after the models load; give it a moment.
    std::thread::sleep(Duration::from_millis(500));
    let idle_peak_mib = status_mib(pid, "VmHWM");
    tmux.run(&["send-keys", "-t", "t", "c"]);
    let screen = tmux.wait_for("the capture", |s| s.contains("capture done"));
    let capture_peak_mib = status_mib(pid, "VmHWM");
    let (anon_mib, file_mib) = (status_mib(pid, "RssAnon"), status_mib(pid, "RssFile"));
    let capture_s = screen
        .split(" frames in ")
        .nth(1)
        .and_then(|rest| rest.split(" s").next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(f64::NAN);
    tmux.run(&["send-keys", "-t", "t", "q"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    ScreenRun {
        idle_peak_mib,
        capture_peak_mib,
        anon_mib,
        file_mib,
        capture_s,
    }
}

/// `--stages`, in a child with the variant's environment: the resident memory (`VmRSS`) and its
/// peak (`VmHWM`) after each step of loading the pipeline and running frames through it, then
/// the time of each frame (detect + align + embed) in milliseconds.
fn stages(frame: &Path) {
    let me = std::process::id();
    let report = |step: &str| {
        println!(
            "{step}\t{:.0}\t{:.0}",
            status_mib(me, "VmRSS"),
            status_mib(me, "VmHWM")
        );
    };
    report("process started");
    edge_agent::vision::runtime::environment().unwrap();
    report("ONNX Runtime loaded");
    let mut pipeline = Pipeline::load(&PipelineOptions::default()).unwrap();
    report("3 sessions built (Pipeline::load)");
    let frame = load_image(frame, &ImageLimits::default()).unwrap();
    report("frame decoded (1280x720 RGB)");
    let mut frame_ms = Vec::new();
    for n in 1..=STAGE_FRAMES {
        let started = Instant::now();
        let faces = pipeline.faces(&frame).unwrap();
        if n == 1 {
            report("frame 1 detected + aligned");
        }
        pipeline.embed(faces.iter().map(|f| &f.aligned)).unwrap();
        frame_ms.push(started.elapsed().as_secs_f64() * 1e3);
        if [1, BURST, STAGE_FRAMES].contains(&n) {
            report(&format!("frame {n} embedded ({} faces)", faces.len()));
        }
    }
    let frame_ms: Vec<String> = frame_ms.iter().map(|ms| format!("{ms:.1}")).collect();
    println!("frame_ms\t{}", frame_ms.join("\t"));
}

/// Frames the `--stages` child runs: enough to see whether memory keeps growing, and to time.
const STAGE_FRAMES: usize = 16;

struct Stages {
    /// `(step, VmRSS, VmHWM)`.
    steps: Vec<(String, f64, f64)>,
    /// Every frame but the first, which also pays for first allocations.
    frame_ms: Vec<f64>,
}

/// Runs `--stages` in a child with the variant's environment.
fn run_stages(frame: &Path, variant: Variant) -> Stages {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.arg("--stages").arg(frame);
    variant.apply(&mut command);
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut stages = Stages {
        steps: Vec::new(),
        frame_ms: Vec::new(),
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols[0] == "frame_ms" {
            stages.frame_ms = cols[2..].iter().map(|ms| ms.parse().unwrap()).collect();
        } else {
            let mib = |col: &str| col.parse().unwrap();
            stages
                .steps
                .push((cols[0].to_owned(), mib(cols[1]), mib(cols[2])));
        }
    }
    stages
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--stages") {
        stages(Path::new(&args[at + 1]));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let repeats = if quick { 1 } else { 3 };
    let root = tempfile::tempdir().unwrap();
    eprintln!("enrolling {SECTION_SIZE} LFW students and composing the frame...");
    let (data, frame) = set_up(root.path());
    let frames_dir = frame.parent().unwrap();

    let mut one: Vec<Vec<Run>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    let mut burst = one.clone();
    let mut screen: Vec<Vec<ScreenRun>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    let mut stages: Vec<Vec<Stages>> = VARIANTS.iter().map(|_| Vec::new()).collect();
    for round in 0..repeats {
        for (v, variant) in VARIANTS.iter().enumerate() {
            eprintln!("round {}/{repeats}: {}", round + 1, variant.label());
            one[v].push(run_capture(&data, &frame, 1, *variant));
            burst[v].push(run_capture(&data, &frame, BURST, *variant));
            screen[v].push(run_screen(&data, frames_dir, *variant, round * 10 + v));
            stages[v].push(run_stages(&frame, *variant));
        }
    }
    println!(
        "| ONNX Runtime memory options | capture, 1 frame: peak MiB | wall ms | capture, {BURST} frames: peak MiB | CPU s | first frame ms | later frames ms (median) | screen idle: peak MiB | screen after a capture: peak MiB | its RssAnon / RssFile MiB | screen capture s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (v, variant) in VARIANTS.iter().enumerate() {
        let of = |runs: &[Run], f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        let of_screen =
            |f: fn(&ScreenRun) -> f64| median(screen[v].iter().map(f).collect::<Vec<_>>());
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} / {:.0} | {:.2} |",
            variant.label(),
            of(&one[v], |r| r.peak_mib),
            of(&one[v], |r| r.wall_ms),
            of(&burst[v], |r| r.peak_mib),
            of(&burst[v], |r| r.cpu_s),
            of(&burst[v], |r| r.first_frame_ms),
            of(&burst[v], |r| r.vision_ms),
            of_screen(|s| s.idle_peak_mib),
            of_screen(|s| s.capture_peak_mib),
            of_screen(|s| s.anon_mib),
            of_screen(|s| s.file_mib),
            of_screen(|s| s.capture_s),
        );
    }

    println!(
        "\nWhere it goes (`--stages`, the last round): VmRSS / VmHWM MiB after each step; then the time of frames 2-{STAGE_FRAMES} of every round\n"
    );
    println!(
        "| step | {} |",
        VARIANTS
            .iter()
            .map(|v| v.label())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(VARIANTS.len()));
    let last: Vec<&Stages> = stages.iter().map(|runs| runs.last().unwrap()).collect();
    for (i, (step, _, _)) in last[0].steps.iter().enumerate() {
        let cells: Vec<String> = last
            .iter()
            .map(|s| format!("{:.0} / {:.0}", s.steps[i].1, s.steps[i].2))
            .collect();
        println!("| {step} | {} |", cells.join(" | "));
    }
    let cells: Vec<String> = stages
        .iter()
        .map(|runs| {
            let mut ms: Vec<f64> = runs.iter().flat_map(|s| s.frame_ms.clone()).collect();
            ms.sort_by(f64::total_cmp);
            let p90 = ms[(ms.len() * 9 / 10).min(ms.len() - 1)];
            format!("{:.0} / {p90:.0}", median(ms))
        })
        .collect();
    println!(
        "| frame time ms, median / p90 of {} frames | {} |",
        (STAGE_FRAMES - 1) * repeats,
        cells.join(" | ")
    );
}
