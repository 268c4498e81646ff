//! Python bindings (pyo3).
