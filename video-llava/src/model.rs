//! The math: CLIP vision towers, projector, Llama with a KV cache, the placeholder merge.
