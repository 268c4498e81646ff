//! The math: CLIP vision towers, projector, Llama with a KV cache, the placeholder merge.
//!
//! [`VideoLlavaModel`] holds only immutable tensors, so one loaded model serves many threads at
//! once; the per-generation state lives in the [`KvCache`] each caller makes with
//! [`VideoLlavaModel::new_cache`].

mod attention;
mod clip;
mod fused;
mod layers;
mod llama;
mod matvec;

/// The most rows a batched decode step multiplies at once (one per sequence).
pub(crate) const MAX_BATCH_ROWS: usize = matvec::MAX_ROWS;
mod merge;
pub(crate) mod pool;
mod projector;
mod qmatmul;

use std::path::Path;

use candle_core::{DType, Device, Tensor};

pub use clip::VisionTower;
pub use llama::{KvCache, Llama};
pub use projector::Projector;

use crate::config::{Activation, SelectStrategy, VideoLlavaConfig};
use crate::quantize::{Fallback, QuantizeOptions};
use crate::weights::{Component, ModelFiles, Weights};
use crate::{Error, Result};

/// Applies a configured activation.
pub(crate) fn activate(act: Activation, xs: &Tensor) -> candle_core::Result<Tensor> {
    match act {
        Activation::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
        Activation::Gelu => xs.gelu_erf(),
        Activation::GeluTanh => xs.gelu(),
        Activation::Silu => xs.silu(),
        Activation::Relu => xs.relu(),
    }
}

/// Softmax over the last axis, computed in f32 for half-precision scores (as transformers does),
/// returned in the scores' dtype.
pub(crate) fn attention_softmax(scores: &Tensor) -> candle_core::Result<Tensor> {
    match scores.dtype() {
        DType::F16 | DType::BF16 => {
            candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?
                .to_dtype(scores.dtype())
        }
        _ => candle_nn::ops::softmax_last_dim(scores),
    }
}

/// A loaded Video-LLaVA checkpoint: two CLIP towers, the projector and the Llama LM.
pub struct VideoLlavaModel {
    config: VideoLlavaConfig,
    device: Device,
    dtype: DType,
    image_tower: VisionTower,
    video_tower: VisionTower,
    projector: Projector,
    llama: Llama,
    quantization: QuantizeOptions,
    fallbacks: Vec<Fallback>,
}

impl VideoLlavaModel {
    /// Loads `config.json` and the weights (safetensors, or a saved `model.gguf`) of a model
    /// directory onto `device` in `dtype`.
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_quantized(dir, device, dtype, QuantizeOptions::default())
    }

    /// Like [`VideoLlavaModel::load`], quantizing the weights `quantize` names as they are read
    /// (see [`crate::quantize`]); a GGUF directory is loaded as saved.
    pub fn load_quantized(
        dir: &Path,
        device: &Device,
        dtype: DType,
        quantize: QuantizeOptions,
    ) -> Result<Self> {
        let files = ModelFiles::locate(dir)?;
        let config = VideoLlavaConfig::from_file(&files.config)?;
        let weights = Weights::open_quantized(&files, device, dtype, quantize)?;
        Self::from_weights(config, &weights)
    }

    /// Builds the model from an already parsed config and opened weights.
    pub fn from_weights(config: VideoLlavaConfig, weights: &Weights) -> Result<Self> {
        let layers_used = config.vision_layers_used();
        let image_tower = VisionTower::load(
            &weights.scope(Component::ImageTower),
            &config.vision,
            layers_used,
        )?;
        let video_tower = VisionTower::load(
            &weights.scope(Component::VideoTower),
            &config.vision,
            layers_used,
        )?;
        let projector = Projector::load(&weights.scope(Component::Projector), &config)?;
        let llama = Llama::load(
            &weights.scope(Component::LanguageModel),
            &weights.scope(Component::LmHead),
            &config.text,
            config.tie_word_embeddings,
        )?;
        Ok(Self {
            device: weights.device().clone(),
            dtype: weights.dtype(),
            config,
            image_tower,
            video_tower,
            projector,
            llama,
            quantization: weights.quantization(),
            fallbacks: weights.fallbacks(),
        })
    }

    /// What the weights hold: which parts are quantized, and to what.
    pub fn quantization(&self) -> QuantizeOptions {
        self.quantization
    }

    /// The linear weights kept in another type than asked (rows that do not divide into the
    /// type's blocks), in load order.
    pub fn quantization_fallbacks(&self) -> &[Fallback] {
        &self.fallbacks
    }

    /// The configuration.
    pub fn config(&self) -> &VideoLlavaConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype the model computes in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn pixels_in(&self, pixels: &Tensor) -> Result<Tensor> {
        Ok(pixels
            .to_device(&self.device)?
            .to_dtype(self.image_tower.dtype())?)
    }

    /// `(K, 3, 224, 224)` pixels -> `(K, image_tokens, text_hidden)` projected features.
    pub fn encode_images(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.image_tower.check_pixels(pixel_values, "image")?;
        let pixels = self.pixels_in(pixel_values)?;
        let drop_cls = self.config.select_strategy == SelectStrategy::Default;
        let features = self.image_tower.features(
            &pixels,
            &self.config.feature_hidden_state_indices(),
            drop_cls,
        )?;
        Ok(self.projector.forward(&features)?)
    }

    /// `(B, F, 3, 224, 224)` pixels -> `(B, F * 257, text_hidden)` projected features
    /// (videos always keep the CLS token, frame-major).
    pub fn encode_videos(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let dims = pixel_values.dims().to_vec();
        let [b, f, rest @ ..] = dims.as_slice() else {
            return Err(Error::InvalidRequest(format!(
                "video pixels must be (B, F, 3, H, W), got {dims:?}"
            )));
        };
        if *b == 0 || *f == 0 || rest.len() != 3 {
            return Err(Error::InvalidRequest(format!(
                "video pixels must be (B, F, 3, H, W) with B, F > 0, got {dims:?}"
            )));
        }
        let frames = pixel_values.reshape((b * f, rest[0], rest[1], rest[2]))?;
        self.video_tower.check_pixels(&frames, "video")?;
        let frames = self.pixels_in(&frames)?;
        let features = self.video_tower.features(
            &frames,
            &self.config.feature_hidden_state_indices(),
            false,
        )?;
        let projected = self.projector.forward(&features)?;
        let tokens = projected.dim(1)?;
        Ok(projected.reshape((*b, f * tokens, self.config.text.hidden_size))?)
    }

    /// Token embeddings with image/video features scattered into the placeholder positions,
    /// in order: `(1, L, hidden)`. Errors ([`Error::InvalidRequest`]) when placeholder counts
    /// and feature counts disagree.
    pub fn embed(
        &self,
        input_ids: &[u32],
        image_features: Option<&Tensor>,
        video_features: Option<&Tensor>,
    ) -> Result<Tensor> {
        if input_ids.is_empty() {
            return Err(Error::InvalidRequest("no input ids".into()));
        }
        let text = self.llama.embed_ids(input_ids)?;
        let merged = merge::merge(
            &text,
            input_ids,
            self.config.image_token_index,
            self.config.video_token_index,
            image_features,
            video_features,
        )?;
        Ok(merged.unsqueeze(0)?)
    }

    /// A KV cache for up to `max_len` positions (at most `max_position_embeddings`).
    pub fn new_cache(&self, max_len: usize) -> Result<KvCache> {
        self.llama.new_cache(max_len)
    }

    /// Runs embeddings `(1, L, hidden)` at positions `cache.len()..`; returns the last
    /// position's logits `(vocab,)` as f32.
    pub fn forward_embeds(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        self.llama.forward(embeds, cache)
    }

    /// Embeds plain token ids (placeholder ids get their token embeddings, as in decoding)
    /// and forwards them; returns the last position's logits `(vocab,)` as f32.
    pub fn forward_tokens(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(Error::InvalidRequest("no token ids".into()));
        }
        let embeds = self.llama.embed_ids(ids)?.unsqueeze(0)?;
        self.llama.forward(&embeds, cache)
    }

    /// One decode step of several sequences, `ids[i]` fed through `caches[i]`; each one's
    /// logits `(vocab,)` as f32, the same [`VideoLlavaModel::forward_tokens`] gives it alone.
    pub fn forward_batch(&self, ids: &[u32], caches: &mut [&mut KvCache]) -> Result<Vec<Tensor>> {
        self.llama.forward_batch(ids, caches)
    }

    /// The dtype its KV caches hold keys and values in (by default the compute dtype).
    pub fn kv_cache_dtype(&self) -> DType {
        self.llama.kv_dtype()
    }

    /// Makes the KV caches created from now on hold keys and values in `dtype` (f32, f16 or
    /// bf16): an f16 cache beside f32 compute halves the cache's memory and what a decode step
    /// reads at depth, at the cost of rounding each key and value to half precision (as
    /// llama.cpp's default cache does). Both prefill and decode read the rounded values, so
    /// results still do not depend on how a prompt is split (conversations, batches).
    /// The saving in reads is the CPU decode kernel's, which converts in registers; on CUDA and
    /// Metal a cache in another dtype than the compute one is converted per layer and step
    /// (there the default compute dtype is already half precision, and so is the default cache).
    /// [`Error::InvalidRequest`] for another dtype.
    pub fn set_kv_cache_dtype(&mut self, dtype: DType) -> Result<()> {
        self.llama.set_kv_dtype(dtype)
    }

    /// Bytes one position takes in a KV cache.
    pub fn kv_bytes_per_position(&self) -> usize {
        self.llama.kv_bytes_per_position()
    }

    /// The text model's vocabulary size (rows of the logits).
    pub fn vocab_size(&self) -> usize {
        self.llama.config().vocab_size
    }
}

/// `|a - b| / |b|` over the whole tensor (Euclidean norms), for the kernels' tests.
#[cfg(test)]
pub(crate) fn norm_error(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
    let diff = (a - b)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
    let scale = b.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
    Ok(diff / scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<VideoLlavaModel>();
        check::<KvCache>();
    }

    #[test]
    fn quick_gelu_and_exact_gelu() -> Result<()> {
        let xs = Tensor::new(&[-2f32, -0.5, 0.0, 1.0, 3.0], &Device::Cpu)?;
        let quick = activate(Activation::QuickGelu, &xs)?.to_vec1::<f32>()?;
        let gelu = activate(Activation::Gelu, &xs)?.to_vec1::<f32>()?;
        for (i, &x) in [-2f32, -0.5, 0.0, 1.0, 3.0].iter().enumerate() {
            let q = x / (1.0 + (-1.702 * x).exp());
            assert!((quick[i] - q).abs() < 1e-6, "quick_gelu({x})");
        }
        // erf GELU reference values (scipy): gelu(1) = 0.8413447, gelu(-0.5) = -0.1542687.
        assert!((gelu[3] - 0.841_344_7).abs() < 1e-6);
        assert!((gelu[1] + 0.154_268_7).abs() < 1e-6);
        Ok(())
    }
}
