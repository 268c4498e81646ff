//! An `AbortSignal` from JavaScript, tied to the engine's [`CancelToken`].
//!
//! `AsyncTask::with_signal` alone can only drop work that has not started; a generation that is
//! already running must be told to stop, which is what the engine's token does (it is checked
//! before every token). So an `abort` listener sets the token, and the call rejects with an
//! `AbortError` when it sees the token set. The listener is added with `addEventListener` (the
//! caller's own `onabort` stays theirs) and removed when the call settles, so a long-lived signal
//! shared by many calls does not collect listeners.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use napi::bindgen_prelude::{
    FnArgs, FromNapiValue, Function, FunctionRef, JsObjectValue, Object, ObjectRef, TypeName,
    Unknown, ValidateNapiValue,
};
use napi::{sys, CleanupEnvHook, Env, ValueType};
use video_llava::CancelToken;

/// An `AbortSignal` option: the token its abort sets, and the listener to remove afterwards.
pub struct Signal {
    token: CancelToken,
    listener: Option<AbortListener>,
}

impl Signal {
    /// The token (already cancelled if the signal had fired) and the listener to remove when the
    /// call settles (none when it had fired: an abort event never comes twice).
    pub fn into_parts(self) -> (CancelToken, Option<AbortListener>) {
        (self.token, self.listener)
    }
}

/// An `abort` listener on a caller's signal, kept so it can be removed (main thread only).
pub struct AbortListener {
    signal: ObjectRef<false>,
    callback: FunctionRef<(), ()>,
}

type EventListenerMethod<'env> =
    Function<'env, FnArgs<(&'static str, Function<'env, (), ()>)>, Unknown<'env>>;

impl AbortListener {
    /// Removes the listener and lets go of the signal (main thread).
    pub fn remove(self, env: &Env) {
        if let (Ok(signal), Ok(callback)) =
            (self.signal.get_value(env), self.callback.borrow_back(env))
        {
            if let Ok(remove) =
                signal.get_named_property::<EventListenerMethod>("removeEventListener")
            {
                let _ = remove.apply(signal, FnArgs::from(("abort", callback)));
            }
        }
        let _ = self.signal.unref(env);
    }
}

impl FromNapiValue for Signal {
    unsafe fn from_napi_value(env: sys::napi_env, napi_val: sys::napi_value) -> napi::Result<Self> {
        // SAFETY: the caller's contract (a valid env and value) is passed on unchanged.
        let signal = unsafe { Object::from_napi_value(env, napi_val) }?;
        let token = CancelToken::new();
        if signal.get::<bool>("aborted")?.unwrap_or(false) {
            token.cancel();
            return Ok(Self {
                token,
                listener: None,
            });
        }
        let on_abort = token.clone();
        let env = Env::from_raw(env);
        let callback = env.create_function_from_closure::<(), (), _>("onAbort", move |_| {
            on_abort.cancel();
            Ok(())
        })?;
        let add = signal
            .get_named_property::<EventListenerMethod>("addEventListener")
            .map_err(|_| napi::Error::from_reason("signal must be an AbortSignal"))?;
        add.apply(signal, FnArgs::from(("abort", callback)))?;
        let listener = AbortListener {
            signal: signal.create_ref()?,
            callback: callback.create_ref()?,
        };
        Ok(Self {
            token,
            listener: Some(listener),
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
