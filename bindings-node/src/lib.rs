//! Node bindings (napi-rs).
