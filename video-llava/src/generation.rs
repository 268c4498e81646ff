//! Generation parameters, logits processing (temperature, top-k, top-p, repetition penalty),
//! stop conditions and incremental detokenizing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How to pick each next token.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationParams {
    /// The most tokens to generate.
    pub max_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f64,
    /// Nucleus sampling threshold (1.0 = off).
    pub top_p: f64,
    /// Keep only the k most likely tokens (None = off).
    pub top_k: Option<usize>,
    /// > 1 penalizes tokens already in the prompt or output (transformers' convention).
    pub repetition_penalty: f32,
    /// Seed for sampling; None = from entropy.
    pub seed: Option<u64>,
    /// Stop when the decoded output ends with any of these (the stop string is not returned).
    pub stop: Vec<String>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: None,
            repetition_penalty: 1.0,
            seed: None,
            stop: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced its end-of-sequence token.
    Eos,
    /// The output reached one of the stop strings.
    StopString,
    /// `max_new_tokens` were generated.
    MaxTokens,
    /// A [`CancelToken`] was cancelled or the streaming callback asked to stop.
    Cancelled,
}

impl StopReason {
    /// `"eos"`, `"stop_string"`, `"max_tokens"` or `"cancelled"`, as the bindings report it.
    pub fn as_str(&self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::StopString => "stop_string",
            StopReason::MaxTokens => "max_tokens",
            StopReason::Cancelled => "cancelled",
        }
    }
}

/// A flag another thread sets to stop a generation at the next token.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks the generation to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed)
    }
    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
