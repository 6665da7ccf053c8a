//! The appliance's systemd files in ../systemd (issue 18): every unit passes `systemd-analyze
//! verify` without a word about itself and `systemd-analyze security --offline=true` rates its
//! exposure within its bound; the sysusers.d and tmpfiles.d files make the users and folders the
//! units run with. The tools come with Debian's `systemd` package; a missing one fails the test,
//! since a skipped check would pass units nobody checked.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Each unit and the most exposure `systemd-analyze security` may rate it at. Measured on
/// Debian 12's systemd 252: edge 1.4, server 1.1, screen 1.4. The screen need not meet the
/// daemons' bound, but it does: it adds only tty1 to what the daemon has.
const UNITS: [(&str, f64); 3] = [
    ("rollcall-edge.service", 2.0),
    ("rollcall-server.service", 2.0),
    ("rollcall-screen.service", 2.0),
];

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

fn unit_text(name: &str) -> String {
    let path = systemd_dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The values of `key=` in a unit, in order.
fn directive<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// A fresh folder under cargo's temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("systemd-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs one of systemd's tools with `stdin` (a file) as its input.
fn run<S: AsRef<OsStr>>(program: &str, args: &[S], stdin: Option<&Path>) -> Output {
    let mut command = Command::new(program);
    command.args(args);
    if let Some(path) = stdin {
        command.stdin(fs::File::open(path).unwrap());
    } else {
        command.stdin(Stdio::null());
    }
    command.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {program}: {e}; these tests check the systemd units with it \
             (Debian package `systemd`; scripts/test installs what the tests need)"
        )
    })
}

/// What a tool printed, stdout then stderr, line by line.
fn lines(output: &Output) -> Vec<String> {
    [&output.stdout, &output.stderr]
        .into_iter()
        .flat_map(|bytes| {
            String::from_utf8_lossy(bytes)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The build's file for a program a unit runs from /usr/bin. edge-agent's tests build
/// edge-agent; `cargo test --workspace` builds sync-server beside it before any test runs.
fn built_program(name: &str) -> PathBuf {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_edge-agent"))
        .parent()
        .unwrap();
    let path = bin_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: a unit runs /usr/bin/{name}, which the workspace must build; build it with \
         `cargo build -p {name}` (scripts/test's `cargo test --workspace` does)",
        path.display()
    );
    path
}

/// The unit with the build's programs in place of /usr/bin's: verify checks that ExecStart's
/// program exists and is executable, and nothing is installed on the test machine. Every other
/// line is verified as written.
fn with_built_programs(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        match line.strip_prefix("ExecStart=") {
            Some(command) => {
                let program = command.split_whitespace().next().unwrap_or_default();
                let name = program.strip_prefix("/usr/bin/").unwrap_or_else(|| {
                    panic!("ExecStart= runs {program:?}; the packages install Rollcall's programs in /usr/bin")
                });
                let args = &command[program.len()..];
                out += &format!("ExecStart={}{args}\n", built_program(name).display());
            }
            None => out += &format!("{line}\n"),
        }
    }
    out
}

/// `systemd-analyze verify` on `text` saved as `dir/name`: the lines that name the unit, which
/// should be none. verify exits 0 even when it reports unknown keys or values it cannot parse, so
/// the lines decide; an exit status other than 0 (a unit that does not load) is a finding too.
///
/// Tolerated: lines that do not name the unit. verify loads the units it depends on (getty@,
/// modprobe@, network-online.target, sysinit.target...) from the test machine and reports their
/// faults, which are the machine's, not ours. On Debian 12's systemd 252 it prints none.
fn verify_findings(dir: &Path, name: &str, text: &str) -> Vec<String> {
    let path = dir.join(name);
    fs::write(&path, with_built_programs(text)).unwrap();
    let output = run(
        "systemd-analyze",
        &[OsStr::new("verify"), path.as_os_str()],
        None,
    );
    let all = lines(&output);
    for line in &all {
        println!("verify {name}: {line}");
    }
    let mut findings: Vec<String> = all.into_iter().filter(|line| line.contains(name)).collect();
    if !output.status.success() {
        findings.push(format!(
            "systemd-analyze verify exited with {}",
            output.status
        ));
    }
    findings
}

#[test]
fn every_unit_verifies_without_a_finding() {
    let dir = TempDir::new("verify");
    for (name, _) in UNITS {
        let text = unit_text(name);
        assert_eq!(
            directive(&text, "ExecStart").len(),
            1,
            "{name}: one ExecStart="
        );
        let findings = verify_findings(&dir.0, name, &text);
        assert!(findings.is_empty(), "{name}: {findings:#?}");
    }
}

/// The check above proves something only if verify speaks up: a misspelt directive and a value
/// it cannot parse must each be reported.
#[test]
fn verify_reports_a_misspelt_directive_and_a_bad_value() {
    let dir = TempDir::new("verify-faults");
    let name = "rollcall-edge.service";
    let text = unit_text(name);
    for (good, bad, expected) in [
        ("ProtectSystem=strict", "ProtectSytem=strict", "Unknown key"),
        (
            "ProtectSystem=strict",
            "ProtectSystem=stirct",
            "Failed to parse",
        ),
    ] {
        assert!(text.contains(good), "{name} has no {good:?} to spoil");
        let findings = verify_findings(&dir.0, name, &text.replacen(good, bad, 1));
        assert!(
            findings.iter().any(|line| line.contains(expected)),
            "verify said nothing like {expected:?} about {bad:?}: {findings:#?}"
        );
    }
}

/// The number in `systemd-analyze security --offline=true`'s "Overall exposure level for
/// NAME: X.Y ..." line: 0 is a fully sandboxed service, 10 an unsandboxed root one.
fn exposure(path: &Path) -> f64 {
    let output = run(
        "systemd-analyze",
        &[
            OsStr::new("security"),
            OsStr::new("--offline=true"),
            OsStr::new("--no-pager"),
            path.as_os_str(),
        ],
        None,
    );
    let all = lines(&output);
    assert!(output.status.success(), "{}: {all:#?}", path.display());
    let overall = all
        .iter()
        .find(|line| line.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("{}: no overall exposure in {all:#?}", path.display()));
    overall
        .rsplit_once(": ")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no number in {overall:?}"))
}

#[test]
fn every_unit_is_exposed_within_its_bound() {
    let mut over = Vec::new();
    for (name, bound) in UNITS {
        let score = exposure(&systemd_dir().join(name));
        println!("exposure {name}: {score:.1} (bound {bound:.1})");
        if score > bound {
            over.push(format!("{name}: {score:.1} > {bound:.1}"));
        }
    }
    assert!(over.is_empty(), "{over:#?}");
}

/// The bound means something only if an unsandboxed unit breaks it.
#[test]
fn an_unhardened_unit_is_exposed_beyond_the_bound() {
    let dir = TempDir::new("security-bare");
    let path = dir.0.join("bare.service");
    fs::write(&path, "[Service]\nExecStart=/bin/true\n").unwrap();
    let score = exposure(&path);
    println!("exposure bare.service: {score:.1}");
    assert!(score > 2.0, "an unhardened unit rated {score:.1}");
}

/// rollcall.sysusers and rollcall.tmpfiles applied to an empty root: every unit's User= and
/// Group= exist, and its StateDirectory= is there with the unit's StateDirectoryMode= (and, when
/// the test runs as root, owned by its user).
#[test]
fn sysusers_and_tmpfiles_make_what_the_units_run_with() {
    let root = TempDir::new("root");
    fs::create_dir(root.0.join("etc")).unwrap();
    let root_arg = format!("--root={}", root.0.display());
    let as_root = fs::metadata(&root.0).unwrap().uid() == 0;

    let sysusers = run(
        "systemd-sysusers",
        &[root_arg.as_str(), "-"],
        Some(&systemd_dir().join("rollcall.sysusers")),
    );
    assert!(sysusers.status.success(), "{:#?}", lines(&sysusers));
    let passwd = fs::read_to_string(root.0.join("etc/passwd")).unwrap();
    let group = fs::read_to_string(root.0.join("etc/group")).unwrap();
    // name:x:uid:gid:gecos:home:shell
    let user = |name: &str| -> Vec<String> {
        passwd
            .lines()
            .map(|line| line.split(':').map(str::to_owned).collect::<Vec<_>>())
            .find(|fields| fields[0] == name)
            .unwrap_or_else(|| panic!("rollcall.sysusers makes no user {name}: {passwd}"))
    };
    assert_eq!(user("rollcall")[5], "/var/lib/rollcall");

    let tmpfiles = run(
        "systemd-tmpfiles",
        &[root_arg.as_str(), "--create", "-"],
        Some(&systemd_dir().join("rollcall.tmpfiles")),
    );
    // Only root may give a folder to another user; anyone else gets the folders, owned by
    // themselves, and one EPERM line per folder.
    let faults: Vec<String> = lines(&tmpfiles)
        .into_iter()
        .filter(|line| as_root || !line.ends_with("failed: Operation not permitted"))
        .collect();
    assert!(faults.is_empty(), "{faults:#?}");
    assert!(
        !as_root || tmpfiles.status.success(),
        "tmpfiles exited with {}",
        tmpfiles.status
    );

    for (name, _) in UNITS {
        let text = unit_text(name);
        let [user_name] = directive(&text, "User")[..] else {
            panic!("{name}: one User=")
        };
        let [group_name] = directive(&text, "Group")[..] else {
            panic!("{name}: one Group=")
        };
        let uid = user(user_name)[2].clone();
        assert!(
            group
                .lines()
                .any(|line| line.split(':').next() == Some(group_name)),
            "{name}: rollcall.sysusers makes no group {group_name}"
        );
        let [state] = directive(&text, "StateDirectory")[..] else {
            panic!("{name}: one StateDirectory=")
        };
        let [mode] = directive(&text, "StateDirectoryMode")[..] else {
            panic!("{name}: one StateDirectoryMode=")
        };
        let folder = root.0.join("var/lib").join(state);
        let metadata = fs::metadata(&folder)
            .unwrap_or_else(|e| panic!("{name}: rollcall.tmpfiles made no /var/lib/{state}: {e}"));
        assert_eq!(
            format!("{:04o}", metadata.permissions().mode() & 0o7777),
            mode,
            "{name}: /var/lib/{state} from rollcall.tmpfiles"
        );
        if as_root {
            assert_eq!(
                metadata.uid().to_string(),
                uid,
                "{name}: /var/lib/{state} belongs to {user_name}"
            );
        }
    }
}
