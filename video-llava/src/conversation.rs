//! One video (or images), many questions: the vision towers and the prefill of everything before
//! the question run once ([`VideoLlava::conversation`]); every question starts from a copy of
//! that KV prefix.
//!
//! Each question's prompt is tokenized whole, exactly as [`VideoLlava::generate`] tokenizes it,
//! and only the positions where its ids agree with the cached prefix's are taken from the cache
//! (a tokenizer may join the prefix's last piece with the question's first). Attention is causal,
//! so those positions hold the same keys and values a fresh prefill computes: the answers are a
//! fresh `generate`'s, token for token, for greedy and seeded sampling alike.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use crate::generation::{CancelToken, GenerationParams, StopReason};
use crate::model::KvCache;
use crate::pipeline::{spawn_stream, Generation, Request, TextStream, Timings, VideoLlava};
use crate::prompt::{format_prefix, format_prompt, has_placeholders, history_has_placeholders};
use crate::{Error, Result};

/// A cached prompt prefix and the questions asked against it ([`VideoLlava::conversation`]).
///
/// Cheap to clone (the prefix is shared and never written to); `Send + Sync`, so several threads
/// may ask questions of one conversation at once. [`Conversation::chat`] moves the
/// conversation on by one turn; [`Conversation::generate`] and [`Conversation::stream`] leave it
/// as it is.
///
/// ```no_run
/// use std::ops::ControlFlow;
/// use video_llava::{DType, Device, GenerationParams, Request, VideoInput, VideoLlava};
///
/// # fn main() -> video_llava::Result<()> {
/// let model = VideoLlava::from_pretrained("LanguageBind/Video-LLaVA-7B-hf", &Device::Cpu, DType::F32)?;
/// let frames = vec![0u8; 8 * 240 * 320 * 3];
/// let video = VideoInput::Frames { data: frames, count: 8, height: 240, width: 320 };
/// // Vision towers and prefill run here, once.
/// let mut conversation = model.conversation(&Request::default().with_video(video))?;
/// let params = GenerationParams { max_new_tokens: 64, ..GenerationParams::default() };
/// for question in ["Give it a title.", "List three tags.", "Summarize it."] {
///     let answer = conversation.generate(question, &params, None, &mut |_| ControlFlow::Continue(()))?;
///     println!("{question} {} ({} of {} prompt tokens cached)", answer.text, answer.cached_tokens, answer.prompt_tokens);
/// }
/// // A follow-up that sees the answer before it.
/// conversation.chat("What happens first?", &params, None, &mut |_| ControlFlow::Continue(()))?;
/// conversation.chat("And then?", &params, None, &mut |_| ControlFlow::Continue(()))?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Conversation {
    model: VideoLlava,
    prefix: Arc<Prefix>,
}

struct Prefix {
    /// Earlier `(question, answer)` turns, oldest first.
    history: Vec<(String, String)>,
    num_images: usize,
    /// Frames of the video (`None`: no video).
    num_frames: Option<usize>,
    /// Whether the turns carry their own placeholders (then they are taken as written).
    as_written: bool,
    /// The ids in `cache`, expanded.
    ids: Vec<u32>,
    /// Keys and values of `ids`, exactly `ids.len()` positions.
    cache: KvCache,
    /// The time the media and the prefix took (the first question pays it).
    timings: Timings,
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation")
            .field("turns", &self.prefix.history.len())
            .field("prefix_tokens", &self.prefix.ids.len())
            .field("prefix_bytes", &self.prefix.cache.bytes())
            .finish()
    }
}

// A conversation's prefill: the question's prompt, the positions it takes from the prefix,
// and its own cache with those positions filled and the rest prefilled.
use crate::pipeline::Prefilled as Started;

impl VideoLlava {
    /// Starts a conversation about `request`'s video, images and earlier turns: preprocesses the
    /// media, runs the vision towers and prefills everything before the question, once. The
    /// request has no question (ask them with [`Conversation::generate`]); a non-empty one is
    /// an [`Error::InvalidRequest`], as is a prefix longer than the model's context.
    pub fn conversation(&self, request: &Request) -> Result<Conversation> {
        if !request.question.trim().is_empty() {
            return Err(Error::InvalidRequest(
                "a conversation's request has no question: ask it with Conversation::generate"
                    .into(),
            ));
        }
        self.start_conversation(request)
    }

    /// [`VideoLlava::conversation`] for `request`'s media and turns, its question ignored (a
    /// [`crate::PrefixCache`] starts one from the request it answers, without copying it).
    pub(crate) fn start_conversation(&self, request: &Request) -> Result<Conversation> {
        let mut timings = Timings::default();
        let start = Instant::now();
        let pixels = self.request_pixels(request)?;
        timings.preprocess = start.elapsed();
        let num_images = pixels.num_images()?;
        let num_frames = pixels.num_frames()?;
        let as_written = history_has_placeholders(&request.history);
        let text = format_prefix(
            &request.history,
            num_images,
            num_frames.is_some(),
            as_written,
        );
        let ids = self.tokenizer().encode(&text, num_images, num_frames)?;
        self.check_context(ids.len(), 0)?;

        let start = Instant::now();
        let embeds = self.embeddings(&ids, pixels.video.as_ref(), pixels.images.as_ref())?;
        timings.vision = start.elapsed();
        let start = Instant::now();
        let mut cache = self.model().new_cache(ids.len())?;
        self.model().forward_embeds(&embeds, &mut cache)?;
        timings.prefill = start.elapsed();
        Ok(Conversation {
            model: self.clone(),
            prefix: Arc::new(Prefix {
                history: request.history.clone(),
                num_images,
                num_frames,
                as_written,
                ids,
                cache,
                timings,
            }),
        })
    }
}

impl Conversation {
    /// Answers `question` from the cached prefix, as [`VideoLlava::generate`] answers the same
    /// request (media, earlier turns and question): same tokens, same options. The
    /// conversation is unchanged. `Generation::cached_tokens` tells how much of the prompt came
    /// from the cache; the timings count only this question's own work.
    ///
    /// A question with `<image>` or `<video>` in it is an [`Error::InvalidRequest`] (the media
    /// belong to the conversation), as is one that does not fit the context that is left
    /// ([`Error::PromptTooLong`]).
    pub fn generate(
        &self,
        question: &str,
        params: &GenerationParams,
        cancel: Option<&CancelToken>,
        on_piece: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        self.answer(question, params, cancel, on_piece)
            .map(|(generation, _)| generation)
    }

    /// [`Conversation::generate`] on a background thread, as [`VideoLlava::stream`].
    pub fn stream(&self, question: impl Into<String>, params: GenerationParams) -> TextStream {
        let conversation = self.clone();
        let question = question.into();
        spawn_stream(move |cancel, on_piece| {
            conversation.generate(&question, &params, Some(cancel), on_piece)
        })
    }

    /// Answers `question` and appends the turn (question and answer text) to the conversation,
    /// so the next question sees it: the same as a fresh `generate` whose history holds every
    /// turn so far. The new prefix reuses the positions this answer already computed. An
    /// answer that was cancelled (or stopped by `on_piece`) is returned but not appended.
    pub fn chat(
        &mut self,
        question: &str,
        params: &GenerationParams,
        cancel: Option<&CancelToken>,
        on_piece: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let (generation, (ids, cache)) = self.answer(question, params, cancel, on_piece)?;
        if generation.stop_reason == StopReason::Cancelled {
            return Ok(generation);
        }
        let prefix = &self.prefix;
        let mut history = prefix.history.clone();
        history.push((question.to_string(), generation.text.clone()));
        let text = format_prefix(
            &history,
            prefix.num_images,
            prefix.num_frames.is_some(),
            prefix.as_written,
        );
        let new_ids = self
            .model
            .tokenizer()
            .encode(&text, prefix.num_images, prefix.num_frames)?;
        self.model.check_context(new_ids.len(), 0)?;
        // The answer's cache holds the prompt and every generated token but the last.
        let computed: Vec<u32> = ids
            .iter()
            .chain(&generation.token_ids)
            .copied()
            .take(cache.len())
            .collect();
        let keep = common_prefix(&new_ids, &computed);
        let mut next = cache.fork(new_ids.len(), keep)?;
        drop(cache);
        if keep < new_ids.len() {
            self.forward_text(&new_ids[keep..], &mut next)?;
        }
        self.prefix = Arc::new(Prefix {
            history,
            num_images: prefix.num_images,
            num_frames: prefix.num_frames,
            as_written: prefix.as_written,
            ids: new_ids,
            cache: next,
            timings: Timings::default(),
        });
        Ok(generation)
    }

    /// The earlier turns, oldest first (those given at the start, then each [`Conversation::chat`]).
    pub fn history(&self) -> &[(String, String)] {
        &self.prefix.history
    }

    /// Tokens in the cached prefix.
    pub fn prefix_tokens(&self) -> usize {
        self.prefix.ids.len()
    }

    /// Bytes the cached prefix holds (its keys and values), for a caller bounding a cache of
    /// conversations.
    pub fn prefix_bytes(&self) -> usize {
        self.prefix.cache.bytes()
    }

    /// What starting the conversation took: preprocessing, vision and the prefix's prefill
    /// (zero after a [`Conversation::chat`], whose answer already paid for its turn).
    pub fn prefix_timings(&self) -> Timings {
        self.prefix.timings
    }

    /// Adds what starting the conversation took to `timings`: for the one request it was
    /// started for, which paid for it.
    pub(crate) fn charge_prefix(&self, timings: &mut Timings) {
        let prefix = self.prefix.timings;
        timings.preprocess += prefix.preprocess;
        timings.vision += prefix.vision;
        timings.prefill += prefix.prefill;
    }

    /// The model it runs on.
    pub fn model(&self) -> &VideoLlava {
        &self.model
    }

    /// One answer, and the prompt ids and cache it ended with (for [`Conversation::chat`]).
    fn answer(
        &self,
        question: &str,
        params: &GenerationParams,
        cancel: Option<&CancelToken>,
        on_piece: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<(Generation, (Vec<u32>, KvCache))> {
        params.validate()?;
        let mut started = self.start(question, params)?;
        let start = Instant::now();
        let decoded = self.model.decode_loop(
            &started.ids,
            &mut started.cache,
            started.logits,
            params,
            cancel,
            on_piece,
        )?;
        started.timings.decode = start.elapsed();
        let generation =
            decoded.into_generation(started.ids.len(), started.cached, started.timings);
        Ok((generation, (started.ids, started.cache)))
    }

    /// Tokenizes the whole prompt, copies the positions it shares with the prefix into a cache
    /// of its own and prefills the rest.
    pub(crate) fn start(&self, question: &str, params: &GenerationParams) -> Result<Started> {
        self.start_with(self.prompt_ids(question, params)?, params)
    }

    /// [`Conversation::start`] for a prompt [`Conversation::prompt_ids`] tokenized already.
    pub(crate) fn start_with(&self, ids: Vec<u32>, params: &GenerationParams) -> Result<Started> {
        let prefix = &self.prefix;
        // At least the last prompt position is computed here: its logits start the decode.
        let cached = common_prefix(&ids, &prefix.ids).min(ids.len() - 1);
        let start = Instant::now();
        let mut cache = prefix
            .cache
            .fork(ids.len() + params.max_new_tokens, cached)?;
        let logits = self.forward_text(&ids[cached..], &mut cache)?;
        let timings = Timings {
            prefill: start.elapsed(),
            ..Timings::default()
        };
        Ok(Started {
            ids,
            cached,
            cache,
            logits,
            timings,
        })
    }

    /// The whole prompt of `question` after the prefix, tokenized as `generate` would, and
    /// checked against the context.
    pub(crate) fn prompt_ids(&self, question: &str, params: &GenerationParams) -> Result<Vec<u32>> {
        if question.trim().is_empty() {
            return Err(Error::InvalidRequest("the question is empty".into()));
        }
        if has_placeholders(question) {
            return Err(Error::InvalidRequest(
                "a conversation's question has no <image> or <video>: its media were given when \
                 it started"
                    .into(),
            ));
        }
        let prefix = &self.prefix;
        let text = format_prompt(
            question,
            &prefix.history,
            prefix.num_images,
            prefix.num_frames.is_some(),
        );
        let ids = self
            .model
            .tokenizer()
            .encode(&text, prefix.num_images, prefix.num_frames)?;
        self.model.check_context(ids.len(), params.max_new_tokens)?;
        Ok(ids)
    }

    /// Forwards ids after the prefix, which hold no media placeholders (those sit in the
    /// prefix, before any text a question or answer adds).
    fn forward_text(&self, ids: &[u32], cache: &mut KvCache) -> Result<candle_core::Tensor> {
        let spec = self.model.tokenizer().spec();
        if ids
            .iter()
            .any(|&id| id == spec.image_token_id || id == spec.video_token_id)
        {
            return Err(Error::Compute(candle_core::Error::Msg(
                "the question's prompt differs from the cached prefix inside the media; \
                 start a new conversation"
                    .into(),
            )));
        }
        self.model.model().forward_tokens(ids, cache)
    }
}

/// How many leading ids `a` and `b` share.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_counts_the_shared_head() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4, 5]), 2);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[7], &[8]), 0);
    }

    #[test]
    fn conversations_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Conversation>();
    }
}
