//! The vision subcommands: detect, embed, compare, identify.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::RgbImage;
use shared_proto::ml::{DetectResponse, EmbedResponse, ErrorCode, ImageError};

use crate::attendance::{Gallery, Thresholds, Verdict, assign};
use crate::capture::{ImageLimits, ImageLoadError, load_image};
use crate::store::TemplateRecord;
use crate::vision::{Embedding, Face, Pick, Pipeline, Unusable, select_face};

/// A per-image failure, printed and counted, never fatal to the other images.
pub(super) struct ImageFailure {
    pub(super) code: ErrorCode,
    pub(super) message: String,
}

impl From<ImageLoadError> for ImageFailure {
    fn from(e: ImageLoadError) -> ImageFailure {
        ImageFailure {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<crate::vision::VisionError> for ImageFailure {
    fn from(e: crate::vision::VisionError) -> ImageFailure {
        ImageFailure {
            code: ErrorCode::Inference,
            message: e.to_string(),
        }
    }
}

fn unusable(image: &Path, reason: Unusable) -> ImageFailure {
    ImageFailure {
        code: reason.code(),
        message: format!("{}: {reason}", image.display()),
    }
}

pub(super) fn report_failure(
    out: &mut impl Write,
    image: &Path,
    failure: ImageFailure,
    json: bool,
) -> Result<()> {
    if json {
        let line = ImageError {
            image: image.display().to_string(),
            error: failure.code,
            message: failure.message,
        };
        writeln!(out, "{}", serde_json::to_string(&line)?)?;
    } else {
        eprintln!("error: {}", failure.message);
    }
    Ok(())
}

pub(super) fn detect(
    pipeline: &mut Pipeline,
    images: &[PathBuf],
    json: bool,
    annotate: Option<&Path>,
    out: &mut impl Write,
) -> Result<i32> {
    let mut n_failed = 0;
    for image in images {
        let result = (|| -> Result<(RgbImage, Vec<Face>), ImageFailure> {
            let frame = load_image(image, &ImageLimits::default())?;
            let mut faces = pipeline.faces(&frame)?;
            pipeline.score_liveness(&frame, &mut faces)?;
            Ok((frame, faces))
        })();
        let (frame, faces) = match result {
            Ok(ok) => ok,
            Err(failure) => {
                n_failed += 1;
                report_failure(out, image, failure, json)?;
                continue;
            }
        };
        let response = DetectResponse {
            image: image.display().to_string(),
            width: frame.width(),
            height: frame.height(),
            faces: faces.iter().map(Face::detected).collect(),
        };
        if json {
            writeln!(out, "{}", serde_json::to_string(&response)?)?;
        } else {
            print_detections(out, &response)?;
        }
        if let Some(annotate) = annotate {
            let path = annotation_path(annotate, image, images.len());
            draw_faces(frame, &faces)
                .save(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(if n_failed > 0 { 1 } else { 0 })
}

fn print_detections(out: &mut impl Write, response: &DetectResponse) -> Result<()> {
    writeln!(
        out,
        "{}: {}x{}, {} face(s)",
        response.image,
        response.width,
        response.height,
        response.faces.len()
    )?;
    for (face_idx, face) in response.faces.iter().enumerate() {
        let q = &face.quality;
        let [x1, y1, x2, y2] = face.bbox;
        writeln!(
            out,
            "  #{face_idx:<2} box {x1:.0},{y1:.0}-{x2:.0},{y2:.0}  score {:.2}  eyes {:.0} px  sharpness {:.0}  yaw {:+.0}°  live {}",
            face.score,
            q.eye_distance,
            q.sharpness,
            q.yaw_degrees,
            q.liveness.map_or("-".to_owned(), |p| format!("{p:.2}")),
        )?;
    }
    Ok(())
}

fn annotation_path(annotate: &Path, image: &Path, n_images: usize) -> PathBuf {
    if n_images == 1 {
        return annotate.to_owned();
    }
    let stem = annotate.file_stem().unwrap_or_default().to_string_lossy();
    let image_stem = image.file_stem().unwrap_or_default().to_string_lossy();
    annotate.with_file_name(format!("{stem}-{image_stem}.png"))
}

/// Draws each face's box (green when large enough to match, amber otherwise) and landmarks.
fn draw_faces(mut frame: RgbImage, faces: &[Face]) -> RgbImage {
    let gate = crate::vision::QualityGate::default();
    let (width, height) = (frame.width() as i64, frame.height() as i64);
    let mut put = |x: i64, y: i64, colour: [u8; 3]| {
        if (0..width).contains(&x) && (0..height).contains(&y) {
            frame.put_pixel(x as u32, y as u32, image::Rgb(colour));
        }
    };
    for face in faces {
        let colour = if gate.large_enough(&face.quality) {
            [0, 220, 0]
        } else {
            [255, 170, 0]
        };
        let [x1, y1, x2, y2] = face.detection.bbox.map(|v| v.round() as i64);
        for t in 0..2 {
            for x in x1..=x2 {
                put(x, y1 + t, colour);
                put(x, y2 - t, colour);
            }
            for y in y1..=y2 {
                put(x1 + t, y, colour);
                put(x2 - t, y, colour);
            }
        }
        for [lx, ly] in face.detection.landmarks {
            for dy in -1..=1 {
                for dx in -1..=1 {
                    put(lx.round() as i64 + dx, ly.round() as i64 + dy, [255, 0, 0]);
                }
            }
        }
    }
    frame
}

/// Loads a photo and chooses its one usable face.
pub(super) fn usable_face(
    pipeline: &mut Pipeline,
    image: &Path,
    pick: Option<Pick>,
) -> Result<Face, ImageFailure> {
    let frame = load_image(image, &ImageLimits::default())?;
    let mut faces = pipeline.faces(&frame)?;
    let chosen = select_face(&faces, &pipeline.gate, pick, frame.dimensions())
        .map_err(|reason| unusable(image, reason))?;
    Ok(faces.swap_remove(chosen))
}

/// Images per embedding round: their faces go through the embedder as one batch.
const EMBED_CHUNK: usize = 32;

pub(super) fn embed(
    pipeline: &mut Pipeline,
    images: &[PathBuf],
    json: bool,
    pick: Option<Pick>,
    out: &mut impl Write,
) -> Result<i32> {
    let mut n_failed = 0;
    for chunk in images.chunks(EMBED_CHUNK) {
        let mut chosen: Vec<(&PathBuf, Face)> = Vec::with_capacity(chunk.len());
        for image in chunk {
            match usable_face(pipeline, image, pick) {
                Ok(face) => chosen.push((image, face)),
                Err(failure) => {
                    n_failed += 1;
                    report_failure(out, image, failure, json)?;
                }
            }
        }
        let embeddings = pipeline.embed(chosen.iter().map(|(_, face)| &face.aligned))?;
        for ((image, _), embedding) in chosen.iter().zip(embeddings) {
            let response = EmbedResponse {
                image: image.display().to_string(),
                model: embedding.model,
                space: embedding.space,
                embedding: embedding.vector,
            };
            if json {
                writeln!(out, "{}", serde_json::to_string(&response)?)?;
            } else {
                let head: Vec<String> = response
                    .embedding
                    .iter()
                    .take(4)
                    .map(|v| format!("{v:+.3}"))
                    .collect();
                writeln!(
                    out,
                    "{}: {} [{}, ...]",
                    response.image,
                    response.model,
                    head.join(", ")
                )?;
            }
        }
    }
    Ok(if n_failed > 0 { 1 } else { 0 })
}

fn verdict_words(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Confident => "same person",
        Verdict::Review => "possibly the same person (needs review)",
        Verdict::Unknown => "different people",
    }
}

pub(super) fn compare(
    pipeline: &mut Pipeline,
    a: &Path,
    b: &Path,
    pick: Option<Pick>,
    out: &mut impl Write,
) -> Result<i32> {
    let mut faces = Vec::with_capacity(2);
    for image in [a, b] {
        match usable_face(pipeline, image, pick) {
            Ok(face) => faces.push(face),
            Err(failure) => {
                report_failure(out, image, failure, false)?;
                return Ok(1);
            }
        }
    }
    let embeddings = pipeline.embed(faces.iter().map(|f| &f.aligned))?;
    let similarity = embeddings[0]
        .similarity(&embeddings[1])
        .expect("both embeddings come from this pipeline's embedder");
    let t = Thresholds::of(pipeline);
    writeln!(
        out,
        "similarity {similarity:.3}: {} (confident >= {}, review >= {})",
        verdict_words(t.verdict(similarity)),
        t.confident,
        t.review
    )?;
    Ok(0)
}

pub(super) fn identify(
    pipeline: &mut Pipeline,
    enrol: &[String],
    photos: &[PathBuf],
    out: &mut impl Write,
) -> Result<i32> {
    // Several photos of one name give that person several templates; the gallery scores each
    // person by their best one.
    let mut names = Vec::with_capacity(enrol.len());
    let mut gallery_faces = Vec::with_capacity(enrol.len());
    for entry in enrol {
        let (name, photo) = entry
            .split_once('=')
            .with_context(|| format!("--enrol {entry:?}: expected NAME=PHOTO"))?;
        let face = usable_face(pipeline, Path::new(photo), Some(Pick::Central))
            .map_err(|failure| anyhow::anyhow!("cannot enrol {name}: {}", failure.message))?;
        names.push(name.to_owned());
        gallery_faces.push(face);
    }
    let embeddings = pipeline.embed(gallery_faces.iter().map(|f| &f.aligned))?;
    let gallery = Gallery::new(
        pipeline.manifest().embedder.dimensions,
        names
            .iter()
            .zip(embeddings)
            .map(|(name, e)| TemplateRecord {
                uuid: String::new(),
                student_id: name.clone(),
                vector: e.vector,
            }),
    );
    writeln!(
        out,
        "enrolled {} people from {} photos: {}",
        gallery.students().len(),
        gallery.n_templates(),
        gallery.students().join(", ")
    )?;

    let t = Thresholds::of(pipeline);
    let mut n_failed = 0;
    for photo in photos {
        let found = (|| -> Result<(Vec<Face>, Vec<Embedding>), ImageFailure> {
            let frame = load_image(photo, &ImageLimits::default())?;
            let faces: Vec<Face> = pipeline
                .faces(&frame)?
                .into_iter()
                .filter(|f| pipeline.gate.large_enough(&f.quality))
                .collect();
            let embeddings = pipeline.embed(faces.iter().map(|f| &f.aligned))?;
            Ok((faces, embeddings))
        })();
        let (faces, embeddings) = match found {
            Ok(found) => found,
            Err(failure) => {
                n_failed += 1;
                report_failure(out, photo, failure, false)?;
                continue;
            }
        };
        let vectors: Vec<Vec<f32>> = embeddings.into_iter().map(|e| e.vector).collect();
        let similarity = gallery.best_per_student(&vectors);
        let mut matches = assign(&similarity, t.review);
        matches.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        let described: Vec<String> = matches
            .iter()
            .map(|m| {
                let band = match t.verdict(m.similarity) {
                    Verdict::Confident => "",
                    _ => ", review",
                };
                format!(
                    "{} ({:.2}{band})",
                    gallery.students()[m.person_idx],
                    m.similarity
                )
            })
            .collect();
        let n_unknown = faces.len() - matches.len();
        writeln!(
            out,
            "{}: {} face(s); found {}{}",
            photo.display(),
            faces.len(),
            if described.is_empty() {
                "nobody enrolled".to_owned()
            } else {
                described.join(", ")
            },
            if n_unknown > 0 {
                format!("; {n_unknown} unknown")
            } else {
                String::new()
            },
        )?;
    }
    Ok(if n_failed > 0 { 1 } else { 0 })
}
