//! Safetensors discovery, sharding, key layouts and dtype conversion.
