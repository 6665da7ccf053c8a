//! Capture from streams OpenCV reads (cargo feature `opencv`; `scripts/test` builds it): a video
//! made here from `../shared/faces` photos is captured as `video:FILE`, through a GStreamer
//! pipeline (`gst:`), and from a real RTSP server (GStreamer's, on loopback), and the students in
//! it are marked present.
#![cfg(feature = "opencv")]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{edge_agent, names, ok};
use edge_agent::capture::{FrameSource, StreamSpec, VideoStream};

use serde_json::Value;

/// The test videos' frame rate.
const FPS: u64 = 10;
/// Each student's photo stays on screen this many frames of `FPS`: a burst's 5 frames, 400 ms
/// apart, then see each of the three.
const FRAMES_PER_PHOTO: usize = 8;

/// A box with four enrolled students of section c1.
fn enrolled_box(dir: &Path, students: &[common::Student]) -> PathBuf {
    let (roster, data) = (dir.join("roster"), dir.join("data"));
    std::fs::create_dir_all(&roster).unwrap();
    common::write_oneroster(&roster, students);
    ok(&data, &["roster", "import", roster.to_str().unwrap()]);
    for s in students {
        ok(&data, &["consent", &s.id, "grant", "--by", "guardian"]);
        ok(
            &data,
            &[
                "enroll",
                "--student",
                &s.id,
                s.enrol_photo.to_str().unwrap(),
            ],
        );
    }
    data
}

/// An MJPEG AVI at `FPS`, 640x480, showing each photo in turn for `FRAMES_PER_PHOTO` frames,
/// `rounds` times over, made by GStreamer from frames composed here.
fn make_video(dir: &Path, photos: &[&Path], rounds: usize) -> PathBuf {
    let frames = dir.join(format!("frames-{rounds}"));
    std::fs::create_dir_all(&frames).unwrap();
    let canvases: Vec<image::RgbImage> = photos
        .iter()
        .map(|photo| {
            let face = image::open(photo).unwrap().to_rgb8();
            let mut canvas = image::RgbImage::from_pixel(640, 480, image::Rgb([90, 90, 90]));
            let (x, y) = ((640 - face.width()) / 2, (480 - face.height()) / 2);
            image::imageops::overlay(&mut canvas, &face, x.into(), y.into());
            canvas
        })
        .collect();
    let mut n = 0;
    for canvas in canvases.iter().cycle().take(rounds * canvases.len()) {
        for _ in 0..FRAMES_PER_PHOTO {
            canvas.save(frames.join(format!("{n:03}.jpg"))).unwrap();
            n += 1;
        }
    }
    let video = dir.join(format!("class-{rounds}.avi"));
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args([
            "multifilesrc",
            &format!("location={}/%03d.jpg", frames.display()),
        ])
        .args(["index=0", &format!("stop-index={}", n - 1)])
        .arg(format!("caps=image/jpeg,framerate={FPS}/1"))
        .args([
            "!",
            "jpegdec",
            "!",
            "videoconvert",
            "!",
            "jpegenc",
            "!",
            "avimux",
        ])
        .args(["!", "filesink", &format!("location={}", video.display())])
        .status()
        .expect("gst-launch-1.0 (Debian gstreamer1.0-tools; scripts/test installs it)");
    assert!(status.success());
    video
}

/// `capture --source SOURCE`: who is present or waiting for review, and who is absent.
fn capture(data: &Path, source: &str) -> (Vec<String>, Vec<String>, Value) {
    let out = ok(
        data,
        &["capture", "--section", "c1", "--json", "--source", source],
    );
    let outcome: Value = serde_json::from_str(&out).unwrap();
    let mut seen = [names(&outcome["present"]), names(&outcome["review"])].concat();
    seen.sort();
    (seen, names(&outcome["absent"]), outcome)
}

struct RtspServer(Child);

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GStreamer's RTSP server (Debian gir1.2-gst-rtsp-server-1.0 and python3-gi) serving `video` at
/// `rtsp://127.0.0.1:PORT/path`.
fn rtsp_server(path: &str, video: &Path) -> (RtspServer, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rtsp_server.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(format!("/{path}={}", video.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| panic!("{line:?}"));
    (RtspServer(child), port)
}

#[test]
fn students_in_a_video_file_a_gstreamer_pipeline_and_an_rtsp_stream_are_marked() {
    let students = common::students(4);
    let dir = tempfile::tempdir().unwrap();
    let data = enrolled_box(dir.path(), &students);
    // Three of the four walk past the camera; the fourth stays home.
    let photos: Vec<&Path> = students[..3]
        .iter()
        .map(|s| s.class_photo.as_path())
        .collect();
    let video = make_video(dir.path(), &photos, 1);
    let mut in_class: Vec<String> = students[..3].iter().map(|s| s.id.clone()).collect();
    in_class.sort();
    let home = vec![students[3].id.clone()];

    let (seen, absent, outcome) = capture(&data, &format!("video:{}", video.display()));
    assert_eq!((&seen, &absent), (&in_class, &home), "{outcome}");

    // The same file through GStreamer: demuxed and decoded by the pipeline, BGR by the appsink
    // the capture appends.
    let pipeline = format!(
        "gst:filesrc location={} ! avidemux ! jpegdec",
        video.display()
    );
    let (seen, absent, outcome) = capture(&data, &pipeline);
    assert_eq!((&seen, &absent), (&in_class, &home), "{outcome}");

    // A live camera over RTSP plays in real time, and opening it (FFmpeg probes the stream, ~2 s
    // here) misses the stream's start: the camera shows the three in turn four times over, so the
    // burst's 1.6 s, frames 0.4 s apart, span all three 0.8 s turns wherever it starts.
    const ROUNDS: usize = 4;
    let lesson = make_video(dir.path(), &photos, ROUNDS);
    let lasts =
        Duration::from_millis(1000 * (ROUNDS * photos.len() * FRAMES_PER_PHOTO) as u64 / FPS);
    let (_server, port) = rtsp_server("lesson", &lesson);
    let url = format!("rtsp://127.0.0.1:{port}/lesson");
    let (seen, absent, outcome) = capture(&data, &url);
    assert_eq!((&seen, &absent), (&in_class, &home), "{outcome}");

    // The teacher screen keeps its source open between captures. A stream that ended meanwhile
    // (a camera that rebooted) is opened again by the next burst, once.
    let mut source = VideoStream::open(&StreamSpec::Rtsp(url)).unwrap();
    let opened = Instant::now();
    assert_eq!(source.grab(3).unwrap().len(), 3);
    assert_eq!(
        source.reopened(),
        0,
        "the first burst came from the first connection"
    );
    // The stream started playing before `open` returned, so it has ended `lasts` after.
    std::thread::sleep(
        (opened + lasts + Duration::from_millis(500)).saturating_duration_since(Instant::now()),
    );
    let started = Instant::now();
    let frames = source.grab(3).unwrap();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0].dimensions(), (640, 480));
    assert_eq!(
        source.reopened(),
        1,
        "the ended stream was opened again, once"
    );
    eprintln!("a burst across a reconnection: {:?}", started.elapsed());
}

#[test]
fn a_stream_that_cannot_be_opened_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = enrolled_box(dir.path(), &common::students(1));
    // A closed port (an RTSP camera switched off), a missing file, a pipeline GStreamer refuses,
    // and a password that must not reach the terminal.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    for (source, says) in [
        (
            format!("rtsp://admin:hunter2@127.0.0.1:{port}/live"),
            "rtsp://admin:***@127.0.0.1",
        ),
        ("video:/no/such/class.avi".to_owned(), "no such file"),
        ("gst:nosuchelement".to_owned(), "GStreamer could not start"),
    ] {
        let out = edge_agent(&data, &["capture", "--section", "c1", "--source", &source]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{source}: {stderr}");
        assert!(stderr.contains(says), "{source}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
