//! Batched decoding: several generations advance together, one forward pass of the language
//! model per step for all of them ([`VideoLlava::generate_batch`]).
//!
//! Decode is bound by reading the weights: a step for four sequences reads them once, not four
//! times. Each member keeps its own KV cache (its own length: no padding, no masks between
//! members); the weight products take one row per member and compute each row exactly as a
//! single step does, and attention runs per member, so every answer is the one
//! [`VideoLlava::generate`] gives it alone. A member's prefill runs on its own when it joins;
//! a finished member leaves at once and the next waiting request takes its place (continuous
//! batching, [`VideoLlava::generate_continuous`]).

use std::borrow::Borrow;
use std::ops::ControlFlow;
use std::time::Instant;

use crate::conversation::Conversation;
use crate::generation::{CancelToken, GenerationParams};
use crate::model::KvCache;
use crate::pipeline::{Generation, Prefill, Prefilled, Prepared, Request, Sequence, VideoLlava};
use crate::prefix_cache::PrefixCache;
use crate::{Error, Result};

/// The most sequences one decode step takes.
pub const MAX_BATCH: usize = crate::model::MAX_BATCH_ROWS;

/// One request of a batch.
#[derive(Clone, Debug)]
pub struct BatchRequest {
    /// What to answer.
    pub request: Request,
    /// How.
    pub params: GenerationParams,
    /// Stops this request alone (polled before every token).
    pub cancel: Option<CancelToken>,
}

impl BatchRequest {
    /// `request` answered with `params`, with no cancel token.
    pub fn new(request: Request, params: GenerationParams) -> Self {
        Self {
            request,
            params,
            cancel: None,
        }
    }
}

/// How a batch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    /// The most sequences decoded together (1 to [`MAX_BATCH`]); more wait and join as others
    /// finish.
    pub max_batch: usize,
    /// The most bytes the running members' KV caches may take together (each holds its prompt
    /// and `max_new_tokens`). A request that would not fit waits until enough members finish;
    /// one that does not fit alone fails with [`Error::KvMemory`]. `None`: no bound.
    pub max_kv_bytes: Option<usize>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            max_batch: 8,
            max_kv_bytes: None,
        }
    }
}

impl BatchOptions {
    /// Checks the options.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_BATCH).contains(&self.max_batch) {
            return Err(Error::InvalidRequest(format!(
                "max_batch must be 1..={MAX_BATCH}, got {}",
                self.max_batch
            )));
        }
        Ok(())
    }
}

/// A member's prompt tokenized, waiting for room in the batch.
enum Planned {
    /// The model's own prefill.
    Fresh(Prepared),
    /// From a cached prefix (`fresh`: computed for this request, which pays for it), the
    /// whole prompt tokenized.
    Conversation {
        conversation: Conversation,
        fresh: bool,
        ids: Vec<u32>,
        positions: usize,
    },
}

impl Planned {
    fn positions(&self) -> usize {
        match self {
            Planned::Fresh(prepared) => prepared.positions,
            Planned::Conversation { positions, .. } => *positions,
        }
    }
}

/// A member being decoded.
struct Member<'a> {
    index: usize,
    prompt_tokens: usize,
    cached: usize,
    cache: KvCache,
    sequence: Sequence<'a>,
    next: u32,
    cancel: Option<CancelToken>,
    timings: crate::Timings,
    bytes: usize,
    decoding_since: Instant,
}

impl VideoLlava {
    /// Answers every request, decoding up to `options.max_batch` of them in each forward pass;
    /// returns the results in the requests' order. Each answer (greedy or seeded) is the one
    /// [`VideoLlava::generate`] gives the same request alone. `on_piece` receives `(index,
    /// piece)` as text is decoded and may return `ControlFlow::Break(())` to stop that request
    /// alone, as its cancel token does. A request that fails (bad media, a prompt too long, one
    /// over the KV bound) fails alone; bad options fail every request.
    pub fn generate_batch<R: Borrow<BatchRequest>>(
        &self,
        requests: &[R],
        options: &BatchOptions,
        on_piece: &mut dyn FnMut(usize, &str) -> ControlFlow<()>,
    ) -> Vec<Result<Generation>> {
        let mut results: Vec<Option<Result<Generation>>> =
            (0..requests.len()).map(|_| None).collect();
        let mut pending = requests.iter().map(Borrow::borrow);
        let run = self.run_batch(
            None,
            options,
            &mut |_| pending.next(),
            on_piece,
            &mut |index, result| results[index] = Some(result),
        );
        if let Err(error) = run {
            return (0..requests.len()).map(|_| Err(error.echo())).collect();
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::InvalidRequest("not answered".into()))))
            .collect()
    }

    /// Continuous batching: takes requests from `next` while there is room, decodes every
    /// running one a token per step, and reports each result to `on_done` as soon as it ends.
    /// Requests are numbered from 0 in the order `next` gives them (the index `on_piece` and
    /// `on_done` receive). `next(idle)` is asked between steps; with `idle` nothing is running
    /// and it may block until a request comes, and its `None` then ends the run; otherwise it
    /// must not block, and `None` means nothing waits now. Returns once idle and `next` gives
    /// nothing; an error only for bad options.
    pub fn generate_continuous<R: Borrow<BatchRequest>>(
        &self,
        options: &BatchOptions,
        next: &mut dyn FnMut(bool) -> Option<R>,
        on_piece: &mut dyn FnMut(usize, &str) -> ControlFlow<()>,
        on_done: &mut dyn FnMut(usize, Result<Generation>),
    ) -> Result<()> {
        self.run_batch(None, options, next, on_piece, on_done)
    }

    /// The batch loop; with `cache`, members start from its prefixes.
    pub(crate) fn run_batch<R: Borrow<BatchRequest>>(
        &self,
        cache: Option<&PrefixCache>,
        options: &BatchOptions,
        next: &mut dyn FnMut(bool) -> Option<R>,
        on_piece: &mut dyn FnMut(usize, &str) -> ControlFlow<()>,
        on_done: &mut dyn FnMut(usize, Result<Generation>),
    ) -> Result<()> {
        options.validate()?;
        let per_position = self.model().kv_bytes_per_position();
        let limit = options.max_kv_bytes.unwrap_or(usize::MAX);
        let mut live: Vec<Member<'_>> = Vec::new();
        let mut used = 0usize;
        // A request tokenized but waiting for KV room (first in line: nothing jumps it).
        let mut waiting: Option<(usize, R, Planned)> = None;
        let mut count = 0usize;
        loop {
            // Admit while there is room.
            while live.len() < options.max_batch {
                let (index, request, planned) = match waiting.take() {
                    Some(w) => w,
                    None => {
                        let Some(request) = next(live.is_empty()) else {
                            break;
                        };
                        let index = count;
                        count += 1;
                        let member = request.borrow();
                        let planned = member
                            .params
                            .validate()
                            .and_then(|()| self.plan(cache, member));
                        match planned {
                            Ok(planned) => (index, request, planned),
                            Err(error) => {
                                on_done(index, Err(error));
                                continue;
                            }
                        }
                    }
                };
                let bytes = planned.positions().saturating_mul(per_position);
                if bytes > limit {
                    on_done(
                        index,
                        Err(Error::KvMemory {
                            needed: bytes,
                            limit,
                        }),
                    );
                    continue;
                }
                if used + bytes > limit {
                    waiting = Some((index, request, planned));
                    break;
                }
                let member = request.borrow();
                match self.admit(index, member, planned, bytes, on_piece) {
                    Ok(Ok(member)) => {
                        used += member.bytes;
                        live.push(member);
                    }
                    Ok(Err(generation)) => on_done(index, Ok(generation)),
                    Err(error) => on_done(index, Err(error)),
                }
            }
            if live.is_empty() {
                if waiting.is_some() {
                    // Nothing runs, so it fits now (it fits alone).
                    continue;
                }
                return Ok(());
            }
            // One step for everyone.
            let ids: Vec<u32> = live.iter().map(|m| m.next).collect();
            let logits = if let [member] = live.as_mut_slice() {
                // Alone: the single-sequence step (the same numbers, none of the batch's
                // bookkeeping).
                self.model()
                    .forward_tokens(&ids, &mut member.cache)
                    .map(|logits| vec![logits])
            } else {
                let mut caches: Vec<&mut KvCache> = live.iter_mut().map(|m| &mut m.cache).collect();
                self.model().forward_batch(&ids, &mut caches)
            };
            let logits = match logits {
                Ok(logits) => logits,
                Err(error) => {
                    for member in live.drain(..) {
                        used -= member.bytes;
                        on_done(member.index, Err(error.echo()));
                    }
                    continue;
                }
            };
            let mut still = Vec::with_capacity(live.len());
            for (mut member, logits) in live.drain(..).zip(logits) {
                let index = member.index;
                let step = member
                    .sequence
                    .step(&logits, member.cancel.as_ref(), &mut |piece| {
                        on_piece(index, piece)
                    });
                match step {
                    Ok(Some(token)) => {
                        member.next = token;
                        still.push(member);
                    }
                    Ok(None) => {
                        used -= member.bytes;
                        on_done(index, member.finish(on_piece));
                    }
                    Err(error) => {
                        used -= member.bytes;
                        on_done(index, Err(error));
                    }
                }
            }
            live = still;
        }
    }

    /// Tokenizes a member's prompt (from a cached prefix where `cache` has one).
    fn plan(&self, cache: Option<&PrefixCache>, member: &BatchRequest) -> Result<Planned> {
        if let Some(cache) = cache {
            if let Some((conversation, fresh)) = cache.conversation_for(&member.request)? {
                let ids = conversation.prompt_ids(&member.request.question, &member.params)?;
                return Ok(Planned::Conversation {
                    conversation,
                    fresh,
                    positions: ids.len() + member.params.max_new_tokens,
                    ids,
                });
            }
        }
        Ok(Planned::Fresh(
            self.prepare(&member.request, &member.params)?,
        ))
    }

    /// Prefills a member and takes its first token: the member, or its generation when it
    /// ended at once (cancelled, EOS first).
    fn admit(
        &self,
        index: usize,
        member: &BatchRequest,
        planned: Planned,
        bytes: usize,
        on_piece: &mut dyn FnMut(usize, &str) -> ControlFlow<()>,
    ) -> Result<std::result::Result<Member<'_>, Generation>> {
        let cancel = member.cancel.as_ref();
        let prefilled = match planned {
            Planned::Fresh(prepared) => match self.prefill_prepared(prepared, cancel)? {
                Prefill::Ready(ready) => ready,
                Prefill::Cancelled(generation) => return Ok(Err(generation)),
            },
            Planned::Conversation {
                conversation,
                fresh,
                ids,
                ..
            } => {
                let mut ready = conversation.start_with(ids, &member.params)?;
                if fresh {
                    ready.cached = 0;
                    conversation.charge_prefix(&mut ready.timings);
                }
                ready
            }
        };
        let Prefilled {
            ids,
            cached,
            cache,
            logits,
            timings,
        } = prefilled;
        let mut sequence = self.sequence(&ids, &member.params)?;
        let decoding_since = Instant::now();
        let first = sequence.step(&logits, cancel, &mut |piece| on_piece(index, piece))?;
        let mut member = Member {
            index,
            prompt_tokens: ids.len(),
            cached,
            cache,
            sequence,
            next: 0,
            cancel: member.cancel.clone(),
            timings,
            bytes,
            decoding_since,
        };
        match first {
            Some(token) => {
                member.next = token;
                Ok(Ok(member))
            }
            None => Ok(Err(member.finish(on_piece)?)),
        }
    }
}

impl Member<'_> {
    fn finish(
        self,
        on_piece: &mut dyn FnMut(usize, &str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let index = self.index;
        let mut timings = self.timings;
        timings.decode = self.decoding_since.elapsed();
        let decoded = self.sequence.finish(&mut |piece| on_piece(index, piece))?;
        Ok(decoded.into_generation(self.prompt_tokens, self.cached, timings))
    }
}
