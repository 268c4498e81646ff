//! Single-row matrix products (decode steps) on the CPU.
//!
//! A decode step multiplies one activation row by every weight matrix: pure memory streaming.
//! gemm's 1-row path runs on one core here; splitting the output rows across the cores reads the
//! weights with all of them. Other shapes, devices and dtypes take candle's matmul.

use candle_core::{CpuStorage, DType, Device, Storage, Tensor, D};

/// Below this many weights one thread streams them faster than threads start.
const PARALLEL_MIN: usize = 1 << 18;

/// The most activation rows [`matvec_rows`] takes (a decode step of a batch): each weight row is
/// read from memory once and multiplied by every activation row while it is in cache.
pub(crate) const MAX_ROWS: usize = 16;

/// `xs @ weight^T (+ bias)` for `xs` `(.., in)` holding one row and `weight` `(out, in)`, both
/// contiguous f32 on the CPU; `None` for anything else (the caller uses candle's matmul).
pub(crate) fn matvec(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Option<Tensor>> {
    product(xs, weight, bias, 1)
}

/// [`matvec`] for up to [`MAX_ROWS`] rows: each row's result is bit for bit the one `matvec`
/// gives for that row alone (the same dot products in the same order), so a batched decode
/// step computes exactly what single steps do.
pub(crate) fn matvec_rows(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Option<Tensor>> {
    product(xs, weight, bias, MAX_ROWS)
}

fn product(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    max_rows: usize,
) -> candle_core::Result<Option<Tensor>> {
    let (out_dim, in_dim) = weight.dims2()?;
    let usable = |t: &Tensor| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32;
    let rows = xs.elem_count() / in_dim.max(1);
    if in_dim == 0
        || xs.dim(D::Minus1)? != in_dim
        || rows == 0
        || rows > max_rows
        || !usable(xs)
        || !usable(weight)
        || !weight.is_contiguous()
        || bias.is_some_and(|b| !usable(b) || b.dims() != [out_dim])
    {
        return Ok(None);
    }
    let x = xs.flatten_all()?.to_vec1::<f32>()?;
    // Borrow the weights in place: copying them would cost as much as the product itself.
    let (storage, layout) = weight.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        return Ok(None);
    };
    let start = layout.start_offset();
    let w = &data[start..start + out_dim * in_dim];
    let bias = bias.map(|b| b.to_vec1::<f32>()).transpose()?;
    // Laid out (out, rows): each weight row's results side by side.
    let mut out = vec![0f32; out_dim * rows];
    let kernels = Kernels::detect();
    let xs_rows: Vec<&[f32]> = x.chunks_exact(in_dim).collect();
    let w_row = |o: usize| &w[o * in_dim..(o + 1) * in_dim];
    // `dst` holds the results of weight rows `first..`, `rows` each.
    let outputs = |first: usize, dst: &mut [f32]| {
        let count = dst.len() / rows;
        let mut o = 0;
        // Eight or more rows: blocks of three weight rows by eight activation rows, so that each
        // weight row streams from memory once while all eight rows' sums are in registers (two
        // passes of 4 x 4 would leave the memory idle during the second).
        if let Some((eight, four, one)) = kernels.w3.filter(|_| rows >= 8) {
            while o + 3 <= count {
                let ws = std::array::from_fn(|k| w_row(first + o + k));
                block(
                    ws,
                    &xs_rows,
                    Some(eight),
                    four,
                    one,
                    &mut dst[o * rows..(o + 3) * rows],
                );
                o += 3;
            }
        }
        // Blocks of four weight rows where the registers hold their sums: every weight chunk
        // loaded feeds several rows' sums, enough independent sums to keep the vector units busy.
        if let Some((four, one)) = kernels.w4 {
            while o + 4 <= count {
                let ws = std::array::from_fn(|k| w_row(first + o + k));
                block(
                    ws,
                    &xs_rows,
                    None,
                    four,
                    one,
                    &mut dst[o * rows..(o + 4) * rows],
                );
                o += 4;
            }
        }
        for o in o..count {
            let ws = [w_row(first + o)];
            block(
                ws,
                &xs_rows,
                None,
                kernels.w1x4,
                kernels.w1x1,
                &mut dst[o * rows..(o + 1) * rows],
            );
        }
        if let Some(bias) = &bias {
            for (o, ys) in dst.chunks_mut(rows).enumerate() {
                for y in ys {
                    *y += bias[first + o];
                }
            }
        }
    };
    let threads = super::pool::threads().clamp(1, out_dim.max(1));
    if threads == 1 || out_dim * in_dim < PARALLEL_MIN {
        outputs(0, &mut out);
    } else {
        // Parts of whole blocks of four and of three weight rows (the split does not change any
        // result).
        let per = out_dim.div_ceil(threads).next_multiple_of(12);
        super::pool::for_each_part(&mut out, per * rows, |i, part| outputs(i * per, part));
    }
    if rows > 1 {
        let mut by_row = vec![0f32; out.len()];
        for (o, ys) in out.chunks(rows).enumerate() {
            for (r, y) in ys.iter().enumerate() {
                by_row[r * out_dim + o] = *y;
            }
        }
        out = by_row;
    }
    let mut dims = xs.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = out_dim;
    }
    Ok(Some(Tensor::from_vec(out, dims, xs.device())?))
}

/// The products of the `M` weight rows `ws` with every row of `xs`, into `dst` laid out
/// `(M, xs.len())`: blocks of eight activation rows (where a kernel is given), then of four,
/// then the rest one by one.
fn block<const M: usize>(
    ws: [&[f32]; M],
    xs: &[&[f32]],
    eight: Option<Dots<M, 8>>,
    four: Dots<M, 4>,
    one: Dots<M, 1>,
    dst: &mut [f32],
) {
    fn put<const M: usize, const R: usize>(
        d: [[f32; R]; M],
        r: usize,
        rows: usize,
        dst: &mut [f32],
    ) {
        for (k, d) in d.into_iter().enumerate() {
            dst[k * rows + r..k * rows + r + R].copy_from_slice(&d);
        }
    }
    let rows = xs.len();
    let mut r = 0;
    if let Some(eight) = eight {
        while r + 8 <= rows {
            put(eight(ws, std::array::from_fn(|k| xs[r + k])), r, rows, dst);
            r += 8;
        }
    }
    while r + 4 <= rows {
        put(four(ws, std::array::from_fn(|k| xs[r + k])), r, rows, dst);
        r += 4;
    }
    for (k, x) in xs.iter().enumerate().skip(r) {
        put(one(ws, [x]), k, rows, dst);
    }
}

/// Dot products of `M` weight rows with `R` activation rows: `out[m][r]`.
type Dots<const M: usize, const R: usize> = fn([&[f32]; M], [&[f32]; R]) -> [[f32; R]; M];

/// The dot-product kernels for this CPU: the same arithmetic, in the same order, compiled for
/// the widest vector unit present (AVX-512, AVX2 with FMA, else the baseline), so results do not
/// depend on which one runs, nor on how many rows share a block.
#[derive(Clone, Copy)]
struct Kernels {
    /// Blocks of four weight rows (by four activation rows, by one), where the registers hold the
    /// 16 sums of a 4 x 4 block (AVX-512's 32; AVX2's 16 do not).
    w4: Option<(Dots<4, 4>, Dots<4, 1>)>,
    /// Blocks of three weight rows by eight activation rows (24 sums, AVX-512), with the 3 x 4
    /// and 3 x 1 kernels for the rows past the last eight.
    w3: Option<(Dots<3, 8>, Dots<3, 4>, Dots<3, 1>)>,
    w1x4: Dots<1, 4>,
    w1x1: Dots<1, 1>,
}

impl Kernels {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self {
                    w4: Some((
                        |a, b| unsafe { x86::dots_avx512::<4, 4>(a, b) },
                        |a, b| unsafe { x86::dots_avx512::<4, 1>(a, b) },
                    )),
                    w3: Some((
                        |a, b| unsafe { x86::dots_avx512::<3, 8>(a, b) },
                        |a, b| unsafe { x86::dots_avx512::<3, 4>(a, b) },
                        |a, b| unsafe { x86::dots_avx512::<3, 1>(a, b) },
                    )),
                    w1x4: |a, b| unsafe { x86::dots_avx512::<1, 4>(a, b) },
                    w1x1: |a, b| unsafe { x86::dots_avx512::<1, 1>(a, b) },
                };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Self {
                    w4: None,
                    w3: None,
                    w1x4: |a, b| unsafe { x86::dots_avx2::<1, 4>(a, b) },
                    w1x1: |a, b| unsafe { x86::dots_avx2::<1, 1>(a, b) },
                };
            }
        }
        Self {
            w4: None,
            w3: None,
            w1x4: dots::<1, 4>,
            w1x1: dots::<1, 1>,
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    /// [`super::dots`] in AVX-512 registers: lane `l` of each accumulator is the scalar
    /// version's partial sum `l`, with the same fused multiply-adds in the same order and the
    /// same tree of additions at the end, so the results are bit for bit the same.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dots_avx512<const M: usize, const R: usize>(
        w: [&[f32]; M],
        x: [&[f32]; R],
    ) -> [[f32; R]; M] {
        let len = x[0].len();
        assert!(w.iter().chain(&x).all(|v| v.len() == len));
        let n = len / 16 * 16;
        let mut acc = [[_mm512_setzero_ps(); R]; M];
        for i in (0..n).step_by(16) {
            // The weight chunks in registers, each activation chunk loaded once and used at
            // once: `M * R` sums + `M` weights + 1 register (a 3 x 8 block's 28 of the 32).
            let mut vw = [_mm512_setzero_ps(); M];
            for m in 0..M {
                // SAFETY: i + 16 <= n <= len == w[m].len().
                vw[m] = unsafe { _mm512_loadu_ps(w[m].as_ptr().add(i)) };
            }
            for r in 0..R {
                // SAFETY: as above, x[r].len() == len.
                let vx = unsafe { _mm512_loadu_ps(x[r].as_ptr().add(i)) };
                for m in 0..M {
                    acc[m][r] = _mm512_fmadd_ps(vw[m], vx, acc[m][r]);
                }
            }
        }
        let mut out = [[0f32; R]; M];
        for m in 0..M {
            for r in 0..R {
                // Through memory, not 256-bit registers: without AVX-512VL a value bound for a
                // ymm operation must live in zmm0-15, which would spill a 3 x 8 block's sums.
                let mut lanes = [0f32; 16];
                // SAFETY: `lanes` holds 16 floats.
                unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), acc[m][r]) };
                out[m][r] = super::finish(super::lane_tree(&lanes), w[m], x[r], n);
            }
        }
        out
    }

    /// The same with AVX2 and FMA: each row's 16 partial sums in two registers.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dots_avx2<const M: usize, const R: usize>(
        w: [&[f32]; M],
        x: [&[f32]; R],
    ) -> [[f32; R]; M] {
        let len = x[0].len();
        assert!(w.iter().chain(&x).all(|v| v.len() == len));
        let n = len / 16 * 16;
        let mut acc = [[[_mm256_setzero_ps(); 2]; R]; M];
        for i in (0..n).step_by(16) {
            let mut vx = [[_mm256_setzero_ps(); 2]; R];
            for r in 0..R {
                // SAFETY: i + 16 <= n <= len == x[r].len().
                vx[r] = unsafe {
                    [
                        _mm256_loadu_ps(x[r].as_ptr().add(i)),
                        _mm256_loadu_ps(x[r].as_ptr().add(i + 8)),
                    ]
                };
            }
            for m in 0..M {
                // SAFETY: as above, w[m].len() == len.
                let vw = unsafe {
                    [
                        _mm256_loadu_ps(w[m].as_ptr().add(i)),
                        _mm256_loadu_ps(w[m].as_ptr().add(i + 8)),
                    ]
                };
                for r in 0..R {
                    acc[m][r][0] = _mm256_fmadd_ps(vw[0], vx[r][0], acc[m][r][0]);
                    acc[m][r][1] = _mm256_fmadd_ps(vw[1], vx[r][1], acc[m][r][1]);
                }
            }
        }
        let mut out = [[0f32; R]; M];
        for m in 0..M {
            for r in 0..R {
                let [lo, hi] = acc[m][r];
                out[m][r] = super::finish(sum8(_mm256_add_ps(lo, hi)), w[m], x[r], n);
            }
        }
        out
    }

    /// Lanes `0..8` of `s` (lane `l` = partial sums `l` + `l + 8`) added as [`super::dots`]'s
    /// tree adds them: `l + (l + 4)`, then `+ 2`, then `+ 1`.
    #[target_feature(enable = "avx")]
    pub(in crate::model) fn sum8(s: __m256) -> f32 {
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
        _mm_cvtss_f32(s1)
    }
}

/// The 16 partial sums of a dot product added as a tree: `l + (l + 8)`, `+ 4`, `+ 2`, `+ 1`.
#[inline(always)]
pub(super) fn lane_tree(s: &[f32; 16]) -> f32 {
    let s8: [f32; 8] = std::array::from_fn(|l| s[l] + s[l + 8]);
    let s4: [f32; 4] = std::array::from_fn(|l| s8[l] + s8[l + 4]);
    let s2 = [s4[0] + s4[2], s4[1] + s4[3]];
    s2[0] + s2[1]
}

/// The end of a dot product: the lanes' sum (from the tree), then the elements past `n` (the
/// last whole 16-lane chunk) added in order.
#[inline(always)]
pub(super) fn finish(lanes: f32, w: &[f32], x: &[f32], n: usize) -> f32 {
    w[n..]
        .iter()
        .zip(&x[n..])
        .fold(lanes, |s, (a, b)| a.mul_add(*b, s))
}

/// Dot products of each of `w` with each of `x`, with 16 lane-wise partial sums so they
/// vectorize (a single running sum would pin the additions in order) and fused multiply-adds;
/// the lanes are then added as a tree (`l + (l + 8)`, `+ 4`, `+ 2`, `+ 1`) and the tail past the
/// last whole chunk in order. Every product's arithmetic is the same whatever `M` and `R` are,
/// so a row's result is the same computed alone or beside others.
#[inline(always)]
fn dots<const M: usize, const R: usize>(w: [&[f32]; M], x: [&[f32]; R]) -> [[f32; R]; M] {
    const LANES: usize = 16;
    let len = x[0].len();
    assert!(w.iter().chain(&x).all(|v| v.len() == len));
    let n = len / LANES * LANES;
    let mut sums = [[[0f32; LANES]; R]; M];
    for i in (0..n).step_by(LANES) {
        for (sums, w) in sums.iter_mut().zip(&w) {
            let cw = &w[i..i + LANES];
            for (s, x) in sums.iter_mut().zip(&x) {
                let cx = &x[i..i + LANES];
                for l in 0..LANES {
                    s[l] = cw[l].mul_add(cx[l], s[l]);
                }
            }
        }
    }
    let mut out = [[0f32; R]; M];
    for m in 0..M {
        for r in 0..R {
            out[m][r] = finish(lane_tree(&sums[m][r]), w[m], x[r], n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Module;
    use candle_nn::Linear;

    #[test]
    fn matches_candle_matmul() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        // Threaded (1000 x 1030 weights) and single-threaded, with and without bias; 1030 leaves
        // a remainder after the 16-lane chunks.
        for (out_dim, with_bias) in [(1000, true), (7, false)] {
            let w = Tensor::randn(0f32, 1.0, (out_dim, 1030), &dev)?;
            let b = Tensor::randn(0f32, 1.0, out_dim, &dev)?;
            let bias = with_bias.then_some(b);
            let x = Tensor::randn(0f32, 1.0, (1, 1, 1030), &dev)?;
            let got = matvec(&x, &w, bias.as_ref())?.expect("one row takes the kernel");
            let lin = Linear::new(w, bias);
            let want = lin.forward(&x)?;
            assert_eq!(got.dims(), want.dims());
            let diff = (got - want)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-3, "{diff}");
        }
        // Several rows are not this kernel's job.
        let w = Tensor::randn(0f32, 1.0, (4, 8), &dev)?;
        let x = Tensor::randn(0f32, 1.0, (1, 2, 8), &dev)?;
        assert!(matvec(&x, &w, None)?.is_none());
        Ok(())
    }

    #[test]
    fn rows_are_each_the_single_row_product_bit_for_bit() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        // Row counts through every block shape: 4 x 4, 3 x 8 with 3 x 4 and 3 x 1 after it, the
        // single weight rows past the last block.
        for (out_dim, rows) in [
            (1000, 4),
            (7, 3),
            (1000, MAX_ROWS),
            (1001, 6),
            (1000, 8),
            (1001, 13),
        ] {
            let w = Tensor::randn(0f32, 1.0, (out_dim, 1030), &dev)?;
            let b = Tensor::randn(0f32, 1.0, out_dim, &dev)?;
            let x = Tensor::randn(0f32, 1.0, (rows, 1, 1030), &dev)?;
            let got = matvec_rows(&x, &w, Some(&b))?.expect("few rows take the kernel");
            assert_eq!(got.dims(), &[rows, 1, out_dim]);
            for r in 0..rows {
                let alone = matvec(&x.get(r)?, &w, Some(&b))?.unwrap();
                let (a, b) = (got.get(r)?.flatten_all()?, alone.flatten_all()?);
                assert_eq!(a.to_vec1::<f32>()?, b.to_vec1::<f32>()?, "row {r}");
            }
        }
        // The vector kernels this CPU takes give the portable one's bits, in every block shape
        // (1030 leaves a tail past the last 16-lane chunk).
        let kernels = Kernels::detect();
        let v: Vec<Vec<f32>> = (0..8)
            .map(|_| Tensor::randn(0f32, 1.0, 1030, &dev)?.to_vec1::<f32>())
            .collect::<candle_core::Result<_>>()?;
        let ws: [&[f32]; 4] = std::array::from_fn(|k| &v[k][..]);
        let xs: [&[f32]; 4] = std::array::from_fn(|k| &v[4 + k][..]);
        let block = dots::<4, 4>(ws, xs);
        if let Some((four, one)) = kernels.w4 {
            assert_eq!(four(ws, xs), block);
            for x in xs {
                assert_eq!(one(ws, [x]), dots::<4, 1>(ws, [x]));
            }
        }
        for m in 0..4 {
            assert_eq!((kernels.w1x4)([ws[m]], xs), [block[m]]);
            for r in 0..4 {
                assert_eq!((kernels.w1x1)([ws[m]], [xs[r]]), [[block[m][r]]]);
            }
        }
        // The 3 x 8 block and its 3 x 4 and 3 x 1 companions, against the portable kernel.
        let v: Vec<Vec<f32>> = (0..11)
            .map(|_| Tensor::randn(0f32, 1.0, 1030, &dev)?.to_vec1::<f32>())
            .collect::<candle_core::Result<_>>()?;
        let ws: [&[f32]; 3] = std::array::from_fn(|k| &v[k][..]);
        let xs: [&[f32]; 8] = std::array::from_fn(|k| &v[3 + k][..]);
        if let Some((eight, four, one)) = kernels.w3 {
            assert_eq!(eight(ws, xs), dots::<3, 8>(ws, xs));
            let x4: [&[f32]; 4] = std::array::from_fn(|k| xs[k]);
            assert_eq!(four(ws, x4), dots::<3, 4>(ws, x4));
            assert_eq!(one(ws, [xs[5]]), dots::<3, 1>(ws, [xs[5]]));
        }
        let w = Tensor::randn(0f32, 1.0, (4, 8), &dev)?;
        let x = Tensor::randn(0f32, 1.0, (MAX_ROWS + 1, 8), &dev)?;
        assert!(
            matvec_rows(&x, &w, None)?.is_none(),
            "more rows: the GEMM's job"
        );
        Ok(())
    }
}
