//! The checkpoint's `config.json` in every form it comes in.

/// The parsed, validated model configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoLlavaConfig {}
