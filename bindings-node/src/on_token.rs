//! The `onToken` callback: pieces go to JavaScript through a weak threadsafe function.
//!
//! Calls are non-blocking (generation never waits for JavaScript per token), but a generation
//! waits at its end until every piece has been delivered, so `onToken` has seen the whole text
//! before the promise settles. The function is weak (unref'd): it never keeps the process alive
//! on its own; the pending promise does that while the work runs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use napi::threadsafe_function::{
    ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue,
};
use napi::Status;

/// `(piece: string) => void`, called on the main thread; not error-first; weak.
pub type OnTokenFn = ThreadsafeFunction<String, UnknownReturnValue, String, Status, false, true>;

#[derive(Default)]
struct Delivery {
    delivered: Mutex<usize>,
    arrived: Condvar,
    /// What the callback threw, taken by the task on the main thread.
    thrown: Mutex<Option<napi::Error>>,
    failed: AtomicBool,
}

/// Sends pieces to an `onToken` callback and can wait until all were delivered.
pub struct PieceSink {
    callback: OnTokenFn,
    sent: AtomicUsize,
    delivery: Arc<Delivery>,
}

impl PieceSink {
    /// Wraps the callback.
    pub fn new(callback: OnTokenFn) -> Self {
        Self {
            callback,
            sent: AtomicUsize::new(0),
            delivery: Arc::default(),
        }
    }

    /// Queues `piece` for the callback without waiting for it.
    pub fn send(&self, piece: &str) {
        let delivery = Arc::clone(&self.delivery);
        let status = self.callback.call_with_return_value(
            piece.to_owned(),
            ThreadsafeFunctionCallMode::NonBlocking,
            move |returned, _env| {
                if let Err(thrown) = returned {
                    delivery.failed.store(true, Ordering::SeqCst);
                    let mut slot = delivery.thrown.lock().unwrap_or_else(|p| p.into_inner());
                    slot.get_or_insert(thrown);
                }
                *delivery.delivered.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                delivery.arrived.notify_all();
                Ok(())
            },
        );
        if status == Status::Ok {
            self.sent.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Whether the callback threw (the generation should stop).
    pub fn failed(&self) -> bool {
        self.delivery.failed.load(Ordering::SeqCst)
    }

    /// Waits until every piece sent so far has been handed to the callback, or the environment
    /// is going away (then nothing more will be delivered).
    pub fn flush(&self) {
        let sent = self.sent.load(Ordering::SeqCst);
        let mut delivered = self
            .delivery
            .delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while *delivered < sent && !self.callback.aborted() {
            delivered = self
                .delivery
                .arrived
                .wait_timeout(delivered, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// What the callback threw, if it did (main thread: the error refers to a JS value).
    pub fn take_thrown(&self) -> Option<napi::Error> {
        self.delivery
            .thrown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}
