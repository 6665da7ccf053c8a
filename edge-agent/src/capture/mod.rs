//! Where frames come from: image files now; USB and CSI/RTSP cameras behind the same `FrameSource`
//! later. Everything here hands the pipeline upright RGB frames.

mod image_file;

pub use image_file::{ImageLimits, ImageLoadError, load_image};
