//! The job queue on disk: one folder per upload under `data_dir/enrol-jobs/`, holding `job.json`
//! (whose photos, what became of each) and the photos still waiting. A job's folder is written
//! under a temporary name and renamed, so a crash leaves a whole job or none; `job.json` is
//! replaced the same way. A photo's file is deleted as soon as it is decided, dropped or expired:
//! photos are not kept. A finished job's report stays a week, for the dashboard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::Millis;

/// How long a finished job's report is kept.
const REPORT_KEPT_MS: Millis = 7 * 24 * 60 * 60 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhotoState {
    /// On disk, for the service.
    Waiting,
    /// A template of it is stored.
    Enrolled,
    /// The gate said no (or it named no student of the school): `reason` says why.
    Refused,
    /// Consent was withdrawn (or the student left) while it waited; deleted unprocessed.
    Dropped,
    /// It waited longer than `photo_max_age_hours`; deleted unprocessed.
    Expired,
}

shared_proto::vocabulary!(PhotoState, "enrolment photo state", {
    Waiting => "waiting",
    Enrolled => "enrolled",
    Refused => "refused",
    Dropped => "dropped",
    Expired => "expired",
});

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Photo {
    /// As uploaded (a ZIP's entry path).
    pub name: String,
    /// The student it is of; `None` when the name matched nobody of the school.
    pub student: Option<String>,
    /// Its file in the job's folder while it waits.
    pub file: Option<String>,
    pub state: PhotoState,
    /// The ML API's code of a refusal (`no_face`, `looks_like_another`, ...), or ours
    /// (`unknown_student`, `no_consent`, `not_an_image`, `too_large`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why it was refused, dropped or expired, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The template made of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

impl Photo {
    pub fn refused(name: &str, student: Option<String>, code: &str, reason: String) -> Photo {
        Photo {
            name: name.to_owned(),
            student,
            file: None,
            state: PhotoState::Refused,
            code: Some(code.to_owned()),
            reason: Some(reason),
            template: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub school: String,
    /// Who uploaded it.
    pub actor: String,
    /// What was uploaded, in words: "photos of S1" or the ZIP's file name.
    pub upload: String,
    pub created_at: Millis,
    /// Enrol even faces that look like another student's.
    pub force: bool,
    pub photos: Vec<Photo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
}

impl Job {
    pub fn count(&self, state: PhotoState) -> usize {
        self.photos.iter().filter(|p| p.state == state).count()
    }

    pub fn waiting(&self) -> usize {
        self.count(PhotoState::Waiting)
    }

    /// Photos decided (or dropped) so far, for a progress bar.
    pub fn done(&self) -> usize {
        self.photos.len() - self.waiting()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct QueueError {
    path: PathBuf,
    source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
    move |source| QueueError {
        path: path.to_owned(),
        source,
    }
}

/// The jobs of this process, in memory and on disk (the disk is what survives a restart).
pub struct JobQueue {
    dir: PathBuf,
    jobs: BTreeMap<String, Job>,
    /// Jobs whose file could not be read at opening, kept on disk for a later start.
    unreadable: usize,
}

impl JobQueue {
    /// Opens the folder, reading every whole job in it; half-written ones (a crash during an
    /// upload) are deleted.
    pub fn open(dir: &Path) -> Result<JobQueue, QueueError> {
        std::fs::create_dir_all(dir).map_err(at(dir))?;
        let mut jobs = BTreeMap::new();
        let mut unreadable = 0;
        for entry in std::fs::read_dir(dir).map_err(at(dir))? {
            let entry = entry.map_err(at(dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            let file = path.join("job.json");
            // A job that does not parse can never be worked, and its photos are not kept: it is
            // deleted. A file that cannot be read (permissions after a restore, a failing disk)
            // says nothing of the job: it is left for a later start, not deleted.
            let bytes = match std::fs::read(&file) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    tracing::error!(path = %file.display(), error = %e,
                        "cannot read an enrolment job: left as it is until a later start");
                    unreadable += 1;
                    continue;
                }
            };
            match bytes.and_then(|bytes| serde_json::from_slice::<Job>(&bytes).ok()) {
                Some(job) => {
                    jobs.insert(job.id.clone(), job);
                }
                None => {
                    tracing::warn!(path = %path.display(), "an enrolment job that does not parse: deleted");
                    let _ = std::fs::remove_dir_all(&path);
                }
            }
        }
        Ok(JobQueue {
            dir: dir.to_owned(),
            jobs,
            unreadable,
        })
    }

    /// Writes a new job with the bytes of its waiting photos (by their `file` names).
    pub fn create(&mut self, job: Job, files: &[(String, Vec<u8>)]) -> Result<(), QueueError> {
        let tmp = self.dir.join(format!("{}.tmp", job.id));
        std::fs::create_dir_all(&tmp).map_err(at(&tmp))?;
        for (name, bytes) in files {
            let path = tmp.join(name);
            std::fs::write(&path, bytes).map_err(at(&path))?;
        }
        write_json(&tmp.join("job.json"), &job)?;
        let dir = self.dir.join(&job.id);
        std::fs::rename(&tmp, &dir).map_err(at(&dir))?;
        self.jobs.insert(job.id.clone(), job);
        Ok(())
    }

    /// Replaces a job's record, deleting the files of photos no longer waiting.
    pub fn save(&mut self, mut job: Job) -> Result<(), QueueError> {
        let dir = self.dir.join(&job.id);
        for photo in &mut job.photos {
            if photo.state != PhotoState::Waiting
                && let Some(file) = photo.file.take()
            {
                let path = dir.join(file);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(at(&path)(e)),
                }
            }
        }
        write_json(&dir.join("job.json"), &job)?;
        self.jobs.insert(job.id.clone(), job);
        Ok(())
    }

    /// A waiting photo's bytes.
    pub fn photo(&self, job: &str, file: &str) -> Result<Vec<u8>, QueueError> {
        let path = self.dir.join(job).join(file);
        std::fs::read(&path).map_err(at(&path))
    }

    pub fn get(&self, id: &str) -> Option<&Job> {
        self.jobs.get(id)
    }

    /// Every job, oldest first (ids are UUIDv7: time-ordered).
    pub fn all(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// How many jobs could not be read at opening (the log names their folders): the dashboard
    /// says so, since their photos wait unseen until a start reads them.
    pub fn unreadable(&self) -> usize {
        self.unreadable
    }

    pub fn waiting_photos(&self) -> usize {
        self.jobs.values().map(Job::waiting).sum()
    }

    /// Forgets finished jobs whose report is older than a week.
    pub fn prune(&mut self, now: Millis) {
        let old: Vec<String> = self
            .jobs
            .values()
            .filter(|j| j.finished_at.is_some_and(|at| now - at > REPORT_KEPT_MS))
            .map(|j| j.id.clone())
            .collect();
        for id in old {
            let _ = std::fs::remove_dir_all(self.dir.join(&id));
            self.jobs.remove(&id);
        }
    }
}

fn write_json(path: &Path, job: &Job) -> Result<(), QueueError> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(job).map_err(|e| QueueError {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&tmp, bytes).map_err(at(&tmp))?;
    std::fs::rename(&tmp, path).map_err(at(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str) -> Job {
        Job {
            id: id.into(),
            school: "s".into(),
            actor: "admin".into(),
            upload: "photos of a".into(),
            created_at: 1,
            force: false,
            photos: vec![Photo {
                name: "a.jpg".into(),
                student: Some("a".into()),
                file: Some("0.jpg".into()),
                state: PhotoState::Waiting,
                code: None,
                reason: None,
                template: None,
            }],
            finished_at: None,
        }
    }

    #[test]
    fn a_job_survives_a_reopen_and_its_photo_is_deleted_once_decided() {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = JobQueue::open(dir.path()).unwrap();
        queue
            .create(job("j1"), &[("0.jpg".into(), b"jpeg".to_vec())])
            .unwrap();
        // A crash during another upload leaves a temporary folder: it is deleted on open.
        std::fs::create_dir_all(dir.path().join("j2.tmp")).unwrap();
        let mut queue = JobQueue::open(dir.path()).unwrap();
        assert!(!dir.path().join("j2.tmp").exists());
        let mut held = queue.get("j1").unwrap().clone();
        assert_eq!(queue.waiting_photos(), 1);
        assert_eq!(queue.photo("j1", "0.jpg").unwrap(), b"jpeg");
        held.photos[0].state = PhotoState::Enrolled;
        held.finished_at = Some(10);
        queue.save(held).unwrap();
        assert!(!dir.path().join("j1/0.jpg").exists());
        assert_eq!(queue.waiting_photos(), 0);
        let reopened = JobQueue::open(dir.path()).unwrap();
        assert_eq!(reopened.get("j1").unwrap().photos[0].file, None);
        queue.prune(10 + REPORT_KEPT_MS + 1);
        assert!(queue.get("j1").is_none());
        assert!(!dir.path().join("j1").exists());
    }

    /// A job that does not parse is deleted with its photos; one whose file cannot be read is left
    /// on disk, photos and all, for a later start (here `job.json` is a folder: reading it fails
    /// as a permission error would, and the tests may run as root, which reads any file).
    #[test]
    fn a_job_that_cannot_be_read_is_kept_and_one_that_does_not_parse_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let broken = dir.path().join("broken");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join("job.json"), b"{\"id\": ").unwrap();
        std::fs::write(broken.join("0.jpg"), b"jpeg").unwrap();
        let unread = dir.path().join("unread");
        std::fs::create_dir_all(unread.join("job.json")).unwrap();
        std::fs::write(unread.join("0.jpg"), b"jpeg").unwrap();
        let queue = JobQueue::open(dir.path()).unwrap();
        assert_eq!(queue.all().count(), 0);
        assert_eq!(queue.unreadable(), 1);
        assert!(!broken.exists());
        assert!(unread.join("0.jpg").exists());
    }
}
