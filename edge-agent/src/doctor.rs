//! `edge-agent doctor`: what IT checks on a box before leaving the classroom, one line per check,
//! each failure with its fix. Every check runs whatever the others found (a box with no server
//! still says whether its camera works), and none changes anything: the store is opened read
//! and checked, the server is asked for one change it is not given.

use std::path::Path;

use serde::Serialize;

use crate::capture::{SourceSpec, StreamSpec};
use crate::config::{Config, DATABASE_FILE};
use crate::store::Store;
use crate::sync::Client;
use crate::sync::clock::{self, ClockVerdict};
use crate::vision::{Manifest, runtime};

/// Free space below which the store may soon fail to write (a week of captures is a few MB; the
/// margin is for the WAL and a rebuilt vector table).
const DISK_WARN_BYTES: u64 = 1 << 30;
const DISK_FAIL_BYTES: u64 = 100 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do about a warning or a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// What the checks need.
pub struct Patient<'a> {
    pub data_dir: &'a Path,
    pub config: &'a Config,
    pub runtime: &'a runtime::RuntimeOptions,
    pub source: &'a SourceSpec,
}

/// Runs every check, in the order a person fixes things.
pub fn examine(p: &Patient<'_>) -> Vec<Check> {
    let mut checks = vec![camera(p), onnx_runtime(p), models(p), disk(p.data_dir)];
    let path = p.data_dir.join(DATABASE_FILE);
    let store = match path.exists() {
        true => Store::open(&path).map_err(|e| e.to_string()),
        false => Err(format!("no store at {}", path.display())),
    };
    checks.push(match &store {
        Ok(store) => store_check(store),
        Err(e) => Check::fail(
            "store",
            e.clone(),
            "provision the box (edge-agent provision) or import the roster (edge-agent roster import DIR): either makes the store",
        ),
    });
    if let Ok(store) = &store {
        checks.extend(server_and_clock(p, store));
        checks.push(recognition(p, store));
        checks.push(outbox(store));
    }
    checks
}

fn camera(p: &Patient<'_>) -> Check {
    if !p.config.recognition {
        return Check::ok(
            "camera",
            "not needed: recognition is off on this box (manual roll call)",
        );
    }
    match p.source.open().and_then(|mut source| {
        let frame = source.grab(1)?.remove(0);
        Ok((source.describe(), frame.width(), frame.height()))
    }) {
        Ok((what, w, h)) => Check::ok("camera", format!("{what}: read a {w}x{h} frame")),
        Err(e) => Check::fail("camera", e.to_string(), camera_fix(p.source)),
    }
}

fn camera_fix(source: &SourceSpec) -> &'static str {
    match source {
        SourceSpec::Camera(_) => {
            "connect the USB camera (ls /dev/video* lists it), check it is not used by another program, and that the user running edge-agent is in group video"
        }
        SourceSpec::Images(_) => "pass a folder that holds .jpg or .png photos",
        SourceSpec::Stream(StreamSpec::Rtsp(_)) => {
            "open the same address in a video player from this box; check the camera's user, password and path, and that no firewall stands between"
        }
        SourceSpec::Stream(StreamSpec::Gst(_)) => {
            "run the pipeline with gst-launch-1.0 ... ! fakesink to see GStreamer's own error; on a Jetson check nvargus-daemon is running"
        }
        SourceSpec::Stream(StreamSpec::Video(_)) => {
            "check the file's path, and that it plays (ffprobe FILE)"
        }
    }
}

fn onnx_runtime(p: &Patient<'_>) -> Check {
    let described = match runtime::describe() {
        Ok(described) => described,
        Err(e) => {
            return Check::fail(
                "runtime",
                e.to_string(),
                "install ONNX Runtime: scripts/setup in a checkout, or the rollcall-edge package",
            );
        }
    };
    match runtime::resolve(p.runtime.provider) {
        Ok(got) if got == p.runtime.provider => {
            Check::ok("runtime", format!("{described}; inference on {got}"))
        }
        Ok(got) => Check::warn(
            "runtime",
            format!(
                "{described}; {} asked in [vision] provider, but this library has none: inference on {got}",
                p.runtime.provider
            ),
            "install ONNX Runtime's GPU build (NVIDIA's Jetson build on a Jetson), or set [vision] provider = \"cpu\"",
        ),
        Err(e) => Check::fail("runtime", e.to_string(), "reinstall ONNX Runtime"),
    }
}

fn models(p: &Patient<'_>) -> Check {
    let dir = match runtime::models_dir(p.runtime) {
        Ok(dir) => dir,
        Err(e) => return Check::fail("models", e.to_string(), runtime::SETUP_COMMAND),
    };
    let manifest = Manifest::builtin();
    let mut verified = Vec::new();
    for file in manifest.files() {
        if let Err(e) = runtime::read_verified(&dir, &file) {
            return Check::fail(
                "models",
                e.to_string(),
                "reinstall the models: scripts/setup in a checkout, or the rollcall-edge package",
            );
        }
        verified.push(format!("{} {}", file.name, &file.sha256[..12]));
    }
    Check::ok(
        "models",
        format!(
            "{} (sha256 verified): {}",
            dir.display(),
            verified.join(", ")
        ),
    )
}

fn disk(data_dir: &Path) -> Check {
    let free = match free_bytes(data_dir) {
        Ok(free) => free,
        Err(e) => {
            return Check::fail(
                "disk",
                format!("{}: {e}", data_dir.display()),
                "create the data folder, or pass --data-dir",
            );
        }
    };
    let detail = format!("{} free in {}", human_bytes(free), data_dir.display());
    let fix = "free space on this disk: the store cannot record attendance on a full disk";
    match free {
        f if f < DISK_FAIL_BYTES => Check::fail("disk", detail, fix),
        f if f < DISK_WARN_BYTES => Check::warn("disk", detail, fix),
        _ => Check::ok("disk", detail),
    }
}

fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("a NUL in the path"))?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a valid, writable statvfs.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
    }
}

fn store_check(store: &Store) -> Check {
    match store.quick_check() {
        Ok(result) if result == "ok" => Check::ok("store", "PRAGMA quick_check: ok"),
        Ok(result) => Check::fail(
            "store",
            format!("PRAGMA quick_check: {result}"),
            "stop edge-agent, keep a copy of the data folder, and restore the store from the server (provision the box again)",
        ),
        Err(e) => Check::fail(
            "store",
            e.to_string(),
            "check the data folder's permissions",
        ),
    }
}

/// The server with the box's token, and the clocks against each other.
fn server_and_clock(p: &Patient<'_>, store: &Store) -> Vec<Check> {
    let device = match store.device() {
        Ok(Some(device)) => device,
        Ok(None) => {
            return vec![Check::warn(
                "server",
                "not provisioned: this box syncs with no server",
                "edge-agent provision --server URL --code CODE (an admin makes the code on the dashboard's Devices page)",
            )];
        }
        Err(e) => return vec![Check::fail("server", e.to_string(), "check the store")],
    };
    let token = match crate::sync::read_token(p.data_dir) {
        Ok(token) => token,
        Err(e) => {
            return vec![Check::fail(
                "server",
                e.to_string(),
                "provision the box again: edge-agent provision --server URL --code CODE",
            )];
        }
    };
    let probe = Client::new(&device.server, Some(token), &p.config.sync)
        .map_err(|e| e.to_string())
        .and_then(|client| {
            client
                .probe(store.cursor().ok().flatten().as_deref())
                .map_err(|e| e.to_string())
        });
    let probe = match probe {
        Ok(probe) => probe,
        Err(e) => {
            return vec![Check::fail(
                "server",
                format!("{}: {e}", device.server),
                "check the network and the server's address; a refused token (401) needs the box provisioned again",
            )];
        }
    };
    let reached = format!(
        "{} answered this box's token in {} ms",
        device.server, probe.round_trip_ms
    );
    let server = if device.server.starts_with("https://") {
        Check::ok("server", format!("{reached} over TLS"))
    } else {
        Check::warn(
            "server",
            format!("{reached} over plain HTTP"),
            "serve the server over HTTPS ([tls] in sync-server.toml) and provision the box with its https:// address: the token and the templates cross the network",
        )
    };
    let clock = match probe.clock {
        None => Check::warn(
            "clock",
            "the server sent no Date header",
            "compare the clocks by hand (date -u on both)",
        ),
        Some(reading) => {
            let off = reading.offset_ms();
            let detail = format!("{:+.1} s from the server's", off as f64 / 1e3);
            match clock::verdict(off) {
                ClockVerdict::Fail => Check::fail("clock", detail, clock::CLOCK_FIX),
                ClockVerdict::Warn => Check::warn("clock", detail, clock::CLOCK_FIX),
                ClockVerdict::Ok => Check::ok("clock", detail),
            }
        }
    };
    vec![server, clock]
}

fn recognition(p: &Patient<'_>, store: &Store) -> Check {
    if !p.config.recognition {
        return Check::ok(
            "recognition",
            "off by the school's policy (recognition = false): manual roll call, no faces kept",
        );
    }
    let space = Manifest::builtin().embedder_space().to_string();
    let by_space = store.templates_by_space().unwrap_or_default();
    let here = by_space
        .iter()
        .find(|(s, _)| *s == space)
        .map_or(0, |(_, n)| *n);
    let elsewhere: usize = by_space
        .iter()
        .filter(|(s, _)| *s != space)
        .map(|(_, n)| n)
        .sum();
    match (here, elsewhere) {
        (0, 0) => Check::warn(
            "recognition",
            format!("on, with no templates in {space}: nobody can be recognised yet"),
            "enrol students at the box (edge-agent enroll) or centrally, then sync",
        ),
        (_, 0) => Check::ok("recognition", format!("on: {here} templates in {space}")),
        (_, n) => Check::warn(
            "recognition",
            format!("on: {here} templates in {space}, {n} in other spaces"),
            "edge-agent reembed (from kept crops), or enrol the students listed by edge-agent status again",
        ),
    }
}

fn outbox(store: &Store) -> Check {
    match store.outbox_counts() {
        Ok(counts) if counts.rejected > 0 => Check::warn(
            "outbox",
            format!(
                "{} events waiting, {} rejected by the server",
                counts.waiting, counts.rejected
            ),
            "edge-agent status lists the rejections; fix their cause on the server, then edge-agent sync --once --retry-rejected",
        ),
        Ok(counts) => Check::ok("outbox", format!("{} events waiting", counts.waiting)),
        Err(e) => Check::fail("outbox", e.to_string(), "check the store"),
    }
}

/// The checks as `doctor` prints them: a line each, a fix under each warning or failure.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let word = match check.verdict {
            Verdict::Ok => "ok",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        out.push_str(&format!("{word:<5} {:<12} {}\n", check.name, check.detail));
        if let Some(fix) = &check.fix {
            out.push_str(&format!("{:<18} fix: {fix}\n", ""));
        }
    }
    out
}

/// 1 when any check failed: what a provisioning script or a monitoring probe tests.
pub fn exit_status(checks: &[Check]) -> i32 {
    i32::from(checks.iter().any(|c| c.verdict == Verdict::Fail))
}
