//! Image files (JPEG, PNG) as frames: checked by size before decoding, EXIF orientation applied,
//! converted to RGB whatever their colour type.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use shared_proto::ml::ErrorCode;

/// Bounds on what is decoded, so a hostile or mistaken file cannot exhaust the box's memory.
#[derive(Clone, Debug)]
pub struct ImageLimits {
    /// Largest file accepted, bytes.
    pub max_bytes: u64,
    /// Largest image accepted, pixels (width x height).
    pub max_pixels: u64,
    /// Smallest side accepted, pixels: a face needs at least this much room.
    pub min_side: u32,
}

impl Default for ImageLimits {
    fn default() -> ImageLimits {
        ImageLimits {
            max_bytes: 50 * 1024 * 1024,
            // 8K UHD, far beyond any classroom camera.
            max_pixels: 7680 * 4320,
            min_side: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageLoadError {
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a readable JPEG or PNG image ({reason})")]
    Undecodable { path: PathBuf, reason: String },
    #[error(
        "{path}: {width}x{height} pixels is over the limit of {max_pixels} pixels; scale it down first"
    )]
    TooManyPixels {
        path: PathBuf,
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("{path}: {bytes} bytes is over the limit of {max_bytes} bytes")]
    TooManyBytes {
        path: PathBuf,
        bytes: u64,
        max_bytes: u64,
    },
    #[error(
        "{path}: {width}x{height} pixels is too small to hold a face (at least {min_side} px a side)"
    )]
    TooSmall {
        path: PathBuf,
        width: u32,
        height: u32,
        min_side: u32,
    },
}

impl ImageLoadError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ImageLoadError::Unreadable { .. } => ErrorCode::Unreadable,
            ImageLoadError::Undecodable { .. } => ErrorCode::UndecodableImage,
            ImageLoadError::TooManyPixels { .. } | ImageLoadError::TooManyBytes { .. } => {
                ErrorCode::ImageTooLarge
            }
            ImageLoadError::TooSmall { .. } => ErrorCode::ImageTooSmall,
        }
    }
}

/// Decodes an image file into an upright RGB frame, refusing oversized files before decoding.
pub fn load_image(path: &Path, limits: &ImageLimits) -> Result<RgbImage, ImageLoadError> {
    let unreadable = |source| ImageLoadError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(unreadable)?;
    let bytes = file.metadata().map_err(unreadable)?.len();
    decode(BufReader::new(file), bytes, path, limits)
}

/// [`load_image`] for an image received whole (the ML service's uploads); `name` labels errors.
pub fn decode_image(
    bytes: &[u8],
    name: &str,
    limits: &ImageLimits,
) -> Result<RgbImage, ImageLoadError> {
    decode(
        std::io::Cursor::new(bytes),
        bytes.len() as u64,
        Path::new(name),
        limits,
    )
}

fn decode<R: std::io::BufRead + std::io::Seek>(
    reader: R,
    bytes: u64,
    path: &Path,
    limits: &ImageLimits,
) -> Result<RgbImage, ImageLoadError> {
    let unreadable = |source| ImageLoadError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let undecodable = |e: &dyn std::fmt::Display| ImageLoadError::Undecodable {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    if bytes > limits.max_bytes {
        return Err(ImageLoadError::TooManyBytes {
            path: path.to_owned(),
            bytes,
            max_bytes: limits.max_bytes,
        });
    }
    if bytes == 0 {
        return Err(undecodable(&"the file is empty"));
    }
    let reader = ImageReader::new(reader)
        .with_guessed_format()
        .map_err(unreadable)?;
    if reader.format().is_none() {
        return Err(undecodable(&"unknown format: not a JPEG or PNG"));
    }
    // The header alone gives the size: refuse giant images before allocating anything for them.
    let mut decoder = reader.into_decoder().map_err(|e| undecodable(&e))?;
    let (width, height) = decoder.dimensions();
    if width as u64 * height as u64 > limits.max_pixels {
        return Err(ImageLoadError::TooManyPixels {
            path: path.to_owned(),
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    if width.min(height) < limits.min_side {
        return Err(ImageLoadError::TooSmall {
            path: path.to_owned(),
            width,
            height,
            min_side: limits.min_side,
        });
    }
    let orientation = decoder.orientation().map_err(|e| undecodable(&e))?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| undecodable(&e))?;
    image.apply_orientation(orientation);
    Ok(match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.into_rgb8(),
    })
}
