//! Causal attention of the language model against its KV cache.
//!
//! Queries are processed in chunks of [`QUERY_CHUNK`] rows: a chunk only multiplies against the
//! keys its queries can see (`0..=offset + last row`), so prefill skips most of the masked upper
//! triangle and never holds the full `(heads, L, L)` score matrix (274 MB per layer for a
//! 2,000-token video prompt with 16 heads). On the CPU the causal mask is applied inside an
//! in-place softmax instead of being materialized and added.

use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Tensor};

use super::attention_softmax;
use super::fused::exp;

/// Query rows per chunk: big enough for efficient matmuls, small enough that a chunk's
/// scores stay in the tens of megabytes.
const QUERY_CHUNK: usize = 256;

/// Below this many scores a softmax runs on the calling thread (decode steps).
const PARALLEL_MIN: usize = 1 << 16;

/// `softmax(q k^T / sqrt(head_dim) + causal mask) v` for queries at positions
/// `offset..offset + S`.
///
/// `q`: `(1, heads, S, head_dim)`; `keys`, `values`: `(1, kv_heads, >= offset + S, head_dim)`
/// (views of the cache, only the first `offset + S` positions are read). Query heads sharing a
/// kv head are stacked on the row axis, so keys and values are never repeated.
/// Returns `(1, S, heads * head_dim)`.
pub(crate) fn causal_attention(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    offset: usize,
) -> candle_core::Result<Tensor> {
    let (_, h, seq, hd) = q.dims4()?;
    let kvh = keys.dim(1)?;
    let n_rep = h / kvh;
    let scale = (hd as f64).powf(-0.5);
    if seq == 1 {
        if let Some(out) = one_query(q, keys, values, offset, scale)? {
            return Ok(out);
        }
    }
    let mut outs = Vec::with_capacity(seq.div_ceil(QUERY_CHUNK));
    for start in (0..seq).step_by(QUERY_CHUNK) {
        let len = QUERY_CHUNK.min(seq - start);
        let first_pos = offset + start;
        let visible = first_pos + len;
        // The scaling writes a fresh contiguous chunk, which the stacking reshape needs.
        let q = (q.narrow(2, start, len)? * scale)?.reshape((1, kvh, n_rep * len, hd))?;
        let k = keys.narrow(2, 0, visible)?;
        let v = values.narrow(2, 0, visible)?;
        let scores = q.matmul(&k.t()?)?;
        let probs = causal_softmax(scores, len, first_pos)?;
        let out = probs
            .matmul(&v)?
            .reshape((1, h, len, hd))?
            .transpose(1, 2)?
            .reshape((1, len, h * hd))?;
        outs.push(out);
    }
    if outs.len() == 1 {
        Ok(outs.remove(0))
    } else {
        Tensor::cat(&outs, 1)
    }
}

/// Below this many key positions times heads one thread answers a decode step's attention.
const ONE_QUERY_PARALLEL_MIN: usize = 4096;

/// [`causal_attention`] for one query (a decode step) on the CPU in f32, straight from the
/// cache's buffers: per head, the scores against the visible keys, their softmax, the weighted
/// sum of the values. Two small matmuls per head and layer cost more in dispatch than in
/// arithmetic; this is what a batched step does once per sequence. `None` when the tensors are
/// not contiguous f32 on the CPU.
fn one_query(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    offset: usize,
    scale: f64,
) -> candle_core::Result<Option<Tensor>> {
    let (_, h, _, hd) = q.dims4()?;
    let (_, kvh, capacity, _) = keys.dims4()?;
    if !(is_cpu_f32_contiguous(keys) && is_cpu_f32_contiguous(values))
        || values.dims() != keys.dims()
        || q.dtype() != DType::F32
        || offset >= capacity
        || kvh == 0
        || h % kvh != 0
    {
        return Ok(None);
    }
    let visible = offset + 1;
    let q = (q * scale)?.flatten_all()?.to_vec1::<f32>()?;
    let (k_storage, k_layout) = keys.storage_and_layout();
    let (v_storage, v_layout) = values.storage_and_layout();
    let (
        candle_core::Storage::Cpu(CpuStorage::F32(k)),
        candle_core::Storage::Cpu(CpuStorage::F32(v)),
    ) = (&*k_storage, &*v_storage)
    else {
        return Ok(None);
    };
    let k = &k[k_layout.start_offset()..k_layout.start_offset() + kvh * capacity * hd];
    let v = &v[v_layout.start_offset()..v_layout.start_offset() + kvh * capacity * hd];
    let n_rep = h / kvh;
    let mut out = vec![0f32; h * hd];
    let heads = |first: usize, dst: &mut [f32]| {
        let mut scores = vec![0f32; visible];
        for (i, o) in dst.chunks_exact_mut(hd).enumerate() {
            let head = first + i;
            let base = (head / n_rep) * capacity * hd;
            let q = &q[head * hd..(head + 1) * hd];
            for (j, s) in scores.iter_mut().enumerate() {
                *s = dot(q, &k[base + j * hd..base + (j + 1) * hd]);
            }
            softmax_in_place(&mut scores);
            for (j, &p) in scores.iter().enumerate() {
                for (o, &x) in o.iter_mut().zip(&v[base + j * hd..base + (j + 1) * hd]) {
                    *o += p * x;
                }
            }
        }
    };
    let threads = super::pool::threads().clamp(1, h);
    if threads == 1 || visible * h < ONE_QUERY_PARALLEL_MIN {
        heads(0, &mut out);
    } else {
        let per = h.div_ceil(threads);
        super::pool::for_each_part(&mut out, per * hd, |i, part| heads(i * per, part));
    }
    Ok(Some(Tensor::from_vec(out, (1, 1, h * hd), &Device::Cpu)?))
}

/// Dot product with lane-wise partial sums, so it vectorizes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut sums = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in a_chunks.zip(b_chunks) {
        for ((s, x), y) in sums.iter_mut().zip(ca).zip(cb) {
            *s += x * y;
        }
    }
    sums.iter().sum::<f32>() + tail
}

/// Softmax over the last axis without a mask (the vision towers), overwriting `scores` on the
/// CPU (it must be a fresh tensor the caller owns, e.g. a matmul output).
pub(crate) fn softmax_owned(scores: Tensor) -> candle_core::Result<Tensor> {
    if is_cpu_f32_contiguous(&scores) {
        // Every row's query position is past the last key: nothing is masked.
        scores.inplace_op1(&CausalSoftmax {
            rows_per_query_block: 1,
            first_pos: usize::MAX - 1,
        })?;
        return Ok(scores);
    }
    attention_softmax(&scores)
}

fn is_cpu_f32_contiguous(xs: &Tensor) -> bool {
    matches!(xs.device(), Device::Cpu) && xs.dtype() == DType::F32 && xs.is_contiguous()
}

/// Softmax over the last axis of `scores` `(..., rows, keys)` where row `r` is the query at
/// position `first_pos + r % rows_per_query_block` and sees keys `0..=` that position.
fn causal_softmax(
    scores: Tensor,
    rows_per_query_block: usize,
    first_pos: usize,
) -> candle_core::Result<Tensor> {
    let op = CausalSoftmax {
        rows_per_query_block,
        first_pos,
    };
    if is_cpu_f32_contiguous(&scores) {
        // `scores` is the fresh output of a matmul, owned here: overwriting it is safe.
        scores.inplace_op1(&op)?;
        return Ok(scores);
    }
    // Other devices and dtypes: add a materialized mask, softmax in f32 as transformers does.
    let dims = scores.dims().to_vec();
    let keys = dims[dims.len() - 1];
    let rows = dims[..dims.len() - 1].iter().product::<usize>() / rows_per_query_block;
    let mask: Vec<f32> = (0..rows_per_query_block)
        .flat_map(|i| {
            (0..keys).map(move |j| {
                if j > first_pos + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    let mask = Tensor::from_vec(mask, (rows_per_query_block, keys), scores.device())?
        .to_dtype(scores.dtype())?;
    let masked = scores
        .reshape((rows, rows_per_query_block, keys))?
        .broadcast_add(&mask)?;
    attention_softmax(&masked)?.reshape(dims)
}

/// The in-place CPU kernel of [`causal_softmax`].
struct CausalSoftmax {
    rows_per_query_block: usize,
    first_pos: usize,
}

impl CausalSoftmax {
    fn rows(&self, data: &mut [f32], first_row: usize, cols: usize) {
        for (r, row) in data.chunks_exact_mut(cols).enumerate() {
            let query = self.first_pos + (first_row + r) % self.rows_per_query_block;
            let visible = (query + 1).min(cols);
            let (seen, hidden) = row.split_at_mut(visible);
            softmax_in_place(seen);
            hidden.fill(0.0);
        }
    }
}

/// Softmax of one row, written so that each pass vectorizes: lane-wise maxima and partial
/// sums (a single running sum would pin the float additions in order).
fn softmax_in_place(xs: &mut [f32]) {
    const LANES: usize = 16;
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &x) in maxes.iter_mut().zip(chunk) {
            *m = if x > *m { x } else { *m };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&maxes)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    let mut sums = [0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (s, x) in sums.iter_mut().zip(chunk.iter_mut()) {
            *x = exp(*x - max);
            *s += *x;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp(*x - max);
        sum += *x;
    }
    let inv = 1.0 / sum;
    for x in xs.iter_mut() {
        *x *= inv;
    }
}

impl InplaceOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("causal-softmax: f32 only")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("causal-softmax: contiguous scores only")
        };
        let cols = layout.dims().last().copied().unwrap_or(1);
        let data = &mut data[start..end];
        if cols == 0 || data.is_empty() {
            return Ok(());
        }
        let rows = data.len() / cols;
        let threads = super::pool::threads().clamp(1, rows);
        if threads == 1 || data.len() < PARALLEL_MIN {
            self.rows(data, 0, cols);
            return Ok(());
        }
        let rows_per_thread = rows.div_ceil(threads);
        super::pool::for_each_part(data, rows_per_thread * cols, |i, part| {
            self.rows(part, i * rows_per_thread, cols)
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward reference: full scores, a materialized mask, softmax, one matmul.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, offset: usize) -> candle_core::Result<Tensor> {
        let (_, h, seq, hd) = q.dims4()?;
        let kvh = k.dim(1)?;
        let total = offset + seq;
        let rep = |t: &Tensor| -> candle_core::Result<Tensor> {
            let t = t.narrow(2, 0, total)?;
            let (b, _, n, d) = t.dims4()?;
            t.unsqueeze(2)?
                .expand((b, kvh, h / kvh, n, d))?
                .reshape((b, h, n, d))
        };
        let scores = (q.matmul(&rep(k)?.t()?)? * (hd as f64).powf(-0.5))?;
        let mask: Vec<f32> = (0..seq)
            .flat_map(|i| {
                (0..total).map(move |j| {
                    if j > offset + i {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (seq, total), q.device())?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask)?)?;
        probs
            .matmul(&rep(v)?)?
            .transpose(1, 2)?
            .reshape((1, seq, h * hd))
    }

    fn check(h: usize, kvh: usize, seq: usize, offset: usize) -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let hd = 8;
        let cap = offset + seq + 3;
        let q = Tensor::randn(0f32, 1.0, (1, h, seq, hd), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (1, kvh, cap, hd), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (1, kvh, cap, hd), &dev)?;
        let ours = causal_attention(&q, &k, &v, offset)?;
        let want = reference(&q, &k, &v, offset)?;
        let diff = (ours - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(
            diff < 1e-5,
            "h {h} kvh {kvh} seq {seq} offset {offset}: {diff}"
        );
        Ok(())
    }

    #[test]
    fn chunked_matches_full_attention() -> candle_core::Result<()> {
        // Several chunks (with a short last one), a cache offset, grouped-query heads, decode.
        check(4, 4, QUERY_CHUNK * 2 + 37, 0)?;
        check(4, 2, QUERY_CHUNK + 5, 11)?;
        check(6, 2, 1, 40)?;
        check(2, 1, 3, 0)?;
        // One query (the decode kernel): the first position, grouped heads, and enough
        // positions that the heads are split across threads.
        check(4, 2, 1, 0)?;
        check(16, 4, 1, ONE_QUERY_PARALLEL_MIN / 16 + 9)
    }

    #[test]
    fn unmasked_softmax_matches_candle() -> candle_core::Result<()> {
        let scores = Tensor::randn(0f32, 3.0, (3, 40, 257), &Device::Cpu)?;
        let want = candle_nn::ops::softmax_last_dim(&scores)?;
        let got = softmax_owned(scores.copy()?)?;
        let diff = (got - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-6, "{diff}");
        Ok(())
    }

    #[test]
    fn fallback_mask_matches_in_place_kernel() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let scores = Tensor::randn(0f32, 1.0, (2, 3 * 5, 9), &dev)?;
        let fast = causal_softmax(scores.copy()?, 5, 4)?;
        // A strided view takes the materialized-mask path.
        let strided = scores.t()?.contiguous()?.t()?;
        let slow = causal_softmax(strided, 5, 4)?;
        let diff = (fast - slow)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-6, "{diff}");
        Ok(())
    }
}
