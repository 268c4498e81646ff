//! `TokenStream`: the async iterator behind `model.stream()`.
//!
//! The generation runs on its own engine thread (a long stream must not hold one of libuv's four
//! pool threads between pulls) and pushes pieces into a channel; each `next()` awaits one.
//! It starts at the first `next()`, and stops (through the engine's cancel token) when the loop is
//! left early, the signal aborts, or the iterator is garbage-collected.

use std::future::Future;
use std::sync::Arc;

use napi::bindgen_prelude::{AsyncGenerator, ObjectFinalize, ToNapiValue};
use napi::tokio::sync::{mpsc, Mutex};
use napi::{sys, Env};
use napi_derive::napi;
use video_llava::{CancelToken, Generation as RsGeneration};

use crate::cancel::AbortListener;
use crate::error::JsFailure;
use crate::model::{run_generation, Engine, Generation};
use crate::request::{Call, Prepared};

/// Pieces buffered between the engine thread and a slow `for await` loop.
const STREAM_BUFFER: usize = 64;

/// What TypeScript sees of [`Piece`]: the stream's item type is named `Piece` in the generated
/// `index.d.ts` (the type generator goes by name), and this alias makes that name a `string` there.
pub mod ts {
    #![allow(dead_code)] // read by the napi type generator only
    use napi_derive::napi;

    /// A piece of generated text, as `onToken` receives it and `model.stream()` yields it.
    #[napi]
    pub type Piece = String;
}

/// What the engine thread sends.
enum Event {
    Piece(String),
    Done(Result<RsGeneration, JsFailure>),
}

/// One item for JavaScript: a piece, or the failure that ends the stream.
///
/// The failure travels as an item because only the main thread can build the coded JS `Error`,
/// and the item's conversion to JavaScript is the first thing that runs there; failing that
/// conversion rejects the `next()` promise with the error.
pub enum Piece {
    /// A text piece.
    Text(String),
    /// The stream failed (or was aborted).
    Failed(JsFailure),
}

impl ToNapiValue for Piece {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        match val {
            // SAFETY: the caller's valid env is passed on.
            Piece::Text(text) => unsafe { String::to_napi_value(env, text) },
            Piece::Failed(failure) => Err(failure.into_napi(&Env::from_raw(env))),
        }
    }
}

struct Pending {
    engine: Engine,
    prepared: Result<Prepared, JsFailure>,
    sender: mpsc::Sender<Event>,
}

/// The pieces of one generation, in order: `for await (const piece of model.stream(...))`.
#[napi(async_iterator, custom_finalize)]
pub struct TokenStream {
    /// Taken by the first `next()`.
    pending: Option<Pending>,
    events: Arc<Mutex<mpsc::Receiver<Event>>>,
    cancel: CancelToken,
    /// The whole generation, once the stream has ended normally.
    finished: Arc<std::sync::Mutex<Option<RsGeneration>>>,
    /// The `abort` listener on the caller's signal, removed when the stream is collected.
    listener: Option<AbortListener>,
}

impl TokenStream {
    /// A stream that runs `call` on `engine` once iterated.
    pub fn new(engine: Engine, mut call: Call) -> Self {
        let listener = call.listener.take();
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        let prepared = match call.sink {
            Some(_) => Err(JsFailure::invalid(
                "stream() yields the pieces itself; onToken is for generate()",
            )),
            None => call.prepared,
        };
        Self {
            pending: Some(Pending {
                engine,
                prepared,
                sender,
            }),
            events: Arc::new(Mutex::new(receiver)),
            cancel: call.cancel,
            finished: Arc::default(),
            listener,
        }
    }

    fn start(&mut self) {
        let Some(Pending {
            engine,
            prepared,
            sender,
        }) = self.pending.take()
        else {
            return;
        };
        let cancel = self.cancel.clone();
        let run = move || {
            let pieces = sender.clone();
            let done = prepared.and_then(|prepared| {
                run_generation(&engine, &prepared, &cancel, None, |piece| {
                    // A full buffer makes the generation wait for the reader (a loop that
                    // stopped pulling does not grow memory without bound); a closed channel
                    // means JavaScript dropped the stream, and the cancel token (set by the
                    // drop) stops the generation.
                    let _ = pieces.blocking_send(Event::Piece(piece.to_owned()));
                })
            });
            let _ = sender.blocking_send(Event::Done(done));
        };
        let spawned = std::thread::Builder::new()
            .name("video-llava-stream".into())
            .spawn(run);
        if let Err(e) = spawned {
            // The closure (and its sender) is gone with the failed spawn: report through a new channel.
            let (sender, receiver) = mpsc::channel(1);
            let _ = sender.try_send(Event::Done(Err(JsFailure::new(
                "ERR_INTERNAL",
                format!("cannot start the generation thread: {e}"),
            ))));
            self.events = Arc::new(Mutex::new(receiver));
        }
    }
}

#[napi]
impl TokenStream {
    /// The whole generation (text, token ids, stop reason, timings) once the loop has run to the
    /// end; `null` before that, or when the stream failed or was left early.
    #[napi(getter)]
    pub fn result(&self) -> Option<Generation> {
        let finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        finished.clone().map(Generation::from)
    }
}

impl ObjectFinalize for TokenStream {
    fn finalize(mut self, env: Env) -> napi::Result<()> {
        // Collected: nobody can pull more pieces, so stop the engine and let go of the signal.
        self.cancel.cancel();
        if let Some(listener) = self.listener.take() {
            listener.remove(&env);
        }
        Ok(())
    }
}

impl Drop for TokenStream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[napi]
impl AsyncGenerator for TokenStream {
    type Yield = Piece;
    type Next = ();
    type Return = ();

    fn next(
        &mut self,
        _value: Option<()>,
    ) -> impl Future<Output = napi::Result<Option<Piece>>> + Send + 'static {
        self.start();
        let events = Arc::clone(&self.events);
        let finished = Arc::clone(&self.finished);
        async move {
            let mut events = events.lock().await;
            Ok(match events.recv().await {
                Some(Event::Piece(text)) => Some(Piece::Text(text)),
                Some(Event::Done(Ok(generation))) => {
                    events.close();
                    *finished.lock().unwrap_or_else(|p| p.into_inner()) = Some(generation);
                    None
                }
                None => None,
                Some(Event::Done(Err(failure))) => {
                    events.close();
                    Some(Piece::Failed(failure))
                }
            })
        }
    }

    fn complete(
        &mut self,
        _value: Option<()>,
    ) -> impl Future<Output = napi::Result<Option<Piece>>> + Send + 'static {
        // Leaving a `for await` loop early lands here: stop the engine, end the stream.
        self.cancel.cancel();
        self.pending = None;
        let events = Arc::clone(&self.events);
        async move {
            events.lock().await.close();
            Ok(None)
        }
    }
}
