//! Generation parameters, logits processing (temperature, top-k, top-p, repetition penalty),
//! stop conditions and incremental detokenizing.
//!
//! The order of the logits processing is transformers': repetition penalty over every id seen
//! (prompt and output), then — when sampling — temperature, top-k, top-p, and a draw from the
//! softmax. Temperature 0 is greedy decoding (argmax, ties to the lowest id like `torch.argmax`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokenizers::Tokenizer;

use crate::{Error, Result};

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
    /// Stop when the decoded output contains any of these (the stop string and anything after
    /// it are not returned, nor streamed).
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

impl GenerationParams {
    /// Greedy decoding of at most `max_new_tokens` tokens.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            ..Self::default()
        }
    }

    /// Checks every parameter; an [`Error::InvalidRequest`] names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidRequest(m));
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "temperature must be a finite number >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.top_k == Some(0) {
            return bad("top_k must be at least 1 (or unset)".into());
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!(
                "repetition_penalty must be a finite number > 0, got {}",
                self.repetition_penalty
            ));
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop strings must not be empty".into());
        }
        Ok(())
    }

    /// Whether tokens are drawn at random (temperature > 0) rather than picked greedily.
    pub fn is_sampling(&self) -> bool {
        self.temperature > 0.0
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

/// A flag another thread sets to stop a generation: at the next token, or, during the vision
/// towers and the prefill, at the next layer.
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
    /// Whether `other` is a clone of this token (the same flag).
    pub fn same(&self, other: &CancelToken) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

thread_local! {
    /// The token of the stage running on this thread ([`CancelScope::enter`]).
    static STAGE_CANCEL: std::cell::RefCell<Option<CancelToken>> = const { std::cell::RefCell::new(None) };
}

/// Restores the thread's previous stage token when dropped.
pub(crate) struct CancelScope {
    previous: Option<CancelToken>,
}

impl CancelScope {
    /// Makes `cancel` (or, with `None`, no token: an outer stage's does not reach in) the one
    /// this thread's layer loops poll (each vision tower layer, each Llama layer) until the
    /// guard drops, so a cancel stops a long stage (a minute of prefill on the 7B on a CPU)
    /// within one layer instead of at its end. A layer loop that sees it cancelled ends with an
    /// error, which the stage reads as the cancel.
    pub(crate) fn enter(cancel: Option<&CancelToken>) -> Self {
        let previous = STAGE_CANCEL.with(|c| c.replace(cancel.cloned()));
        Self { previous }
    }
}

impl Drop for CancelScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        STAGE_CANCEL.with(|c| c.replace(previous));
    }
}

/// Which layer loop checks [`stage_cancelled`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// A vision tower's layers.
    Vision,
    /// The Llama's layers.
    Text,
}

/// Whether the stage running on this thread was cancelled (a layer loop's check).
pub(crate) fn stage_cancelled(stage: Stage) -> bool {
    #[cfg(test)]
    test_hook::before_check(stage);
    #[cfg(not(test))]
    let _ = stage;
    STAGE_CANCEL.with(|c| c.borrow().as_ref().is_some_and(CancelToken::is_cancelled))
}

/// Cancelling at a chosen layer, so tests can stop a stage in its middle deterministically.
#[cfg(test)]
pub(crate) mod test_hook {
    use std::cell::Cell;

    use super::{Stage, STAGE_CANCEL};

    thread_local! {
        static CANCEL_AT: Cell<Option<(Stage, usize)>> = const { Cell::new(None) };
    }

    /// Cancels the scope's token at the `n`-th check (from 1) of `stage` on this thread.
    pub(crate) fn cancel_at(stage: Stage, n: usize) {
        CANCEL_AT.with(|c| c.set(Some((stage, n))));
    }

    pub(super) fn before_check(stage: Stage) {
        let Some((at, n)) = CANCEL_AT.with(Cell::get) else {
            return;
        };
        if at != stage {
            return;
        }
        if n > 1 {
            CANCEL_AT.with(|c| c.set(Some((at, n - 1))));
            return;
        }
        CANCEL_AT.with(|c| c.set(None));
        STAGE_CANCEL.with(|c| {
            if let Some(token) = c.borrow().as_ref() {
                token.cancel();
            }
        });
    }
}

/// What a layer loop returns once [`stage_cancelled`]: never seen by callers, since the stage
/// that set the scope reads any error after a cancel as the cancel.
pub(crate) const STAGE_CANCELLED: &str = "cancelled between two layers";

/// Picks next tokens from logits by [`GenerationParams`]; remembers the ids seen for the
/// repetition penalty.
#[derive(Debug)]
pub struct LogitsProcessor {
    temperature: f64,
    top_p: f64,
    top_k: Option<usize>,
    repetition_penalty: f32,
    rng: StdRng,
    /// Sorted, deduplicated ids seen so far (the penalty applies once per distinct id).
    seen: Vec<u32>,
}

impl LogitsProcessor {
    /// A processor for `params` (validated here).
    pub fn new(params: &GenerationParams) -> Result<Self> {
        params.validate()?;
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Ok(Self {
            temperature: params.temperature,
            top_p: params.top_p,
            top_k: params.top_k,
            repetition_penalty: params.repetition_penalty,
            rng,
            seen: Vec::new(),
        })
    }

    /// Records ids (the prompt, then each generated token) for the repetition penalty.
    pub fn observe(&mut self, ids: &[u32]) {
        if self.repetition_penalty == 1.0 {
            return;
        }
        for &id in ids {
            if let Err(pos) = self.seen.binary_search(&id) {
                self.seen.insert(pos, id);
            }
        }
    }

    /// Picks the next token from last-position `logits` (modified in place).
    pub fn sample(&mut self, logits: &mut [f32]) -> Result<u32> {
        if logits.is_empty() {
            return Err(Error::InvalidRequest("empty logits".into()));
        }
        self.apply_repetition_penalty(logits);
        if self.temperature <= 0.0 {
            return Ok(argmax(logits));
        }
        let inv_t = (1.0 / self.temperature) as f32;
        logits.iter_mut().for_each(|l| *l *= inv_t);
        if let Some(k) = self.top_k {
            apply_top_k(logits, k);
        }
        if self.top_p < 1.0 {
            apply_top_p(logits, self.top_p);
        }
        Ok(self.draw(logits))
    }

    fn apply_repetition_penalty(&self, logits: &mut [f32]) {
        if self.repetition_penalty == 1.0 {
            return;
        }
        let p = self.repetition_penalty;
        for &id in &self.seen {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = if *l < 0.0 { *l * p } else { *l / p };
            }
        }
    }

    /// A draw from `softmax(logits)`; `-inf` entries have probability 0.
    fn draw(&mut self, logits: &[f32]) -> u32 {
        let max = logits
            .iter()
            .copied()
            .filter(|l| !l.is_nan())
            .fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            return argmax(logits);
        }
        let weights: Vec<f64> = logits
            .iter()
            .map(|&l| {
                if l.is_nan() {
                    0.0
                } else {
                    f64::from(l - max).exp()
                }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let mut u = self.rng.random::<f64>() * total;
        let mut last_positive = 0;
        for (i, &w) in weights.iter().enumerate() {
            if w > 0.0 {
                if u < w {
                    return i as u32;
                }
                u -= w;
                last_positive = i;
            }
        }
        // Rounding left a sliver past the last weight.
        last_positive as u32
    }
}

/// The index of the largest value; ties go to the lowest index, NaN is never picked.
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in values.iter().enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    best as u32
}

/// transformers' `TopKLogitsWarper`: keeps every logit >= the k-th largest (ties kept).
fn apply_top_k(logits: &mut [f32], k: usize) {
    if k >= logits.len() {
        return;
    }
    let mut sorted: Vec<f32> = logits.to_vec();
    sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let threshold = sorted[k - 1];
    for l in logits.iter_mut() {
        if *l < threshold {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// transformers' `TopPLogitsWarper`: sorts ascending, drops the tokens whose cumulative
/// probability is <= 1 - top_p, always keeps the most likely one.
fn apply_top_p(logits: &mut [f32], top_p: f64) {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]));
    let max = logits[order[order.len() - 1]];
    let probs: Vec<f64> = order
        .iter()
        .map(|&i| f64::from(logits[i] - max).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    let mut cumulative = 0.0;
    let last = order.len() - 1;
    for (rank, (&i, p)) in order.iter().zip(&probs).enumerate() {
        cumulative += p / total;
        if rank < last && cumulative <= 1.0 - top_p {
            logits[i] = f32::NEG_INFINITY;
        }
    }
}

/// Incremental detokenizing that never splits a UTF-8 character: like candle-examples'
/// `TokenOutputStream`, it decodes a window of recent tokens and emits only the new suffix,
/// once that does not end in U+FFFD (a byte-fallback character still incomplete).
#[derive(Debug)]
pub struct TokenDecoder<'a> {
    tokenizer: &'a Tokenizer,
    tokens: Vec<u32>,
    prev_index: usize,
    current_index: usize,
}

impl<'a> TokenDecoder<'a> {
    /// A decoder for the output of `tokenizer` (special tokens are skipped).
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self {
            tokenizer,
            tokens: Vec::new(),
            prev_index: 0,
            current_index: 0,
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Adds a token; returns the text it completes, if any.
    pub fn push(&mut self, token: u32) -> Result<Option<String>> {
        let prev_text = self.decode(&self.tokens[self.prev_index..self.current_index])?;
        self.tokens.push(token);
        let text = self.decode(&self.tokens[self.prev_index..])?;
        if text.len() > prev_text.len() && !text.ends_with('\u{FFFD}') {
            let piece = suffix_after(&text, &prev_text).to_string();
            self.prev_index = self.current_index;
            self.current_index = self.tokens.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    /// The text held back so far (an incomplete character at the end of the output).
    pub fn flush(&mut self) -> Result<Option<String>> {
        let prev_text = self.decode(&self.tokens[self.prev_index..self.current_index])?;
        let text = self.decode(&self.tokens[self.prev_index..])?;
        self.prev_index = self.current_index;
        self.current_index = self.tokens.len();
        if text.len() > prev_text.len() {
            Ok(Some(suffix_after(&text, &prev_text).to_string()))
        } else {
            Ok(None)
        }
    }

    /// All tokens pushed.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}

/// `text` past its prefix `prev` (or past their common prefix, should decoding ever rewrite
/// earlier characters), on a character boundary.
fn suffix_after<'t>(text: &'t str, prev: &str) -> &'t str {
    if let Some(rest) = text.strip_prefix(prev) {
        return rest;
    }
    let common = text
        .char_indices()
        .zip(prev.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8());
    &text[common..]
}

/// What one generated token changed in the visible output.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OutputStep {
    /// Text to stream now (never part of a stop string).
    pub piece: Option<String>,
    /// A stop string was reached: generation ends here.
    pub stopped: bool,
}

/// The output text of one generation: incremental decoding plus stop strings. Text that could
/// be the start of a stop string is held back until it is clearly not one.
#[derive(Debug)]
pub struct OutputText<'a> {
    decoder: TokenDecoder<'a>,
    stop: Vec<String>,
    /// The decoded text so far (cut at the stop string once one is found).
    text: String,
    /// Bytes of `text` already streamed.
    emitted: usize,
    stopped: bool,
}

impl<'a> OutputText<'a> {
    /// Output decoded with `tokenizer`, ending at the first of `stop`.
    pub fn new(tokenizer: &'a Tokenizer, stop: &[String]) -> Self {
        Self {
            decoder: TokenDecoder::new(tokenizer),
            stop: stop.to_vec(),
            text: String::new(),
            emitted: 0,
            stopped: false,
        }
    }

    /// Adds a generated token.
    pub fn push(&mut self, token: u32) -> Result<OutputStep> {
        if self.stopped {
            return Ok(OutputStep {
                piece: None,
                stopped: true,
            });
        }
        let decoded = self.decoder.push(token)?;
        Ok(self.append(decoded))
    }

    /// Ends the output (EOS, max tokens, cancel): streams whatever was held back.
    pub fn finish(&mut self) -> Result<Option<String>> {
        if self.stopped {
            return Ok(None);
        }
        let decoded = self.decoder.flush()?;
        let step = self.append(decoded);
        if step.stopped {
            return Ok(step.piece);
        }
        let mut piece = step.piece.unwrap_or_default();
        piece.push_str(&self.text[self.emitted..]);
        self.emitted = self.text.len();
        Ok((!piece.is_empty()).then_some(piece))
    }

    fn append(&mut self, decoded: Option<String>) -> OutputStep {
        let Some(decoded) = decoded else {
            return OutputStep::default();
        };
        // A stop string can only end in the new text, so search only from where one could start.
        let longest = self.stop.iter().map(String::len).max().unwrap_or(0);
        let mut search_from = self.text.len().saturating_sub(longest.saturating_sub(1));
        while !self.text.is_char_boundary(search_from) {
            search_from -= 1;
        }
        self.text.push_str(&decoded);
        let found = self
            .stop
            .iter()
            .filter_map(|s| self.text[search_from..].find(s.as_str()))
            .min()
            .map(|i| search_from + i);
        if let Some(at) = found {
            self.text.truncate(at);
            self.stopped = true;
            let piece = self.take_until(at);
            return OutputStep {
                piece,
                stopped: true,
            };
        }
        let hold = self.held_back_len();
        let piece = self.take_until(self.text.len() - hold);
        OutputStep {
            piece,
            stopped: false,
        }
    }

    /// Bytes at the end of `text` that are a proper prefix of some stop string.
    fn held_back_len(&self) -> usize {
        let tail = &self.text[self.emitted..];
        self.stop
            .iter()
            .filter_map(|s| {
                (1..s.len().min(tail.len() + 1))
                    .rev()
                    .filter(|&k| s.is_char_boundary(k))
                    .find(|&k| tail.ends_with(&s[..k]))
            })
            .max()
            .unwrap_or(0)
    }

    fn take_until(&mut self, end: usize) -> Option<String> {
        if end <= self.emitted {
            return None;
        }
        let piece = self.text[self.emitted..end].to_string();
        self.emitted = end;
        Some(piece)
    }

    /// The output so far (without a stop string reached, and without held-back bytes of an
    /// incomplete character).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether a stop string was reached.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Every token pushed.
    pub fn tokens(&self) -> &[u32] {
        self.decoder.tokens()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tokenizer/tokenizer.json");
        Tokenizer::from_file(path).unwrap()
    }

    fn ids(t: &Tokenizer, text: &str) -> Vec<u32> {
        t.encode(text, false).unwrap().get_ids().to_vec()
    }

    fn sampling(seed: u64) -> GenerationParams {
        GenerationParams {
            temperature: 0.8,
            seed: Some(seed),
            ..GenerationParams::default()
        }
    }

    #[test]
    fn validation() {
        assert!(GenerationParams::default().validate().is_ok());
        let cases = [
            GenerationParams {
                temperature: -0.1,
                ..Default::default()
            },
            GenerationParams {
                temperature: f64::NAN,
                ..Default::default()
            },
            GenerationParams {
                top_p: 0.0,
                ..Default::default()
            },
            GenerationParams {
                top_p: 1.5,
                ..Default::default()
            },
            GenerationParams {
                top_k: Some(0),
                ..Default::default()
            },
            GenerationParams {
                repetition_penalty: 0.0,
                ..Default::default()
            },
            GenerationParams {
                repetition_penalty: -1.0,
                ..Default::default()
            },
            GenerationParams {
                max_new_tokens: 0,
                ..Default::default()
            },
            GenerationParams {
                stop: vec![String::new()],
                ..Default::default()
            },
        ];
        for p in cases {
            assert!(
                matches!(p.validate(), Err(Error::InvalidRequest(_))),
                "{p:?}"
            );
            assert!(LogitsProcessor::new(&p).is_err());
        }
    }

    #[test]
    fn greedy_ties_go_to_the_lowest_id() {
        let mut p = LogitsProcessor::new(&GenerationParams::default()).unwrap();
        assert_eq!(p.sample(&mut [0.0, 3.0, 1.0, 3.0]).unwrap(), 1);
        assert_eq!(p.sample(&mut [f32::NAN, -1.0, -2.0]).unwrap(), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 3]), 0);
    }

    #[test]
    fn repetition_penalty_as_transformers() {
        let params = GenerationParams {
            repetition_penalty: 2.0,
            ..Default::default()
        };
        let mut p = LogitsProcessor::new(&params).unwrap();
        p.observe(&[0, 1, 1]);
        let mut logits = [4.0, -1.0, 3.0];
        // 4/2 = 2 < 3 and -1*2 = -2: token 2 wins after the penalty.
        assert_eq!(p.sample(&mut logits).unwrap(), 2);
        assert_eq!(logits, [2.0, -2.0, 3.0]);
    }

    #[test]
    fn top_k_and_top_p_filters() {
        let mut l = [1.0, 5.0, 3.0, 5.0, 2.0];
        apply_top_k(&mut l, 2);
        assert_eq!(
            l,
            [
                f32::NEG_INFINITY,
                5.0,
                f32::NEG_INFINITY,
                5.0,
                f32::NEG_INFINITY
            ]
        );
        let mut l = [1.0, 2.0, 3.0, 2.5];
        apply_top_k(&mut l, 3); // ties at the threshold are kept
        assert_eq!(l, [f32::NEG_INFINITY, 2.0, 3.0, 2.5]);

        // probs: 0.643, 0.237, 0.087, 0.032
        let mut l = [3.0f32, 2.0, 1.0, 0.0];
        apply_top_p(&mut l, 0.8);
        assert_eq!(l[..2], [3.0, 2.0]);
        assert!(l[2..].iter().all(|v| *v == f32::NEG_INFINITY));
        let mut l = [3.0f32, 2.0, 1.0, 0.0];
        apply_top_p(&mut l, 0.01); // the most likely token always stays
        assert_eq!(l[0], 3.0);
        assert!(l[1..].iter().all(|v| *v == f32::NEG_INFINITY));
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_top_k_1_is_greedy() {
        // Distinct values: top-k keeps ties at the threshold, as transformers does.
        let logits: Vec<f32> = (0..1000)
            .map(|i| ((i * 37) % 101) as f32 / 20.0 + i as f32 * 1e-4)
            .collect();
        let run = |params: &GenerationParams| {
            let mut p = LogitsProcessor::new(params).unwrap();
            (0..50)
                .map(|_| p.sample(&mut logits.clone()).unwrap())
                .collect::<Vec<_>>()
        };
        let a = run(&sampling(7));
        assert_eq!(a, run(&sampling(7)));
        assert_ne!(a, run(&sampling(8)));
        // With a flat-ish distribution, sampling picks many different tokens.
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert!(distinct.len() > 5, "{a:?}");

        let greedy = argmax(&logits);
        let top1 = GenerationParams {
            top_k: Some(1),
            ..sampling(3)
        };
        assert!(run(&top1).iter().all(|&t| t == greedy));
        let tiny_p = GenerationParams {
            top_p: 1e-6,
            ..sampling(3)
        };
        assert!(run(&tiny_p).iter().all(|&t| t == greedy));
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // logits ln(1), ln(3): token 1 should come up about 75% of the time.
        let mut p = LogitsProcessor::new(&GenerationParams {
            temperature: 1.0,
            seed: Some(1),
            ..Default::default()
        })
        .unwrap();
        let ones = (0..4000)
            .filter(|_| p.sample(&mut [0.0, 3f32.ln()]).unwrap() == 1)
            .count();
        assert!((2800..3200).contains(&ones), "{ones}");
    }

    #[test]
    fn byte_fallback_emoji_streams_as_one_piece() {
        let t = tokenizer();
        let mut tokens = ids(&t, "Hello");
        // 😀 = F0 9F 98 80 as four byte-fallback tokens, then ✨ = E2 9C A8.
        let bytes = [243, 162, 155, 131, 229, 159, 171];
        for &b in &bytes {
            assert!(t.id_to_token(b).unwrap().starts_with("<0x"));
        }
        tokens.extend(bytes);
        tokens.extend(ids(&t, " world"));
        let mut d = TokenDecoder::new(&t);
        let mut pieces = Vec::new();
        for &id in &tokens {
            if let Some(p) = d.push(id).unwrap() {
                pieces.push(p);
            }
        }
        pieces.extend(d.flush().unwrap());
        assert!(pieces.contains(&"😀".to_string()), "{pieces:?}");
        assert!(pieces.contains(&"✨".to_string()), "{pieces:?}");
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
        assert_eq!(pieces.concat(), t.decode(&tokens, true).unwrap());
        assert_eq!(pieces.concat(), "Hello😀✨ world");
    }

    #[test]
    fn pieces_concatenate_to_the_full_decode() {
        let t = tokenizer();
        let text = "The end.  Two spaces, tabs\tand a\nnewline: déjà vu 東京 — 123";
        let tokens = ids(&t, text);
        let stop: Vec<String> = Vec::new();
        let mut out = OutputText::new(&t, &stop);
        let mut pieces = String::new();
        for &id in &tokens {
            let step = out.push(id).unwrap();
            assert!(!step.stopped);
            pieces.extend(step.piece);
        }
        pieces.extend(out.finish().unwrap());
        assert_eq!(pieces, t.decode(&tokens, true).unwrap());
        assert_eq!(out.text(), pieces);
    }

    #[test]
    fn an_incomplete_character_at_the_end_is_flushed() {
        let t = tokenizer();
        let mut d = TokenDecoder::new(&t);
        assert_eq!(d.push(15043).unwrap().as_deref(), Some("Hello"));
        assert_eq!(d.push(243).unwrap(), None);
        assert_eq!(d.flush().unwrap().as_deref(), Some("\u{FFFD}"));
        assert_eq!(d.flush().unwrap(), None);
    }

    fn stream(t: &Tokenizer, text: &str, stop: &[String]) -> (Vec<String>, String, bool) {
        let mut out = OutputText::new(t, stop);
        let mut pieces = Vec::new();
        let mut stopped = false;
        for &id in &ids(t, text) {
            let step = out.push(id).unwrap();
            pieces.extend(step.piece);
            if step.stopped {
                stopped = true;
                break;
            }
        }
        if !stopped {
            pieces.extend(out.finish().unwrap());
        }
        (pieces, out.text().to_string(), stopped)
    }

    #[test]
    fn stop_strings_are_never_streamed() {
        let t = tokenizer();
        let stop = vec!["USER:".to_string(), "\n\n".to_string()];
        let (pieces, text, stopped) = stream(&t, "A man rides a bike. USER: what else", &stop);
        assert!(stopped);
        assert_eq!(text, "A man rides a bike. ");
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| !p.contains("US")), "{pieces:?}");

        let (pieces, text, stopped) = stream(&t, "one\n\ntwo", &stop);
        assert!(stopped);
        assert_eq!((pieces.concat(), text), ("one".into(), "one".into()));
    }

    #[test]
    fn a_partial_stop_string_is_released_when_it_does_not_complete() {
        let t = tokenizer();
        let stop = vec!["USER:".to_string()];
        let (pieces, text, stopped) = stream(&t, "The USA and USER are words", &stop);
        assert!(!stopped);
        assert_eq!(text, "The USA and USER are words");
        assert_eq!(pieces.concat(), text);
        // Ending on a prefix of the stop string: released by finish().
        let (pieces, text, stopped) = stream(&t, "ends with US", &stop);
        assert!(!stopped);
        assert_eq!(pieces.concat(), "ends with US");
        assert_eq!(text, "ends with US");
    }

    #[test]
    fn stop_string_spanning_tokens_and_multibyte_text() {
        let t = tokenizer();
        let stop = vec!["東京".to_string()];
        let (pieces, text, stopped) = stream(&t, "Tokyo is 東京 in Japanese", &stop);
        assert!(stopped);
        assert_eq!(text, "Tokyo is ");
        assert_eq!(pieces.concat(), "Tokyo is ");
    }
}
