//! The `Conversation` class: the core's [`video_llava::Conversation`] (one cached KV prefix,
//! many questions). `generate`, `stream` and `chat` take `generate`'s options minus the media
//! and turns, which belong to the conversation; they run off the main thread as `generate` does.

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{PromiseRaw, Unknown};
use napi::{Env, Task};
use napi_derive::napi;
use video_llava::{Conversation as RsConversation, VideoLlava as RsVideoLlava};

use crate::args;
use crate::error::{guarded, JsFailure};
use crate::model::{Engine, GenerateTask, Generation};
use crate::request::{Call, ConversationOptions, Prepared, Turn};
use crate::stream::TokenStream;

/// A conversation's state, shared by its JS object and the calls in flight.
pub struct Shared {
    /// `None` once closed.
    state: Mutex<Option<RsConversation>>,
    /// Held by `chat` for its whole turn, so turns apply one after the other.
    turn: Mutex<()>,
}

impl Shared {
    /// The current conversation (a cheap clone: the prefix is shared).
    fn current(&self) -> Result<RsConversation, JsFailure> {
        self.state
            .lock()
            .map_err(|_| JsFailure::new("ERR_INTERNAL", "an earlier call panicked"))?
            .clone()
            .ok_or_else(|| JsFailure::invalid("the conversation is closed"))
    }

    /// Answers `prepared`'s question; with `chat`, appends the turn.
    pub fn generate(
        &self,
        prepared: &Prepared,
        chat: bool,
        cancel: &video_llava::CancelToken,
        on_piece: &mut dyn FnMut(&str) -> std::ops::ControlFlow<()>,
    ) -> Result<video_llava::Generation, JsFailure> {
        let request = &prepared.request;
        if request.video.is_some() || !request.images.is_empty() || !request.history.is_empty() {
            return Err(JsFailure::invalid(
                "a conversation's video, images and history were given when it started; \
                 its calls take only the prompt and generation options",
            ));
        }
        if !chat {
            let conversation = self.current()?;
            return Ok(conversation.generate(
                &request.question,
                &prepared.params,
                Some(cancel),
                on_piece,
            )?);
        }
        let _turn = self
            .turn
            .lock()
            .map_err(|_| JsFailure::new("ERR_INTERNAL", "an earlier turn panicked"))?;
        let mut conversation = self.current()?;
        let generation =
            conversation.chat(&request.question, &prepared.params, Some(cancel), on_piece)?;
        let mut slot = self
            .state
            .lock()
            .map_err(|_| JsFailure::new("ERR_INTERNAL", "an earlier call panicked"))?;
        // Closed meanwhile: stays closed.
        if slot.is_some() {
            *slot = Some(conversation);
        }
        Ok(generation)
    }
}

/// The promise of `VideoLlava.conversation`.
pub struct ConversationTask {
    pub(crate) model: RsVideoLlava,
    /// Taken by the one `compute`.
    pub(crate) request: Option<Result<video_llava::Request, JsFailure>>,
}

#[napi]
impl Task for ConversationTask {
    type Output = Result<RsConversation, JsFailure>;
    type JsValue = Conversation;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let request = self
            .request
            .take()
            .unwrap_or_else(|| Err(JsFailure::new("ERR_INTERNAL", "task ran twice")));
        Ok(request.and_then(|request| {
            guarded(|| self.model.conversation(&request).map_err(JsFailure::from))
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        output
            .map(|conversation| Conversation {
                shared: Arc::new(Shared {
                    state: Mutex::new(Some(conversation)),
                    turn: Mutex::new(()),
                }),
            })
            .map_err(|f| f.into_napi(&env))
    }
}

/// Converts `model.conversation(options)`'s argument.
pub fn conversation_request(
    options: Option<Unknown<'_>>,
) -> Result<video_llava::Request, JsFailure> {
    args::options::<ConversationOptions>("options", options)?.into_request()
}

/// A video (and/or images, earlier turns) whose prefix (vision towers and the prefill of
/// everything before the question) was computed once by `model.conversation()`. Each question
/// starts from a copy of that cache and gets the answer `model.generate()` gives for the same
/// full prompt. `generate` and `stream` may run at once; `chat` turns apply one at a time.
#[napi]
pub struct Conversation {
    shared: Arc<Shared>,
}

impl Conversation {
    fn task<'env>(
        &self,
        env: &'env Env,
        options: Unknown<'_>,
        chat: bool,
    ) -> napi::Result<PromiseRaw<'env, Generation>> {
        let call = Call::from_arg(options);
        GenerateTask::start(
            env,
            Engine::Conversation {
                shared: self.shared.clone(),
                chat,
            },
            call,
        )
    }

    fn read<T>(&self, env: &Env, f: impl FnOnce(&RsConversation) -> T) -> napi::Result<T> {
        let conversation = self.shared.current().map_err(|f| f.into_napi(env))?;
        Ok(f(&conversation))
    }
}

#[napi]
impl Conversation {
    /// Answers `options.prompt` from the cached prefix (the same options as `generate`, minus
    /// `video`, `videoOptions`, `image`, `images` and `history`); the conversation is unchanged.
    #[napi(
        catch_unwind,
        ts_args_type = "options: GenerateOptions",
        ts_return_type = "Promise<Generation>"
    )]
    pub fn generate<'env>(
        &self,
        env: &'env Env,
        options: Unknown<'_>,
    ) -> napi::Result<PromiseRaw<'env, Generation>> {
        self.task(env, options, false)
    }

    /// Answers `options.prompt` and appends the turn, so the next question sees it (an aborted
    /// answer is not appended).
    #[napi(
        catch_unwind,
        ts_args_type = "options: GenerateOptions",
        ts_return_type = "Promise<Generation>"
    )]
    pub fn chat<'env>(
        &self,
        env: &'env Env,
        options: Unknown<'_>,
    ) -> napi::Result<PromiseRaw<'env, Generation>> {
        self.task(env, options, true)
    }

    /// `generate` as an async iterator of text pieces.
    #[napi(catch_unwind, ts_args_type = "options: GenerateOptions")]
    pub fn stream(&self, options: Unknown<'_>) -> TokenStream {
        TokenStream::new(
            Engine::Conversation {
                shared: self.shared.clone(),
                chat: false,
            },
            Call::from_arg(options),
        )
    }

    /// The earlier turns, oldest first.
    #[napi(getter)]
    pub fn history(&self, env: Env) -> napi::Result<Vec<Turn>> {
        self.read(&env, |c| {
            c.history()
                .iter()
                .map(|(question, answer)| Turn {
                    question: question.clone(),
                    answer: answer.clone(),
                })
                .collect()
        })
    }

    /// Tokens in the cached prefix.
    #[napi(getter)]
    pub fn prefix_tokens(&self, env: Env) -> napi::Result<u32> {
        self.read(&env, |c| c.prefix_tokens() as u32)
    }

    /// Bytes the cached prefix holds (its keys and values).
    #[napi(getter)]
    pub fn prefix_bytes(&self, env: Env) -> napi::Result<f64> {
        self.read(&env, |c| c.prefix_bytes() as f64)
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.shared
            .state
            .lock()
            .map(|c| c.is_none())
            .unwrap_or(true)
    }

    /// Frees the cached prefix now (answers in progress finish on their own copy); later calls
    /// reject with `ERR_INVALID_ARGUMENT`. Closing twice is fine.
    #[napi]
    pub fn close(&self) {
        if let Ok(mut c) = self.shared.state.lock() {
            c.take();
        }
    }
}

/// Starts a conversation (for `VideoLlava.conversation`): its prefill runs on an engine thread.
pub fn start<'env>(
    env: &'env Env,
    model: RsVideoLlava,
    options: Option<Unknown<'_>>,
) -> napi::Result<PromiseRaw<'env, Conversation>> {
    let task = ConversationTask {
        model,
        request: Some(conversation_request(options)),
    };
    crate::engine_thread::spawn(env, "video-llava-conversation", task)
}
