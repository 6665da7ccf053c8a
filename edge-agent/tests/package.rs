//! The Debian packages (issue 18): `scripts/package` lays out rollcall-edge and rollcall-server
//! from the build these tests run on, each holds what systemd/README.md says it installs, lintian
//! finds no error in either, and the packages unpacked into an empty root run on their own files:
//! edge-agent embeds a face with the packaged ONNX Runtime and models from a working directory
//! outside the checkout, and sync-server accepts the packaged configuration. Run as root, dpkg
//! installs and purges both into an empty root (`dpkg --root`, maintainer scripts included, run
//! chrootless with DPKG_ROOT as for a cross-built image) and the users, folders and the
//! configuration's owner come out as the units need them.
//!
//! Needs dpkg-deb (every Debian machine) and lintian (`apt-get install lintian`; scripts/test
//! installs it). A missing tool fails the test: a skipped check would pass packages nobody checked.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The build folder of these tests (`target/debug`), where edge-agent and sync-server are.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_edge-agent"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs a command to its end with no input; a program that cannot start fails the test, naming
/// the Debian package that has it.
fn run(command: &mut Command, package: &str) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    command.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {program}: {e}; this test needs it (Debian package `{package}`; \
                 scripts/test installs what the tests need)"
        )
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Panics with everything the command printed unless it succeeded.
fn succeeded(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn dpkg_deb<S: AsRef<OsStr>>(args: &[S]) -> String {
    let output = run(Command::new("dpkg-deb").args(args), "dpkg");
    succeeded(&output, "dpkg-deb");
    text(&output.stdout)
}

/// A temporary folder that is not inside the checkout, so that nothing run in it or from it can
/// find the checkout's runtime/ and models/ by looking upwards.
fn outside_checkout(purpose: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("rollcall-package-{purpose}-"))
        .tempdir()
        .unwrap();
    let checkout = checkout().canonicalize().unwrap();
    assert!(
        !dir.path().canonicalize().unwrap().starts_with(&checkout),
        "{} is inside the checkout ({}): point TMPDIR elsewhere, or the unpacked edge-agent finds \
         the checkout's runtime/ and models/ instead of its own",
        dir.path().display(),
        checkout.display()
    );
    dir
}

/// The first photo of the first person in the shared LFW development set.
fn photo() -> PathBuf {
    let faces = std::env::var_os("ROLLCALL_FACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| checkout().join("../shared/faces"));
    let images = faces.join("lfw-dev/images");
    let mut people: Vec<PathBuf> = fs::read_dir(&images)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; the test needs the shared photos",
                images.display()
            )
        })
        .map(|entry| entry.unwrap().path())
        .collect();
    people.sort();
    people
        .iter()
        .find_map(|dir| {
            let name = dir.file_name()?.to_str()?;
            let photo = dir.join(format!("{name}_0001.jpg"));
            photo.is_file().then_some(photo)
        })
        .unwrap_or_else(|| panic!("no <Name>/<Name>_0001.jpg in {}", images.display()))
        .canonicalize()
        .unwrap()
}

/// What the package holds: `dpkg-deb -c`'s lines as (mode and type, path without the leading
/// dot).
fn contents(deb: &Path) -> Vec<(String, String)> {
    dpkg_deb(&[OsStr::new("--contents"), deb.as_os_str()])
        .lines()
        .filter_map(|line| {
            let mode = line.split_whitespace().next()?.to_owned();
            let path = line.split_whitespace().nth(5)?;
            Some((mode, path.trim_start_matches('.').to_owned()))
        })
        .collect()
}

fn assert_regular_file(listing: &[(String, String)], path: &str, deb: &Path) {
    let entry = listing.iter().find(|(_, p)| p == path);
    match entry {
        Some((mode, _)) => assert!(
            mode.starts_with('-'),
            "{path} in {} is not a regular file ({mode}): the package must hold the file itself",
            deb.display()
        ),
        None => panic!(
            "{} holds no {path}; it holds:\n{}",
            deb.display(),
            listing
                .iter()
                .map(|(m, p)| format!("{m} {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

#[test]
fn packages_run_from_an_empty_root_and_pass_lintian() {
    let bin_dir = bin_dir();
    let server = bin_dir.join("sync-server");
    assert!(
        server.is_file(),
        "{} is missing: the packages hold both programs; build it with `cargo build -p sync-server` \
         first (scripts/test's `cargo test --workspace` does)",
        server.display()
    );
    // target/debug or target/release: package the build these tests run on, without building.
    let profile = if bin_dir.file_name() == Some(OsStr::new("release")) {
        "release"
    } else {
        "debug"
    };
    let arch = text(&run(Command::new("dpkg").arg("--print-architecture"), "dpkg").stdout)
        .trim()
        .to_owned();

    // 1. The packages.
    let out = outside_checkout("out");
    let started = Instant::now();
    let output = run(
        Command::new(checkout().join("scripts/package"))
            .args(["--profile", profile, "--no-build", "--out"])
            .arg(out.path())
            .env("CARGO_TARGET_DIR", bin_dir.parent().unwrap())
            .current_dir(checkout()),
        "dpkg-dev",
    );
    succeeded(&output, "scripts/package");
    println!(
        "scripts/package --profile {profile} --no-build: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let debs: Vec<PathBuf> = text(&output.stdout).lines().map(PathBuf::from).collect();
    let find = |package: &str| -> PathBuf {
        debs.iter()
            .find(|deb| {
                let name = deb.file_name().unwrap().to_string_lossy();
                name.starts_with(&format!("{package}_")) && name.ends_with(&format!("_{arch}.deb"))
            })
            .unwrap_or_else(|| panic!("scripts/package made no {package}_*_{arch}.deb: {debs:?}"))
            .clone()
    };
    let edge_deb = find("rollcall-edge");
    let server_deb = find("rollcall-server");
    for deb in [&edge_deb, &server_deb] {
        assert!(
            deb.is_file(),
            "{} was printed but not written",
            deb.display()
        );
    }

    // 2. What each holds.
    let edge = contents(&edge_deb);
    for path in [
        "/usr/bin/edge-agent",
        "/usr/lib/rollcall/libonnxruntime.so",
        "/usr/share/rollcall/models/manifest.toml",
        "/usr/share/rollcall/models/retinaface_mnet025.onnx",
        "/usr/share/rollcall/models/fr_feature.onnx",
        "/usr/share/rollcall/models/fr_liveness.onnx",
        "/usr/lib/systemd/system/rollcall-edge.service",
        "/usr/lib/systemd/system/rollcall-screen.service",
        "/usr/lib/sysusers.d/rollcall.conf",
        "/usr/lib/tmpfiles.d/rollcall.conf",
        "/usr/share/doc/rollcall-edge/copyright",
        "/usr/share/doc/rollcall-edge/changelog.Debian.gz",
    ] {
        assert_regular_file(&edge, path, &edge_deb);
    }
    let server_listing = contents(&server_deb);
    for path in [
        "/usr/bin/sync-server",
        "/etc/rollcall/sync-server.toml",
        "/usr/lib/systemd/system/rollcall-server.service",
        "/usr/lib/sysusers.d/rollcall-server.conf",
        "/usr/lib/tmpfiles.d/rollcall-server.conf",
        "/usr/share/doc/rollcall-server/copyright",
        "/usr/share/doc/rollcall-server/changelog.Debian.gz",
    ] {
        assert_regular_file(&server_listing, path, &server_deb);
    }
    // Both may be installed on one machine: no file in both.
    for (_, path) in edge.iter().filter(|(mode, _)| !mode.starts_with('d')) {
        assert!(
            !server_listing.iter().any(|(_, p)| p == path),
            "{path} is in both packages; dpkg refuses to install the second"
        );
    }
    let conffiles = dpkg_deb(&[
        OsStr::new("--info"),
        server_deb.as_os_str(),
        OsStr::new("conffiles"),
    ]);
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        ["/etc/rollcall/sync-server.toml"],
        "rollcall-server's conffiles"
    );
    for deb in [&edge_deb, &server_deb] {
        let info = dpkg_deb(&[OsStr::new("--info"), deb.as_os_str()]);
        for member in ["control", "md5sums", "postinst", "prerm", "postrm"] {
            // " 1988 bytes,    44 lines   *  postinst   #!/bin/sh"
            assert!(
                info.lines().any(|line| line.contains(" bytes,")
                    && line.split_whitespace().any(|word| word == member)),
                "{} has no DEBIAN/{member}:\n{info}",
                deb.display()
            );
        }
        let depends = dpkg_deb(&[
            OsStr::new("--field"),
            deb.as_os_str(),
            OsStr::new("Depends"),
        ]);
        assert!(
            depends.contains("libc6"),
            "{}: Depends has no libc6: {depends}",
            deb.display()
        );
    }

    // 3. Unpacked into an empty root, run from a folder outside the checkout.
    let root = outside_checkout("root");
    for deb in [&edge_deb, &server_deb] {
        dpkg_deb(&[
            OsStr::new("--extract"),
            deb.as_os_str(),
            root.path().as_os_str(),
        ]);
    }
    let root = root.path().canonicalize().unwrap();
    let elsewhere = outside_checkout("cwd");
    let data = outside_checkout("data");
    let agent = root.join("usr/bin/edge-agent");
    let embed = |agent: &Path| {
        let mut command = Command::new(agent);
        command
            .arg("--data-dir")
            .arg(data.path())
            .args(["embed", "--json", "--pick", "central"])
            .arg(photo())
            .current_dir(elsewhere.path())
            // Nothing may point it at the checkout's files; LD_DEBUG=files has the dynamic
            // loader say which ONNX Runtime it loads.
            .env_remove("ORT_DYLIB_PATH")
            .env_remove("ROLLCALL_MODELS")
            .env_remove("ROLLCALL_DATA")
            .env_remove("LD_LIBRARY_PATH")
            .env("LD_DEBUG", "files");
        run(&mut command, "rollcall-edge")
    };
    let started = Instant::now();
    let output = embed(&agent);
    println!(
        "unpacked edge-agent embed: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    succeeded(&output, "the unpacked edge-agent embed");
    let stdout = text(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| panic!("embed --json printed no JSON line:\n{stdout}"));
    let value: serde_json::Value = serde_json::from_str(line).unwrap();
    let embedding: Vec<f64> = value["embedding"]
        .as_array()
        .unwrap_or_else(|| panic!("no embedding in {line}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(embedding.len(), 512, "embedding length in {line}");
    let norm = embedding.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!(
        (norm - 1.0).abs() < 1e-3,
        "the embedding's norm is {norm}, not 1"
    );
    assert!(
        value["model"]
            .as_str()
            .is_some_and(|m| m.starts_with("fr_feature@")),
        "embed's model: {}",
        value["model"]
    );
    let stderr = text(&output.stderr);
    let packaged_library = root.join("usr/lib/rollcall/libonnxruntime.so");
    let loaded: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("libonnxruntime") && line.contains("file="))
        .collect();
    assert!(
        !loaded.is_empty()
            && loaded
                .iter()
                .all(|line| line.contains(&*packaged_library.to_string_lossy())),
        "the unpacked edge-agent did not load the packaged {}; the loader says:\n{}",
        packaged_library.display(),
        loaded.join("\n")
    );
    // The models: without the packaged ones the same command finds none (unless this machine has
    // rollcall-edge installed, whose models would then be found).
    if !Path::new("/usr/share/rollcall/models").exists() {
        let models = root.join("usr/share/rollcall/models");
        let aside = root.join("usr/share/rollcall/models-aside");
        fs::rename(&models, &aside).unwrap();
        let output = embed(&agent);
        fs::rename(&aside, &models).unwrap();
        assert!(
            !output.status.success(),
            "edge-agent embedded a face without the packaged models: it found others\n{}",
            text(&output.stdout)
        );
    }

    // The doctor names the packaged runtime's version, which the library reports itself: the
    // package names the file plain libonnxruntime.so.
    let linked = fs::read_link(checkout().join("runtime/libonnxruntime.so")).unwrap();
    let version = linked
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.strip_prefix("libonnxruntime.so."))
        .unwrap_or_else(|| panic!("runtime/libonnxruntime.so links to {}", linked.display()))
        .to_owned();
    let output = run(
        Command::new(&agent)
            .arg("--data-dir")
            .arg(data.path())
            .arg("doctor")
            .current_dir(elsewhere.path())
            .env_remove("ORT_DYLIB_PATH")
            .env_remove("ROLLCALL_MODELS"),
        "rollcall-edge",
    );
    let said = text(&output.stdout);
    let runtime = said
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some("runtime"))
        .unwrap_or_else(|| panic!("doctor printed no runtime line:\n{said}"));
    assert!(
        runtime.starts_with("ok")
            && runtime.contains(&format!("ONNX Runtime {version} (libonnxruntime.so,")),
        "{runtime}"
    );

    let output = run(
        Command::new(root.join("usr/bin/sync-server"))
            .arg("check-config")
            .arg("--config")
            .arg(root.join("etc/rollcall/sync-server.toml"))
            .current_dir(elsewhere.path())
            .env_remove("ROLLCALL_SERVER_LISTEN")
            .env_remove("ROLLCALL_SERVER_DATA_DIR")
            .env_remove("ROLLCALL_MONGODB_URI")
            .env_remove("ROLLCALL_MONGODB_DATABASE"),
        "rollcall-server",
    );
    succeeded(
        &output,
        "sync-server check-config on the packaged sync-server.toml",
    );
    let said = text(&output.stdout);
    assert!(
        said.starts_with("ok: listen 127.0.0.1:8440"),
        "check-config said: {said}"
    );
    println!("packaged sync-server.toml: {}", said.trim());

    // 4. lintian: no error (E:) in either package. Warnings are printed, not failed. Not
    // --show-overrides: with it, lintian 2.116 exits 2 for an overridden error.
    let started = Instant::now();
    let output = run(
        Command::new("lintian")
            .args(["--tag-display-limit", "0"])
            .arg(&edge_deb)
            .arg(&server_deb),
        "lintian",
    );
    println!("lintian: {:.1} s", started.elapsed().as_secs_f64());
    let report = format!("{}{}", text(&output.stdout), text(&output.stderr));
    println!("--- lintian\n{report}---");
    let errors: Vec<&str> = report
        .lines()
        .filter(|line| line.starts_with("E: "))
        .collect();
    assert!(
        errors.is_empty(),
        "lintian found errors:\n{}",
        errors.join("\n")
    );
    assert!(
        output.status.success(),
        "lintian exited with {} and no E: line:\n{report}",
        output.status
    );

    // 5. dpkg itself, maintainer scripts included, into an empty root. Only root may install
    // files owned by other users, so a test run by anyone else stops here.
    let target = outside_checkout("dpkg-root");
    let droot = target.path();
    if fs::metadata(droot).unwrap().uid() != 0 {
        println!("not root: dpkg --root (the maintainer scripts) not tried");
        return;
    }
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/log",
        "etc",
    ] {
        fs::create_dir_all(droot.join(dir)).unwrap();
    }
    fs::write(droot.join("var/lib/dpkg/status"), "").unwrap();
    // What base-passwd gives every Debian system: root, and the camera's group.
    fs::write(droot.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(droot.join("etc/group"), "root:x:0:\nvideo:x:44:\n").unwrap();
    let dpkg = |args: &[&OsStr]| {
        let mut command = Command::new("dpkg");
        command
            .arg(format!("--root={}", droot.display()))
            .arg(format!(
                "--log={}",
                droot.join("var/log/dpkg.log").display()
            ))
            // The root has no libc6 or systemd package; the scripts run on this machine with
            // DPKG_ROOT set, as they do for an image built from outside.
            .args(["--force-depends", "--force-script-chrootless"])
            .args(args);
        let output = run(&mut command, "dpkg");
        succeeded(&output, &format!("dpkg {args:?}"));
    };
    let started = Instant::now();
    dpkg(&[
        OsStr::new("--install"),
        edge_deb.as_os_str(),
        server_deb.as_os_str(),
    ]);
    println!("dpkg --install: {:.1} s", started.elapsed().as_secs_f64());
    let passwd = fs::read_to_string(droot.join("etc/passwd")).unwrap();
    let group = fs::read_to_string(droot.join("etc/group")).unwrap();
    let id = |file: &str, name: &str| -> u32 {
        file.lines()
            .find(|line| line.split(':').next() == Some(name))
            .and_then(|line| line.split(':').nth(2)?.parse().ok())
            .unwrap_or_else(|| panic!("the postinst made no {name}:\n{file}"))
    };
    for (user, home) in [
        ("rollcall", "/var/lib/rollcall"),
        ("rollcall-server", "/var/lib/rollcall-server"),
    ] {
        let line = passwd
            .lines()
            .find(|line| line.starts_with(&format!("{user}:")))
            .unwrap_or_else(|| panic!("the postinst made no user {user}:\n{passwd}"));
        assert!(
            line.ends_with(&format!(":{home}:/usr/sbin/nologin")),
            "{line}: no login shell, home {home}"
        );
        let folder = fs::metadata(droot.join(&home[1..]))
            .unwrap_or_else(|e| panic!("the postinst made no {home}: {e}"));
        assert_eq!(
            (
                folder.uid(),
                folder.gid(),
                folder.permissions().mode() & 0o7777
            ),
            (id(&passwd, user), id(&group, user), 0o700),
            "{home}: owner, group, mode"
        );
    }
    let config = fs::metadata(droot.join("etc/rollcall/sync-server.toml")).unwrap();
    assert_eq!(
        (
            config.uid(),
            config.gid(),
            config.permissions().mode() & 0o7777
        ),
        (0, id(&group, "rollcall-server"), 0o640),
        "/etc/rollcall/sync-server.toml: root:rollcall-server 0640, since it may hold passwords"
    );
    dpkg(&[
        OsStr::new("--purge"),
        OsStr::new("rollcall-edge"),
        OsStr::new("rollcall-server"),
    ]);
    assert!(
        !droot.join("usr/bin/edge-agent").exists()
            && !droot.join("etc/rollcall/sync-server.toml").exists(),
        "purge left the programs or the conffile"
    );
    // The box's and the server's data outlive the packages: attendance not yet synced is there.
    for home in ["var/lib/rollcall", "var/lib/rollcall-server"] {
        assert!(droot.join(home).is_dir(), "purge removed /{home}");
    }
}
