//! The service's endpoints. Each reads its body (JSON with base64 images, or multipart with file
//! parts), then does all its CPU work (decoding included) in one job on the pipeline pool.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use shared_proto::EmbeddingSpace;
use shared_proto::ml::DetectResponse;
use shared_proto::ml::service::{
    self as wire, BatchMatchResponse, EncodeResponse, FaceInput, MatchResponse, MatchVerdict,
    ReviewStudent, ScoredStudent,
};

use super::galleries::{Template, Templates};
use super::{ApiError, AppState, Stage};
use crate::attendance::capture::match_frame;
use crate::attendance::evidence::{FrameEvidence, Unmatched, decide, fuse};
use crate::attendance::{Gallery, Thresholds, Verdict};
use crate::capture::{ImageLimits, decode_image};
use crate::enrolment::{self, LookAlike};
use crate::store::TemplateRecord;
use crate::vision::{AlignedFace, Face, Pick, Pipeline, VisionError, select_face};

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

/// A request's body as it came: JSON, or multipart parts by name. It is parsed in the job, on a
/// pipeline's thread: a gallery of 15,000 templates is a 40-160 MB document, which would hold an
/// async thread for a second.
enum Body {
    Json(Bytes),
    /// (name, is a file, bytes).
    Parts(Vec<(String, bool, Bytes)>),
}

impl Body {
    async fn read(request: Request) -> Result<Body, ApiError> {
        let multipart = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        let too_large_or_invalid = |status: StatusCode, text: String| {
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(text)
            } else {
                ApiError::Invalid(text)
            }
        };
        if !multipart {
            return Bytes::from_request(request, &())
                .await
                .map(Body::Json)
                .map_err(|e| too_large_or_invalid(e.status(), e.body_text()));
        }
        let mut form = Multipart::from_request(request, &())
            .await
            .map_err(|e| ApiError::Invalid(e.body_text()))?;
        let mut parts = Vec::new();
        while let Some(part) = form
            .next_field()
            .await
            .map_err(|e| too_large_or_invalid(e.status(), e.body_text()))?
        {
            let name = part.name().unwrap_or_default().to_owned();
            let is_file = part.file_name().is_some()
                || part.content_type().is_some_and(|t| t.starts_with("image/"));
            let bytes = part
                .bytes()
                .await
                .map_err(|e| too_large_or_invalid(e.status(), e.body_text()))?;
            parts.push((name, is_file, bytes));
        }
        Ok(Body::Parts(parts))
    }

    /// The request as `T`: the JSON body, or the parts as its fields (a file part as a base64
    /// string, a JSON part as its value, any other part as a string).
    fn parse<T: DeserializeOwned>(self) -> Result<T, ApiError> {
        let invalid = |e: serde_json::Error| {
            ApiError::Invalid(format!(
                "the request does not have the fields this call takes: {e}"
            ))
        };
        match self {
            Body::Json(bytes) => serde_json::from_slice(&bytes).map_err(invalid),
            Body::Parts(parts) => {
                let mut fields = Map::new();
                for (name, is_file, bytes) in parts {
                    let value = if is_file {
                        Value::String(base64::engine::general_purpose::STANDARD.encode(&bytes))
                    } else {
                        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(&bytes).into_owned())
                        })
                    };
                    fields.insert(name, value);
                }
                serde_json::from_value(Value::Object(fields)).map_err(invalid)
            }
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
    let body = Body::read(request).await?;
    let limits = s.limits.clone();
    let answer = on_pool(&s, wire::DETECT_FACES, move |pipeline, timer| {
        let asked: wire::ImageRequest = body.parse()?;
        let bytes = base64_image("image", &asked.image)?;
        let frame = timer.decode(&bytes, "image", &limits)?;
        let mut faces = timer.faces(pipeline, &frame)?;
        timer
            .time(Stage::Liveness, || {
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
    let body = Body::read(request).await?;
    let limits = s.limits.clone();
    let answer = on_pool(&s, wire::ENCODE_FACE, move |pipeline, timer| {
        let asked: wire::EncodeRequest = body.parse()?;
        let bytes = base64_image("image", &asked.image)?;
        let pick = asked.pick.map(Pick::from);
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

/// `POST /v1/ml/enrol-faces`: photos through the box's enrolment gate (`enrolment::check_pose`,
/// `check_unlike_others`), each answered on its own; the school's gallery is sent with them, or
/// named (`gallery_base`, `galleries`) with only the templates added since. A call with no photo
/// and a gallery only keeps it: a gallery too large for one call's body goes in parts, each
/// naming the one before.
pub(super) async fn enrol_faces(
    State(s): State<AppState>,
    request: Request,
) -> Result<Json<wire::EnrolResponse>, ApiError> {
    let body = Body::read(request).await?;
    let limits = s.limits.clone();
    let service = Arc::clone(&s);
    let answer = on_pool(&s, wire::ENROL_FACES, move |pipeline, timer| {
        let asked: wire::EnrolRequest = body.parse()?;
        // No photos: a part of a gallery too large for one call, kept for the calls after it.
        if asked.photos.len() > wire::MAX_ENROL_PHOTOS
            || (asked.photos.is_empty() && asked.gallery.is_empty())
        {
            return Err(ApiError::Invalid(format!(
                "send 1 to {} photos a call, or no photo and a part of a gallery; not {} photos and {} templates",
                wire::MAX_ENROL_PHOTOS,
                asked.photos.len(),
                asked.gallery.len()
            )));
        }
        let base = match asked.gallery_base {
            Some(id) => match service.galleries.get(&id, &asked.space) {
                Some(base) => Some((id, base)),
                None => {
                    return Err(ApiError::GalleryUnknown(format!(
                        "gallery {id} is not kept here (the service restarted or let it go): send the whole gallery"
                    )));
                }
            },
            None => None,
        };
        let added = gallery_of(pipeline, &asked.space, asked.gallery)?;
        service
            .metrics
            .count_gallery(added.len(), base.as_ref().map_or(0, |(_, b)| b.len()));
        let keep = |sent: Templates| {
            let id = service.galleries.keep(asked.space.clone(), sent.clone());
            (sent, id)
        };
        let (sent, gallery_id) = match base {
            // Nothing new: the kept gallery is this call's, under its own id.
            Some((id, base)) if added.is_empty() => (base, Some(id)),
            Some((_, base)) => keep(base.and(added)),
            None => keep(Templates::new(added)),
        };
        // Every photo's face first, then one pass over the gallery for all of them.
        let mut made = Vec::with_capacity(asked.photos.len());
        for (i, photo) in asked.photos.iter().enumerate() {
            let name = format!("photos[{i}] ({})", photo.student);
            match enrol_one(&timer, pipeline, photo, &name, &limits) {
                Ok(face) => made.push(Ok((name, face))),
                Err(ApiError::Image { code, message }) => made.push(Err((code, message))),
                Err(e) => return Err(e),
            }
        }
        let confident = Thresholds::of(pipeline).confident;
        // One entry a photo, `None` where it made no face.
        let faces: Vec<Option<(&str, &[f32])>> = asked
            .photos
            .iter()
            .zip(&made)
            .map(|(photo, made)| {
                let (_, (_, vector)) = made.as_ref().ok()?;
                Some((photo.student.as_str(), vector.as_slice()))
            })
            .collect();
        let alike = if asked.force {
            vec![LookAlike::default(); faces.len()]
        } else {
            nearest_others(sent.iter(), &faces, confident)
        };
        // Photos enrolled earlier in this call: checked against like the gallery, kept apart
        // from it (the caller sends them as templates next time).
        let mut enrolled: Vec<(String, Vec<f32>)> = Vec::new();
        let mut outcomes = Vec::with_capacity(asked.photos.len());
        for ((photo, made), mut alike) in asked.photos.into_iter().zip(made).zip(alike) {
            let (name, (face, vector)) = match made {
                Ok(made) => made,
                Err((code, message)) => {
                    outcomes.push(refused(code, message, None));
                    continue;
                }
            };
            if !asked.force {
                for (student, v) in &enrolled {
                    let similarity = crate::vision::dot(v, &vector);
                    alike.offer(&photo.student, student, similarity, confident);
                }
                let matched = alike.best().map(|(other, s)| (other.to_owned(), s));
                if let Err(e) = alike.check(&photo.student) {
                    let code = e
                        .code()
                        .unwrap_or(shared_proto::ml::ErrorCode::LooksLikeAnother);
                    outcomes.push(refused(code, format!("{name}: {e}"), matched));
                    continue;
                }
            }
            // Later photos of the call are checked against this one too, as the box checks
            // against what it stored a moment ago.
            enrolled.push((photo.student, vector.clone()));
            outcomes.push(wire::EnrolOutcome::Enrolled {
                embedding: vector,
                face: face.detected(),
                score: crate::vision::template_score(&face.quality),
                crop: asked.keep_crops.then(|| BASE64.encode(&face.aligned.rgb)),
            });
        }
        Ok(wire::EnrolResponse {
            model: pipeline.model_id().clone(),
            space: pipeline.space().clone(),
            photos: outcomes,
            gallery_id,
        })
    })
    .await?;
    Ok(Json(answer))
}

/// `POST /v1/ml/embed-crops`: aligned faces kept at enrolment, embedded by this service's model
/// (what re-embedding after a model change needs: no detection, no gate, the same face).
pub(super) async fn embed_crops(
    State(s): State<AppState>,
    request: Request,
) -> Result<Json<wire::EmbedCropsResponse>, ApiError> {
    let body = Body::read(request).await?;
    let answer = on_pool(&s, wire::EMBED_CROPS, move |pipeline, timer| {
        let asked: wire::EmbedCropsRequest = body.parse()?;
        if asked.crops.is_empty() || asked.crops.len() > wire::MAX_EMBED_CROPS {
            return Err(ApiError::Invalid(format!(
                "send 1 to {} crops a call, not {}",
                wire::MAX_EMBED_CROPS,
                asked.crops.len()
            )));
        }
        let size = pipeline.embedder.input_size();
        let mut faces = Vec::with_capacity(asked.crops.len());
        for (i, crop) in asked.crops.iter().enumerate() {
            let rgb = BASE64
                .decode(crop)
                .map_err(|e| ApiError::Invalid(format!("crops[{i}] is not base64: {e}")))?;
            shared_proto::crop::check(rgb.len(), size)
                .map_err(|e| ApiError::Invalid(format!("crops[{i}]: {e}")))?;
            faces.push(AlignedFace { size, rgb });
        }
        if asked.size != size {
            return Err(ApiError::Invalid(format!(
                "the crops are {0}x{0}; this service's embedder reads {size}x{size}",
                asked.size
            )));
        }
        let embeddings = timer
            .time(Stage::Embed, || pipeline.embed(&faces))
            .map_err(vision_error)?;
        Ok(wire::EmbedCropsResponse {
            model: pipeline.model_id().clone(),
            space: pipeline.space().clone(),
            embeddings: embeddings.into_iter().map(|e| e.vector).collect(),
        })
    })
    .await?;
    Ok(Json(answer))
}

fn refused(
    error: shared_proto::ml::ErrorCode,
    message: String,
    matched: Option<(String, f32)>,
) -> wire::EnrolOutcome {
    let (other, similarity) = matched.unzip();
    wire::EnrolOutcome::Refused {
        error,
        message,
        other,
        similarity,
    }
}

/// For each of `faces` (student, vector; `None` for a photo without one), the look-alike rule fed
/// every template of `gallery`. One pass over the gallery serves every face: each template is read
/// from memory once per call rather than once per photo (a kept gallery of 6,000 templates is
/// 12 MB).
fn nearest_others<'g>(
    gallery: impl Iterator<Item = &'g Template>,
    faces: &[Option<(&str, &[f32])>],
    confident: f32,
) -> Vec<LookAlike<'g>> {
    let mut alike = vec![LookAlike::default(); faces.len()];
    for (other, v) in gallery {
        for (face, alike) in faces.iter().zip(&mut alike) {
            if let Some((student, face)) = face {
                alike.offer(student, other, crate::vision::dot(v, face), confident);
            }
        }
    }
    alike
}

/// A gallery sent with a call: each template's vector, checked against the service's space and
/// dimensions, with its student.
fn gallery_of(
    pipeline: &Pipeline,
    space: &EmbeddingSpace,
    sent: Vec<wire::GalleryTemplate>,
) -> Result<Vec<(String, Vec<f32>)>, ApiError> {
    let mut gallery = Vec::with_capacity(sent.len());
    for (i, t) in sent.into_iter().enumerate() {
        let name = format!("gallery[{i}] ({})", t.student);
        let student = t.student.clone();
        let vector = t
            .vector()
            .map_err(|why| ApiError::Invalid(format!("{name}: {why}")))?;
        check_template(pipeline, space, &vector, &name)?;
        gallery.push((student, vector));
    }
    Ok(gallery)
}

/// One photo's usable face and its vector, or why not (`ApiError::Image`): the box's gate up to
/// the look-alike check, which needs the gallery.
fn enrol_one(
    timer: &Timer<'_>,
    pipeline: &mut Pipeline,
    photo: &wire::EnrolPhoto,
    name: &str,
    limits: &ImageLimits,
) -> Result<(Face, Vec<f32>), ApiError> {
    let bytes = base64_image(name, &photo.image).map_err(|e| ApiError::Image {
        code: shared_proto::ml::ErrorCode::UndecodableImage,
        message: e.to_string(),
    })?;
    let (face, vector) =
        timer.usable(pipeline, &bytes, name, limits, photo.pick.map(Pick::from))?;
    enrolment::check_pose(&face.quality).map_err(|e| ApiError::Image {
        code: e.code().unwrap_or(shared_proto::ml::ErrorCode::NotFrontal),
        message: format!("{name}: {e}"),
    })?;
    Ok((face, vector))
}

/// `POST /v1/ml/match-faces`: two faces (images or templates), their similarity and what it means
/// at the manifest's thresholds.
pub(super) async fn match_faces(
    State(s): State<AppState>,
    request: Request,
) -> Result<Json<MatchResponse>, ApiError> {
    let body = Body::read(request).await?;
    let limits = s.limits.clone();
    let answer = on_pool(&s, wire::MATCH_FACES, move |pipeline, timer| {
        let asked: wire::MatchRequest = body.parse()?;
        let pick = asked.pick.map(Pick::from);
        let mut vector = |side: FaceInput, name: &str| -> Result<Vec<f32>, ApiError> {
            match side {
                FaceInput::Bare(image) | FaceInput::Image { image } => {
                    let bytes = base64_image(name, &image)?;
                    Ok(timer.usable(pipeline, &bytes, name, &limits, pick)?.1)
                }
                FaceInput::Embedding { embedding, space } => {
                    check_template(pipeline, &space, &embedding, name)?;
                    Ok(embedding)
                }
            }
        };
        let a = vector(asked.a, "a")?;
        let b = vector(asked.b, "b")?;
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
    let body = Body::read(request).await?;
    let limits = s.limits.clone();
    let answer = on_pool(&s, wire::BATCH_MATCH, move |pipeline, timer| {
        let asked: wire::BatchMatchRequest = body.parse()?;
        if asked.gallery.is_empty() {
            return Err(ApiError::Invalid(
                "the gallery is empty: send at least one template".into(),
            ));
        }
        let templates: Vec<TemplateRecord> = gallery_of(pipeline, &asked.space, asked.gallery)?
            .into_iter()
            .enumerate()
            .map(|(i, (student_id, vector))| TemplateRecord {
                uuid: i.to_string(),
                student_id,
                vector,
            })
            .collect();
        let thresholds = Thresholds::of(pipeline);
        let gallery = Gallery::new(pipeline.manifest().embedder.dimensions, templates);
        let roster = gallery.students().to_vec();
        let bytes = base64_image("image", &asked.image)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_face_gets_the_most_alike_other_student_at_or_above_confident() {
        let gallery: Vec<Template> = vec![
            ("ann".into(), vec![1.0, 0.0]),
            ("bob".into(), vec![0.8, 0.6]),
            ("cat".into(), vec![0.0, 1.0]),
        ];
        let faces: [Option<(&str, &[f32])>; 4] = [
            // Most like ann, but she is herself: bob is the other one.
            Some(("ann", &[1.0, 0.0])),
            Some(("dan", &[0.6, 0.8])),
            // A photo without a face.
            None,
            // Like nobody enough.
            Some(("eve", &[-1.0, 0.0])),
        ];
        let alike = nearest_others(gallery.iter(), &faces, 0.7);
        let best: Vec<_> = alike.iter().map(LookAlike::best).collect();
        assert_eq!(best.len(), 4, "one entry a photo");
        assert_eq!(best[0].map(|b| b.0), Some("bob"));
        // bob (0.96) over cat (0.8) and ann (0.6).
        assert_eq!(best[1].map(|b| b.0), Some("bob"));
        assert!((best[1].unwrap().1 - 0.96).abs() < 1e-6);
        assert_eq!(best[2], None);
        assert_eq!(best[3], None);
        assert!(alike[3].check("eve").is_ok());
        assert!(matches!(
            alike[1].check("dan"),
            Err(enrolment::EnrolError::LooksLikeAnother { other, .. }) if other == "bob"
        ));
    }
}
