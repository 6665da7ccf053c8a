//! The face pipeline: detect (+5 landmarks) -> align -> embed, plus liveness and quality per face.
//!
//! Knows nothing of storage, students or sessions: frames in, faces and embeddings out.
//! All preprocessing constants come from the model manifest, never from code.

mod align;
mod detect;
mod embed;
mod liveness;
pub mod manifest;
mod quality;
pub mod runtime;
mod select;

use std::path::PathBuf;

use image::RgbImage;
use shared_proto::{EmbeddingSpace, ModelId};

pub use align::{AlignedFace, align_face};
pub use detect::{DetectOptions, Detection, Detector};
pub(crate) use embed::dot_lanes;
pub use embed::{DEFAULT_BATCH, Embedder, Embedding, dot};
pub use liveness::Liveness;
pub use manifest::Manifest;
pub use quality::{QualityGate, measure_quality, template_score};
pub use runtime::RuntimeOptions;
pub use select::{Pick, Unusable, select_face};
pub use shared_proto::ml::FaceQuality;

#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error(
        "cannot load ONNX Runtime: {reason}. Run `{fix}` in a checkout, or reinstall the rollcall-edge package on a box (or set ORT_DYLIB_PATH to libonnxruntime.so)"
    )]
    Runtime { reason: String, fix: &'static str },
    #[error(
        "model folder not found (no models/manifest.toml or share/rollcall/models above the binary or working directory, nor /usr/share/rollcall/models; ROLLCALL_MODELS unset). Run `{fix}` in a checkout, or reinstall the rollcall-edge package on a box"
    )]
    ModelsDirNotFound { fix: &'static str },
    #[error(
        "model file {path} cannot be read ({source}). Run `{fix}` to fetch and verify the models (on a box: reinstall the rollcall-edge package)"
    )]
    ModelMissing {
        path: PathBuf,
        source: std::io::Error,
        fix: &'static str,
    },
    #[error(
        "model file {path} has sha256 {actual}, the manifest expects {expected}: refusing to load it. Run `{fix}` to fetch it again (on a box: reinstall the rollcall-edge package)"
    )]
    ModelChecksum {
        path: PathBuf,
        expected: String,
        actual: String,
        fix: &'static str,
    },
    #[error("model manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("cannot create an inference session for {model}: {reason}")]
    Session { model: String, reason: String },
    #[error("inference failed in {model}: {reason}")]
    Inference { model: String, reason: String },
}

impl VisionError {
    pub(crate) fn inference(model: &str, e: impl std::fmt::Display) -> VisionError {
        VisionError::Inference {
            model: model.to_owned(),
            reason: e.to_string(),
        }
    }
}

/// A face found in a frame, with what is needed to decide whether to match it.
#[derive(Clone, Debug)]
pub struct Face {
    pub detection: Detection,
    pub quality: FaceQuality,
    pub aligned: AlignedFace,
}

impl Face {
    /// The face as the wire and `--json` show it (coordinates to 0.01 px).
    pub fn detected(&self) -> shared_proto::ml::DetectedFace {
        let round2 = |v: f32| (v * 100.0).round() / 100.0;
        shared_proto::ml::DetectedFace {
            bbox: self.detection.bbox.map(round2),
            score: self.detection.score,
            landmarks: self.detection.landmarks.map(|p| p.map(round2)),
            quality: self.quality.clone(),
        }
    }
}

/// Everything the pipeline needs, loaded and verified before the first frame.
pub struct Pipeline {
    manifest: Manifest,
    pub detector: Detector,
    pub embedder: Embedder,
    pub liveness: Liveness,
    pub gate: QualityGate,
}

#[derive(Clone, Debug, Default)]
pub struct PipelineOptions {
    pub runtime: RuntimeOptions,
    pub detect: DetectOptions,
}

impl Pipeline {
    /// Loads ONNX Runtime and the three models of the built-in manifest, verifying each sha256.
    pub fn load(options: &PipelineOptions) -> Result<Pipeline, VisionError> {
        let manifest = Manifest::builtin();
        let environment = runtime::environment()?;
        let dir = runtime::models_dir(&options.runtime)?;
        let [detector_file, embedder_file, liveness_file] = manifest.files();
        let load = |file: &manifest::ModelFile<'_>| {
            let bytes = runtime::read_verified(&dir, file)?;
            runtime::session(&environment, file.name, &bytes, &options.runtime)
        };
        let detector = Detector::new(
            load(&detector_file)?,
            manifest.detector.clone(),
            options.detect.clone(),
        );
        let embedder = Embedder::new(
            load(&embedder_file)?,
            manifest.embedder.clone(),
            manifest.embedder_id(),
            manifest.embedder_space(),
        );
        let liveness = Liveness::new(load(&liveness_file)?, manifest.liveness.clone());
        Ok(Pipeline {
            detector,
            embedder,
            liveness,
            gate: QualityGate::default(),
            manifest,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn model_id(&self) -> &ModelId {
        self.embedder.model_id()
    }

    /// The space of this pipeline's embeddings: the only templates it may be compared with.
    pub fn space(&self) -> &EmbeddingSpace {
        self.embedder.space()
    }

    /// Detects every face in the frame, aligns it and measures its quality. No embedding yet: the
    /// caller embeds only the faces it will use, in one batch.
    pub fn faces(&mut self, frame: &RgbImage) -> Result<Vec<Face>, VisionError> {
        let template = self.manifest.embedder.template;
        let size = self.embedder.input_size();
        let detections = self.detector.detect(frame)?;
        Ok(detections
            .into_iter()
            .map(|detection| {
                let aligned = align_face(frame, &detection.landmarks, &template, size);
                let quality = measure_quality(&detection, &aligned);
                Face {
                    detection,
                    quality,
                    aligned,
                }
            })
            .collect())
    }

    /// Adds the liveness score to each face's quality (one small model run per face).
    pub fn score_liveness(
        &mut self,
        frame: &RgbImage,
        faces: &mut [Face],
    ) -> Result<(), VisionError> {
        for face in faces {
            face.quality.liveness = Some(
                self.liveness
                    .live_probability(frame, &face.detection.bbox)?,
            );
        }
        Ok(())
    }

    /// Embeds aligned faces in batches; the result is in the same order.
    pub fn embed<'a>(
        &mut self,
        faces: impl IntoIterator<Item = &'a AlignedFace>,
    ) -> Result<Vec<Embedding>, VisionError> {
        self.embedder.embed(faces)
    }
}
