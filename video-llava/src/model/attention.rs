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
    if keys.dtype() != q.dtype() || values.dtype() != q.dtype() {
        // A cache in another dtype than the compute one (an f16 cache beside f32 compute): the
        // visible positions once in the compute dtype, for every chunk below.
        let visible = offset + seq;
        let keys = keys.narrow(2, 0, visible)?.to_dtype(q.dtype())?;
        let values = values.narrow(2, 0, visible)?.to_dtype(q.dtype())?;
        return causal_attention(q, &keys, &values, offset);
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

/// What a cache row holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    F32,
    F16,
    Bf16,
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::F32 => 4,
            Kind::F16 | Kind::Bf16 => 2,
        }
    }
}

/// Key or value elements a cache may hold.
trait CacheElem: Copy + Send + Sync {
    const KIND: Kind;

    /// `src` into f32 (exact for every type here).
    fn to_f32s(src: &[Self], dst: &mut [f32]);

    /// The slice itself when it already is f32.
    fn as_f32s(_src: &[Self]) -> Option<&[f32]> {
        None
    }
}

impl CacheElem for f32 {
    const KIND: Kind = Kind::F32;

    fn to_f32s(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    fn as_f32s(src: &[f32]) -> Option<&[f32]> {
        Some(src)
    }
}

impl CacheElem for half::f16 {
    const KIND: Kind = Kind::F16;

    fn to_f32s(src: &[half::f16], dst: &mut [f32]) {
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, dst);
    }
}

impl CacheElem for half::bf16 {
    const KIND: Kind = Kind::Bf16;

    fn to_f32s(src: &[half::bf16], dst: &mut [f32]) {
        // bf16 is the top half of an f32 (what `to_f32` gives for every value but NaN payloads),
        // a shift the compiler vectorizes.
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_bits(u32::from(s.to_bits()) << 16);
        }
    }
}

/// One head of [`one_query`]: a SIMD kernel where the CPU has one, else [`head_portable`]; both
/// do the same arithmetic.
fn attend_head<T: CacheElem>(q: &[f32], k: &[T], v: &[T], head: &mut Head<'_>) {
    #[cfg(target_arch = "x86_64")]
    if x86::head(q, k, v, head) {
        return;
    }
    head_portable(q, k, v, head)
}

/// Cache positions the portable kernel converts to f32 at a time (a half-precision cache).
const ONE_QUERY_BLOCK: usize = 64;

/// [`causal_attention`] for one query (a decode step) on the CPU with f32 compute, straight from
/// the cache's buffers (f32, f16 or bf16, converted in registers): per head, the scores against
/// the visible keys, their softmax, the weighted sum of the values. Two small matmuls per head
/// and layer cost more in dispatch than in arithmetic; this is what a batched step does once per
/// sequence. `None` when the tensors are not contiguous on the CPU or the query is not f32.
fn one_query(
    q: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    offset: usize,
    scale: f64,
) -> candle_core::Result<Option<Tensor>> {
    let (_, h, _, hd) = q.dims4()?;
    let (_, kvh, capacity, _) = keys.dims4()?;
    if !(is_cpu_contiguous(keys) && is_cpu_contiguous(values))
        || values.dims() != keys.dims()
        || keys.dim(3)? != hd
        || values.dtype() != keys.dtype()
        || q.dtype() != DType::F32
        || offset >= capacity
        || kvh == 0
        || h % kvh != 0
    {
        return Ok(None);
    }
    let q = (q * scale)?.flatten_all()?.to_vec1::<f32>()?;
    let (k_storage, k_layout) = keys.storage_and_layout();
    let (v_storage, v_layout) = values.storage_and_layout();
    let (candle_core::Storage::Cpu(k), candle_core::Storage::Cpu(v)) = (&*k_storage, &*v_storage)
    else {
        return Ok(None);
    };
    let span = |layout: &Layout| layout.start_offset()..layout.start_offset() + kvh * capacity * hd;
    let (ks, vs) = (span(k_layout), span(v_layout));
    let shape = Shape {
        heads: h,
        kv_heads: kvh,
        capacity,
        head_dim: hd,
        visible: offset + 1,
    };
    let out = match (k, v) {
        (CpuStorage::F32(k), CpuStorage::F32(v)) => shape.attend(&q, &k[ks], &v[vs]),
        (CpuStorage::F16(k), CpuStorage::F16(v)) => shape.attend(&q, &k[ks], &v[vs]),
        (CpuStorage::BF16(k), CpuStorage::BF16(v)) => shape.attend(&q, &k[ks], &v[vs]),
        _ => return Ok(None),
    };
    Ok(Some(Tensor::from_vec(out, (1, 1, h * hd), &Device::Cpu)?))
}

/// The dimensions [`one_query`] works in.
struct Shape {
    heads: usize,
    kv_heads: usize,
    capacity: usize,
    head_dim: usize,
    visible: usize,
}

/// One head's working memory and output: `scores` (one per visible position), `out`
/// (`head_dim`, zeros on entry).
struct Head<'a> {
    scores: &'a mut [f32],
    out: &'a mut [f32],
}

impl Shape {
    /// Every head's output `(heads * head_dim)` for the scaled query `q` against `k` and `v`,
    /// `(kv_heads, capacity, head_dim)` each.
    fn attend<T: CacheElem>(&self, q: &[f32], k: &[T], v: &[T]) -> Vec<f32> {
        let Shape {
            heads: h,
            kv_heads: kvh,
            capacity,
            head_dim: hd,
            visible,
        } = *self;
        let n_rep = h / kvh;
        let mut out = vec![0f32; h * hd];
        let run = |first: usize, dst: &mut [f32]| {
            let mut scores = vec![0f32; visible];
            for (i, o) in dst.chunks_exact_mut(hd).enumerate() {
                let head = first + i;
                let base = (head / n_rep) * capacity * hd;
                let rows_of = base..base + visible * hd;
                attend_head(
                    &q[head * hd..(head + 1) * hd],
                    &k[rows_of.clone()],
                    &v[rows_of],
                    &mut Head {
                        scores: &mut scores,
                        out: o,
                    },
                );
            }
        };
        let threads = super::pool::threads().clamp(1, h);
        if threads == 1 || visible * h < ONE_QUERY_PARALLEL_MIN {
            run(0, &mut out);
        } else {
            let per = h.div_ceil(threads);
            super::pool::for_each_part(&mut out, per * hd, |i, part| run(i * per, part));
        }
        out
    }
}

/// One head of [`one_query`]: `q` (`head_dim`, scaled) against the visible rows of `k` and `v`.
/// Each score is a dot product with 16 lane-wise partial sums (fused multiply-adds) added as a
/// tree (`matvec::lane_tree`), then the elements past the last whole 16-lane chunk in order. The
/// weighted sum of the values keeps two sums per element, of the even and of the odd positions
/// (so consecutive positions do not wait on each other), added at the end. The SIMD kernels do
/// exactly this arithmetic, so their results are the same bit for bit.
fn head_portable<T: CacheElem>(q: &[f32], k: &[T], v: &[T], head: &mut Head<'_>) {
    let hd = q.len();
    let n = hd / 16 * 16;
    // f32 rows of a block of positions (an f32 cache is read in place, without it).
    let mut rows = if T::KIND == Kind::F32 {
        Vec::new()
    } else {
        vec![0f32; ONE_QUERY_BLOCK * hd]
    };
    let scores = &mut *head.scores;
    for (b, s) in scores.chunks_mut(ONE_QUERY_BLOCK).enumerate() {
        let start = b * ONE_QUERY_BLOCK * hd;
        let block = read_rows(&k[start..start + s.len() * hd], &mut rows);
        for (s, key) in s.iter_mut().zip(block.chunks_exact(hd)) {
            let mut lanes = [0f32; 16];
            for (qc, kc) in q[..n].chunks_exact(16).zip(key[..n].chunks_exact(16)) {
                for ((l, a), b) in lanes.iter_mut().zip(qc).zip(kc) {
                    *l = a.mul_add(*b, *l);
                }
            }
            *s = super::matvec::finish(super::matvec::lane_tree(&lanes), q, key, n);
        }
    }
    softmax_in_place(scores);
    let mut odd = vec![0f32; hd];
    for (b, p) in scores.chunks(ONE_QUERY_BLOCK).enumerate() {
        let start = b * ONE_QUERY_BLOCK * hd;
        let block = read_rows(&v[start..start + p.len() * hd], &mut rows);
        // ONE_QUERY_BLOCK is even: a block's position parity is its index's.
        for (j, (&p, value)) in p.iter().zip(block.chunks_exact(hd)).enumerate() {
            let sums = if j % 2 == 0 { &mut *head.out } else { &mut odd };
            for (o, &x) in sums.iter_mut().zip(value) {
                *o = p.mul_add(x, *o);
            }
        }
    }
    for (o, x) in head.out.iter_mut().zip(&odd) {
        *o += x;
    }
}

/// `src` as f32: the slice itself for an f32 cache, else converted into `scratch`.
fn read_rows<'a, T: CacheElem>(src: &'a [T], scratch: &'a mut [f32]) -> &'a [f32] {
    if let Some(f32s) = T::as_f32s(src) {
        return f32s;
    }
    let dst = &mut scratch[..src.len()];
    T::to_f32s(src, dst);
    dst
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{softmax_in_place, CacheElem, Head, Kind as Elem};

    /// Runs [`super::head_portable`]'s arithmetic in AVX-512 registers (or AVX2 ones, with FMA
    /// and F16C) when the CPU has them and the head dimension is 16 to 128 in whole 16-lane
    /// chunks; false otherwise (nothing done).
    pub(super) fn head<T: CacheElem>(q: &[f32], k: &[T], v: &[T], head: &mut Head<'_>) -> bool {
        let elem = T::KIND;
        let hd = q.len();
        if !hd.is_multiple_of(16) || !(16..=128).contains(&hd) {
            return false;
        }
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c");
        if !(avx512 || avx2) {
            return false;
        }
        let visible = head.scores.len();
        assert!(
            std::mem::size_of::<T>() == elem.size()
                && k.len() >= visible * hd
                && v.len() >= visible * hd
                && head.out.len() == hd
        );
        let (k, v) = (k.as_ptr().cast::<u8>(), v.as_ptr().cast::<u8>());
        macro_rules! run {
            ($($n:literal)*) => {
                match (hd / 16, avx512) {
                    // SAFETY: the features were detected above; `k` and `v` hold `visible * hd`
                    // elements of `elem`'s type (asserted above).
                    $(($n, true) => unsafe { head_avx512::<$n>(q, k, v, head, elem) },)*
                    $(($n, false) => unsafe { head_avx2::<$n>(q, k, v, head, elem) },)*
                    _ => unreachable!("16..=128 in whole chunks"),
                }
            };
        }
        run!(1 2 3 4 5 6 7 8);
        true
    }

    /// 8 elements at `p` (of type `elem`) as f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(p: *const u8, elem: Elem) -> __m256 {
        // SAFETY: the caller guarantees 8 elements of `elem`'s type at `p`.
        unsafe {
            match elem {
                Elem::F32 => _mm256_loadu_ps(p.cast()),
                Elem::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
                Elem::Bf16 => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
                    _mm_loadu_si128(p.cast()),
                ))),
            }
        }
    }

    /// [`head_avx512`] with each 16-lane chunk in two AVX2 registers (lanes 0-7, 8-15).
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `k` and `v` hold `head.scores.len() * N * 16`
    /// elements of `elem`'s type.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn head_avx2<const N: usize>(
        q: &[f32],
        k: *const u8,
        v: *const u8,
        head: &mut Head<'_>,
        elem: Elem,
    ) {
        let size = elem.size();
        let row = N * 16 * size;
        let half = 8 * size;
        let mut qs = [[_mm256_setzero_ps(); 2]; N];
        for (c, qc) in qs.iter_mut().enumerate() {
            // SAFETY: q holds N * 16 values.
            unsafe {
                *qc = [
                    _mm256_loadu_ps(q.as_ptr().add(16 * c)),
                    _mm256_loadu_ps(q.as_ptr().add(16 * c + 8)),
                ];
            }
        }
        for (j, s) in head.scores.iter_mut().enumerate() {
            let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for (c, qc) in qs.iter().enumerate() {
                let at = j * row + c * 16 * size;
                // SAFETY: row j, chunk c is within the visible rows.
                let (k0, k1) = unsafe { (load8(k.add(at), elem), load8(k.add(at + half), elem)) };
                lo = _mm256_fmadd_ps(qc[0], k0, lo);
                hi = _mm256_fmadd_ps(qc[1], k1, hi);
            }
            *s = super::super::matvec::x86::sum8(_mm256_add_ps(lo, hi));
        }
        softmax_in_place(head.scores);
        let mut even = [[_mm256_setzero_ps(); 2]; N];
        let mut odd = [[_mm256_setzero_ps(); 2]; N];
        for (j, &p) in head.scores.iter().enumerate() {
            let p = _mm256_set1_ps(p);
            let sums = if j % 2 == 0 { &mut even } else { &mut odd };
            for (c, sum) in sums.iter_mut().enumerate() {
                let at = j * row + c * 16 * size;
                // SAFETY: row j < visible.
                let (v0, v1) = unsafe { (load8(v.add(at), elem), load8(v.add(at + half), elem)) };
                sum[0] = _mm256_fmadd_ps(p, v0, sum[0]);
                sum[1] = _mm256_fmadd_ps(p, v1, sum[1]);
            }
        }
        for c in 0..N {
            for h in 0..2 {
                // SAFETY: out holds N * 16 values.
                unsafe {
                    _mm256_storeu_ps(
                        head.out.as_mut_ptr().add(16 * c + 8 * h),
                        _mm256_add_ps(even[c][h], odd[c][h]),
                    )
                };
            }
        }
    }

    /// 16 elements at `p` (of type `elem`) as f32.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const u8, elem: Elem) -> __m512 {
        // SAFETY: the caller guarantees 16 elements of `elem`'s type at `p`.
        unsafe {
            match elem {
                Elem::F32 => _mm512_loadu_ps(p.cast()),
                Elem::F16 => _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())),
                Elem::Bf16 => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
                    _mm256_loadu_si256(p.cast()),
                ))),
            }
        }
    }

    /// `lane_tree` of the 16 lanes of `s`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn tree(s: __m512) -> f32 {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(s)));
        super::super::matvec::x86::sum8(_mm256_add_ps(_mm512_castps512_ps256(s), hi))
    }

    /// [`super::head_portable`] with `N` 16-lane chunks per row.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `k` and `v` hold `head.scores.len() * N * 16` elements of
    /// `elem`'s type.
    #[target_feature(enable = "avx512f")]
    unsafe fn head_avx512<const N: usize>(
        q: &[f32],
        k: *const u8,
        v: *const u8,
        head: &mut Head<'_>,
        elem: Elem,
    ) {
        let size = elem.size();
        let row = N * 16 * size;
        let mut qs = [_mm512_setzero_ps(); N];
        for (c, qc) in qs.iter_mut().enumerate() {
            // SAFETY: q holds N * 16 values.
            *qc = unsafe { _mm512_loadu_ps(q.as_ptr().add(16 * c)) };
        }
        for (j, s) in head.scores.iter_mut().enumerate() {
            let mut lanes = _mm512_setzero_ps();
            for (c, &qc) in qs.iter().enumerate() {
                // SAFETY: row j, chunk c is within the visible rows.
                let kc = unsafe { load16(k.add(j * row + c * 16 * size), elem) };
                lanes = _mm512_fmadd_ps(qc, kc, lanes);
            }
            *s = tree(lanes);
        }
        softmax_in_place(head.scores);
        let mut even = [_mm512_setzero_ps(); N];
        let mut odd = [_mm512_setzero_ps(); N];
        let mut pairs = head.scores.chunks_exact(2);
        for (j, pair) in (&mut pairs).enumerate() {
            let (p0, p1) = (_mm512_set1_ps(pair[0]), _mm512_set1_ps(pair[1]));
            let at = 2 * j * row;
            for c in 0..N {
                // SAFETY: rows 2j and 2j + 1 are visible.
                let (v0, v1) = unsafe {
                    (
                        load16(v.add(at + c * 16 * size), elem),
                        load16(v.add(at + row + c * 16 * size), elem),
                    )
                };
                even[c] = _mm512_fmadd_ps(p0, v0, even[c]);
                odd[c] = _mm512_fmadd_ps(p1, v1, odd[c]);
            }
        }
        if let [p] = pairs.remainder() {
            let p = _mm512_set1_ps(*p);
            let at = (head.scores.len() - 1) * row;
            for (c, e) in even.iter_mut().enumerate() {
                // SAFETY: the last visible row.
                let vc = unsafe { load16(v.add(at + c * 16 * size), elem) };
                *e = _mm512_fmadd_ps(p, vc, *e);
            }
        }
        for c in 0..N {
            // SAFETY: out holds N * 16 values.
            unsafe {
                _mm512_storeu_ps(
                    head.out.as_mut_ptr().add(16 * c),
                    _mm512_add_ps(even[c], odd[c]),
                )
            };
        }
    }
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

fn is_cpu_contiguous(xs: &Tensor) -> bool {
    matches!(xs.device(), Device::Cpu) && xs.is_contiguous()
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
        check_dim(h, kvh, seq, offset, 8)
    }

    fn check_dim(
        h: usize,
        kvh: usize,
        seq: usize,
        offset: usize,
        hd: usize,
    ) -> candle_core::Result<()> {
        let dev = Device::Cpu;
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
        check(16, 4, 1, ONE_QUERY_PARALLEL_MIN / 16 + 9)?;
        // Head dimensions the SIMD kernels take (and one they leave to the portable one).
        check_dim(4, 2, 1, 37, 64)?;
        check_dim(4, 4, 1, 300, 128)?;
        check_dim(2, 1, 1, 20, 40)
    }

    /// Random rows as `T`, and the same values as f32.
    fn rows<T: CacheElem>(n: usize, seed: u32, from: fn(f32) -> T) -> (Vec<T>, Vec<f32>) {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let elems: Vec<T> = (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                from((state % 2001) as f32 / 1000.0 - 1.0)
            })
            .collect();
        let mut f32s = vec![0f32; n];
        T::to_f32s(&elems, &mut f32s);
        (elems, f32s)
    }

    /// `kernel`'s output for one head of `visible` positions.
    fn run_head<T: CacheElem>(
        kernel: fn(&[f32], &[T], &[T], &mut Head<'_>),
        q: &[f32],
        k: &[T],
        v: &[T],
        visible: usize,
    ) -> Vec<f32> {
        let (mut scores, mut out) = (vec![0f32; visible], vec![0f32; q.len()]);
        kernel(
            q,
            k,
            v,
            &mut Head {
                scores: &mut scores,
                out: &mut out,
            },
        );
        out
    }

    /// The portable kernel on f32 rows, for comparisons.
    fn portable(q: &[f32], k: &[f32], v: &[f32], visible: usize) -> Vec<f32> {
        run_head(head_portable::<f32>, q, k, v, visible)
    }

    /// [`attend_head`] on `T` rows drawn from `seed` against the portable kernel on the same
    /// values in f32, bit for bit.
    fn check_head<T: CacheElem>(q: &[f32], visible: usize, seed: u32, from: fn(f32) -> T) {
        let hd = q.len();
        let (k, kf) = rows(visible * hd, seed, from);
        let (v, vf) = rows(visible * hd, seed + 1, from);
        assert_eq!(
            run_head(attend_head::<T>, q, &k, &v, visible),
            portable(q, &kf, &vf, visible),
            "{:?} hd {hd} n {visible}",
            T::KIND
        );
    }

    /// Every cache type, through whatever kernel this CPU runs, computes what the portable
    /// kernel computes on the same values in f32, bit for bit: odd and even position counts,
    /// more than one portable block, every head dimension the SIMD kernels take.
    #[test]
    fn simd_heads_equal_the_portable_kernel() {
        for hd in [16, 32, 48, 64, 80, 96, 112, 128] {
            for visible in [1, 2, 7, ONE_QUERY_BLOCK + 5] {
                let (q, _) = rows::<f32>(hd, 1, |x| x);
                check_head::<f32>(&q, visible, 2, |x| x * 3.0);
                check_head(&q, visible, 4, half::f16::from_f32);
                check_head(&q, visible, 6, half::bf16::from_f32);
            }
        }
    }

    /// The AVX2 kernel (which AVX-512 machines skip) against the portable one, bit for bit.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_head_equals_the_portable_kernel() {
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c"))
        {
            eprintln!("no AVX2/FMA/F16C on this CPU: the AVX2 kernel cannot run here");
            return;
        }
        for visible in [1, 6, ONE_QUERY_BLOCK + 3] {
            let (q, _) = rows::<f32>(64, 8, |x| x);
            let (k, kf) = rows(visible * 64, 9, half::f16::from_f32);
            let (v, vf) = rows(visible * 64, 10, half::f16::from_f32);
            let (mut scores, mut out) = (vec![0f32; visible], vec![0f32; 64]);
            let mut head = Head {
                scores: &mut scores,
                out: &mut out,
            };
            // SAFETY: the features were checked; k and v hold visible * 64 f16 values.
            unsafe {
                x86::head_avx2::<4>(
                    &q,
                    k.as_ptr().cast(),
                    v.as_ptr().cast(),
                    &mut head,
                    Kind::F16,
                )
            };
            assert_eq!(out, portable(&q, &kf, &vf, visible), "n {visible}");
        }
    }

    #[test]
    fn half_caches_read_as_their_rounded_values() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let hd = 8;
        for dtype in [DType::F16, DType::BF16] {
            // Decode (one query, with a last block shorter than ONE_QUERY_BLOCK, then split
            // across threads) and prefill chunks.
            for (h, kvh, seq, offset, hd) in [
                (4, 2, 1, 70, hd),
                (16, 4, 1, ONE_QUERY_PARALLEL_MIN / 16 + 9, hd),
                (4, 2, 5, 30, hd),
                (4, 2, 1, 70, 64),
            ] {
                let cap = offset + seq + 3;
                let q = Tensor::randn(0f32, 1.0, (1, h, seq, hd), &dev)?;
                let k = Tensor::randn(0f32, 1.0, (1, kvh, cap, hd), &dev)?.to_dtype(dtype)?;
                let v = Tensor::randn(0f32, 1.0, (1, kvh, cap, hd), &dev)?.to_dtype(dtype)?;
                let got = causal_attention(&q, &k, &v, offset)?.flatten_all()?;
                let (k32, v32) = (k.to_dtype(DType::F32)?, v.to_dtype(DType::F32)?);
                let want = causal_attention(&q, &k32, &v32, offset)?.flatten_all()?;
                let (got, want) = (got.to_vec1::<f32>()?, want.to_vec1::<f32>()?);
                if seq == 1 {
                    // The decode kernel does the same arithmetic on the same values.
                    assert_eq!(got, want, "{dtype:?} h {h} kvh {kvh} offset {offset}");
                } else {
                    let diff = got
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(diff < 1e-6, "{dtype:?} seq {seq}: {diff}");
                }
            }
        }
        Ok(())
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
