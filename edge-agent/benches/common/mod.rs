//! Helpers the edge-agent benchmarks use: the banner, where the shared photos are, composed
//! classroom frames, memory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use edge_agent::capture::{ImageLimits, load_image};
use image::{RgbImage, imageops};

#[path = "../../../benches/host.rs"]
mod host;

/// The lines every edge-agent benchmark table starts with: CPU, flags, ONNX Runtime with the
/// session settings that change its speed, and `threads`.
pub fn banner(threads: &str) -> String {
    let runtime = edge_agent::vision::runtime::describe()
        .unwrap_or_else(|e| format!("ONNX Runtime not loaded: {e}"));
    host::banner(&runtime, threads)
}

/// `../shared/faces` beside the checkout (or `ROLLCALL_FACES`).
pub fn faces_dir() -> PathBuf {
    std::env::var_os("ROLLCALL_FACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/faces"))
}

/// The first photo of each of the first `n` LFW people, in name order.
pub fn lfw_photos(n: usize) -> Vec<PathBuf> {
    let dir = faces_dir().join("lfw-dev/images");
    let mut people: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    people.sort();
    people
        .iter()
        .filter_map(|p| {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .ok()?
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            files.into_iter().next()
        })
        .take(n)
        .collect()
}

/// A classroom-like frame: the central crop of each photo, `face_px` wide, pasted on a grey wall
/// in a grid.
pub fn compose_frame(
    width: u32,
    height: u32,
    photos: &[impl AsRef<Path>],
    face_px: u32,
) -> RgbImage {
    let mut frame = RgbImage::from_pixel(width, height, image::Rgb([96, 104, 110]));
    let n_faces = photos.len();
    let cols = ((n_faces as f32 * width as f32 / height as f32)
        .sqrt()
        .ceil() as u32)
        .max(1);
    let rows = (n_faces as u32).div_ceil(cols);
    let (cell_w, cell_h) = (width / cols, height / rows.max(1));
    for (i, photo) in photos.iter().enumerate() {
        let image = load_image(photo.as_ref(), &ImageLimits::default()).unwrap();
        let (w, h) = image.dimensions();
        let crop = imageops::crop_imm(&image, w / 6, h / 6, w * 2 / 3, h * 2 / 3).to_image();
        let face = imageops::resize(&crop, face_px, face_px, imageops::FilterType::Triangle);
        let (col, row) = (i as u32 % cols, i as u32 / cols);
        let x = col * cell_w + cell_w.saturating_sub(face_px) / 2;
        let y = row * cell_h + cell_h.saturating_sub(face_px) / 2;
        imageops::overlay(&mut frame, &face, x as i64, y as i64);
    }
    frame
}

/// Peak resident memory of this process, MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
