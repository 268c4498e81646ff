//! An `AbortSignal` from JavaScript, tied to the engine's [`CancelToken`].
//!
//! `AsyncTask::with_signal` alone can only drop work that has not started; a generation that is
//! already running must be told to stop, which is what the engine's token does (it is checked
//! before every token). So the abort sets the token, and the task rejects with an `AbortError`
//! when it sees the token set.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use napi::bindgen_prelude::{AbortSignal, FromNapiValue, Object, TypeName, ValidateNapiValue};
use napi::{sys, CleanupEnvHook, Env, ValueType};
use video_llava::CancelToken;

/// An `AbortSignal`, with whether it had already fired when the call was made (an abort event
/// that has already happened never fires again).
pub struct Signal {
    already_aborted: bool,
    inner: AbortSignal,
}

impl Signal {
    /// A token that is cancelled now if the signal already fired, or when it fires.
    pub fn token(self) -> CancelToken {
        let token = CancelToken::new();
        if self.already_aborted {
            token.cancel();
        }
        let on_abort = token.clone();
        self.inner.on_abort(move || on_abort.cancel());
        token
    }
}

impl FromNapiValue for Signal {
    unsafe fn from_napi_value(env: sys::napi_env, napi_val: sys::napi_value) -> napi::Result<Self> {
        // SAFETY: the caller's contract (a valid env and value) is passed on unchanged.
        let object = unsafe { Object::from_napi_value(env, napi_val) }?;
        let already_aborted = object.get::<bool>("aborted")?.unwrap_or(false);
        // SAFETY: as above.
        let inner = unsafe { AbortSignal::from_napi_value(env, napi_val) }?;
        Ok(Self {
            already_aborted,
            inner,
        })
    }
}

impl TypeName for Signal {
    fn type_name() -> &'static str {
        "AbortSignal"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ValidateNapiValue for Signal {}

/// Cancels a call's token when its environment is torn down first (a worker thread that is
/// terminated mid-generation), so the engine does not run on for a JavaScript that is gone.
///
/// napi's hook handle is not `Send`, while the task that owns the guard moves to the pool: the
/// handle stays in a table on the JavaScript thread, and the guard carries its key.
pub struct TeardownGuard(Option<u64>);

thread_local! {
    static TEARDOWN_HOOKS: RefCell<HashMap<u64, CleanupEnvHook<CancelToken>>> = RefCell::new(HashMap::new());
}
static NEXT_HOOK: AtomicU64 = AtomicU64::new(0);

impl TeardownGuard {
    /// Registers the hook (main thread). Without one the call still works; it just is not
    /// cancelled at teardown.
    pub fn new(env: &Env, token: &CancelToken) -> Self {
        match env.add_env_cleanup_hook(token.clone(), |token| token.cancel()) {
            Ok(hook) => {
                let key = NEXT_HOOK.fetch_add(1, Ordering::Relaxed);
                TEARDOWN_HOOKS.with(|hooks| hooks.borrow_mut().insert(key, hook));
                Self(Some(key))
            }
            Err(_) => Self(None),
        }
    }

    /// Removes the hook once the call has settled (main thread).
    pub fn release(self, env: &Env) {
        let Some(key) = self.0 else { return };
        if let Some(hook) = TEARDOWN_HOOKS.with(|hooks| hooks.borrow_mut().remove(&key)) {
            let _ = env.remove_env_cleanup_hook(hook);
        }
    }
}
