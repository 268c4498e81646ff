//! The model's one worker thread and the bounded queue in front of it.
//!
//! Jobs start in arrival order and run batched: up to `--max-batch` decode together, one
//! forward pass per token for all of them (the core's continuous batching: a job that arrives
//! while others decode is prefilled and joins them; a finished one leaves at once). Each carries
//! a [`CancelToken`] (set when its client goes away, its deadline passes or the server stops)
//! that the engine polls before every token, and a channel its pieces go out on; a job whose
//! receiver is gone stops at its next piece.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::mpsc;
use video_llava::{
    BatchOptions, BatchRequest, CancelToken, Generation, GenerationParams, PrefixCache, Request,
};

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
    running: Vec<CancelToken>,
    closed: bool,
}

/// The jobs waiting for the model (at most `capacity`) and those it runs.
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
                running: Vec::new(),
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

    /// Jobs waiting (not counting the running ones, nor those whose clients left).
    pub fn depth(&self) -> usize {
        let mut inner = self.lock();
        inner.waiting.retain(|j| !j.cancel.is_cancelled());
        inner.waiting.len()
    }

    /// The most jobs that may wait.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Refuses new jobs, ends the waiting ones and cancels the running ones.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        for job in inner.waiting.drain(..) {
            let _ = job.events.send(Event::Done(Err(JobError::ShuttingDown)));
        }
        for cancel in &inner.running {
            cancel.cancel();
        }
        drop(inner);
        self.ready.notify_all();
    }

    /// The next job to run; with `wait`, waits for one. `None` once closed (or, without
    /// `wait`, when none waits).
    fn next(&self, wait: bool) -> Option<Job> {
        let mut inner = self.lock();
        loop {
            if inner.closed {
                return None;
            }
            if let Some(job) = inner.waiting.pop_front() {
                inner.running.push(job.cancel.clone());
                return Some(job);
            }
            if !wait {
                return None;
            }
            inner = self.ready.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A job `next` gave has ended.
    fn finished(&self, cancel: &CancelToken) {
        let mut inner = self.lock();
        // Tokens are shared flags: the same job's is the same allocation.
        if let Some(at) = inner.running.iter().position(|c| c.same(cancel)) {
            inner.running.swap_remove(at);
        }
    }
}

/// Starts the thread that runs `queue`'s jobs on the cache's model until the queue closes,
/// `options.max_batch` at a time; a job about media the cache holds starts from their prefix.
pub fn start_worker(
    cache: Arc<PrefixCache>,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    options: BatchOptions,
) {
    let worker_queue = queue.clone();
    let spawned = std::thread::Builder::new()
        .name("video-llava-worker".into())
        .spawn(move || {
            // Returns when the queue closes; a panic in the engine (a bug) ends the jobs it
            // was running and the worker goes on.
            while !run(&cache, &worker_queue, &metrics, &options) {}
        });
    if let Err(e) = spawned {
        eprintln!("error: serve: starting the model worker: {e}");
        queue.close();
    }
}

/// A job the engine runs: where its events go, when it must end, what stops it.
struct Running {
    events: mpsc::UnboundedSender<Event>,
    deadline: Instant,
    cancel: CancelToken,
}

/// Runs jobs until the queue closes (`true`) or the engine panics (`false`).
fn run(cache: &PrefixCache, queue: &Queue, metrics: &Metrics, options: &BatchOptions) -> bool {
    let running: RefCell<HashMap<usize, Running>> = RefCell::default();
    let mut count = 0usize;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        cache.generate_continuous(
            options,
            &mut |idle| loop {
                let job = queue.next(idle)?;
                let Job {
                    request,
                    params,
                    cancel,
                    deadline,
                    events,
                } = job;
                let refused = if cancel.is_cancelled() {
                    // The client left (nobody reads this) or the server is stopping.
                    Some(JobError::ShuttingDown)
                } else if Instant::now() >= deadline {
                    Some(JobError::TimedOut)
                } else {
                    None
                };
                if let Some(error) = refused {
                    let _ = events.send(Event::Done(Err(error)));
                    queue.finished(&cancel);
                    continue;
                }
                if events.send(Event::Started).is_err() {
                    queue.finished(&cancel);
                    continue;
                }
                metrics.generation_started();
                running.borrow_mut().insert(
                    count,
                    Running {
                        events,
                        deadline,
                        cancel: cancel.clone(),
                    },
                );
                count += 1;
                return Some(BatchRequest {
                    request,
                    params,
                    cancel: Some(cancel),
                });
            },
            &mut |index, piece| {
                let running = running.borrow();
                let Some(job) = running.get(&index) else {
                    return ControlFlow::Break(());
                };
                if Instant::now() >= job.deadline {
                    job.cancel.cancel();
                }
                if job.events.send(Event::Piece(piece.to_string())).is_err() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
            &mut |index, result| {
                let Some(job) = running.borrow_mut().remove(&index) else {
                    return;
                };
                let outcome = match result {
                    Ok(generation) => {
                        metrics.generation_finished(&generation);
                        Ok(generation)
                    }
                    Err(e) => Err(JobError::Model(e)),
                };
                metrics.generation_ended();
                queue.finished(&job.cancel);
                let _ = job.events.send(Event::Done(outcome));
            },
        )
    }));
    let panicked = match result {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => {
            // Only bad batch options end a run this way; the CLI checks them, so a bug.
            eprintln!("error: serve: the model worker stopped: {e}");
            queue.close();
            return true;
        }
        Err(payload) => crate::panic_message(payload.as_ref()),
    };
    for (_, job) in running.borrow_mut().drain() {
        metrics.generation_ended();
        queue.finished(&job.cancel);
        let _ = job
            .events
            .send(Event::Done(Err(JobError::Panicked(panicked.clone()))));
    }
    false
}
