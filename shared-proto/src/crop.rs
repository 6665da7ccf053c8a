//! Aligned face crops kept at enrolment so that templates can be made again after a model change
//! (a new embedding space) without the students standing in front of a camera again. The box
//! (`edge-agent reembed`) and the server (central enrolment's re-embedding) follow the same rules:
//! a crop is the embedder's own input (RGB, `size` x `size`), it stays with the template it was
//! taken for, and it is re-embedded once per space, the new template naming its origin.

use std::fmt;

/// The side of the crops this project's embedder reads.
pub const CROP_SIZE: u32 = 112;

/// The `source` of a template made again from `template`'s crop: what marks a crop as already
/// re-embedded into a space.
pub fn reembed_source(template: &str) -> String {
    format!("reembed:{template}")
}

/// Why a kept crop cannot be re-embedded by an embedder reading `size` x `size` faces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CropMismatch {
    pub bytes: usize,
    pub size: u32,
}

impl fmt::Display for CropMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the crop has {} bytes; the embedder reads {s}x{s} RGB ({} bytes): enrol a new photo",
            self.bytes,
            rgb_len(self.size),
            s = self.size
        )
    }
}

impl std::error::Error for CropMismatch {}

/// Whether a crop of `bytes` bytes is what an embedder reading `size` x `size` faces takes (a model
/// with another input size or landmark template needs a new photo).
pub fn check(bytes: usize, size: u32) -> Result<(), CropMismatch> {
    if bytes == rgb_len(size) {
        Ok(())
    } else {
        Err(CropMismatch { bytes, size })
    }
}

fn rgb_len(size: u32) -> usize {
    size as usize * size as usize * 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crop_fits_only_its_embedder() {
        assert_eq!(check(112 * 112 * 3, CROP_SIZE), Ok(()));
        let wrong = check(100, CROP_SIZE).unwrap_err();
        assert!(
            wrong.to_string().contains("112x112 RGB (37632 bytes)"),
            "{wrong}"
        );
        assert_eq!(reembed_source("t-1"), "reembed:t-1");
    }
}
