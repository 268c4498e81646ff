//! Long work (a generation, a batch) on an engine thread of its own instead of libuv's pool.
//!
//! napi's `AsyncTask` runs `compute` on one of libuv's threads (four by default), the same
//! threads `fs`, `dns`, `crypto` and `zlib` use. A generation can take minutes, so four at once
//! would stall every file read of the process. [`spawn`] runs the same [`Task`] with `compute` on
//! a new thread and `resolve`/`reject`/`finally` back on the main thread, as `AsyncTask` does.

use napi::bindgen_prelude::PromiseRaw;
use napi::tokio::sync::oneshot;
use napi::{Env, Task};

/// Runs `task` as `AsyncTask` would, with `compute` on a thread named `name`; the promise
/// settles on the main thread with what `resolve` (or `reject`) returns, after `finally`.
pub fn spawn<'env, T>(
    env: &'env Env,
    name: &str,
    task: T,
) -> napi::Result<PromiseRaw<'env, T::JsValue>>
where
    T: Task + 'static,
{
    let (done, result) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut task = task;
            let output = task.compute();
            // The receiver is gone only if the environment was torn down; nobody waits then.
            let _ = done.send((task, output));
        })
        .map_err(|e| {
            napi::Error::new(
                napi::Status::GenericFailure,
                format!("cannot start the engine thread: {e}"),
            )
        })?;
    env.spawn_future_with_callback(
        async move {
            result.await.map_err(|_| {
                napi::Error::new(
                    napi::Status::GenericFailure,
                    "the engine thread ended without a result",
                )
            })
        },
        |env, (mut task, output)| {
            let settled = match output {
                Ok(output) => task.resolve(*env, output),
                Err(e) => task.reject(*env, e),
            };
            task.finally(*env)?;
            settled
        },
    )
}
