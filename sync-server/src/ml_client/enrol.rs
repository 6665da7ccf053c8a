//! `Enroller`: uploads become jobs (`JobQueue`), and one task runs them through the ML service
//! when its breaker lets calls through, storing each template made as a `template_added` of the
//! school's central "device", through `Store::apply_events`: the push rules decide it (consent,
//! the school, a template already held), and the change feed carries it to every box.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared_proto::EmbeddingSpace;
use shared_proto::breaker::{Breaker, Link};
use shared_proto::ml::service::{self as wire, EnrolOutcome, EnrolPhoto, EnrolRequest};
use shared_proto::sync::{Consent, Embedding};

use super::gallery::{Delta, SentGalleries, gallery_template};
use super::jobs::{Job, JobQueue, Photo, PhotoState, QueueError};
use super::{MlClient, MlError};
use crate::api::Clock;
use crate::config::MlConfig;
use crate::domain::audit::{Action, Entry};
use crate::domain::consent::allows_templates;
use crate::domain::event::{Body, Event, Template};
use crate::store::{Device, DeviceActivity, Millis, Store, StoreError, TemplateRead};

/// A student's photos at one upload, as the dashboard and the API take them.
pub const MAX_STUDENT_PHOTOS: usize = 5;
/// Entries of one ZIP, photos or not.
const MAX_ZIP_ENTRIES: usize = 20_000;
/// How often the runner looks for work when nothing wakes it (expiry, a breaker's cooldown).
const POLL: Duration = Duration::from_secs(5);

/// One upload.
pub enum Upload {
    /// Up to five photos of one student: (file name, bytes).
    Student {
        student: String,
        photos: Vec<(String, Vec<u8>)>,
    },
    /// A ZIP of photos named by student id (`S123.jpg`, `S123_2.jpg`, `S123/front.jpg`).
    Zip { name: String, bytes: Vec<u8> },
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("no student {0} in this school")]
    UnknownStudent(String),
    #[error(
        "student {student} has no recorded consent for face templates ({state}): record it first"
    )]
    NoConsent {
        student: String,
        state: &'static str,
    },
    #[error("send 1 to {MAX_STUDENT_PHOTOS} photos of a student, not {0}")]
    PhotoCount(usize),
    #[error("{name} is {size} bytes; a photo may have at most {limit}")]
    PhotoTooLarge {
        name: String,
        size: usize,
        limit: usize,
    },
    #[error("not a ZIP file this server can read: {0}")]
    BadZip(String),
    #[error("the ZIP holds no photos (.jpg, .jpeg or .png)")]
    EmptyZip,
    #[error(
        "{waiting} photos already wait for the ML service and this upload has {adding}; at most {max} may wait: try again once they are done"
    )]
    QueueFull {
        waiting: usize,
        adding: usize,
        max: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot keep the photos on disk: {0}")]
    Disk(#[from] QueueError),
}

/// What the dashboard shows of the service and the queue.
#[derive(Clone, Debug)]
pub struct EnrolHealth {
    pub url: String,
    pub breaker: Breaker,
    pub link: Link,
    pub waiting_photos: usize,
    pub max_waiting_photos: usize,
    /// Uploads whose job file could not be read at start (`JobQueue::unreadable`).
    pub unreadable_uploads: usize,
    /// The latest reason a call failed, while the service is not answering.
    pub last_error: Option<String>,
}

pub struct Enroller {
    pub(super) store: Arc<dyn Store>,
    pub(super) client: MlClient,
    pub(super) clock: Arc<dyn Clock>,
    config: MlConfig,
    queue: Mutex<JobQueue>,
    wake: tokio::sync::Notify,
    /// Bumped whenever a job changes, for requests that wait on one.
    changed: tokio::sync::watch::Sender<u64>,
    last_error: Mutex<Option<String>>,
    /// What the service keeps of each school's gallery: later calls send only what is new.
    galleries: SentGalleries,
}

impl Enroller {
    pub fn open(
        store: Arc<dyn Store>,
        config: &MlConfig,
        jobs_dir: &std::path::Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Enroller, anyhow::Error> {
        let client = MlClient::new(config, clock.clone())?;
        let queue = JobQueue::open(jobs_dir)?;
        Ok(Enroller {
            store,
            client,
            clock,
            config: config.clone(),
            queue: Mutex::new(queue),
            wake: tokio::sync::Notify::new(),
            changed: tokio::sync::watch::channel(0).0,
            last_error: Mutex::new(None),
            galleries: SentGalleries::default(),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, JobQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn max_upload_bytes(&self) -> usize {
        self.config.max_upload_bytes
    }

    pub fn health(&self) -> EnrolHealth {
        let (breaker, link) = self.client.breaker();
        // One lock: a guard taken twice in one expression lives to its end, and would wait on
        // itself.
        let (waiting_photos, unreadable_uploads) = {
            let queue = self.queue();
            (queue.waiting_photos(), queue.unreadable())
        };
        EnrolHealth {
            url: self.config.url.clone(),
            breaker,
            link,
            waiting_photos,
            max_waiting_photos: self.config.max_waiting_photos,
            unreadable_uploads,
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    pub fn job(&self, school: &str, id: &str) -> Option<Job> {
        self.queue().get(id).filter(|j| j.school == school).cloned()
    }

    /// A school's jobs, newest first.
    pub fn jobs(&self, school: &str) -> Vec<Job> {
        let mut jobs: Vec<Job> = self
            .queue()
            .all()
            .filter(|j| j.school == school)
            .cloned()
            .collect();
        jobs.reverse();
        jobs
    }

    /// Queues an upload; the runner takes it at once when the service answers.
    pub async fn submit(
        &self,
        school: &str,
        actor: &str,
        upload: Upload,
        force: bool,
    ) -> Result<Job, SubmitError> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let limit = self.config.max_photo_bytes;
        let mut files = Vec::new();
        let mut photos = Vec::new();
        let mut waiting = |photos: &mut Vec<Photo>, name: &str, student: &str, bytes: Vec<u8>| {
            let file = format!("{:05}.{}", files.len(), extension(name).unwrap_or("jpg"));
            photos.push(Photo {
                name: name.to_owned(),
                student: Some(student.to_owned()),
                file: Some(file.clone()),
                state: PhotoState::Waiting,
                code: None,
                reason: None,
                template: None,
            });
            files.push((file, bytes));
        };
        let described = match upload {
            Upload::Student {
                student,
                photos: uploaded,
            } => {
                if uploaded.is_empty() || uploaded.len() > MAX_STUDENT_PHOTOS {
                    return Err(SubmitError::PhotoCount(uploaded.len()));
                }
                let held = self
                    .store
                    .student(school, &student)
                    .await?
                    .filter(|s| s.active)
                    .ok_or_else(|| SubmitError::UnknownStudent(student.clone()))?;
                if !allows_templates(held.consent) {
                    return Err(SubmitError::NoConsent {
                        student,
                        state: consent_words(held.consent),
                    });
                }
                for (name, bytes) in uploaded {
                    if bytes.len() > limit {
                        return Err(SubmitError::PhotoTooLarge {
                            name,
                            size: bytes.len(),
                            limit,
                        });
                    }
                    waiting(&mut photos, &name, &student, bytes);
                }
                format!("photos of {student}")
            }
            Upload::Zip { name, bytes } => {
                let students = self.store.students(school).await?;
                let consent: HashMap<&str, Consent> = students
                    .iter()
                    .filter(|s| s.active)
                    .map(|s| (s.id.as_str(), s.consent))
                    .collect();
                let ids: BTreeSet<&str> = consent.keys().copied().collect();
                for entry in read_zip(&bytes, limit)? {
                    let student = entry.student(&ids);
                    match (student, entry.bytes) {
                        (_, Err(refusal)) => photos.push(Photo::refused(
                            &entry.name,
                            student.map(str::to_owned),
                            refusal.0,
                            refusal.1,
                        )),
                        (None, Ok(_)) => photos.push(Photo::refused(
                            &entry.name,
                            None,
                            "unknown_student",
                            format!(
                                "no student of this school is named by {:?}: name photos by student id (S123.jpg, S123_2.jpg or S123/any.jpg)",
                                entry.name
                            ),
                        )),
                        (Some(student), Ok(_)) if !allows_templates(consent[student]) => photos
                            .push(Photo::refused(
                                &entry.name,
                                Some(student.to_owned()),
                                "no_consent",
                                format!(
                                    "student {student} has no recorded consent for face templates ({})",
                                    consent_words(consent[student])
                                ),
                            )),
                        (Some(student), Ok(bytes)) => {
                            waiting(&mut photos, &entry.name, student, bytes)
                        }
                    }
                }
                if photos.is_empty() {
                    return Err(SubmitError::EmptyZip);
                }
                name
            }
        };
        let now = self.clock.now();
        let mut job = Job {
            id,
            school: school.to_owned(),
            actor: actor.to_owned(),
            upload: described,
            created_at: now,
            force,
            photos,
            finished_at: None,
        };
        if job.waiting() == 0 {
            job.finished_at = Some(now);
        }
        {
            let mut queue = self.queue();
            let waiting = queue.waiting_photos();
            if waiting + job.waiting() > self.config.max_waiting_photos {
                return Err(SubmitError::QueueFull {
                    waiting,
                    adding: job.waiting(),
                    max: self.config.max_waiting_photos,
                });
            }
            queue.create(job.clone(), &files)?;
        }
        tracing::info!(job = %job.id, school, photos = job.photos.len(), waiting = job.waiting(), "enrolment job queued");
        self.changed.send_modify(|n| *n += 1);
        self.wake.notify_one();
        Ok(job)
    }

    /// The job once nothing of it waits, or as it is after `timeout`.
    pub async fn wait(&self, school: &str, id: &str, timeout: Duration) -> Option<Job> {
        let mut changed = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = self.job(school, id)?;
            if job.waiting() == 0 {
                return Some(job);
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                return Some(job);
            }
        }
    }

    /// Runs jobs until `stop` resolves.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let pause = match self.step().await {
                Ok(true) => continue,
                Ok(false) => POLL,
                Err(e) => {
                    let wait = match &e {
                        MlError::BreakerOpen { retry_in_ms, .. } => {
                            Duration::from_millis(*retry_in_ms as u64 + 10).min(POLL)
                        }
                        _ => Duration::from_millis(200),
                    };
                    if !matches!(e, MlError::BreakerOpen { .. }) {
                        tracing::warn!(error = %e, "enrolment waits for the ML service");
                        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(e.to_string());
                    }
                    wait
                }
            };
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// The templates a call of `delta` sends: those it adds to the kept gallery, or without one
    /// every live template of the school in `space`.
    async fn gallery(
        &self,
        school: &str,
        space: &EmbeddingSpace,
        delta: &Delta,
    ) -> Result<Vec<Template>, MlError> {
        let read = match delta.base {
            Some(_) if delta.added.is_empty() => return Ok(Vec::new()),
            Some(_) => TemplateRead::Ids(delta.added.clone()),
            None => TemplateRead::School,
        };
        let mut templates = self
            .store
            .templates_of(school, read)
            .await
            .map_err(|e| MlError::Unreachable(format!("the store: {e}")))?;
        templates.retain(|t| &t.embedding.space == space);
        Ok(templates)
    }

    /// Templates to send beyond `gallery_part` go first in calls without photos, each part
    /// building on the gallery the service kept from the one before, so that no call carries
    /// more than a part: a school of 20,000 templates is ~56 MB of JSON, past the service's
    /// 20 MiB body limit. Answers the delta and the templates left for the call with the photos:
    /// the last part, named on the gallery the others built. A service that keeps no galleries
    /// (as its last answer said), or refuses a part, gets them all with the photos, as before.
    async fn in_parts(
        &self,
        school: &str,
        space: &EmbeddingSpace,
        delta: Delta,
        mut sent: Vec<Template>,
    ) -> Result<(Delta, Vec<Template>), MlError> {
        let part = self.config.gallery_part;
        if sent.len() <= part || self.galleries.keeps_none() {
            return Ok((delta, sent));
        }
        // The last part, 1 to `part` templates, goes with the photos.
        let last = sent.split_off((sent.len() - 1) / part * part);
        let mut built = delta.clone();
        let mut refused = None;
        for chunk in sent.chunks(part) {
            let request = EnrolRequest {
                photos: Vec::new(),
                space: space.clone(),
                gallery_base: built.base.clone(),
                gallery: chunk.iter().map(gallery_template).collect(),
                force: false,
                keep_crops: false,
            };
            match self.client.enrol(&request).await {
                Ok(answer) => match answer.gallery_id {
                    Some(id) => {
                        built.grow(id, chunk);
                        continue;
                    }
                    None => refused = Some("the service keeps no galleries".to_owned()),
                },
                Err(e) if e.is_down() => return Err(e),
                Err(e) => refused = Some(e.to_string()),
            }
            break;
        }
        match refused {
            None => Ok((built, last)),
            Some(why) => {
                tracing::warn!(school, %why, "a gallery in parts: sending it whole instead");
                sent.extend(last);
                Ok((delta, sent))
            }
        }
    }

    /// One batch of one job: `Ok(true)` when it did something, `Ok(false)` when nothing waits,
    /// `Err` when the service cannot take it now (the photos stay waiting).
    async fn step(&self) -> Result<bool, MlError> {
        let now = self.clock.now();
        let max_age = Millis::from(self.config.photo_max_age_hours) * 3_600_000;
        let mut job = {
            let mut queue = self.queue();
            queue.prune(now);
            match queue.all().find(|j| j.waiting() > 0).cloned() {
                Some(job) => job,
                None => return Ok(false),
            }
        };
        if now - job.created_at > max_age {
            for photo in job
                .photos
                .iter_mut()
                .filter(|p| p.state == PhotoState::Waiting)
            {
                photo.state = PhotoState::Expired;
                photo.reason = Some(format!(
                    "waited more than {} hours for the ML service; deleted unprocessed",
                    self.config.photo_max_age_hours
                ));
            }
            self.finish(job).await;
            return Ok(true);
        }
        // Consent is checked again as each photo's turn comes: withdrawn meanwhile, it is dropped.
        let mut batch = Vec::new();
        for (i, photo) in job.photos.iter_mut().enumerate() {
            if photo.state != PhotoState::Waiting {
                continue;
            }
            let student = photo.student.clone().unwrap_or_default();
            let held = match self.store.student(&job.school, &student).await {
                Ok(held) => held,
                Err(e) => return Err(MlError::Unreachable(format!("the store: {e}"))),
            };
            match held {
                Some(s) if s.active && allows_templates(s.consent) => {
                    batch.push(i);
                    if batch.len() == wire::MAX_ENROL_PHOTOS {
                        break;
                    }
                }
                held => {
                    photo.state = PhotoState::Dropped;
                    photo.code = Some("no_consent".into());
                    photo.reason = Some(match held {
                        Some(s) if s.active => format!(
                            "consent {} while the photo waited; deleted unprocessed",
                            consent_words(s.consent)
                        ),
                        _ => "the student left the roster while the photo waited; deleted unprocessed".into(),
                    });
                }
            }
        }
        if batch.is_empty() {
            self.finish(job).await;
            return Ok(true);
        }
        let status = self.client.status().await?;
        let live: Vec<String> = match self.store.live_template_ids(&job.school).await {
            Ok(live) => live
                .into_iter()
                .filter(|(_, space)| space == &status.space)
                .map(|(id, _)| id)
                .collect(),
            Err(e) => return Err(MlError::Unreachable(format!("the store: {e}"))),
        };
        let delta = self.galleries.delta(&job.school, &status.space, &live);
        let sent = self.gallery(&job.school, &status.space, &delta).await?;
        let (mut delta, mut sent) = self
            .in_parts(&job.school, &status.space, delta, sent)
            .await?;
        let mut photos = Vec::with_capacity(batch.len());
        {
            let queue = self.queue();
            batch.retain(|&i| {
                let photo = &mut job.photos[i];
                let file = photo.file.as_deref().unwrap_or_default();
                match queue.photo(&job.id, file) {
                    Ok(bytes) => {
                        photos.push(EnrolPhoto {
                            student: photo.student.clone().unwrap_or_default(),
                            image: base64::Engine::encode(
                                &base64::engine::general_purpose::STANDARD,
                                bytes,
                            ),
                            pick: None,
                        });
                        true
                    }
                    // Lost from the disk (a restore, a hand): reported, and the queue goes on.
                    Err(e) => {
                        tracing::warn!(job = %job.id, error = %e, "a waiting photo is unreadable");
                        photo.state = PhotoState::Refused;
                        photo.code = Some("unreadable".into());
                        photo.reason = Some("the photo could not be read back from the server's disk; upload it again".into());
                        false
                    }
                }
            });
        }
        if batch.is_empty() {
            self.finish(job).await;
            return Ok(true);
        }
        let keep_crops = match self.store.school_settings(&job.school).await {
            Ok(settings) => settings.keep_crops,
            Err(e) => return Err(MlError::Unreachable(format!("the store: {e}"))),
        };
        let mut request = EnrolRequest {
            photos,
            space: status.space.clone(),
            gallery_base: delta.base.clone(),
            gallery: sent.iter().map(gallery_template).collect(),
            force: job.force,
            keep_crops,
        };
        let mut answer = self.client.enrol(&request).await;
        if let Err(MlError::Refused {
            status: 409, error, ..
        }) = &answer
            && error == wire::GALLERY_UNKNOWN
        {
            // The service restarted, or let the school's gallery go for newer ones.
            self.galleries.forget(&job.school);
            let whole = self.galleries.delta(&job.school, &status.space, &live);
            let templates = self.gallery(&job.school, &status.space, &whole).await?;
            (delta, sent) = self
                .in_parts(&job.school, &status.space, whole, templates)
                .await?;
            request.gallery_base = delta.base.clone();
            request.gallery = sent.iter().map(gallery_template).collect();
            answer = self.client.enrol(&request).await;
        }
        let answer = match answer {
            Ok(answer) => {
                let id = answer.gallery_id.clone();
                self.galleries
                    .answered(&job.school, &status.space, delta, &sent, id);
                answer
            }
            Err(e) if e.is_down() => return Err(e),
            Err(e) => {
                // The service read the call and refused it: these photos will not do better.
                for &i in &batch {
                    let photo = &mut job.photos[i];
                    photo.state = PhotoState::Refused;
                    photo.code = Some("service_refused".into());
                    photo.reason = Some(e.to_string());
                }
                self.finish(job).await;
                return Ok(true);
            }
        };
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if answer.photos.len() != batch.len() {
            return Err(MlError::Garbled(format!(
                "{} answers to {} photos",
                answer.photos.len(),
                batch.len()
            )));
        }
        let mut events = Vec::new();
        let mut crops = Vec::new();
        for (&i, outcome) in batch.iter().zip(answer.photos) {
            let photo = &mut job.photos[i];
            match outcome {
                EnrolOutcome::Enrolled {
                    embedding,
                    score,
                    crop,
                    ..
                } => {
                    // The same ids for the same photo of the same job: a crash before the job is
                    // saved makes the retry an event already applied, not a second template.
                    let (event_id, id) = ids_of(&job.id, i);
                    let embedding = Embedding {
                        model: answer.model.clone(),
                        space: answer.space.clone(),
                        vector: embedding,
                    };
                    let student = photo.student.clone().unwrap_or_default();
                    events.push(template_added(
                        (event_id, id.clone()),
                        student,
                        embedding,
                        score,
                        "central".into(),
                        now,
                    ));
                    if let Some(crop) = crop.filter(|_| keep_crops) {
                        crops.push((id.clone(), crop));
                    }
                    photo.template = Some(id);
                }
                EnrolOutcome::Refused { error, message, .. } => {
                    photo.state = PhotoState::Refused;
                    photo.code = Some(error.as_str().to_owned());
                    // The service names the photo by its place in the call; the report names the file.
                    let message = message
                        .split_once("): ")
                        .filter(|(head, _)| head.starts_with("photos["))
                        .map_or(message.as_str(), |(_, rest)| rest);
                    photo.reason = Some(message.to_owned());
                }
            }
        }
        if !events.is_empty() {
            let device = central_device(&job.school);
            let outcome = match self.store.apply_events(&device, &events, now).await {
                Ok(outcome) => outcome,
                Err(e) => return Err(MlError::Unreachable(format!("the store: {e}"))),
            };
            for (i, photo) in job.photos.iter_mut().enumerate() {
                if photo.template.is_none() || photo.state != PhotoState::Waiting {
                    continue;
                }
                let (event_id, _) = ids_of(&job.id, i);
                match outcome.refused.iter().find(|r| r.id == event_id) {
                    None => photo.state = PhotoState::Enrolled,
                    Some(refused) => {
                        photo.state = PhotoState::Refused;
                        photo.code = serde_json::to_value(refused.code)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned));
                        photo.reason = Some(refused.reason.clone());
                        photo.template = None;
                    }
                }
            }
            self.keep_crops(&job, crops).await;
        }
        self.finish(job).await;
        Ok(true)
    }

    /// Keeps the crops of the job's templates that were stored (base64 from the service). A crop
    /// that cannot be kept costs only a later re-embedding: logged, and the job goes on.
    async fn keep_crops(&self, job: &Job, crops: Vec<(String, String)>) {
        for (template, crop) in crops {
            if !job.photos.iter().any(|p| {
                p.state == PhotoState::Enrolled && p.template.as_deref() == Some(&template)
            }) {
                continue;
            }
            let kept = match base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                &crop,
            ) {
                Ok(bytes) => self.store.keep_crop(&job.school, &template, &bytes).await,
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "the service sent a crop that is not base64");
                    continue;
                }
            };
            if let Err(e) = kept {
                tracing::warn!(job = %job.id, error = %e, "cannot keep a face crop");
            }
        }
    }

    /// Saves a job's progress; a job with nothing waiting is finished, with its audit line.
    async fn finish(&self, mut job: Job) {
        let done = job.waiting() == 0 && job.finished_at.is_none();
        if done {
            job.finished_at = Some(self.clock.now());
        }
        let saved = self.queue().save(job.clone());
        if let Err(e) = saved {
            tracing::error!(job = %job.id, error = %e, "cannot save an enrolment job");
        }
        if done {
            let entry = Entry {
                school_id: Some(job.school.clone()),
                at: self.clock.now(),
                actor: job.actor.clone(),
                action: Action::PhotosEnrolled,
                subject: job.upload.clone(),
                detail: format!(
                    "{} of {} photos enrolled, {} refused, {} dropped, {} expired",
                    job.count(PhotoState::Enrolled),
                    job.photos.len(),
                    job.count(PhotoState::Refused),
                    job.count(PhotoState::Dropped),
                    job.count(PhotoState::Expired),
                ),
            };
            if let Err(e) = self.store.append_audit(&entry).await {
                tracing::warn!(job = %job.id, error = %e, "cannot write the enrolment's audit line");
            }
            tracing::info!(job = %job.id, detail = %entry.detail, "enrolment job finished");
        }
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The event id and template id of photo `i` of job `job`: UUIDs (what the push rules take), the
/// job's own with the photo's number mixed into its random bits, so the same every time.
fn ids_of(job: &str, i: usize) -> (String, String) {
    let base = uuid::Uuid::parse_str(job).map_or(0, |u| u.as_u128());
    let n = i as u128 + 1;
    (
        uuid::Uuid::from_u128(base ^ n).to_string(),
        uuid::Uuid::from_u128(base ^ (n << 24)).to_string(),
    )
}

/// A template made here, as the push rules take it: `template_added` with these (event, template)
/// ids, made now.
pub(super) fn template_added(
    (event_id, id): (String, String),
    student: String,
    embedding: Embedding,
    quality: f32,
    source: String,
    now: Millis,
) -> Event {
    Event {
        id: event_id,
        at: now,
        body: Body::TemplateAdded(Template {
            id,
            student,
            embedding,
            quality,
            source,
            created_at: now,
        }),
    }
}

/// Templates made here are filed as a school's own "central" device's: the push rules apply to
/// them as to a box's (`domain::push`), and nobody can sync as it (it has no token).
pub(super) fn central_device(school: &str) -> Device {
    Device {
        id: "central".into(),
        school_id: school.to_owned(),
        name: "central enrolment".into(),
        token_hash: String::new(),
        created_at: 0,
        revoked_at: None,
        last_seen_at: None,
        activity: DeviceActivity::default(),
    }
}

pub(super) fn consent_words(consent: Consent) -> &'static str {
    match consent {
        Consent::Granted => "granted",
        Consent::Withdrawn => "withdrawn",
        _ => "none recorded",
    }
}

fn extension(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        Some("jpg")
    } else if lower.ends_with(".png") {
        Some("png")
    } else {
        None
    }
}

/// One file of a ZIP: its bytes, or a refusal (code, reason).
struct ZipEntry {
    name: String,
    bytes: Result<Vec<u8>, (&'static str, String)>,
}

impl ZipEntry {
    /// The student a file names: its folder (`S123/front.jpg`), its stem (`S123.jpg`), or its
    /// stem less a numbered suffix (`S123_2.jpg`, `S123-2.jpg`, `S123 (2).jpg`).
    fn student<'a>(&self, ids: &BTreeSet<&'a str>) -> Option<&'a str> {
        let path = std::path::Path::new(&self.name);
        let known = |s: &str| ids.get(s).copied();
        if let Some(found) = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|p| p.to_str())
            .and_then(known)
        {
            return Some(found);
        }
        let stem = path.file_stem()?.to_str()?;
        known(stem).or_else(|| {
            let base = stem
                .strip_suffix(')')
                .and_then(|s| s.rsplit_once(" ("))
                .map(|(base, _)| base)
                .or_else(|| {
                    stem.rsplit_once(['_', '-'])
                        .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                        .map(|(base, _)| base)
                })?;
            known(base)
        })
    }
}

/// The photos of a ZIP; folders, hidden files and macOS's resource forks are skipped.
fn read_zip(bytes: &[u8], limit: usize) -> Result<Vec<ZipEntry>, SubmitError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| SubmitError::BadZip(e.to_string()))?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(SubmitError::BadZip(format!(
            "it holds {} entries; at most {MAX_ZIP_ENTRIES}",
            archive.len()
        )));
    }
    let mut entries = Vec::new();
    for index in 0..archive.len() {
        let mut file = archive
            .by_index(index)
            .map_err(|e| SubmitError::BadZip(e.to_string()))?;
        // A name that is not UTF-8 still gets a line in the report.
        let name = file
            .name()
            .map_or_else(|_| format!("entry {}", index + 1), |n| n.into_owned());
        let base = name.rsplit('/').next().unwrap_or_default();
        if file.is_dir()
            || base.is_empty()
            || base.starts_with('.')
            || name.starts_with("__MACOSX/")
        {
            continue;
        }
        let bytes = if extension(&name).is_none() {
            Err(("not_an_image", "not a .jpg, .jpeg or .png file".to_owned()))
        } else if file.size() > limit as u64 {
            Err((
                "too_large",
                format!("{} bytes; a photo may have at most {limit}", file.size()),
            ))
        } else {
            // The declared size can lie: read one byte past the limit at most.
            let mut bytes = Vec::with_capacity(file.size() as usize);
            match (&mut file).take(limit as u64 + 1).read_to_end(&mut bytes) {
                Ok(n) if n > limit => Err((
                    "too_large",
                    format!("more than {limit} bytes; a photo may have at most {limit}"),
                )),
                Ok(_) => Ok(bytes),
                Err(e) => Err(("unreadable", format!("cannot be read from the ZIP: {e}"))),
            }
        };
        entries.push(ZipEntry { name, bytes });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> ZipEntry {
        ZipEntry {
            name: name.into(),
            bytes: Ok(Vec::new()),
        }
    }

    #[test]
    fn a_photos_ids_are_uuids_of_its_job_the_same_every_time() {
        let job = uuid::Uuid::now_v7().simple().to_string();
        let (event, template) = ids_of(&job, 4);
        assert_eq!(ids_of(&job, 4), (event.clone(), template.clone()));
        assert_ne!(event, template);
        assert_ne!(ids_of(&job, 5).0, event);
        for id in [event, template] {
            let parsed = uuid::Uuid::parse_str(&id).unwrap();
            assert_eq!(parsed.get_version_num(), 7, "{id}");
        }
    }

    #[test]
    fn a_photo_names_its_student_by_folder_stem_or_numbered_stem() {
        let ids: BTreeSet<&str> = ["S1", "S1_2", "ann-lee", "S3"].into_iter().collect();
        let student = |name: &str| entry(name).student(&ids);
        assert_eq!(student("S1.jpg"), Some("S1"));
        assert_eq!(student("year/S1.JPG"), Some("S1"));
        // An id that looks numbered is itself first.
        assert_eq!(student("S1_2.jpg"), Some("S1_2"));
        assert_eq!(student("S3_2.jpg"), Some("S3"));
        assert_eq!(student("S3-10.png"), Some("S3"));
        assert_eq!(student("S3 (2).jpg"), Some("S3"));
        assert_eq!(student("ann-lee.jpg"), Some("ann-lee"));
        assert_eq!(student("S3/front.jpg"), Some("S3"));
        assert_eq!(student("S9.jpg"), None);
        assert_eq!(student("S3_x.jpg"), None);
    }

    #[test]
    fn a_zip_is_read_with_limits_and_its_clutter_skipped() {
        use std::io::Write;
        let mut buffer = std::io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut buffer);
            let options = zip::write::SimpleFileOptions::default();
            for (name, bytes) in [
                ("S1.jpg", vec![1u8; 10]),
                ("big.png", vec![2u8; 100]),
                ("notes.txt", b"hello".to_vec()),
                ("__MACOSX/._S1.jpg", vec![0u8; 4]),
                (".DS_Store", vec![0u8; 4]),
            ] {
                zip.start_file(name, options).unwrap();
                zip.write_all(&bytes).unwrap();
            }
            zip.add_directory("S2/", options).unwrap();
            zip.finish().unwrap();
        }
        let entries = read_zip(buffer.get_ref(), 50).unwrap();
        let seen: Vec<(&str, Result<usize, &str>)> = entries
            .iter()
            .map(|e| {
                (
                    e.name.as_str(),
                    e.bytes.as_ref().map(Vec::len).map_err(|r| r.0),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("S1.jpg", Ok(10)),
                ("big.png", Err("too_large")),
                ("notes.txt", Err("not_an_image"))
            ]
        );
        assert!(matches!(
            read_zip(b"not a zip", 50),
            Err(SubmitError::BadZip(_))
        ));
    }
}
