//! The model's one worker thread and the bounded queue in front of it.
//!
//! Jobs run one at a time in arrival order. Each carries a [`CancelToken`] (set when its client
//! goes away, its deadline passes or the server stops) that the engine polls before every
//! token, and a channel its pieces go out on; a job whose receiver is gone stops at its next
//! piece.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::mpsc;
use video_llava::{CancelToken, Generation, GenerationParams, Request, VideoLlava};

use super::metrics::Metrics;

/// What a job tells its submitter, in order: `Started` once, pieces, then one `Done`.
#[derive(Debug)]
pub enum Event {
    /// The model took the job.
    Started,
    /// Decoded text.
    Piece(String),
    /// The end.
    Done(Result<Generation, JobError>),
}

/// Why a job ended without a generation.
#[derive(Debug)]
pub enum JobError {
    /// The engine's error.
    Model(video_llava::Error),
    /// The deadline passed before the job started.
    TimedOut,
    /// The server stopped before the job started.
    ShuttingDown,
    /// The engine panicked (a bug); the worker goes on with the next job.
    Panicked(String),
}

/// One generation to run.
pub struct Job {
    /// What to answer.
    pub request: Request,
    /// How.
    pub params: GenerationParams,
    /// Stops it.
    pub cancel: CancelToken,
    /// When it must have ended.
    pub deadline: Instant,
    /// Where its events go.
    pub events: mpsc::UnboundedSender<Event>,
}

impl Job {
    /// A job and the receiver of its events.
    pub fn new(
        request: Request,
        params: GenerationParams,
        deadline: Instant,
    ) -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (events, rx) = mpsc::unbounded_channel();
        (
            Self {
                request,
                params,
                cancel: CancelToken::new(),
                deadline,
                events,
            },
            rx,
        )
    }
}

/// Cancels a job when dropped: held by whatever waits for its answer (a handler, a response
/// stream), so a client that disconnects stops its generation.
pub struct CancelOnDrop(pub CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

struct Inner {
    waiting: VecDeque<Job>,
    running: Option<CancelToken>,
    closed: bool,
}

/// The jobs waiting for the model (at most `capacity`) and the one it runs.
pub struct Queue {
    inner: Mutex<Inner>,
    ready: Condvar,
    capacity: usize,
}

/// [`Queue::submit`]'s refusal.
#[derive(Debug)]
pub enum Refused {
    /// `capacity` jobs are waiting already.
    Full(usize),
    /// The server is stopping.
    Closed,
}

impl Queue {
    /// An empty queue holding at most `capacity` waiting jobs.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                waiting: VecDeque::new(),
                running: None,
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job` behind the others, or refuses it.
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(Refused::Closed);
        }
        // Jobs whose clients left no longer hold a place.
        inner.waiting.retain(|j| !j.cancel.is_cancelled());
        if inner.waiting.len() >= self.capacity {
            return Err(Refused::Full(self.capacity));
        }
        inner.waiting.push_back(job);
        drop(inner);
        self.ready.notify_one();
        Ok(())
    }

    /// Jobs waiting (not counting the running one, nor those whose clients left).
    pub fn depth(&self) -> usize {
        let mut inner = self.lock();
        inner.waiting.retain(|j| !j.cancel.is_cancelled());
        inner.waiting.len()
    }

    /// The most jobs that may wait.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Refuses new jobs, ends the waiting ones and cancels the running one.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        for job in inner.waiting.drain(..) {
            let _ = job.events.send(Event::Done(Err(JobError::ShuttingDown)));
        }
        if let Some(cancel) = &inner.running {
            cancel.cancel();
        }
        drop(inner);
        self.ready.notify_all();
    }

    /// The next job to run, waiting for one; `None` once closed.
    fn next(&self) -> Option<Job> {
        let mut inner = self.lock();
        loop {
            if inner.closed {
                return None;
            }
            if let Some(job) = inner.waiting.pop_front() {
                inner.running = Some(job.cancel.clone());
                return Some(job);
            }
            inner = self.ready.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn finished(&self) {
        self.lock().running = None;
    }
}

/// Starts the thread that runs `queue`'s jobs on `model` until the queue closes.
pub fn start_worker(model: VideoLlava, queue: Arc<Queue>, metrics: Arc<Metrics>) {
    let worker_queue = queue.clone();
    let spawned = std::thread::Builder::new()
        .name("video-llava-worker".into())
        .spawn(move || {
            while let Some(job) = worker_queue.next() {
                run(&model, job, &metrics);
                worker_queue.finished();
            }
        });
    if let Err(e) = spawned {
        eprintln!("error: serve: starting the model worker: {e}");
        queue.close();
    }
}

fn run(model: &VideoLlava, job: Job, metrics: &Metrics) {
    let Job {
        request,
        params,
        cancel,
        deadline,
        events,
    } = job;
    if cancel.is_cancelled() {
        // The client left (nobody reads this) or the server is stopping.
        let _ = events.send(Event::Done(Err(JobError::ShuttingDown)));
        return;
    }
    if Instant::now() >= deadline {
        let _ = events.send(Event::Done(Err(JobError::TimedOut)));
        return;
    }
    if events.send(Event::Started).is_err() {
        return;
    }
    metrics.generation_started();
    let mut on_piece = |piece: &str| {
        if Instant::now() >= deadline {
            cancel.cancel();
        }
        if events.send(Event::Piece(piece.to_string())).is_err() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        model.generate(&request, &params, Some(&cancel), &mut on_piece)
    }));
    let outcome = match result {
        Ok(Ok(generation)) => {
            metrics.generation_finished(&generation);
            Ok(generation)
        }
        Ok(Err(e)) => Err(JobError::Model(e)),
        Err(payload) => Err(JobError::Panicked(crate::panic_message(payload.as_ref()))),
    };
    metrics.generation_ended();
    let _ = events.send(Event::Done(outcome));
}
