//! Resolving a hub repo id to a local directory through `hf-hub`.
