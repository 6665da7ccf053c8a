//! The pipelines the service infers on: a fixed number, each owned by its own thread, fed from
//! one bounded queue. Inference never runs on the async threads (a 100 ms detection there would
//! stall every other request), and a full queue is refused at once rather than waited on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::vision::Pipeline;

/// A job gets its pipeline and how long it waited for it.
type Job = Box<dyn FnOnce(&mut Pipeline, Duration) + Send>;

/// Why a job did not run.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(
        "all {pipelines} pipelines are busy and {queued} requests are waiting: try again shortly"
    )]
    Busy { pipelines: usize, queued: usize },
    #[error("the inference thread stopped (a model run panicked): restart the service")]
    Stopped,
}

pub struct Pool {
    queue: SyncSender<(Instant, Job)>,
    /// Jobs queued and not yet taken by a pipeline.
    waiting: Arc<AtomicUsize>,
    pipelines: usize,
    capacity: usize,
}

impl Pool {
    /// Starts one thread per pipeline; at most `capacity` jobs wait for one.
    pub fn start(pipelines: Vec<Pipeline>, capacity: usize) -> Pool {
        let n = pipelines.len();
        let (queue, jobs) = sync_channel::<(Instant, Job)>(capacity);
        let jobs = Arc::new(Mutex::new(jobs));
        let waiting = Arc::new(AtomicUsize::new(0));
        for (i, pipeline) in pipelines.into_iter().enumerate() {
            let jobs = Arc::clone(&jobs);
            let waiting = Arc::clone(&waiting);
            let spawned = std::thread::Builder::new()
                .name(format!("pipeline-{i}"))
                .spawn(move || work(pipeline, &jobs, &waiting));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a pipeline thread");
            }
        }
        Pool {
            queue,
            waiting,
            pipelines: n,
            capacity,
        }
    }

    pub fn pipelines(&self) -> usize {
        self.pipelines
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Jobs waiting for a pipeline now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Runs `work` on the next free pipeline; `Busy` at once when the queue is full. The answer
    /// carries how long the job waited for a pipeline.
    pub async fn run<T, F>(&self, work: F) -> Result<(T, Duration), PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Pipeline) -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |pipeline: &mut Pipeline, waited: Duration| {
            let _ = reply.send((work(pipeline), waited));
        });
        self.waiting.fetch_add(1, Ordering::Relaxed);
        match self.queue.try_send((Instant::now(), job)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                return Err(PoolError::Busy {
                    pipelines: self.pipelines,
                    queued: self.capacity,
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                return Err(PoolError::Stopped);
            }
        }
        answer.await.map_err(|_| PoolError::Stopped)
    }
}

fn work(mut pipeline: Pipeline, jobs: &Mutex<Receiver<(Instant, Job)>>, waiting: &AtomicUsize) {
    loop {
        // One thread at a time waits on the queue; the others wait for the lock.
        let next = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(_) => return,
        };
        let Ok((queued_at, job)) = next else {
            return;
        };
        waiting.fetch_sub(1, Ordering::Relaxed);
        // A panicking job drops its reply (the caller gets `Stopped`); the pipeline goes on.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            job(&mut pipeline, queued_at.elapsed())
        }))
        .is_err()
        {
            tracing::error!("a model run panicked; the request failed, the pipeline goes on");
        }
    }
}
