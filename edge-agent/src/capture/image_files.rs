//! Image files replayed as camera frames (`--source images:DIR`, `capture --images`): for demos,
//! tests and photos taken elsewhere.

use std::path::{Path, PathBuf};

use image::RgbImage;

use super::{FrameSource, FrameSourceError, ImageLimits, load_image};

/// A list of image files handed out in order, one frame each, starting again after the last.
pub struct ImageFiles {
    name: String,
    paths: Vec<PathBuf>,
    next_idx: usize,
    limits: ImageLimits,
}

impl ImageFiles {
    /// These files, in this order.
    pub fn new(paths: Vec<PathBuf>) -> ImageFiles {
        ImageFiles {
            name: format!("{} image files", paths.len()),
            paths,
            next_idx: 0,
            limits: ImageLimits::default(),
        }
    }

    /// Every `.jpg`, `.jpeg` and `.png` file of `dir`, sorted by file name, so a replay is the
    /// same on every machine.
    pub fn from_dir(dir: &Path) -> Result<ImageFiles, FrameSourceError> {
        let fail = |reason: String| FrameSourceError::ImageDir {
            dir: dir.to_owned(),
            reason,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| fail(format!("cannot list: {e}")))?;
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| fail(format!("cannot list: {e}")))?.path();
            let is_image = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                ["jpg", "jpeg", "png"]
                    .iter()
                    .any(|x| e.eq_ignore_ascii_case(x))
            });
            if is_image {
                paths.push(path);
            }
        }
        if paths.is_empty() {
            return Err(fail("holds no .jpg, .jpeg or .png file".to_owned()));
        }
        paths.sort();
        let mut files = ImageFiles::new(paths);
        files.name = format!("images:{}", dir.display());
        Ok(files)
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

impl FrameSource for ImageFiles {
    fn grab(&mut self, n_frames: usize) -> Result<Vec<RgbImage>, FrameSourceError> {
        if self.paths.is_empty() {
            return Ok(Vec::new());
        }
        (0..n_frames.max(1))
            .map(|_| {
                let path = &self.paths[self.next_idx];
                self.next_idx = (self.next_idx + 1) % self.paths.len();
                Ok(load_image(path, &self.limits)?)
            })
            .collect()
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path, shade: u8) {
        RgbImage::from_pixel(32, 32, image::Rgb([shade; 3]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn replays_sorted_files_and_wraps_around() {
        let dir = tempfile::tempdir().unwrap();
        png(&dir.path().join("b.png"), 2);
        png(&dir.path().join("a.PNG"), 1);
        std::fs::write(dir.path().join("notes.txt"), "not a frame").unwrap();
        let mut files = ImageFiles::from_dir(dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        let shades: Vec<u8> = files
            .grab(3)
            .unwrap()
            .iter()
            .map(|f| f.get_pixel(0, 0)[0])
            .collect();
        assert_eq!(shades, [1, 2, 1]);
        assert_eq!(files.grab(1).unwrap()[0].get_pixel(0, 0)[0], 2);
    }

    #[test]
    fn a_folder_without_images_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = ImageFiles::from_dir(dir.path()).err().unwrap();
        assert!(err.to_string().contains("no .jpg"), "{err}");
        assert!(ImageFiles::from_dir(&dir.path().join("missing")).is_err());
    }
}
