//! The multimodal projector: linear -> activation (exact GELU) -> linear.

use candle_core::Tensor;

use super::activate;
use super::layers::{linear, Linear};
use crate::config::{Activation, VideoLlavaConfig};
use crate::weights::Scope;
use crate::Result;

/// Maps vision features to the language model's width.
pub struct Projector {
    linear_1: Linear,
    linear_2: Linear,
    act: Activation,
}

impl Projector {
    pub(crate) fn load(vb: &Scope<'_>, cfg: &VideoLlavaConfig) -> Result<Self> {
        let text = cfg.text.hidden_size;
        Ok(Self {
            linear_1: linear(
                &vb.pp("linear_1"),
                cfg.vision_feature_dim(),
                text,
                cfg.projector_bias,
            )?,
            linear_2: linear(&vb.pp("linear_2"), text, text, cfg.projector_bias)?,
            act: cfg.projector_hidden_act,
        })
    }

    /// `(N, tokens, vision_feature_dim)` -> `(N, tokens, text_hidden)`.
    pub(crate) fn forward(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.linear_1.forward(&features.contiguous()?)?;
        self.linear_2.forward(&activate(self.act, &h)?)
    }
}
