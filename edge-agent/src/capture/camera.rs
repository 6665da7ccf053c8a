//! USB (UVC) cameras through nokhwa (V4L2 on Linux). Behind the cargo feature `camera`.

use std::time::Instant;

use image::RgbImage;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};

use super::{BURST_SPACING, FrameSource, FrameSourceError, drain};

/// The first frames after a stream opens are often dark while the sensor adjusts its exposure.
const WARM_UP_FRAMES: usize = 3;

pub struct Camera {
    index: u32,
    name: String,
    camera: nokhwa::Camera,
}

impl Camera {
    /// Finds camera `index` and starts its stream; a box without one gets `NoCamera`.
    pub fn open(index: u32) -> Result<Camera, FrameSourceError> {
        let failed = |e| camera_error(index, e);
        // An empty list is the common case (no camera plugged in): say so plainly instead of
        // passing on the driver's error for a missing /dev/video0.
        let found = nokhwa::query(ApiBackend::Auto).map_err(failed)?;
        if found.is_empty() {
            return Err(FrameSourceError::NoCamera);
        }
        // 720p is what the detector works at (it scales larger frames down to 1280 px anyway);
        // MJPEG keeps USB 2 bandwidth low. The driver picks the closest format it offers.
        let wanted = CameraFormat::new(Resolution::new(1280, 720), FrameFormat::MJPEG, 30);
        let format = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(wanted));
        let mut camera = nokhwa::Camera::new(CameraIndex::Index(index), format).map_err(failed)?;
        camera.open_stream().map_err(failed)?;
        let name = format!("camera {index} ({})", camera.info().human_name());
        let mut camera = Camera {
            index,
            name,
            camera,
        };
        for _ in 0..WARM_UP_FRAMES {
            camera.raw_frame()?;
        }
        Ok(camera)
    }

    /// The next frame as the driver delivers it (MJPEG), not decoded: most frames are read
    /// only to keep the driver's queue fresh and are thrown away.
    fn raw_frame(&mut self) -> Result<nokhwa::Buffer, FrameSourceError> {
        self.camera.frame().map_err(|e| camera_error(self.index, e))
    }
}

fn camera_error(index: u32, e: nokhwa::NokhwaError) -> FrameSourceError {
    FrameSourceError::Camera {
        index,
        reason: e.to_string(),
    }
}

impl FrameSource for Camera {
    fn grab(&mut self, n_frames: usize) -> Result<Vec<RgbImage>, FrameSourceError> {
        let decode = |buffer: nokhwa::Buffer, index| {
            buffer
                .decode_image::<RgbFormat>()
                .map_err(|e| camera_error(index, e))
        };
        // The driver kept the frames of the time between two captures in its buffers.
        let first = drain(|| self.raw_frame())?;
        let mut frames = vec![decode(first, self.index)?];
        let mut last_kept = Instant::now();
        while frames.len() < n_frames.max(1) {
            // Keep reading so the driver's queue never holds a stale frame; keep (and decode)
            // one per spacing.
            let buffer = self.raw_frame()?;
            if last_kept.elapsed() >= BURST_SPACING {
                last_kept = Instant::now();
                frames.push(decode(buffer, self.index)?);
            }
        }
        Ok(frames)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        // Best effort: the device is released with the handle either way.
        let _ = self.camera.stop_stream();
    }
}
