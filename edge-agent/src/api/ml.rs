//! The service's endpoints. Each reads its body (JSON with base64 images, or multipart with file
//! parts), then does all its CPU work (decoding included) in one job on the pipeline pool.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use shared_proto::EmbeddingSpace;
use shared_proto::ml::DetectResponse;
use shared_proto::ml::service::{
    self as wire, BatchMatchResponse, EncodeResponse, FaceInput, GalleryTemplate, MatchResponse,
    MatchVerdict, ReviewStudent, ScoredStudent,
};

use super::{ApiError, AppState, Stage};
use crate::attendance::capture::match_frame;
use crate::attendance::evidence::{FrameEvidence, Unmatched, decide, fuse};
use crate::attendance::{Gallery, Thresholds, Verdict};
use crate::capture::{ImageLimits, decode_image};
use crate::store::TemplateRecord;
use crate::vision::{Face, Pick, Pipeline, VisionError, select_face};

/// `GET /health`: the process answers (no key needed).
pub(super) async fn health() -> &'static str {
    "ok\n"
}

/// `GET /v1/ml/status`: models, space, thresholds, provider, version.
pub(super) async fn status(State(s): State<AppState>) -> Json<wire::StatusResponse> {
    Json(s.status.clone())
}

/// `GET /metrics`.
pub(super) async fn metrics(State(s): State<AppState>) -> Response {
    let text = s
        .metrics
        .render(s.pool.waiting(), s.pool.capacity(), s.pool.pipelines());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

/// A request's body: its images by name (file parts, or base64 fields) and its other fields.
struct Input {
    files: HashMap<String, Vec<u8>>,
    fields: Map<String, Value>,
}

impl Input {
    async fn read(request: Request) -> Result<Input, ApiError> {
        let multipart = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        let mut input = Input {
            files: HashMap::new(),
            fields: Map::new(),
        };
        if multipart {
            let mut parts = Multipart::from_request(request, &())
                .await
                .map_err(|e| ApiError::Invalid(e.body_text()))?;
            let failed = |e: axum::extract::multipart::MultipartError| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge(e.body_text())
                } else {
                    ApiError::Invalid(e.body_text())
                }
            };
            while let Some(part) = parts.next_field().await.map_err(failed)? {
                let name = part.name().unwrap_or_default().to_owned();
                let is_file = part.file_name().is_some()
                    || part.content_type().is_some_and(|t| t.starts_with("image/"));
                let bytes = part.bytes().await.map_err(failed)?;
                if is_file {
                    input.files.insert(name, bytes.to_vec());
                } else {
                    // A JSON part (the gallery, a pick) or a plain word.
                    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&bytes).into_owned())
                    });
                    input.fields.insert(name, value);
                }
            }
        } else {
            let bytes = Bytes::from_request(request, &()).await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge(e.body_text())
                } else {
                    ApiError::Invalid(e.body_text())
                }
            })?;
            match serde_json::from_slice(&bytes) {
                Ok(Value::Object(fields)) => input.fields = fields,
                Ok(_) => return Err(ApiError::Invalid("the body must be a JSON object".into())),
                Err(e) => {
                    return Err(ApiError::Invalid(format!(
                        "the body is neither multipart/form-data nor JSON: {e}"
                    )));
                }
            }
        }
        Ok(input)
    }

    /// The image called `name`: a file part, or a base64 field.
    fn image(&mut self, name: &str) -> Result<Vec<u8>, ApiError> {
        if let Some(bytes) = self.files.remove(name) {
            return Ok(bytes);
        }
        match self.fields.remove(name) {
            Some(Value::String(text)) => base64_image(name, &text),
            Some(_) => Err(ApiError::Invalid(format!(
                "\"{name}\" must be a base64 string or a file part"
            ))),
            None => Err(ApiError::Invalid(format!(
                "\"{name}\" is missing: send the image as a file part or as base64 in JSON"
            ))),
        }
    }

    /// The field called `name`, if sent.
    fn field<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>, ApiError> {
        self.fields
            .remove(name)
            .map(|v| {
                serde_json::from_value(v).map_err(|e| ApiError::Invalid(format!("\"{name}\": {e}")))
            })
            .transpose()
    }

    /// One side of a match: a file part, or a `FaceInput` field.
    fn face(&mut self, name: &str) -> Result<Side, ApiError> {
        if let Some(bytes) = self.files.remove(name) {
            return Ok(Side::Image(bytes));
        }
        match self.field::<FaceInput>(name)? {
            Some(FaceInput::Image { image }) => Ok(Side::Image(base64_image(name, &image)?)),
            Some(FaceInput::Embedding { embedding, space }) => {
                Ok(Side::Embedding(embedding, space))
            }
            None => Err(ApiError::Invalid(format!(
                "\"{name}\" is missing: an image (file part or {{\"image\": base64}}) or {{\"embedding\", \"space\"}}"
            ))),
        }
    }
}

fn base64_image(name: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    let text = text.trim();
    // A data URL's prefix is allowed: browsers make them.
    let text = text.split_once(";base64,").map_or(text, |(_, data)| data);
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .map_err(|e| ApiError::Invalid(format!("\"{name}\" is not base64: {e}")))
}

enum Side {
    Image(Vec<u8>),
    Embedding(Vec<f32>, EmbeddingSpace),
}

fn image_error(e: crate::capture::ImageLoadError) -> ApiError {
    ApiError::Image {
        code: e.code(),
        message: e.to_string(),
    }
}

fn vision_error(e: VisionError) -> ApiError {
    ApiError::Image {
        code: shared_proto::ml::ErrorCode::Inference,
        message: e.to_string(),
    }
}

/// Times one stage of a job.
struct Timer<'a> {
    service: &'a super::Service,
    route: &'static str,
}

impl Timer<'_> {
    fn time<T>(&self, stage: Stage, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = work();
        self.service
            .metrics
            .time(self.route, stage, started.elapsed().as_secs_f64());
        out
    }

    fn decode(
        &self,
        bytes: &[u8],
        name: &str,
        limits: &ImageLimits,
    ) -> Result<image::RgbImage, ApiError> {
        self.time(Stage::Decode, || decode_image(bytes, name, limits))
            .map_err(image_error)
    }

    fn faces(
        &self,
        pipeline: &mut Pipeline,
        frame: &image::RgbImage,
    ) -> Result<Vec<Face>, ApiError> {
        self.time(Stage::Detect, || pipeline.faces(frame))
            .map_err(vision_error)
    }

    /// The photo's one usable face, embedded.
    fn usable(
        &self,
        pipeline: &mut Pipeline,
        bytes: &[u8],
        name: &str,
        limits: &ImageLimits,
        pick: Option<Pick>,
    ) -> Result<(Face, Vec<f32>), ApiError> {
        let frame = self.decode(bytes, name, limits)?;
        let mut faces = self.faces(pipeline, &frame)?;
        let chosen =
            select_face(&faces, &pipeline.gate, pick, frame.dimensions()).map_err(|reason| {
                ApiError::Image {
                    code: reason.code(),
                    message: format!("{name}: {reason}"),
                }
            })?;
        let face = faces.swap_remove(chosen);
        let vector = self
            .time(Stage::Embed, || pipeline.embed([&face.aligned]))
            .map_err(vision_error)?
            .pop()
            .map(|e| e.vector)
            .ok_or_else(|| ApiError::Internal("the embedder gave no vector".into()))?;
        Ok((face, vector))
    }
}

/// Runs `work` on the pool, timing its wait for a pipeline; a full queue is 503 at once.
async fn on_pool<T, F>(s: &AppState, route: &'static str, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut Pipeline, Timer<'_>) -> Result<T, ApiError> + Send + 'static,
{
    let service = Arc::clone(s);
    let ran = s
        .pool
        .run(move |pipeline| {
            let timer = Timer {
                service: &service,
                route,
            };
            work(pipeline, timer)
        })
        .await;
    match ran {
        Ok((answer, waited)) => {
            s.metrics.time(route, Stage::Queue, waited.as_secs_f64());
            answer
        }
        Err(e) => {
            if matches!(e, super::PoolError::Busy { .. }) {
                s.metrics.count_busy();
            }
            Err(e.into())
        }
    }
}

/// `POST /v1/ml/detect-faces`: every face with its box, landmarks, quality and liveness.
pub(super) async fn detect_faces(
    State(s): State<AppState>,
    request: Request,
) -> Result<Json<DetectResponse>, ApiError> {
    let mut input = Input::read(request).await?;
    let bytes = input.image("image")?;
    let limits = s.limits.clone();
    let answer = on_pool(&s, wire::DETECT_FACES, move |pipeline, timer| {
        let frame = timer.decode(&bytes, "image", &limits)?;
        let mut faces = timer.faces(pipeline, &frame)?;
        timer
            .time(Stage::Detect, || {
                pipeline.score_liveness(&frame, &mut faces)
            })
            .map_err(vision_error)?;
        Ok(DetectResponse {
            image: "image".into(),
            width: frame.width(),
            height: frame.height(),
            faces: faces.iter().map(Face::detected).collect(),
        })
    })
    .await?;
    Ok(Json(answer))
}

/// `POST /v1/ml/encode-face`: the photo's one usable face as a template (the CLI's `embed`,
/// with its refusals: `no_face`, `several_faces`, `face_too_small`, `face_too_blurry`).
pub(super) async fn encode_face(
    State(s): State<AppState>,
    request: Request,
) -> Result<Json<EncodeResponse>, ApiError> {
    let mut input = Input::read(request).await?;
    let bytes = input.image("image")?;
    let pick: Option<Pick> = input.field("pick")?;
    let limits = s.limits.clone();
    let answer = on_pool(&s, wire::ENCODE_FACE, move |pipeline, timer| {
        let (face, embedding) = timer.usable(pipeline, &bytes, "image", &limits, pick)?;
        Ok(EncodeResponse {
            model: pipeline.model_id().clone(),
            space: pipeline.space().clone(),
            embedding,
            face: face.detected(),
        })
    })
    .await?;
    Ok(Json(answer))
}

/// `POST /v1/ml/match-faces`: two faces (images or templates), their similarity and what it means
/// at the manifest's thresholds.
pub(super) async fn match_faces(
    State(s): State<AppState>,
    request: Request,
) -> Result<Json<MatchResponse>, ApiError> {
    let mut input = Input::read(request).await?;
    let a = input.face("a")?;
    let b = input.face("b")?;
    let pick: Option<Pick> = input.field("pick")?;
    let limits = s.limits.clone();
    let answer = on_pool(&s, wire::MATCH_FACES, move |pipeline, timer| {
        let mut vector = |side: Side, name: &str| -> Result<Vec<f32>, ApiError> {
            match side {
                Side::Image(bytes) => Ok(timer.usable(pipeline, &bytes, name, &limits, pick)?.1),
                Side::Embedding(vector, space) => {
                    check_template(pipeline, &space, &vector, name)?;
                    Ok(vector)
                }
            }
        };
        let a = vector(a, "a")?;
        let b = vector(b, "b")?;
        let similarity = crate::vision::dot(&a, &b);
        let thresholds = Thresholds::of(pipeline);
        Ok(MatchResponse {
            similarity,
            verdict: match thresholds.verdict(similarity) {
                Verdict::Confident => MatchVerdict::Same,
                Verdict::Review => MatchVerdict::Review,
                Verdict::Unknown => MatchVerdict::Different,
            },
            confident: thresholds.confident,
            review: thresholds.review,
            space: pipeline.space().clone(),
        })
    })
    .await?;
    Ok(Json(answer))
}

/// A template sent by a caller must be of this pipeline's space and size.
fn check_template(
    pipeline: &Pipeline,
    space: &EmbeddingSpace,
    vector: &[f32],
    name: &str,
) -> Result<(), ApiError> {
    if space != pipeline.space() {
        return Err(ApiError::Invalid(format!(
            "{name}: the template is of space {space}, this service embeds in {}: templates compare only within one space",
            pipeline.space()
        )));
    }
    let dims = pipeline.manifest().embedder.dimensions;
    if vector.len() != dims {
        return Err(ApiError::Invalid(format!(
            "{name}: the template has {} numbers, the space has {dims}",
            vector.len()
        )));
    }
    if vector.iter().any(|v| !v.is_finite()) {
        return Err(ApiError::Invalid(format!(
            "{name}: the template holds a non-finite number"
        )));
    }
    Ok(())
}

/// `POST /v1/ml/batch-match`: a frame's faces against a gallery, decided as a capture decides.
pub(super) async fn batch_match(
    State(s): State<AppState>,
    request: Request,
) -> Result<Json<BatchMatchResponse>, ApiError> {
    let mut input = Input::read(request).await?;
    let bytes = input.image("image")?;
    let space: EmbeddingSpace = input.field("space")?.ok_or_else(|| {
        ApiError::Invalid("\"space\" is missing: the gallery's embedding space".into())
    })?;
    let gallery: Vec<GalleryTemplate> = input.field("gallery")?.ok_or_else(|| {
        ApiError::Invalid("\"gallery\" is missing: [{\"student\", \"embedding\"}, ...]".into())
    })?;
    if gallery.is_empty() {
        return Err(ApiError::Invalid(
            "the gallery is empty: send at least one template".into(),
        ));
    }
    let limits = s.limits.clone();
    let answer = on_pool(&s, wire::BATCH_MATCH, move |pipeline, timer| {
        for (i, t) in gallery.iter().enumerate() {
            check_template(
                pipeline,
                &space,
                &t.embedding,
                &format!("gallery[{i}] ({})", t.student),
            )?;
        }
        let thresholds = Thresholds::of(pipeline);
        let dims = pipeline.manifest().embedder.dimensions;
        let gallery = Gallery::new(
            dims,
            gallery
                .into_iter()
                .enumerate()
                .map(|(i, t)| TemplateRecord {
                    uuid: i.to_string(),
                    student_id: t.student,
                    vector: t.embedding,
                }),
        );
        let roster = gallery.students().to_vec();
        let frame = timer.decode(&bytes, "image", &limits)?;
        let found = timer
            .time(Stage::MatchFrame, || {
                match_frame(pipeline, &frame, &gallery, thresholds)
            })
            .map_err(vision_error)?;
        // Nobody beyond the gallery is known here: every face left over is an unknown face.
        let evidence = FrameEvidence {
            matches: found.matches,
            unmatched: found
                .leftover
                .iter()
                .map(|_| Unmatched {
                    nearest: None,
                    score: f32::MIN,
                })
                .collect(),
            too_small: found.too_small,
        };
        let fused = fuse(&[evidence], &roster, thresholds);
        let decisions = decide(&fused, &roster, &[], thresholds);
        let scored = |s: crate::store::Scored| ScoredStudent {
            student: s.student,
            score: s.score,
        };
        Ok(BatchMatchResponse {
            width: frame.width(),
            height: frame.height(),
            present: decisions.present.into_iter().map(scored).collect(),
            review: decisions
                .review
                .into_iter()
                .map(|r| ReviewStudent {
                    student: r.student,
                    candidates: r.candidates.into_iter().map(scored).collect(),
                })
                .collect(),
            absent: decisions.absent,
            unknown_faces: fused.unknown_faces,
            too_small_faces: fused.too_small_faces,
        })
    })
    .await?;
    Ok(Json(answer))
}
