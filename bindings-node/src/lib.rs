//! Node bindings (napi-rs) for the video-llava engine: the npm package `video-llava`.
//!
//! The binding converts types and errors, nothing else. Every call that decodes or computes runs
//! off the main thread (an `AsyncTask` on the libuv pool for short work, an engine thread of its
//! own for generations and token streams),
//! so the event loop keeps ticking; errors reach JavaScript as `Error`s with a stable `.code`.
//!
//! Modules, one job each:
//! - `args`: arguments converted in the binding, so a bad one rejects instead of throwing.
//! - `error`: engine errors -> JS errors with codes; panics caught before they reach Node.
//! - `source`: a path or bytes from JavaScript -> an engine source.
//! - `frames`: `probe`, `sampleFrames`, `thumbnail`, `storyboard`.
//! - `video`: the `Video` class, one opened video reused by its calls.
//! - `model`: the `VideoLlava` class: loading, `generate`, tokenizing, raw logits.
//! - `conversation`: the `Conversation` class, many questions from one cached prefix.
//! - `request`: generation options from JavaScript -> the engine's request and parameters.
//! - `stream`: `TokenStream`, the async iterator behind `model.stream()`.
//! - `engine_thread`: generations on threads of their own, not libuv's pool.
//! - `cancel`: `AbortSignal` -> the engine's `CancelToken`.
//! - `on_token`: the `onToken` callback, fed from the engine's thread.

// napi-derive leaves the registration of exported items out of `cfg(test)` builds, which
// `cargo clippy --all-targets` checks even with `test = false`: everything would look unused there.
#![cfg_attr(test, allow(dead_code))]

mod args;
mod batch;
mod cancel;
mod conversation;
mod engine_thread;
mod error;
mod frames;
mod model;
mod on_token;
mod request;
mod source;
mod stream;
mod video;
