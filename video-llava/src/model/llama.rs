//! The Llama language model: RMSNorm, RoPE (rotate-half, as transformers), grouped-query
//! attention against a preallocated KV cache, SiLU MLP, untied LM head on the last position.

use candle_core::{DType, Device, Tensor};

use super::attention::causal_attention;
use super::fused::gated;
use super::layers::{fused_linear, linear, Linear};
use crate::config::TextConfig;
use crate::weights::Scope;
use crate::{Error, Result};

/// Keys and values of every layer for one generation, allocated once at its full length.
///
/// Each call to [`crate::model::VideoLlavaModel::new_cache`] makes a fresh one, so concurrent
/// generations never share state. Appending writes in place (`slice_set`), never concatenates.
pub struct KvCache {
    /// Per layer, `(1, kv_heads, capacity, head_dim)` keys and values.
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
    capacity: usize,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("layers", &self.layers.len())
            .field("len", &self.len)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl KvCache {
    /// Positions already filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is filled yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most positions this cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position, keeping the buffers for reuse.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Drops positions from `len` on (e.g. to re-run a shared prompt prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Bytes its buffers take (all `capacity` positions, keys and values of every layer).
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|(k, v)| (k.elem_count() + v.elem_count()) * k.dtype().size_in_bytes())
            .sum()
    }

    /// A new cache of `capacity` positions holding a copy of this one's first `keep`: its own
    /// buffers, so writing to either never changes the other (a conversation's prefix stays as
    /// it was however many questions start from it).
    pub(crate) fn fork(&self, capacity: usize, keep: usize) -> Result<KvCache> {
        if keep > self.len || keep > capacity || capacity == 0 {
            return Err(Error::InvalidRequest(format!(
                "cannot keep {keep} of {} cached positions in a cache of {capacity}",
                self.len
            )));
        }
        let layers = self
            .layers
            .iter()
            .map(|(k, v)| {
                // One copy per buffer: the kept positions, then zeros for the rest.
                let grow = |t: &Tensor| -> candle_core::Result<Tensor> {
                    let (b, heads, _, head_dim) = t.dims4()?;
                    let rest = || {
                        Tensor::zeros((b, heads, capacity - keep, head_dim), t.dtype(), t.device())
                    };
                    match (keep, capacity - keep) {
                        (0, _) => rest(),
                        // All kept: fresh buffers filled from a contiguous view (which may
                        // share the source's storage, so it is only read).
                        (_, 0) => {
                            let full = Tensor::zeros(
                                (b, heads, capacity, head_dim),
                                t.dtype(),
                                t.device(),
                            )?;
                            full.slice_set(&t.narrow(2, 0, keep)?.contiguous()?, 2, 0)?;
                            Ok(full)
                        }
                        _ => Tensor::cat(&[&t.narrow(2, 0, keep)?, &rest()?], 2),
                    }
                };
                Ok((grow(k)?, grow(v)?))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            len: keep,
            capacity,
        })
    }
}

struct DecoderLayer {
    input_layernorm: Tensor,
    qkv: Linear,
    o_proj: Linear,
    post_attention_layernorm: Tensor,
    gate_up: Linear,
    down_proj: Linear,
}

/// The language model.
pub struct Llama {
    /// `(vocab, hidden)`: in the checkpoint's half-precision dtype when computing in f32 (rows
    /// are converted as they are looked up, exactly), else in the compute dtype.
    embed_tokens: Tensor,
    /// The compute dtype.
    dtype: DType,
    layers: Vec<DecoderLayer>,
    norm: Tensor,
    lm_head: Linear,
    /// `(max_position_embeddings, head_dim / 2)` RoPE tables, in the model dtype.
    cos: Tensor,
    sin: Tensor,
    cfg: TextConfig,
    /// The dtype of the keys and values its caches hold (by default the compute dtype).
    kv_dtype: DType,
}

impl Llama {
    /// Loads the body from `vb` and the head from `head` (or the embeddings, when tied).
    pub(crate) fn load(
        vb: &Scope<'_>,
        head: &Scope<'_>,
        cfg: &TextConfig,
        tied: bool,
    ) -> Result<Self> {
        let d = cfg.hidden_size;
        let h = cfg.num_attention_heads;
        let kvh = cfg.num_key_value_heads;
        let hd = cfg.head_dim;
        let i = cfg.intermediate_size;
        let dtype = vb.weights().dtype();
        let embeddings = vb.pp("embed_tokens");
        let embed_tokens = if tied {
            // Also the LM head's weight: in the compute dtype.
            embeddings.get(&[cfg.vocab_size, d], "weight")?
        } else {
            // A table read a few rows at a time: kept compact (the 7B's is 0.26 GB in bf16,
            // 0.52 GB in f32).
            embeddings.get_compact(&[cfg.vocab_size, d], "weight")?
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for idx in 0..cfg.num_hidden_layers {
            let l = vb.pp("layers").pp(idx);
            let attn = l.pp("self_attn");
            let mlp = l.pp("mlp");
            layers.push(DecoderLayer {
                input_layernorm: l.pp("input_layernorm").get(&[d], "weight")?,
                qkv: fused_linear(
                    &[attn.pp("q_proj"), attn.pp("k_proj"), attn.pp("v_proj")],
                    d,
                    &[h * hd, kvh * hd, kvh * hd],
                    cfg.attention_bias,
                )?,
                o_proj: linear(&attn.pp("o_proj"), h * hd, d, cfg.attention_bias)?,
                post_attention_layernorm: l.pp("post_attention_layernorm").get(&[d], "weight")?,
                gate_up: fused_linear(
                    &[mlp.pp("gate_proj"), mlp.pp("up_proj")],
                    d,
                    &[i, i],
                    cfg.mlp_bias,
                )?,
                down_proj: linear(&mlp.pp("down_proj"), i, d, cfg.mlp_bias)?,
            });
        }
        let norm = vb.pp("norm").get(&[d], "weight")?;
        let lm_head = if tied && !head.contains("weight") {
            Linear::Dense(candle_nn::Linear::new(embed_tokens.clone(), None))
        } else {
            linear(head, d, cfg.vocab_size, false)?
        };
        let (cos, sin) = rope_tables(cfg, dtype, embed_tokens.device())?;
        Ok(Self {
            kv_dtype: dtype,
            dtype,
            embed_tokens,
            layers,
            norm,
            lm_head,
            cos,
            sin,
            cfg: cfg.clone(),
        })
    }

    /// The dtype its KV caches store keys and values in.
    pub(crate) fn kv_dtype(&self) -> DType {
        self.kv_dtype
    }

    /// Stores the keys and values of caches made from now on in `dtype` (f32, f16 or bf16).
    /// They are rounded to it when written and read back from it, by prefill and decode alike,
    /// so a generation's tokens do not depend on how its prompt was split into forwards.
    pub(crate) fn set_kv_dtype(&mut self, dtype: DType) -> Result<()> {
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(Error::InvalidRequest(format!(
                "a KV cache holds f32, f16 or bf16, not {dtype:?}"
            )));
        }
        self.kv_dtype = dtype;
        Ok(())
    }

    /// A cache for up to `max_len` positions.
    pub(crate) fn new_cache(&self, max_len: usize) -> Result<KvCache> {
        if max_len == 0 || max_len > self.cfg.max_position_embeddings {
            return Err(Error::InvalidRequest(format!(
                "a KV cache of {max_len} positions is outside the model's context of 1..={} positions",
                self.cfg.max_position_embeddings
            )));
        }
        let shape = (1, self.cfg.num_key_value_heads, max_len, self.cfg.head_dim);
        let dtype = self.kv_dtype;
        let device = self.embed_tokens.device();
        let layers = (0..self.layers.len())
            .map(|_| {
                Ok((
                    Tensor::zeros(shape, dtype, device)?,
                    Tensor::zeros(shape, dtype, device)?,
                ))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            len: 0,
            capacity: max_len,
        })
    }

    /// Token embeddings `(L, hidden)`; ids must be in the vocabulary.
    pub(crate) fn embed_ids(&self, ids: &[u32]) -> Result<Tensor> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.cfg.vocab_size) {
            return Err(Error::InvalidRequest(format!(
                "token id {bad} is outside the vocabulary of {} tokens",
                self.cfg.vocab_size
            )));
        }
        let ids = Tensor::new(ids, self.embed_tokens.device())?;
        Ok(self
            .embed_tokens
            .index_select(&ids, 0)?
            .to_dtype(self.dtype)?)
    }

    /// Runs `embeds` `(1, L, hidden)` at positions `cache.len()..`, returning the last
    /// position's logits `(vocab,)` in f32.
    pub(crate) fn forward(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (b, seq, d) = embeds.dims3()?;
        if b != 1 || seq == 0 || d != self.cfg.hidden_size {
            return Err(Error::InvalidRequest(format!(
                "embeddings must be (1, L > 0, {}), got {:?}",
                self.cfg.hidden_size,
                embeds.dims()
            )));
        }
        self.check_cache(cache, seq)?;
        let offset = cache.len;
        let device = self.embed_tokens.device();
        let dtype = self.dtype;
        let mut xs = embeds.to_device(device)?.to_dtype(dtype)?;
        let cos = self.cos.narrow(0, offset, seq)?;
        let sin = self.sin.narrow(0, offset, seq)?;
        for (layer, (k_cache, v_cache)) in self.layers.iter().zip(cache.layers.iter()) {
            if crate::generation::stage_cancelled(crate::generation::Stage::Text) {
                // The cache's length is not advanced: what the finished layers wrote is unused.
                return Err(
                    candle_core::Error::Msg(crate::generation::STAGE_CANCELLED.into()).into(),
                );
            }
            xs = self.layer_forward(layer, &xs, k_cache, v_cache, offset, &cos, &sin)?;
        }
        cache.len = offset + seq;
        let last = xs.narrow(1, seq - 1, 1)?.reshape((1, d))?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, self.cfg.rms_norm_eps as f32)?;
        let logits = self.lm_head.forward(&last)?;
        Ok(logits.reshape(self.cfg.vocab_size)?.to_dtype(DType::F32)?)
    }

    /// Whether `cache` is this model's and has room for `more` positions.
    fn check_cache(&self, cache: &KvCache, more: usize) -> Result<()> {
        if cache.layers.len() != self.layers.len() {
            return Err(Error::InvalidRequest(
                "the KV cache was made for another model".into(),
            ));
        }
        if cache.len + more > cache.capacity {
            return Err(Error::InvalidRequest(format!(
                "{more} more positions do not fit the KV cache ({} of {} used)",
                cache.len, cache.capacity
            )));
        }
        Ok(())
    }

    /// One decode step of several sequences: `ids[i]` goes in at position `caches[i].len()` of
    /// its own cache. The weight products run once for every row, each row computed as a single
    /// step computes it; attention runs per sequence against its own cache (lengths differ, no
    /// padding). Returns each sequence's logits `(vocab,)` in f32.
    pub(crate) fn forward_batch(
        &self,
        ids: &[u32],
        caches: &mut [&mut KvCache],
    ) -> Result<Vec<Tensor>> {
        let b = ids.len();
        if b == 0 || caches.len() != b {
            return Err(Error::InvalidRequest(format!(
                "a batch step takes one token per cache: {b} tokens, {} caches",
                caches.len()
            )));
        }
        for cache in caches.iter() {
            self.check_cache(cache, 1)?;
        }
        let d = self.cfg.hidden_size;
        let offsets: Vec<usize> = caches.iter().map(|c| c.len).collect();
        // Each row's RoPE angles at its own position: (B, 1, head_dim / 2).
        let positions: Vec<u32> = offsets.iter().map(|&o| o as u32).collect();
        let positions = Tensor::new(positions.as_slice(), self.cos.device())?;
        let half = self.cos.dim(1)?;
        let rope = (
            self.cos
                .index_select(&positions, 0)?
                .reshape((b, 1, half))?,
            self.sin
                .index_select(&positions, 0)?
                .reshape((b, 1, half))?,
        );
        let dtype = self.dtype;
        let mut xs = self.embed_ids(ids)?.to_dtype(dtype)?.reshape((b, 1, d))?;
        for (l, layer) in self.layers.iter().enumerate() {
            let kv: Vec<&(Tensor, Tensor)> = caches.iter().map(|c| &c.layers[l]).collect();
            xs = self.layer_forward_batch(layer, &xs, &kv, &offsets, &rope)?;
        }
        for cache in caches.iter_mut() {
            cache.len += 1;
        }
        let last = xs.reshape((b, d))?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, self.cfg.rms_norm_eps as f32)?;
        let logits = self.lm_head.forward_rows(&last)?;
        (0..b)
            .map(|i| Ok(logits.get(i)?.to_dtype(DType::F32)?))
            .collect()
    }

    /// [`Llama::layer_forward`] for `xs` `(B, 1, hidden)`, row `i` at `offsets[i]` of `kv[i]`.
    fn layer_forward_batch(
        &self,
        layer: &DecoderLayer,
        xs: &Tensor,
        kv: &[&(Tensor, Tensor)],
        offsets: &[usize],
        (cos, sin): &(Tensor, Tensor),
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let (h, kvh, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let eps = cfg.rms_norm_eps as f32;
        let normed = candle_nn::ops::rms_norm(xs, &layer.input_layernorm, eps)?;
        let b = kv.len();
        // (B, heads, 1, head_dim) for everyone at once; RoPE is elementwise, each row at its
        // own position.
        let qkv = layer
            .qkv
            .forward_rows(&normed)?
            .reshape((b, 1, h + 2 * kvh, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = candle_nn::rotary_emb::rope(&qkv.narrow(1, 0, h)?.contiguous()?, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&qkv.narrow(1, h, kvh)?.contiguous()?, cos, sin)?;
        let v = qkv.narrow(1, h + kvh, kvh)?;
        let mut attns = Vec::with_capacity(b);
        for (i, (k_cache, v_cache)) in kv.iter().map(|p| (&p.0, &p.1)).enumerate() {
            k_cache.slice_set(
                &k.narrow(0, i, 1)?.to_dtype(k_cache.dtype())?,
                2,
                offsets[i],
            )?;
            v_cache.slice_set(
                &v.narrow(0, i, 1)?.to_dtype(v_cache.dtype())?,
                2,
                offsets[i],
            )?;
            let q = q.narrow(0, i, 1)?;
            attns.push(causal_attention(&q, k_cache, v_cache, offsets[i])?);
        }
        let attn = Tensor::cat(&attns, 0)?;
        let xs = (xs + layer.o_proj.forward_rows(&attn)?)?;
        let normed = candle_nn::ops::rms_norm(&xs, &layer.post_attention_layernorm, eps)?;
        let gated = gated(cfg.hidden_act, &layer.gate_up.forward_rows(&normed)?)?;
        xs + layer.down_proj.forward_rows(&gated)?
    }

    /// Bytes one position takes in a KV cache (keys and values of every layer).
    pub(crate) fn kv_bytes_per_position(&self) -> usize {
        self.layers.len()
            * 2
            * self.cfg.num_key_value_heads
            * self.cfg.head_dim
            * self.kv_dtype.size_in_bytes()
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        layer: &DecoderLayer,
        xs: &Tensor,
        k_cache: &Tensor,
        v_cache: &Tensor,
        offset: usize,
        cos: &Tensor,
        sin: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let (_, seq, _) = xs.dims3()?;
        let (h, kvh, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let eps = cfg.rms_norm_eps as f32;

        let normed = candle_nn::ops::rms_norm(xs, &layer.input_layernorm, eps)?;
        // q, k and v from one matmul, laid out (1, heads, S, head_dim) by one copy; with batch 1
        // each narrow along the head axis stays contiguous.
        let qkv = layer
            .qkv
            .forward(&normed)?
            .reshape((1, seq, h + 2 * kvh, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = candle_nn::rotary_emb::rope(&qkv.narrow(1, 0, h)?, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&qkv.narrow(1, h, kvh)?, cos, sin)?;
        let v = qkv.narrow(1, h + kvh, kvh)?;
        k_cache.slice_set(&k.to_dtype(k_cache.dtype())?, 2, offset)?;
        v_cache.slice_set(&v.to_dtype(v_cache.dtype())?, 2, offset)?;
        let attn = causal_attention(&q, k_cache, v_cache, offset)?;
        let xs = (xs + layer.o_proj.forward(&attn)?)?;

        let normed = candle_nn::ops::rms_norm(&xs, &layer.post_attention_layernorm, eps)?;
        let gated = gated(cfg.hidden_act, &layer.gate_up.forward(&normed)?)?;
        xs + layer.down_proj.forward(&gated)?
    }

    /// The configuration it was built from.
    pub(crate) fn config(&self) -> &TextConfig {
        &self.cfg
    }
}

/// RoPE cos/sin for every position, computed in f32 as transformers does
/// (`inv_freq = 1 / theta^(2i/d)`, `freqs = pos * inv_freq`), then cast to the model dtype.
fn rope_tables(cfg: &TextConfig, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
    let dim = cfg.head_dim;
    let base = cfg.rope_theta as f32;
    let inv_freq: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0 / base.powf(i as f32 / dim as f32))
        .collect();
    let half = inv_freq.len();
    let positions = cfg.max_position_embeddings;
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for pos in 0..positions {
        for &f in &inv_freq {
            let angle = pos as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    let cos = Tensor::from_vec(cos, (positions, half), device)?.to_dtype(dtype)?;
    let sin = Tensor::from_vec(sin, (positions, half), device)?.to_dtype(dtype)?;
    Ok((cos, sin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_embeddings_stay_half_under_f32_compute() -> Result<()> {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for (name, compute, table) in [
            ("tiny-legacy", DType::F32, DType::BF16),
            ("tiny-f16", DType::F32, DType::F16),
            ("tiny-t5", DType::F32, DType::F32),
            // Other compute dtypes keep the table in theirs.
            ("tiny-legacy", DType::F16, DType::F16),
        ] {
            let model =
                crate::model::VideoLlavaModel::load(&fixtures.join(name), &Device::Cpu, compute)?;
            let llama = &model.llama;
            assert_eq!(llama.embed_tokens.dtype(), table, "{name} at {compute:?}");
            let rows = llama.embed_ids(&[1, 5, 2])?;
            assert_eq!(rows.dtype(), compute, "{name}: looked-up rows");
            let want = llama
                .embed_tokens
                .to_dtype(compute)?
                .index_select(&Tensor::new(&[1u32, 5, 2], &Device::Cpu)?, 0)?;
            let diff = (rows - want)?.abs()?.sum_all()?.to_dtype(DType::F32)?;
            assert_eq!(diff.to_scalar::<f32>()?, 0.0, "{name}: exact rows");
        }
        Ok(())
    }

    /// A one-layer cache of `capacity` positions, the first `len` holding `1, 2, ...`.
    fn cache(capacity: usize, len: usize) -> KvCache {
        let values: Vec<f32> = (0..2 * capacity * 3)
            .map(|i| {
                if (i / 3) % capacity < len {
                    i as f32 + 1.0
                } else {
                    0.0
                }
            })
            .collect();
        let k = Tensor::from_vec(values, (1, 2, capacity, 3), &Device::Cpu).unwrap();
        KvCache {
            layers: vec![(k.clone(), k.copy().unwrap())],
            len,
            capacity,
        }
    }

    fn positions(t: &Tensor, n: usize) -> Vec<f32> {
        t.narrow(2, 0, n)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn a_fork_copies_the_kept_positions_into_buffers_of_its_own() {
        // A full source (whose narrowed view is already contiguous) and one with room left.
        for (source_capacity, capacity, keep) in
            [(5, 8, 3), (5, 3, 3), (5, 6, 0), (5, 4, 4), (4, 4, 4)]
        {
            let source = cache(source_capacity, 4);
            let before = positions(&source.layers[0].0, 4);
            let fork = source.fork(capacity, keep).unwrap();
            assert_eq!((fork.len(), fork.capacity()), (keep, capacity));
            let (k, v) = &fork.layers[0];
            assert_eq!(k.dims(), &[1, 2, capacity, 3]);
            assert!(k.is_contiguous() && v.is_contiguous());
            assert_eq!(positions(k, keep), positions(&source.layers[0].0, keep));
            // Writing every position of the fork leaves the source as it was.
            let ones = Tensor::ones((1, 2, capacity, 3), DType::F32, &Device::Cpu).unwrap();
            k.slice_set(&ones, 2, 0).unwrap();
            v.slice_set(&ones, 2, 0).unwrap();
            assert_eq!(positions(&source.layers[0].0, 4), before);
        }
        let source = cache(5, 4);
        assert_eq!(source.bytes(), 2 * (2 * 5 * 3) * 4);
        assert!(source.fork(8, 5).is_err(), "more than the source holds");
        assert!(source.fork(2, 3).is_err(), "more than the fork holds");
    }
}
