//! The aarch64 build (issue 18, Jetson and other ARM boxes): `scripts/cross-aarch64` cross-builds
//! target/aarch64-unknown-linux-gnu/debug/edge-agent and fetches the aarch64 ONNX Runtime into
//! runtime/aarch64/; this test runs that binary under qemu-aarch64 and checks that it embeds the
//! same photos as the host's binary does (cosine >= 0.9999 for every vector), and that it really is
//! an aarch64 executable, so that a host build copied to the aarch64 path cannot pass. A missing
//! binary, library or qemu fails the test: a skipped check would ship a build nobody ran.
//!
//! Only on x86-64 Linux hosts, where the aarch64 binary is the cross-built one (scripts/test runs
//! `scripts/cross-aarch64 --profile debug` before the tests).
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TARGET: &str = "aarch64-unknown-linux-gnu";
/// Where Debian's libc6-dev-arm64-cross puts the aarch64 loader and libraries (qemu's `-L`).
const SYSROOT: &str = "/usr/aarch64-linux-gnu";
/// ELF `e_machine` of AArch64.
const EM_AARCH64: u16 = 0xB7;
const MIN_COSINE: f64 = 0.9999;
const FIX: &str = "run `scripts/cross-aarch64 --profile debug` first";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The photos: Abel_Pacheco's three in lfw-dev, the first one first. `../shared/faces` beside the
/// checkout, or `ROLLCALL_FACES`.
fn photos() -> Vec<PathBuf> {
    let faces = std::env::var_os("ROLLCALL_FACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/faces"));
    let dir = faces.join("lfw-dev/images/Abel_Pacheco");
    let photos: Vec<PathBuf> = ["0001", "0002", "0004"]
        .iter()
        .map(|n| dir.join(format!("Abel_Pacheco_{n}.jpg")))
        .collect();
    for photo in &photos {
        assert!(
            photo.is_file(),
            "{} is missing: the test needs the shared face photos",
            photo.display()
        );
    }
    photos
}

/// The aarch64 binary beside the host's: `<target dir>/aarch64-unknown-linux-gnu/debug/edge-agent`.
fn aarch64_binary() -> PathBuf {
    let host = Path::new(env!("CARGO_BIN_EXE_edge-agent"));
    let target_dir = host.parent().and_then(Path::parent).unwrap();
    target_dir.join(TARGET).join("debug/edge-agent")
}

/// Fails unless `path` is a 64-bit little-endian ELF file for AArch64.
fn assert_aarch64_elf(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "cannot read the aarch64 edge-agent {} ({e}): {FIX}",
            path.display()
        )
    });
    assert!(
        bytes.len() > 20 && bytes[..4] == *b"\x7fELF",
        "{} is not an ELF file: {FIX}",
        path.display()
    );
    assert_eq!(bytes[4], 2, "{} is not a 64-bit ELF file", path.display());
    assert_eq!(bytes[5], 1, "{} is not little-endian", path.display());
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    assert_eq!(
        machine,
        EM_AARCH64,
        "{} is built for ELF machine {machine:#x}, not AArch64 ({EM_AARCH64:#x}): {FIX}",
        path.display()
    );
}

/// Runs `embed --json` over `photos` and returns one vector per photo, in order, and the wall time.
fn embed(mut command: Command, photos: &[PathBuf], what: &str) -> (Vec<Vec<f64>>, Duration) {
    command
        .arg("embed")
        .arg("--json")
        .args(photos)
        .env("ROLLCALL_MODELS", repo().join("models"))
        .current_dir(repo());
    let start = Instant::now();
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run the {what} edge-agent ({command:?}): {e}; {FIX}"));
    let elapsed = start.elapsed();
    assert!(
        output.status.success(),
        "the {what} edge-agent failed ({}): {}\n{FIX}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let vectors: Vec<Vec<f64>> = stdout
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what}: not a JSON line ({e}): {line}"));
            value["embedding"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: no embedding in {line}"))
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(
        vectors.len(),
        photos.len(),
        "{what}: one vector per photo expected:\n{stdout}"
    );
    for v in &vectors {
        assert_eq!(v.len(), 512, "{what}: a 512-d embedding expected");
    }
    (vectors, elapsed)
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn aarch64_build_embeds_like_the_host_build() {
    let binary = aarch64_binary();
    assert!(
        binary.is_file(),
        "the aarch64 edge-agent {} is missing: {FIX}",
        binary.display()
    );
    assert_aarch64_elf(&binary);
    let library = repo().join("runtime/aarch64/libonnxruntime.so");
    assert!(
        library.is_file(),
        "the aarch64 ONNX Runtime {} is missing: {FIX}",
        library.display()
    );
    assert_aarch64_elf(&library);
    assert!(
        Path::new(SYSROOT)
            .join("lib/ld-linux-aarch64.so.1")
            .exists(),
        "the aarch64 sysroot {SYSROOT} (apt libc6-dev-arm64-cross) is missing: {FIX}"
    );

    let qemu = || {
        let mut command = Command::new("qemu-aarch64");
        command
            .arg("-L")
            .arg(SYSROOT)
            .arg(&binary)
            .env("ORT_DYLIB_PATH", &library);
        command
    };
    let native = || Command::new(env!("CARGO_BIN_EXE_edge-agent"));
    let photos = photos();

    // One photo, then several: the difference is the time per photo without the start-up (loading
    // ONNX Runtime and the models). The host runs the three photos ten times over, since one of its
    // photos takes a few milliseconds and the start-up's jitter would hide it.
    let (arm_one, arm_one_time) = embed(qemu(), &photos[..1], "aarch64 (qemu)");
    let (x86_one, x86_one_time) = embed(native(), &photos[..1], "x86-64");
    let (arm_all, arm_all_time) = embed(qemu(), &photos, "aarch64 (qemu)");
    let many: Vec<PathBuf> = photos
        .iter()
        .cycle()
        .take(10 * photos.len())
        .cloned()
        .collect();
    let (x86_all, x86_all_time) = embed(native(), &many, "x86-64");

    let first = cosine(&arm_one[0], &x86_one[0]);
    println!(
        "aarch64 vs x86-64, {}: cosine {first:.7}",
        photos[0].file_name().unwrap().to_string_lossy()
    );
    assert!(
        first >= MIN_COSINE,
        "the aarch64 embedding of {} differs from the host's: cosine {first} < {MIN_COSINE}",
        photos[0].display()
    );
    for ((photo, a), b) in photos.iter().zip(&arm_all).zip(&x86_all) {
        let c = cosine(a, b);
        println!(
            "aarch64 vs x86-64, {}: cosine {c:.7}",
            photo.file_name().unwrap().to_string_lossy()
        );
        assert!(
            c >= MIN_COSINE,
            "the aarch64 embedding of {} differs from the host's: cosine {c} < {MIN_COSINE}",
            photo.display()
        );
    }

    let per_photo = |one: Duration, all: Duration, count: usize| {
        all.saturating_sub(one).as_secs_f64() / (count - 1) as f64
    };
    let arm = per_photo(arm_one_time, arm_all_time, photos.len());
    let x86 = per_photo(x86_one_time, x86_all_time, many.len());
    println!(
        "aarch64 under qemu: {:.2} s for one photo (start-up included), {arm:.3} s per further photo",
        arm_one_time.as_secs_f64()
    );
    println!(
        "x86-64 native:      {:.2} s for one photo (start-up included), {x86:.3} s per further photo",
        x86_one_time.as_secs_f64()
    );
    if x86 > 0.0 {
        println!("qemu costs {:.0}x per photo", arm / x86);
    }
}
