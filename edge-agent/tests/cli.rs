//! The `edge-agent` binary as a user meets it: JSON lines, bad input, missing setup.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{faces_dir, png_header_only};
use serde_json::Value;

fn edge_agent(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edge-agent"));
    command
        .args(args)
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("ROLLCALL_MODELS");
    command
}

/// Runs the command and checks that it never panicked, whatever it was given.
fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_ne!(output.status.code(), Some(101), "{stderr}");
    output
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn lfw(name: &str) -> PathBuf {
    let person = name.rsplit_once('_').unwrap().0;
    faces_dir().join("lfw-dev/images").join(person).join(name)
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn embed_json_gives_one_line_per_image() {
    let a = lfw("Abel_Pacheco_0001.jpg");
    let b = lfw("Abel_Pacheco_0004.jpg");
    let output = run(&mut edge_agent(&[
        "embed",
        "--json",
        path_str(&a),
        path_str(&b),
    ]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 2);
    for (line, path) in lines.iter().zip([&a, &b]) {
        assert_eq!(line["image"], path_str(path));
        assert_eq!(line["model"], "fr_feature@f79ab88dd853");
        assert_eq!(line["space"], "fr_feature-v1");
        let vector: Vec<f64> = line["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(vector.len(), 512);
        let norm: f64 = vector.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    }
}

#[test]
fn detect_json_reports_boxes_landmarks_and_quality_in_original_pixels() {
    let photo = faces_dir().join("groups/2008_001009.jpg");
    let dir = tempfile::tempdir().unwrap();
    let annotated = dir.path().join("out.png");
    let output = run(&mut edge_agent(&[
        "detect",
        "--json",
        "--annotate",
        path_str(&annotated),
        path_str(&photo),
    ]));
    assert!(output.status.success());
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(
        (line["width"].as_u64(), line["height"].as_u64()),
        (Some(360), Some(480))
    );
    let faces = line["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 2);
    for face in faces {
        assert_eq!(face["box"].as_array().unwrap().len(), 4);
        assert_eq!(face["landmarks"].as_array().unwrap().len(), 5);
        let quality = &face["quality"];
        for key in [
            "box_width",
            "box_height",
            "eye_distance",
            "sharpness",
            "yaw_degrees",
            "liveness",
        ] {
            assert!(quality[key].is_number(), "{key} missing in {quality}");
        }
    }
    let drawn = image::open(&annotated).unwrap();
    assert_eq!((drawn.width(), drawn.height()), (360, 480));
}

#[test]
fn compare_says_same_and_different() {
    let same = run(&mut edge_agent(&[
        "compare",
        path_str(&lfw("Abel_Pacheco_0001.jpg")),
        path_str(&lfw("Abel_Pacheco_0004.jpg")),
    ]));
    let text = String::from_utf8(same.stdout).unwrap();
    assert!(text.contains(": same person"), "{text}");
    let pairs = std::fs::read_to_string(faces_dir().join("lfw-dev/pairs.tsv")).unwrap();
    let different: Vec<&str> = pairs
        .lines()
        .find(|l| l.starts_with("1\t0\t"))
        .unwrap()
        .split('\t')
        .collect();
    let images = faces_dir().join("lfw-dev/images");
    let other = run(&mut edge_agent(&[
        "compare",
        path_str(&images.join(different[2])),
        path_str(&images.join(different[3])),
    ]));
    let text = String::from_utf8(other.stdout).unwrap();
    assert!(text.contains(": different people"), "{text}");
}

/// Each bad input gets its own error code and a message; nothing panics; good files in the same
/// call still get their answer.
#[test]
fn bad_images_get_specific_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let good = std::fs::read(lfw("Abel_Pacheco_0001.jpg")).unwrap();
    let empty = write("empty.jpg", b"");
    let truncated = write("truncated.jpg", &good[..good.len() / 3]);
    let text = write(
        "notes.jpg",
        b"this is not an image, just text that someone named .jpg\n",
    );
    let giant = write("giant.png", &png_header_only(20_000, 20_000));
    let tiny = dir.path().join("tiny.png");
    image::RgbImage::new(1, 1).save(&tiny).unwrap();
    let missing = dir.path().join("missing.jpg");
    let blank = dir.path().join("blank.png");
    image::RgbImage::from_pixel(200, 200, image::Rgb([120, 130, 140]))
        .save(&blank)
        .unwrap();
    let group = faces_dir().join("groups/2008_001322.jpg");
    let blurry = dir.path().join("blurry.png");
    image::imageops::blur(
        &image::open(lfw("Abel_Pacheco_0001.jpg")).unwrap().to_rgb8(),
        2.5,
    )
    .save(&blurry)
    .unwrap();
    let small = dir.path().join("small.png");
    image::imageops::resize(
        &image::open(lfw("Abel_Pacheco_0001.jpg")).unwrap().to_rgb8(),
        60,
        60,
        image::imageops::FilterType::Triangle,
    )
    .save(&small)
    .unwrap();

    let cases: Vec<(&PathBuf, &[&str])> = vec![
        (&empty, &["undecodable_image"]),
        // A truncated JPEG may decode as a partly grey picture: either refusal is fine, silence is not.
        (
            &truncated,
            &["undecodable_image", "no_face", "face_too_blurry"],
        ),
        (&text, &["undecodable_image"]),
        (&giant, &["image_too_large"]),
        (&tiny, &["image_too_small"]),
        (&missing, &["unreadable"]),
        (&blank, &["no_face"]),
        (&group, &["several_faces"]),
        (&blurry, &["face_too_blurry"]),
        (&small, &["face_too_small"]),
    ];
    let mut args = vec!["embed", "--json"];
    args.extend(cases.iter().map(|(p, _)| path_str(p)));
    let good_path = lfw("Abel_Pacheco_0001.jpg");
    args.push(path_str(&good_path));
    let output = run(&mut edge_agent(&args));
    assert_eq!(
        output.status.code(),
        Some(1),
        "some images failed, so the exit status says so"
    );
    let lines = json_lines(&output);
    assert_eq!(lines.len(), cases.len() + 1);
    for (path, codes) in &cases {
        let line = lines
            .iter()
            .find(|l| l["image"] == path_str(path))
            .unwrap_or_else(|| panic!("no line for {}", path.display()));
        let code = line["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{} gave no error: {line}", path.display()));
        assert!(
            codes.contains(&code),
            "{}: {code} ({})",
            path.display(),
            line["message"]
        );
        assert!(
            line["message"].as_str().unwrap().contains(path_str(path)),
            "message names the file: {line}"
        );
    }
    assert!(
        lines.last().unwrap()["embedding"].is_array(),
        "the good photo after the bad ones is still embedded"
    );
}

/// Grey and RGBA PNGs are converted, not refused.
#[test]
fn grey_and_rgba_pngs_work() {
    let dir = tempfile::tempdir().unwrap();
    let photo = image::open(lfw("Abel_Pacheco_0001.jpg")).unwrap();
    let grey = dir.path().join("grey.png");
    let rgba = dir.path().join("rgba.png");
    photo.to_luma8().save(&grey).unwrap();
    photo.to_rgba8().save(&rgba).unwrap();
    let output = run(&mut edge_agent(&[
        "embed",
        "--json",
        path_str(&grey),
        path_str(&rgba),
    ]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        json_lines(&output)
            .iter()
            .all(|l| l["embedding"].is_array())
    );
}

/// A missing runtime or model, or a model whose bytes changed, is one line naming the fix.
#[test]
fn missing_setup_is_one_line_naming_the_fix() {
    let photo = lfw("Abel_Pacheco_0001.jpg");
    let no_runtime = run(edge_agent(&["embed", path_str(&photo)])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so"));
    let dir = tempfile::tempdir().unwrap();
    let no_models = run(&mut edge_agent(&[
        "embed",
        "--models",
        path_str(dir.path()),
        path_str(&photo),
    ]));
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    for file in [
        "retinaface_mnet025.onnx",
        "fr_feature.onnx",
        "fr_liveness.onnx",
    ] {
        std::fs::copy(models.join(file), dir.path().join(file)).unwrap();
    }
    let mut tampered = std::fs::read(dir.path().join("fr_feature.onnx")).unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    std::fs::write(dir.path().join("fr_feature.onnx"), tampered).unwrap();
    let bad_model = run(&mut edge_agent(&[
        "embed",
        "--models",
        path_str(dir.path()),
        path_str(&photo),
    ]));
    for (output, expect) in [
        (no_runtime, "ONNX Runtime"),
        (no_models, "cannot be read"),
        (bad_model, "sha256"),
    ] {
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(expect) && stderr.contains("scripts/setup"),
            "{stderr}"
        );
    }
}

/// A camera that stores its pixels sideways and says so in EXIF: faces come back in the upright
/// picture's pixels.
#[test]
fn exif_orientation_is_honoured() {
    let upright = image::open(faces_dir().join("groups/2008_001009.jpg"))
        .unwrap()
        .to_rgb8();
    let stored = image::imageops::rotate270(&upright);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(&stored)
        .unwrap();
    // APP1 "Exif": big-endian TIFF, one IFD entry: Orientation (0x0112) = 6, "rotate 90° clockwise to view".
    let mut app1 = vec![0xff, 0xe1, 0x00, 34];
    app1.extend(b"Exif\0\0MM\0\x2a\0\0\0\x08");
    app1.extend([
        0x00, 0x01, 0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00,
    ]);
    app1.extend([0x00, 0x00, 0x00, 0x00]);
    jpeg.splice(2..2, app1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sideways.jpg");
    std::fs::write(&path, jpeg).unwrap();

    let output = run(&mut edge_agent(&["detect", "--json", path_str(&path)]));
    let line = &json_lines(&output)[0];
    assert_eq!(
        (line["width"].as_u64(), line["height"].as_u64()),
        (Some(360), Some(480)),
        "{line}"
    );
    assert_eq!(line["faces"].as_array().unwrap().len(), 2);
}

/// Two photos of one name make one person with two templates (a regression: the matrix was once
/// indexed by photo, naming the wrong person or panicking).
#[test]
fn identify_counts_several_photos_of_a_name_as_one_person() {
    let abel = |n: &str| {
        format!(
            "Abel_Pacheco={}",
            path_str(&lfw(&format!("Abel_Pacheco_{n}.jpg")))
        )
    };
    let akhmed = format!(
        "Akhmed_Zakayev={}",
        path_str(&lfw("Akhmed_Zakayev_0001.jpg"))
    );
    let probes = [lfw("Akhmed_Zakayev_0003.jpg"), lfw("Abel_Pacheco_0004.jpg")];
    let output = run(&mut edge_agent(&[
        "identify",
        "--enrol",
        &abel("0001"),
        "--enrol",
        &abel("0002"),
        "--enrol",
        &akhmed,
        path_str(&probes[0]),
        path_str(&probes[1]),
    ]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("enrolled 2 people from 3 photos"),
        "{text}"
    );
    assert!(lines[1].contains("found Akhmed_Zakayev ("), "{text}");
    assert!(lines[2].contains("found Abel_Pacheco ("), "{text}");
}

/// `[vision] provider` holds for every command that loads models: asking for CUDA on a CPU-only
/// runtime still detects, on the CPU, and says so.
#[test]
fn a_missing_gpu_provider_falls_back_to_the_cpu_for_cli_commands() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("edge-agent.toml"),
        "[vision]\nprovider = \"cuda\"\n",
    )
    .unwrap();
    let output = run(&mut edge_agent(&[
        "--data-dir",
        path_str(dir.path()),
        "detect",
        "--json",
        path_str(&lfw("Abel_Pacheco_0001.jpg")),
    ]));
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(json_lines(&output)[0]["faces"].as_array().unwrap().len(), 1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("has no cuda execution provider: inference runs on the CPU"),
        "{stderr}"
    );
}
