//! Helpers shared by the integration tests: where the shared photos are, and a loaded pipeline.
#![allow(dead_code)]

use std::path::PathBuf;

use edge_agent::capture::{ImageLimits, load_image};
use edge_agent::vision::{Embedding, Face, Pick, Pipeline, PipelineOptions, select_face};

/// `../shared/faces` beside the checkout (or `ROLLCALL_FACES`).
pub fn faces_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ROLLCALL_FACES") {
        return PathBuf::from(dir);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/faces");
    assert!(
        dir.is_dir(),
        "{} is missing: the tests need the shared face photos",
        dir.display()
    );
    dir
}

pub fn pipeline() -> Pipeline {
    Pipeline::load(&PipelineOptions::default())
        .expect("run scripts/setup first: it installs ONNX Runtime and the models")
}

/// The faces of one photo.
pub fn faces_of(pipeline: &mut Pipeline, path: &std::path::Path) -> (image::RgbImage, Vec<Face>) {
    let frame = load_image(path, &ImageLimits::default()).unwrap_or_else(|e| panic!("{e}"));
    let faces = pipeline.faces(&frame).unwrap();
    (frame, faces)
}

/// Embeds the central usable face of each photo (the LFW protocol), batched.
pub fn embed_central(pipeline: &mut Pipeline, paths: &[PathBuf]) -> Vec<Result<Embedding, String>> {
    let mut chosen = Vec::new();
    let mut results: Vec<Result<Embedding, String>> = Vec::new();
    let mut slots = Vec::new();
    for path in paths {
        let (frame, mut faces) = faces_of(pipeline, path);
        match select_face(
            &faces,
            &pipeline.gate,
            Some(Pick::Central),
            frame.dimensions(),
        ) {
            Ok(idx) => {
                slots.push(results.len());
                results.push(Err(String::new()));
                chosen.push(faces.swap_remove(idx).aligned);
            }
            Err(reason) => results.push(Err(format!("{}: {reason}", path.display()))),
        }
    }
    for (slot, embedding) in slots.into_iter().zip(pipeline.embed(&chosen).unwrap()) {
        results[slot] = Ok(embedding);
    }
    results
}
