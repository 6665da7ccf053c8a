//! Where frames come from: image files and USB cameras behind one `FrameSource`, named on the
//! command line as `--source images:DIR | camera[:INDEX]`. Everything here hands the pipeline
//! upright RGB frames.

#[cfg(feature = "camera")]
mod camera;
mod image_file;
mod image_files;

use std::path::PathBuf;

use image::RgbImage;

#[cfg(feature = "camera")]
pub use camera::Camera;
pub use image_file::{ImageLimits, ImageLoadError, decode_image, load_image};
pub use image_files::ImageFiles;

/// Frames in a capture burst: ~2 s of a camera at the spacing `Camera` keeps between them.
pub const BURST_FRAMES: usize = 5;

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
    #[error("{dir}: {reason}")]
    ImageDir { dir: PathBuf, reason: String },
    #[error(transparent)]
    Image(#[from] ImageLoadError),
    #[error("--source {0:?}: expected images:DIR, camera or camera:INDEX")]
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
        for bad in ["", "images:", "camera:x", "video:0", "/tmp/x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
