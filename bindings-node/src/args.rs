//! Arguments from JavaScript, converted inside the binding instead of napi's generated glue.
//!
//! The glue throws synchronously, with napi's own codes (`InvalidArg`, `NumberExpected`, ...),
//! when a value has the wrong JS type. Taking arguments as `Unknown` and converting them here makes
//! every bad argument what the API promises: a rejected promise with code `ERR_INVALID_ARGUMENT`.
//! The TypeScript signatures are declared on each function (`ts_args_type`).

use napi::bindgen_prelude::{FromNapiValue, Unknown};
use napi::ValueType;

use crate::error::JsFailure;

/// Converts a required argument; `what` names it in the error message.
pub fn required<T: FromNapiValue>(what: &str, value: Unknown<'_>) -> Result<T, JsFailure> {
    match value.get_type() {
        Ok(ValueType::Undefined | ValueType::Null) => {
            Err(JsFailure::invalid(format!("{what} is required")))
        }
        _ => {
            T::from_unknown(value).map_err(|e| JsFailure::invalid(format!("{what}: {}", e.reason)))
        }
    }
}

/// Converts an optional argument (`undefined` and `null` mean absent).
pub fn optional<T: FromNapiValue>(
    what: &str,
    value: Option<Unknown<'_>>,
) -> Result<Option<T>, JsFailure> {
    match value {
        None => Ok(None),
        Some(value) => match value.get_type() {
            Ok(ValueType::Undefined | ValueType::Null) => Ok(None),
            _ => required(what, value).map(Some),
        },
    }
}

/// Converts an optional options object; anything but an object (or `undefined`/`null`) is refused.
pub fn options<T: FromNapiValue + Default>(
    what: &str,
    value: Option<Unknown<'_>>,
) -> Result<T, JsFailure> {
    match value.as_ref().map(Unknown::get_type) {
        None | Some(Ok(ValueType::Undefined | ValueType::Null)) => Ok(T::default()),
        Some(Ok(ValueType::Object)) => optional(what, value).map(Option::unwrap_or_default),
        Some(_) => Err(JsFailure::invalid(format!("{what} must be an object"))),
    }
}

/// A count, size or index given as a JS number: a whole number from 0 to `max`. napi's own
/// integer conversions do not refuse (`-1` becomes 4294967295 as a `u32`, `2.5` becomes 2), so
/// every integer option arrives as a number and is converted here; what the value may be is the
/// core's to check.
pub fn whole(what: &str, value: f64, max: u64) -> Result<u64, JsFailure> {
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= max as f64 {
        Ok(value as u64)
    } else {
        Err(JsFailure::invalid(format!(
            "{what} must be a whole number from 0 to {max}, got {value}"
        )))
    }
}

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// [`whole`] up to `u32::MAX`.
pub fn whole_u32(what: &str, value: f64) -> Result<u32, JsFailure> {
    whole(what, value, u32::MAX.into()).map(|n| n as u32)
}

/// [`whole`] up to `u32::MAX`, as a `usize` (every count the engine takes fits; larger ones are
/// refused by the core's own bounds long before).
pub fn whole_usize(what: &str, value: f64) -> Result<usize, JsFailure> {
    whole_u32(what, value).map(|n| n as usize)
}

/// An optional [`whole_usize`].
pub fn opt_usize(what: &str, value: Option<f64>) -> Result<Option<usize>, JsFailure> {
    value.map(|v| whole_usize(what, v)).transpose()
}

/// A byte count given as a JS number: a whole number `>= 0` (past `usize`, as many as there can
/// be); what the count may be is the core's to check.
pub fn whole_bytes(what: &str, value: f64) -> Result<usize, JsFailure> {
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 {
        Ok(value.min(usize::MAX as f64) as usize)
    } else {
        Err(JsFailure::invalid(format!(
            "{what} must be a whole number of bytes >= 0, got {value}"
        )))
    }
}

/// The engine's option names (snake_case, as Rust and Python spell them) and the camelCase the
/// JS options use, for the core's validation messages.
const FIELDS: [(&str, &str); 14] = [
    ("num_frames", "numFrames"),
    ("max_bytes", "maxBytes"),
    ("shortest_side", "shortestSide"),
    ("max_side", "maxSide"),
    ("max_size", "maxSize"),
    ("max_new_tokens", "maxNewTokens"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("repetition_penalty", "repetitionPenalty"),
    ("max_batch", "maxBatch"),
    ("max_kv_bytes", "maxKvBytes"),
    ("max_input_bytes", "maxInputBytes"),
    ("call_timeout", "callTimeoutMs"),
    ("max_decoder_threads", "maxDecoderThreads"),
];

/// `message` with every option name the core writes in snake_case renamed to camelCase; only
/// whole words (a file name like `clip_max_side.mp4` stays as it is).
pub fn camel_case_fields(message: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(|c: char| is_word(c)) {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        let word = &rest[..end];
        match FIELDS.iter().find(|(snake, _)| *snake == word) {
            Some((_, camel)) => out.push_str(camel),
            None => out.push_str(word),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}
