//! Prompt prefixes kept for the requests that come back: a server asked several questions about
//! one uploaded video runs its vision towers and prefill once ([`PrefixCache`]).
//!
//! A request's prefix (its media and earlier turns) is keyed by a SHA-256 of its content: the
//! video's decoded frames and their shape, each image's pixels or encoded bytes, and the turns.
//! Two requests with the same key share one [`Conversation`]; the answers are the ones
//! [`VideoLlava::generate`] gives (the conversation's guarantee). The cache holds at most its
//! capacity in key/value bytes and drops the least recently used prefixes to make room.
//!
//! Only requests whose media are in memory are cached ([`VideoInput::Frames`],
//! [`ImageInput::Rgb`], [`ImageInput::Encoded`]): a file path says nothing about the file's
//! content when it runs again. Requests without media, with media given another way, or with
//! placeholders in the question go straight to `generate`.

use std::ops::ControlFlow;
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use crate::batch::{BatchOptions, BatchRequest};
use crate::conversation::Conversation;
use crate::generation::{CancelToken, GenerationParams};
use crate::pipeline::{Generation, ImageInput, Request, VideoInput, VideoLlava};
use crate::prompt::has_placeholders;
use crate::Result;

/// What a [`PrefixCache`] holds and has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    /// Prefixes held.
    pub entries: usize,
    /// Their key/value bytes.
    pub bytes: usize,
    /// The most bytes held.
    pub capacity: usize,
    /// Requests answered from a held prefix.
    pub hits: u64,
    /// Cacheable requests whose prefix was computed (and kept when it fits).
    pub misses: u64,
    /// Prefixes dropped to make room.
    pub evictions: u64,
}

struct Entry {
    key: [u8; 32],
    conversation: Conversation,
    bytes: usize,
}

struct Inner {
    /// Least recently used first.
    entries: Vec<Entry>,
    /// The counters and the bytes held (`entries` and `capacity` are filled in by `stats`).
    stats: PrefixCacheStats,
}

/// An LRU of [`Conversation`]s keyed by their prefix's content, bounded in bytes. `Send + Sync`:
/// one cache serves every thread that generates on its model.
///
/// ```no_run
/// use std::ops::ControlFlow;
/// use video_llava::{DType, Device, GenerationParams, PrefixCache, Request, VideoInput, VideoLlava};
///
/// # fn main() -> video_llava::Result<()> {
/// let model = VideoLlava::from_pretrained("LanguageBind/Video-LLaVA-7B-hf", &Device::Cpu, DType::F32)?;
/// let cache = PrefixCache::new(model, 2 << 30);
/// let video = VideoInput::Frames { data: vec![0u8; 8 * 240 * 320 * 3], count: 8, height: 240, width: 320 };
/// for question in ["Give it a title.", "List three tags."] {
///     let request = Request::new(question).with_video(video.clone());
///     let answer = cache.generate(&request, &GenerationParams::default(), None, &mut |_| ControlFlow::Continue(()))?;
///     println!("{} ({} prompt tokens from the cache)", answer.text, answer.cached_tokens);
/// }
/// # Ok(())
/// # }
/// ```
pub struct PrefixCache {
    model: VideoLlava,
    capacity: usize,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for PrefixCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl PrefixCache {
    /// A cache for `model` holding at most `capacity` bytes of keys and values (0: nothing is
    /// kept and every request is a plain `generate`).
    pub fn new(model: VideoLlava, capacity: usize) -> Self {
        Self {
            model,
            capacity,
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                stats: PrefixCacheStats::default(),
            }),
        }
    }

    /// The model.
    pub fn model(&self) -> &VideoLlava {
        &self.model
    }

    /// What it holds and has done.
    pub fn stats(&self) -> PrefixCacheStats {
        let inner = self.lock();
        PrefixCacheStats {
            entries: inner.entries.len(),
            capacity: self.capacity,
            ..inner.stats
        }
    }

    /// Drops every prefix.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.stats.bytes = 0;
    }

    /// Answers `request` as [`VideoLlava::generate`] does, from a held prefix when one has the
    /// same content. `Generation::cached_tokens` says how many prompt tokens came from the
    /// cache (0 when the prefix was computed for this request, whose timings then include it).
    pub fn generate(
        &self,
        request: &Request,
        params: &GenerationParams,
        cancel: Option<&CancelToken>,
        on_piece: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        params.validate()?;
        let Some((conversation, fresh)) = self.conversation_for(request)? else {
            return self.model.generate(request, params, cancel, on_piece);
        };
        let mut generation = conversation.generate(&request.question, params, cancel, on_piece)?;
        if fresh {
            generation.cached_tokens = 0;
            conversation.charge_prefix(&mut generation.timings);
        }
        Ok(generation)
    }

    /// [`VideoLlava::generate_continuous`] with every member starting from this cache's
    /// prefixes (and adding its own): a server's scheduler.
    pub fn generate_continuous<R: std::borrow::Borrow<BatchRequest>>(
        &self,
        options: &BatchOptions,
        next: &mut dyn FnMut(bool) -> Option<R>,
        on_piece: &mut dyn FnMut(usize, &str) -> ControlFlow<()>,
        on_done: &mut dyn FnMut(usize, Result<Generation>),
    ) -> Result<()> {
        self.model
            .run_batch(Some(self), options, next, on_piece, on_done)
    }

    /// The conversation holding `request`'s prefix, and whether it was computed now; `None`
    /// when the request is not cached (see the module's docs) or the cache is off.
    pub(crate) fn conversation_for(
        &self,
        request: &Request,
    ) -> Result<Option<(Conversation, bool)>> {
        let key = match prefix_key(request) {
            Some(key) if self.capacity > 0 => key,
            _ => return Ok(None),
        };
        if let Some(conversation) = self.hit(&key) {
            return Ok(Some((conversation, false)));
        }
        let conversation = self.model.start_conversation(request)?;
        self.keep(key, conversation.clone());
        Ok(Some((conversation, true)))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The lock guards plain bookkeeping that no panic leaves half-done.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn hit(&self, key: &[u8; 32]) -> Option<Conversation> {
        let mut inner = self.lock();
        let Some(at) = inner.entries.iter().position(|e| &e.key == key) else {
            inner.stats.misses += 1;
            return None;
        };
        let entry = inner.entries.remove(at);
        let conversation = entry.conversation.clone();
        inner.entries.push(entry);
        inner.stats.hits += 1;
        Some(conversation)
    }

    fn keep(&self, key: [u8; 32], conversation: Conversation) {
        let bytes = conversation.prefix_bytes();
        let mut inner = self.lock();
        if bytes > self.capacity || inner.entries.iter().any(|e| e.key == key) {
            return;
        }
        while inner.stats.bytes + bytes > self.capacity {
            let dropped = inner.entries.remove(0);
            inner.stats.bytes -= dropped.bytes;
            inner.stats.evictions += 1;
        }
        inner.entries.push(Entry {
            key,
            conversation,
            bytes,
        });
        inner.stats.bytes += bytes;
    }
}

/// The content hash of `request`'s prefix, or `None` when it is not cached (see the module's
/// docs).
fn prefix_key(request: &Request) -> Option<[u8; 32]> {
    if request.video.is_none() && request.images.is_empty() {
        return None;
    }
    if has_placeholders(&request.question)
        || request
            .history
            .iter()
            .any(|(q, a)| has_placeholders(q) || has_placeholders(a))
    {
        return None;
    }
    fn number(hash: &mut Sha256, n: usize) {
        hash.update((n as u64).to_le_bytes());
    }
    let mut hash = Sha256::new();
    hash.update(b"video-llava prefix 1\0");
    match &request.video {
        None => hash.update([0]),
        Some(VideoInput::Frames {
            data,
            count,
            height,
            width,
        }) => {
            hash.update([1]);
            for n in [*count, *height, *width, data.len()] {
                number(&mut hash, n);
            }
            hash.update(data);
        }
        Some(_) => return None,
    }
    number(&mut hash, request.images.len());
    for image in &request.images {
        match image {
            ImageInput::Rgb {
                data,
                height,
                width,
            } => {
                hash.update([1]);
                for n in [*height, *width, data.len()] {
                    number(&mut hash, n);
                }
                hash.update(data);
            }
            ImageInput::Encoded(bytes) => {
                hash.update([2]);
                number(&mut hash, bytes.len());
                hash.update(bytes);
            }
            _ => return None,
        }
    }
    number(&mut hash, request.history.len());
    for (question, answer) in &request.history {
        for text in [question, answer] {
            number(&mut hash, text.len());
            hash.update(text.as_bytes());
        }
    }
    Some(hash.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(fill: u8) -> VideoInput {
        VideoInput::Frames {
            data: vec![fill; 2 * 4 * 6 * 3],
            count: 2,
            height: 4,
            width: 6,
        }
    }

    #[test]
    fn keys_follow_the_content_not_the_question() {
        let a = Request::new("q").with_video(frames(1));
        let key = prefix_key(&a).unwrap();
        assert_eq!(
            prefix_key(&Request::new("another").with_video(frames(1))),
            Some(key)
        );
        for other in [
            Request::new("q").with_video(frames(2)),
            Request::new("q")
                .with_video(frames(1))
                .with_image(ImageInput::Encoded(vec![1, 2])),
            Request::new("q").with_video(frames(1)).with_turn("a", "b"),
            Request::new("q").with_video(frames(1)).with_turn("ab", ""),
            Request::new("q").with_image(ImageInput::Encoded(vec![1, 2])),
        ] {
            let other = prefix_key(&other).unwrap();
            assert_ne!(other, key);
        }
        // Same bytes, another shape: another key.
        let reshaped = VideoInput::Frames {
            data: vec![1; 2 * 4 * 6 * 3],
            count: 2,
            height: 6,
            width: 4,
        };
        assert_ne!(
            prefix_key(&Request::new("q").with_video(reshaped)),
            Some(key)
        );
        // Not cached: no media, a path, placeholders in the question.
        assert_eq!(prefix_key(&Request::new("q")), None);
        assert_eq!(
            prefix_key(&Request::new("q").with_image(ImageInput::Path("a.png".into()))),
            None
        );
        assert_eq!(
            prefix_key(&Request::new("<video> q").with_video(frames(1))),
            None
        );
    }
}
