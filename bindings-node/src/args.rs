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
