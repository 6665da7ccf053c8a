//! Where frames come from: image files, USB cameras and (with the cargo feature `opencv`) RTSP
//! cameras, GStreamer pipelines and video files, behind one `FrameSource`, named on the command
//! line as `--source images:DIR | camera[:INDEX] | rtsp://URL | gst:PIPELINE | video:FILE`.
//! Everything here hands the pipeline upright RGB frames.

#[cfg(feature = "camera")]
mod camera;
mod image_file;
mod image_files;
#[cfg(feature = "opencv")]
mod stream;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use image::RgbImage;

#[cfg(feature = "camera")]
pub use camera::Camera;
pub use image_file::{ImageLimits, ImageLoadError, decode_image, load_image};
pub use image_files::ImageFiles;
#[cfg(feature = "opencv")]
pub use stream::VideoStream;

/// Frames in a capture burst: ~2 s of a camera at the spacing `Camera` keeps between them.
pub const BURST_FRAMES: usize = 5;

/// Frames of a live burst are this far apart, so five of them span ~2 s and catch the faces that
/// a head or a hand hid in one of them. A video file is sampled at the same spacing of its own
/// time.
pub const BURST_SPACING: Duration = Duration::from_millis(400);

/// A read that returns sooner than this was served from a queue (the driver's buffers, FFmpeg's,
/// a socket's, an appsink's), not waited for from the camera.
const QUEUED_READ: Duration = Duration::from_millis(10);

/// The most time spent skipping queued frames before a burst.
const MAX_DRAIN: Duration = Duration::from_secs(1);

/// Skips the frames a live source queued while nobody read it, so that a burst shows the class as
/// it is now and not as it was when the last capture ended: reads until one read had to wait for
/// the camera (or for `MAX_DRAIN`), and returns what that read gave.
fn drain<T, E>(mut read: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let start = Instant::now();
    loop {
        let one = Instant::now();
        let frame = read()?;
        if one.elapsed() >= QUEUED_READ || start.elapsed() >= MAX_DRAIN {
            return Ok(frame);
        }
    }
}

/// A camera, or something that stands in for one: hands out bursts of frames.
///
/// Not `Send` on purpose: a camera handle belongs to the thread that opened it (V4L2 and its
/// peers are not thread-safe), so a long-running caller opens its source on its worker thread.
pub trait FrameSource {
    /// The next `n_frames` frames (at least one), taken as one burst.
    fn grab(&mut self, n_frames: usize) -> Result<Vec<RgbImage>, FrameSourceError>;
    /// What this source is, for the screen and the log: "camera 0 (HD Webcam)", "images:DIR".
    fn describe(&self) -> String;
}

#[derive(Debug, thiserror::Error)]
pub enum FrameSourceError {
    #[error(
        "no camera found: connect a USB camera (or pass --source images:DIR); attendance can still be marked by hand"
    )]
    NoCamera,
    #[error("camera {index}: {reason}; check the cable, or pass --source images:DIR")]
    Camera { index: u32, reason: String },
    #[error(
        "this edge-agent was built without camera support (cargo feature `camera`); pass --source images:DIR"
    )]
    CameraNotBuilt,
    #[error(
        "this edge-agent was built without OpenCV (cargo feature `opencv`): rtsp://, gst: and video: sources need it"
    )]
    StreamNotBuilt,
    #[error("{stream}: {reason}")]
    Stream { stream: String, reason: String },
    #[error("{dir}: {reason}")]
    ImageDir { dir: PathBuf, reason: String },
    #[error(transparent)]
    Image(#[from] ImageLoadError),
    #[error(
        "--source {0:?}: expected images:DIR, camera, camera:INDEX, rtsp://URL, gst:PIPELINE or video:FILE"
    )]
    BadSpec(String),
}

/// A `--source` value, parsed without touching any device or file (probing comes later, on the
/// thread that will own the source).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// Every JPEG/PNG file of a folder, in file name order, replayed as camera frames.
    Images(PathBuf),
    /// A USB (UVC) camera by index, 0 being the first.
    Camera(u32),
    /// A stream OpenCV reads (cargo feature `opencv`).
    Stream(StreamSpec),
}

/// The sources OpenCV opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamSpec {
    /// An IP camera's RTSP address, `rtsp://[USER:PASSWORD@]HOST[:PORT]/PATH` (or `rtsps://`).
    Rtsp(String),
    /// A GStreamer pipeline, e.g. a Jetson's CSI camera through `nvarguscamerasrc`; one without
    /// an `appsink` gets `videoconvert ! appsink` appended.
    Gst(String),
    /// A video file, sampled as a camera would be and replayed from the start after its end.
    Video(PathBuf),
}

/// How a stream is named on the screen and in the log: an RTSP password never shows.
impl std::fmt::Display for StreamSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamSpec::Rtsp(url) => f.write_str(&redact_password(url)),
            StreamSpec::Gst(pipeline) => write!(f, "gst:{pipeline}"),
            StreamSpec::Video(path) => write!(f, "video:{}", path.display()),
        }
    }
}

/// `rtsp://user:secret@host/x` as `rtsp://user:***@host/x`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

impl Default for SourceSpec {
    fn default() -> SourceSpec {
        SourceSpec::Camera(0)
    }
}

impl std::str::FromStr for SourceSpec {
    type Err = FrameSourceError;

    fn from_str(text: &str) -> Result<SourceSpec, FrameSourceError> {
        let bad = || FrameSourceError::BadSpec(text.to_owned());
        if let Some(dir) = text.strip_prefix("images:") {
            if dir.is_empty() {
                return Err(bad());
            }
            return Ok(SourceSpec::Images(PathBuf::from(dir)));
        }
        if text.starts_with("rtsp://") || text.starts_with("rtsps://") {
            return Ok(SourceSpec::Stream(StreamSpec::Rtsp(text.to_owned())));
        }
        if let Some(pipeline) = text.strip_prefix("gst:") {
            if pipeline.trim().is_empty() {
                return Err(bad());
            }
            return Ok(SourceSpec::Stream(StreamSpec::Gst(
                pipeline.trim().to_owned(),
            )));
        }
        if let Some(file) = text.strip_prefix("video:") {
            if file.is_empty() {
                return Err(bad());
            }
            return Ok(SourceSpec::Stream(StreamSpec::Video(PathBuf::from(file))));
        }
        match text.split_once(':') {
            None if text == "camera" => Ok(SourceSpec::Camera(0)),
            Some(("camera", index)) => index.parse().map(SourceSpec::Camera).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl SourceSpec {
    /// Opens the source: lists the folder, or finds and opens the camera.
    pub fn open(&self) -> Result<Box<dyn FrameSource>, FrameSourceError> {
        match self {
            SourceSpec::Images(dir) => Ok(Box::new(ImageFiles::from_dir(dir)?)),
            #[cfg(feature = "camera")]
            SourceSpec::Camera(index) => Ok(Box::new(Camera::open(*index)?)),
            #[cfg(not(feature = "camera"))]
            SourceSpec::Camera(_) => Err(FrameSourceError::CameraNotBuilt),
            #[cfg(feature = "opencv")]
            SourceSpec::Stream(spec) => Ok(Box::new(VideoStream::open(spec)?)),
            #[cfg(not(feature = "opencv"))]
            SourceSpec::Stream(_) => Err(FrameSourceError::StreamNotBuilt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs() {
        let parse = |s: &str| s.parse::<SourceSpec>();
        assert_eq!(
            parse("images:/tmp/x").unwrap(),
            SourceSpec::Images("/tmp/x".into())
        );
        assert_eq!(parse("camera").unwrap(), SourceSpec::Camera(0));
        assert_eq!(parse("camera:2").unwrap(), SourceSpec::Camera(2));
        assert_eq!(
            parse("rtsp://cam/1").unwrap(),
            SourceSpec::Stream(StreamSpec::Rtsp("rtsp://cam/1".into()))
        );
        assert_eq!(
            parse("gst: videotestsrc ").unwrap(),
            SourceSpec::Stream(StreamSpec::Gst("videotestsrc".into()))
        );
        assert_eq!(
            parse("video:/tmp/a.avi").unwrap(),
            SourceSpec::Stream(StreamSpec::Video("/tmp/a.avi".into()))
        );
        for bad in [
            "",
            "images:",
            "camera:x",
            "video:",
            "gst: ",
            "http://cam/1",
            "/tmp/x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_rtsp_password_never_shows() {
        let shown = |url: &str| StreamSpec::Rtsp(url.into()).to_string();
        assert_eq!(
            shown("rtsp://admin:s3cr@t@10.0.0.5:554/live?ch=1"),
            "rtsp://admin:***@10.0.0.5:554/live?ch=1"
        );
        assert_eq!(shown("rtsp://cam/a@b"), "rtsp://cam/a@b");
        assert_eq!(shown("rtsp://viewer@cam/1"), "rtsp://viewer@cam/1");
    }

    #[test]
    fn a_burst_starts_after_the_queued_frames() {
        // Five frames queued, then the camera's pace.
        let mut n = 0;
        let first = drain(|| {
            n += 1;
            if n > 5 {
                std::thread::sleep(Duration::from_millis(15));
            }
            Ok::<_, ()>(n)
        });
        assert_eq!(first, Ok(6));
        // A source that never waits (a file, a fast queue) is read for at most MAX_DRAIN.
        let start = Instant::now();
        assert!(drain(|| Ok::<_, ()>(())).is_ok());
        assert!(start.elapsed() < MAX_DRAIN + Duration::from_millis(500));
        // A read that fails ends the drain with its error.
        assert_eq!(drain(|| Err::<(), _>("gone")), Err("gone"));
    }

    #[cfg(not(feature = "opencv"))]
    #[test]
    fn streams_need_opencv() {
        let spec: SourceSpec = "video:/tmp/a.avi".parse().unwrap();
        assert!(matches!(spec.open(), Err(FrameSourceError::StreamNotBuilt)));
    }
}
