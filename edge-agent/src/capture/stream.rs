//! Streams through OpenCV (cargo feature `opencv`): RTSP cameras, GStreamer pipelines (a Jetson's
//! CSI camera through `nvarguscamerasrc`) and video files.

use std::time::{Duration, Instant};

use image::RgbImage;
use opencv::core::{CV_8U, Mat, Vector};
use opencv::prelude::*;
use opencv::{imgproc, videoio};

use super::{BURST_SPACING, FrameSource, FrameSourceError, StreamSpec, drain};

/// How long an RTSP camera may take to answer, and then to send each frame, before the capture
/// says so instead of hanging the teacher's screen.
const RTSP_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
const RTSP_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The most any stream may take to open. OpenCV 4.6 waits forever for a GStreamer pipeline that
/// failed to parse, so opening runs on a thread of its own and is given up on after this.
const OPEN_DEADLINE: Duration = Duration::from_secs(12);

/// What a GStreamer pipeline without its own sink is given: OpenCV reads BGR from an appsink, and
/// one buffer that drops the rest keeps the frames fresh.
const APPSINK: &str = "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1";

pub struct VideoStream {
    spec: StreamSpec,
    capture: videoio::VideoCapture,
    /// Reused between grabs: a frame's pixels as OpenCV delivers them.
    frame: Mat,
    /// Times the stream stopped and was opened again.
    reopened: u32,
}

impl VideoStream {
    /// Opens the stream and checks that OpenCV could start it; nothing is read yet.
    pub fn open(spec: &StreamSpec) -> Result<VideoStream, FrameSourceError> {
        Ok(VideoStream {
            spec: spec.clone(),
            capture: open_capture(spec)?,
            frame: Mat::default(),
            reopened: 0,
        })
    }

    /// How many times the stream stopped and was opened again since it was first opened.
    pub fn reopened(&self) -> u32 {
        self.reopened
    }

    fn fail(&self, reason: impl Into<String>) -> FrameSourceError {
        stream_error(&self.spec, reason)
    }

    /// Advances to the next frame without converting it. A live stream that stopped (a camera
    /// rebooted, a server that dropped a client who read nothing for a while) is opened again
    /// once before the capture gives up.
    fn next_live(&mut self) -> Result<(), FrameSourceError> {
        if self.grab_once()? {
            return Ok(());
        }
        tracing::warn!(source = %self.spec, "the stream stopped; opening it again");
        self.capture = open_capture(&self.spec)?;
        self.reopened += 1;
        if self.grab_once()? {
            return Ok(());
        }
        Err(self.fail("the stream stopped sending frames"))
    }

    fn grab_once(&mut self) -> Result<bool, FrameSourceError> {
        self.capture.grab().map_err(|e| self.fail(e.message))
    }

    /// A live burst: frames `BURST_SPACING` apart by the wall clock, read continuously between
    /// them so none is stale.
    fn grab_live(&mut self, n_frames: usize) -> Result<Vec<RgbImage>, FrameSourceError> {
        drain(|| self.next_live())?;
        let mut frames = vec![self.retrieve()?];
        let mut last_kept = Instant::now();
        while frames.len() < n_frames {
            self.next_live()?;
            if last_kept.elapsed() >= BURST_SPACING {
                last_kept = Instant::now();
                frames.push(self.retrieve()?);
            }
        }
        Ok(frames)
    }

    /// A file plays in its own time: frames `BURST_SPACING` apart by their timestamps, however
    /// fast they decode. After its last frame the file starts again, as `images:DIR` does.
    fn grab_file(&mut self, n_frames: usize) -> Result<Vec<RgbImage>, FrameSourceError> {
        let spacing_ms = BURST_SPACING.as_secs_f64() * 1000.0;
        let mut frames = Vec::with_capacity(n_frames);
        let mut last_kept: Option<f64> = None;
        let mut read_since_rewind = true;
        while frames.len() < n_frames {
            if !self.grab_once()? {
                if !read_since_rewind {
                    return Err(self.fail("holds no frame OpenCV can decode"));
                }
                self.capture
                    .set(videoio::CAP_PROP_POS_FRAMES, 0.0)
                    .map_err(|e| self.fail(e.message))?;
                (read_since_rewind, last_kept) = (false, None);
                continue;
            }
            read_since_rewind = true;
            let at_ms = self
                .capture
                .get(videoio::CAP_PROP_POS_MSEC)
                .map_err(|e| self.fail(e.message))?;
            if last_kept.is_none_or(|kept| at_ms - kept >= spacing_ms) {
                last_kept = Some(at_ms);
                frames.push(self.retrieve()?);
            }
        }
        Ok(frames)
    }

    /// The grabbed frame as upright RGB.
    fn retrieve(&mut self) -> Result<RgbImage, FrameSourceError> {
        let read = self
            .capture
            .retrieve_def(&mut self.frame)
            .map_err(|e| stream_error(&self.spec, e.message))?;
        if !read || self.frame.empty() {
            return Err(self.fail("OpenCV returned an empty frame"));
        }
        to_rgb(&self.frame).map_err(|reason| self.fail(reason))
    }
}

impl FrameSource for VideoStream {
    fn grab(&mut self, n_frames: usize) -> Result<Vec<RgbImage>, FrameSourceError> {
        match self.spec {
            StreamSpec::Video(_) => self.grab_file(n_frames.max(1)),
            StreamSpec::Rtsp(_) | StreamSpec::Gst(_) => self.grab_live(n_frames.max(1)),
        }
    }

    fn describe(&self) -> String {
        self.spec.to_string()
    }
}

fn stream_error(spec: &StreamSpec, reason: impl Into<String>) -> FrameSourceError {
    FrameSourceError::Stream {
        stream: spec.to_string(),
        reason: reason.into(),
    }
}

fn open_capture(spec: &StreamSpec) -> Result<videoio::VideoCapture, FrameSourceError> {
    // OpenCV's own warnings (a position a live pipeline cannot report, a backend it tried
    // first) would land on the teacher's terminal; what matters comes back as our error.
    let _ = opencv::core::set_log_level(opencv::core::LogLevel::LOG_LEVEL_ERROR);
    let fail = |reason: String| stream_error(spec, reason);
    let (target, api, params) = match spec {
        StreamSpec::Rtsp(url) => {
            let ms = |d: Duration| d.as_millis() as i32;
            let params = [
                videoio::CAP_PROP_OPEN_TIMEOUT_MSEC,
                ms(RTSP_OPEN_TIMEOUT),
                videoio::CAP_PROP_READ_TIMEOUT_MSEC,
                ms(RTSP_READ_TIMEOUT),
            ];
            (url.clone(), videoio::CAP_FFMPEG, params.to_vec())
        }
        StreamSpec::Gst(pipeline) => {
            if !videoio::has_backend(videoio::VideoCaptureAPIs::CAP_GSTREAMER).unwrap_or(false) {
                return Err(fail(
                    "this OpenCV was built without GStreamer; install one with it (JetPack's, or Debian's libopencv-videoio)".into(),
                ));
            }
            let pipeline = if pipeline.contains("appsink") {
                pipeline.clone()
            } else {
                format!("{pipeline} ! {APPSINK}")
            };
            (pipeline, videoio::CAP_GSTREAMER, Vec::new())
        }
        StreamSpec::Video(path) => {
            if !path.is_file() {
                return Err(fail("no such file".into()));
            }
            let Some(path) = path.to_str() else {
                return Err(fail("the file name is not UTF-8".into()));
            };
            (path.to_owned(), videoio::CAP_ANY, Vec::new())
        }
    };
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("stream-open".into())
        .spawn(move || {
            let opened =
                videoio::VideoCapture::from_file_with_params(&target, api, &Vector::from(params));
            // Nobody listens after the deadline: the late capture is dropped here.
            let _ = sender.send(opened);
        })
        .map_err(|e| fail(format!("cannot start a thread: {e}")))?;
    match receiver.recv_timeout(OPEN_DEADLINE) {
        Ok(Ok(capture)) if capture.is_opened().unwrap_or(false) => Ok(capture),
        Ok(Ok(_)) => Err(fail(not_opened(spec))),
        Ok(Err(e)) => Err(fail(e.message)),
        Err(_) => Err(fail(format!(
            "{} (gave up after {} s)",
            not_opened(spec),
            OPEN_DEADLINE.as_secs()
        ))),
    }
}

/// Why OpenCV could not open the stream, in the words the person at the box needs.
fn not_opened(spec: &StreamSpec) -> String {
    match spec {
        StreamSpec::Rtsp(_) => format!(
            "the camera refused, or sent no stream within {} s: check the address, the camera's user and password, and that this box reaches it (OPENCV_FFMPEG_CAPTURE_OPTIONS=rtsp_transport;tcp asks for TCP)",
            RTSP_OPEN_TIMEOUT.as_secs()
        ),
        StreamSpec::Gst(_) => "GStreamer could not start the pipeline: try it with `gst-launch-1.0 PIPELINE ! fakesink`".into(),
        StreamSpec::Video(_) => "OpenCV cannot read this file (its container or codec)".into(),
    }
}

/// An 8-bit frame of 1, 3 (BGR) or 4 (BGRA) channels as RGB.
fn to_rgb(frame: &Mat) -> Result<RgbImage, String> {
    if frame.depth() != CV_8U {
        return Err("frames are not 8-bit: convert them to BGR in the pipeline".into());
    }
    let code = match frame.channels() {
        1 => imgproc::COLOR_GRAY2RGB,
        3 => imgproc::COLOR_BGR2RGB,
        4 => imgproc::COLOR_BGRA2RGB,
        n => {
            return Err(format!(
                "frames of {n} channels: convert them to BGR in the pipeline"
            ));
        }
    };
    let mut rgb = Mat::default();
    imgproc::cvt_color_def(frame, &mut rgb, code).map_err(|e| e.message)?;
    let (width, height) = (rgb.cols() as u32, rgb.rows() as u32);
    let bytes = rgb.data_bytes().map_err(|e| e.message)?.to_vec();
    RgbImage::from_raw(width, height, bytes).ok_or_else(|| "a frame of the wrong size".into())
}
