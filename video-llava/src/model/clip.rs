//! The CLIP vision tower, with hidden-state selection exactly as transformers does it.
//!
//! `hidden_states[0]` is the embeddings output after `pre_layrnorm` and `hidden_states[i]` the
//! output of encoder layer `i` (1-based), so feature layer -2 of a 24-layer tower is the output
//! of layer 23. Layers past the deepest selected one, and `post_layernorm`, are never loaded.

use candle_core::{DType, Tensor, D};

use super::attention::softmax_owned;
use super::fused::activate_owned;
use super::layers::{fused_linear, linear, LayerNorm, Linear};
use crate::config::{Activation, VisionConfig};
use crate::weights::Scope;
use crate::{Error, Result};

struct EncoderLayer {
    layer_norm1: LayerNorm,
    qkv: Linear,
    out_proj: Linear,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
    head_dim: usize,
    act: Activation,
}

impl EncoderLayer {
    fn load(vb: &Scope<'_>, cfg: &VisionConfig) -> Result<Self> {
        let d = cfg.hidden_size;
        let attn = vb.pp("self_attn");
        Ok(Self {
            layer_norm1: LayerNorm::load(&vb.pp("layer_norm1"), d, cfg.layer_norm_eps)?,
            qkv: fused_linear(
                &[attn.pp("q_proj"), attn.pp("k_proj"), attn.pp("v_proj")],
                d,
                &[d, d, d],
                true,
            )?,
            out_proj: linear(&attn.pp("out_proj"), d, d, true)?,
            layer_norm2: LayerNorm::load(&vb.pp("layer_norm2"), d, cfg.layer_norm_eps)?,
            fc1: linear(&vb.pp("mlp").pp("fc1"), d, cfg.intermediate_size, true)?,
            fc2: linear(&vb.pp("mlp").pp("fc2"), cfg.intermediate_size, d, true)?,
            heads: cfg.num_attention_heads,
            head_dim: d / cfg.num_attention_heads,
            act: cfg.hidden_act,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (b, s, d) = xs.dims3()?;
        let h = self.layer_norm1.forward(xs)?;
        // One matmul for q, k and v, then one copy into (3, B, heads, S, head_dim).
        let qkv = self
            .qkv
            .forward(&h)?
            .reshape((b, s, 3, self.heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let q = (qkv.get(0)? * scale)?;
        let k = qkv.get(1)?;
        let v = qkv.get(2)?;
        let scores = q.matmul(&k.t()?)?;
        let probs = softmax_owned(scores)?;
        let attn = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, d))?;
        let xs = (xs + self.out_proj.forward(&attn)?)?;
        let h = self.layer_norm2.forward(&xs)?;
        let h = activate_owned(self.act, self.fc1.forward(&h)?)?;
        xs + self.fc2.forward(&h)?
    }
}

/// A CLIP vision tower, truncated to the layers the selected features need.
pub struct VisionTower {
    class_embedding: Tensor,
    /// The patch convolution as a `(hidden, channels * patch * patch)` matrix: patches do not
    /// overlap, so the convolution is one matmul over flattened patches.
    patch_weight: Tensor,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    layers: Vec<EncoderLayer>,
    cfg: VisionConfig,
}

impl VisionTower {
    /// Loads the embeddings, `pre_layrnorm` and the first `layers_used` encoder layers.
    pub(crate) fn load(vb: &Scope<'_>, cfg: &VisionConfig, layers_used: usize) -> Result<Self> {
        let d = cfg.hidden_size;
        let c = cfg.num_channels;
        let p = cfg.patch_size;
        let emb = vb.pp("embeddings");
        let patch_weight = emb
            .pp("patch_embedding")
            .get(&[d, c, p, p], "weight")?
            .reshape((d, c * p * p))?;
        let layers = (0..layers_used)
            .map(|i| EncoderLayer::load(&vb.pp("encoder").pp("layers").pp(i), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            class_embedding: emb.get(&[d], "class_embedding")?,
            patch_weight,
            position_embedding: emb
                .pp("position_embedding")
                .get(&[cfg.num_patches() + 1, d], "weight")?,
            pre_layrnorm: LayerNorm::load(&vb.pp("pre_layrnorm"), d, cfg.layer_norm_eps)?,
            layers,
            cfg: cfg.clone(),
        })
    }

    /// Checks pixels are `(N, channels, image_size, image_size)`.
    pub(crate) fn check_pixels(&self, pixels: &Tensor, what: &str) -> Result<()> {
        let want = [
            self.cfg.num_channels,
            self.cfg.image_size,
            self.cfg.image_size,
        ];
        match pixels.dims() {
            [n, rest @ ..] if *n > 0 && rest == want => Ok(()),
            dims => Err(Error::InvalidRequest(format!(
                "{what} pixels must be (N, {}, {}, {}) with N > 0, got {dims:?}",
                want[0], want[1], want[2]
            ))),
        }
    }

    fn embeddings(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let (b, c, _, _) = pixels.dims4()?;
        let p = self.cfg.patch_size;
        let g = self.cfg.image_size / p;
        let d = self.cfg.hidden_size;
        // (B, C, g, p, g, p) -> (B, g, g, C, p, p): each row is one patch, row-major over the
        // grid as the convolution's flatten(2) orders them.
        let patches = pixels
            .reshape((b, c, g, p, g, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * g * g, c * p * p))?;
        let patch_embeds = patches
            .matmul(&self.patch_weight.t()?)?
            .reshape((b, g * g, d))?;
        let class = self
            .class_embedding
            .reshape((1, 1, d))?
            .broadcast_as((b, 1, d))?;
        Tensor::cat(&[&class, &patch_embeds], 1)?.broadcast_add(&self.position_embedding)
    }

    /// Hidden states `indices` (see the module docs) of `pixels`, each with or without the
    /// CLS token, concatenated on the feature axis: `(N, tokens, hidden * indices.len())`.
    pub(crate) fn features(
        &self,
        pixels: &Tensor,
        indices: &[usize],
        drop_cls: bool,
    ) -> candle_core::Result<Tensor> {
        let mut selected: Vec<Option<Tensor>> = vec![None; indices.len()];
        let mut keep = |state: usize, xs: &Tensor| {
            for (slot, &want) in selected.iter_mut().zip(indices) {
                if want == state {
                    *slot = Some(xs.clone());
                }
            }
        };
        let mut xs = self.pre_layrnorm.forward(&self.embeddings(pixels)?)?;
        keep(0, &xs);
        for (i, layer) in self.layers.iter().enumerate() {
            if crate::generation::stage_cancelled(crate::generation::Stage::Vision) {
                return Err(candle_core::Error::Msg(
                    crate::generation::STAGE_CANCELLED.into(),
                ));
            }
            xs = layer.forward(&xs)?;
            keep(i + 1, &xs);
        }
        let mut parts = Vec::with_capacity(indices.len());
        for state in selected {
            let state = state.ok_or_else(|| {
                candle_core::Error::Msg("a selected hidden state was not computed".into())
            })?;
            let tokens = state.dim(1)?;
            parts.push(if drop_cls {
                state.narrow(1, 1, tokens - 1)?
            } else {
                state
            });
        }
        if parts.len() == 1 {
            Ok(parts.pop().expect("one part"))
        } else {
            Tensor::cat(&parts, D::Minus1)
        }
    }

    /// The dtype the tower computes in.
    pub(crate) fn dtype(&self) -> DType {
        self.patch_weight.dtype()
    }
}
