//! Long work (loading, a generation, a batch, a conversation's prefill) on an engine thread of
//! its own instead of libuv's pool.
//!
//! napi's `AsyncTask` runs `compute` on one of libuv's threads (four by default), the same
//! threads `fs`, `dns`, `crypto` and `zlib` use. A generation can take minutes, so four at once
//! would stall every file read of the process. [`spawn`] runs the same [`Task`] with `compute` on
//! a new thread and `resolve`/`reject`/`finally` back on the main thread, as `AsyncTask` does.
//! Each call gets its own thread: concurrent calls are bounded by what the caller starts (each
//! running generation holds its KV cache), not by libuv's pool.

use napi::bindgen_prelude::PromiseRaw;
use napi::tokio::sync::oneshot;
use napi::{Env, Task};

/// Runs `task` as `AsyncTask` would, with `compute` on a thread named `name`; the promise
/// settles on the main thread with what `resolve` (or `reject`) returns, after `finally`. A
/// thread that cannot be started rejects the promise (after `finally`); it never throws.
pub fn spawn<'env, T>(
    env: &'env Env,
    name: &str,
    task: T,
) -> napi::Result<PromiseRaw<'env, T::JsValue>>
where
    T: Task + 'static,
{
    // The task goes to the thread once it runs, so a failed start leaves it here for `finally`.
    let (give, take) = std::sync::mpsc::sync_channel::<T>(1);
    let (done, result) = oneshot::channel();
    let started = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let Ok(mut task) = take.recv() else {
                return;
            };
            let output = task.compute();
            // The receiver is gone only if the environment was torn down; nobody waits then.
            let _ = done.send((task, output));
        });
    if let Err(e) = started {
        task.finally(*env)?;
        let error = napi::Error::new(
            napi::Status::GenericFailure,
            format!("cannot start the engine thread: {e}"),
        );
        // A future that fails at once: the promise rejects with `error` (the callback never runs).
        return env.spawn_future_with_callback(async move { Err::<(), _>(error) }, |_, ()| {
            Err(napi::Error::from_reason("unreachable"))
        });
    }
    // The thread waits on this; it cannot be full or closed.
    let _ = give.send(task);
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
