//! `model.generateBatch(requests, options)`: the core's batched decoding
//! ([`video_llava::VideoLlava::generate_batch`]). Each request takes `generate`'s options,
//! its own `onToken` and `signal` included.

use napi::bindgen_prelude::Unknown;
use napi::{Env, Task};
use napi_derive::napi;
use video_llava::{
    BatchOptions as RsBatchOptions, BatchRequest, CancelToken, Generation as RsGeneration,
    VideoLlava as RsVideoLlava,
};

use crate::args;
use crate::cancel::{AbortListener, TeardownGuard};
use crate::error::{guarded, JsFailure};
use crate::model::Generation;
use crate::on_token::PieceSink;
use crate::request::Call;

/// Options of `generateBatch`.
#[napi(object, object_to_js = false)]
#[derive(Default)]
pub struct BatchOptions {
    /// The most requests decoded together, one forward pass per token for all of them (1 to
    /// 16, default 8); more wait and join as others finish.
    pub max_batch: Option<f64>,
    /// The most bytes the running requests' KV caches may take together; a request that does
    /// not fit waits, one that cannot fit alone rejects with `ERR_TOO_LARGE`. Default: no bound.
    pub max_kv_bytes: Option<f64>,
}

impl BatchOptions {
    fn convert(self) -> Result<RsBatchOptions, JsFailure> {
        let max_kv_bytes = self
            .max_kv_bytes
            .map(|b| args::whole_bytes("maxKvBytes", b))
            .transpose()?;
        let options = RsBatchOptions {
            max_batch: args::opt_usize("maxBatch", self.max_batch)?
                .unwrap_or(RsBatchOptions::default().max_batch),
            max_kv_bytes,
        };
        options.validate().map_err(JsFailure::from)?;
        Ok(options)
    }
}

/// The promise of `generateBatch`.
pub struct BatchTask {
    model: RsVideoLlava,
    /// Taken by the one `compute`.
    calls: Option<Vec<Call>>,
    options: Option<Result<RsBatchOptions, JsFailure>>,
    cancels: Vec<CancelToken>,
    /// Moved here from the calls by `compute`, so `resolve` sees what an `onToken` threw.
    sinks: Vec<Option<PieceSink>>,
    teardowns: Vec<TeardownGuard>,
    listeners: Vec<AbortListener>,
}

/// Starts `generateBatch` on an engine thread. Bad arguments reject the promise with `ERR_INVALID_ARGUMENT`, as
/// `generate`'s do.
pub fn start<'env>(
    env: &'env Env,
    model: RsVideoLlava,
    requests: Unknown<'_>,
    options: Option<Unknown<'_>>,
) -> napi::Result<napi::bindgen_prelude::PromiseRaw<'env, Vec<Generation>>> {
    let (requests, options) = match args::required::<Vec<Unknown<'_>>>("requests", requests) {
        Ok(requests) => (
            requests,
            args::options::<BatchOptions>("options", options).and_then(BatchOptions::convert),
        ),
        Err(failure) => (Vec::new(), Err(failure)),
    };
    let mut calls: Vec<Call> = requests.into_iter().map(Call::from_arg).collect();
    let cancels: Vec<CancelToken> = calls.iter().map(|c| c.cancel.clone()).collect();
    let teardowns = cancels.iter().map(|c| TeardownGuard::new(env, c)).collect();
    let listeners = calls.iter_mut().filter_map(|c| c.listener.take()).collect();
    let task = BatchTask {
        model,
        calls: Some(calls),
        options: Some(options),
        cancels,
        sinks: Vec::new(),
        teardowns,
        listeners,
    };
    crate::engine_thread::spawn(env, "video-llava-batch", task)
}

#[napi]
impl Task for BatchTask {
    type Output = Vec<Result<RsGeneration, JsFailure>>;
    type JsValue = Vec<Generation>;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        let calls = self.calls.take().unwrap_or_default();
        let options = self
            .options
            .take()
            .unwrap_or_else(|| Err(JsFailure::new("ERR_INTERNAL", "task ran twice")));
        let mut results: Vec<Option<Result<RsGeneration, JsFailure>>> = Vec::new();
        let mut members = Vec::new();
        // Position in `members` -> position in the call.
        let mut positions = Vec::new();
        for (i, call) in calls.into_iter().enumerate() {
            self.sinks.push(call.sink);
            match call.prepared {
                Ok(prepared) => {
                    results.push(None);
                    positions.push(i);
                    members.push(BatchRequest {
                        request: prepared.request,
                        params: prepared.params,
                        cancel: Some(call.cancel),
                    });
                }
                Err(failure) => results.push(Some(Err(failure))),
            }
        }
        let options = match options {
            Ok(options) => options,
            // The promise rejects with the first failure: this one.
            Err(failure) => return Ok(vec![Err(failure)]),
        };
        let sinks = &self.sinks;
        let model = &self.model;
        let outcome = guarded(|| {
            Ok(model.generate_batch(
                &members,
                &options,
                &mut |m, piece| match &sinks[positions[m]] {
                    Some(sink) => {
                        sink.send(piece);
                        if sink.failed() {
                            std::ops::ControlFlow::Break(())
                        } else {
                            std::ops::ControlFlow::Continue(())
                        }
                    }
                    None => std::ops::ControlFlow::Continue(()),
                },
            ))
        });
        for sink in self.sinks.iter().flatten() {
            sink.flush();
        }
        match outcome {
            Ok(generations) => {
                for (m, generation) in generations.into_iter().enumerate() {
                    results[positions[m]] = Some(generation.map_err(JsFailure::from));
                }
            }
            Err(failure) => {
                for &i in &positions {
                    results[i] = Some(Err(JsFailure::new(failure.code, failure.message.clone())));
                }
            }
        }
        // An aborted request rejects as `generate` does, however it ended.
        Ok(results
            .into_iter()
            .zip(&self.cancels)
            .map(|(r, cancel)| {
                if cancel.is_cancelled() {
                    Err(JsFailure::aborted())
                } else {
                    r.unwrap_or_else(|| Err(JsFailure::new("ERR_INTERNAL", "not answered")))
                }
            })
            .collect())
    }

    fn finally(self, env: Env) -> napi::Result<()> {
        for teardown in self.teardowns {
            teardown.release(&env);
        }
        for listener in self.listeners {
            listener.remove(&env);
        }
        Ok(())
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        // An `onToken` that threw stopped its request: its exception is the rejection.
        if let Some(thrown) = self.sinks.iter().flatten().find_map(PieceSink::take_thrown) {
            return Err(thrown);
        }
        output
            .into_iter()
            .map(|r| r.map(Generation::from).map_err(|f| f.into_napi(&env)))
            .collect()
    }
}
