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
    let outputs = |first: usize, dst: &mut [f32]| {
        for (o, ys) in dst.chunks_mut(rows).enumerate() {
            let row = &w[(first + o) * in_dim..(first + o + 1) * in_dim];
            let b = bias.as_ref().map_or(0.0, |b| b[first + o]);
            // Four activation rows per pass over the weight row, then the rest one by one.
            let mut r = 0;
            while r + 4 <= rows {
                let d = (kernels.four)(
                    row,
                    [xs_rows[r], xs_rows[r + 1], xs_rows[r + 2], xs_rows[r + 3]],
                );
                for (k, d) in d.into_iter().enumerate() {
                    ys[r + k] = b + d;
                }
                r += 4;
            }
            while r < rows {
                ys[r] = b + (kernels.one)(row, [xs_rows[r]])[0];
                r += 1;
            }
        }
    };
    let threads = candle_core::utils::get_num_threads().clamp(1, out_dim.max(1));
    if threads == 1 || out_dim * in_dim < PARALLEL_MIN {
        outputs(0, &mut out);
    } else {
        let per = out_dim.div_ceil(threads);
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

/// The dot-product kernels for this CPU: the same arithmetic, in the same order, compiled for
/// the widest vector unit present (AVX-512, AVX2, else the baseline), so results do not depend
/// on which one runs.
#[derive(Clone, Copy)]
struct Kernels {
    one: fn(&[f32], [&[f32]; 1]) -> [f32; 1],
    four: fn(&[f32], [&[f32]; 4]) -> [f32; 4],
}

impl Kernels {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Self {
                    one: |a, b| unsafe { x86::dots_avx512::<1>(a, b) },
                    four: |a, b| unsafe { x86::dots_avx512::<4>(a, b) },
                };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Self {
                    one: |a, b| unsafe { x86::dots_avx2::<1>(a, b) },
                    four: |a, b| unsafe { x86::dots_avx2::<4>(a, b) },
                };
            }
        }
        Self {
            one: dots::<1>,
            four: dots::<4>,
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::dots`] in AVX-512 registers: lane `l` of each accumulator is the scalar
    /// version's partial sum `l`, with the same multiplications and additions in the same
    /// order, so the results are bit for bit the same.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dots_avx512<const R: usize>(a: &[f32], b: [&[f32]; R]) -> [f32; R] {
        assert!(b.iter().all(|b| b.len() == a.len()));
        let n = a.len() / 16 * 16;
        let mut acc = [_mm512_setzero_ps(); R];
        for i in (0..n).step_by(16) {
            // SAFETY: i + 16 <= n <= a.len() == b[k].len().
            let va = unsafe { _mm512_loadu_ps(a.as_ptr().add(i)) };
            for (acc, b) in acc.iter_mut().zip(&b) {
                let vb = unsafe { _mm512_loadu_ps(b.as_ptr().add(i)) };
                *acc = _mm512_add_ps(*acc, _mm512_mul_ps(va, vb));
            }
        }
        let mut lanes = [[0f32; 16]; R];
        for (lanes, acc) in lanes.iter_mut().zip(&acc) {
            // SAFETY: 16 floats fit `lanes`.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *acc) };
        }
        super::finish(a, b, n, &lanes)
    }

    /// The same with AVX2: each row's 16 partial sums in two registers.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dots_avx2<const R: usize>(a: &[f32], b: [&[f32]; R]) -> [f32; R] {
        assert!(b.iter().all(|b| b.len() == a.len()));
        let n = a.len() / 16 * 16;
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for i in (0..n).step_by(16) {
            // SAFETY: i + 16 <= n <= a.len() == b[k].len().
            let (lo, hi) = unsafe {
                (
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                )
            };
            for (acc, b) in acc.iter_mut().zip(&b) {
                let (blo, bhi) = unsafe {
                    (
                        _mm256_loadu_ps(b.as_ptr().add(i)),
                        _mm256_loadu_ps(b.as_ptr().add(i + 8)),
                    )
                };
                acc[0] = _mm256_add_ps(acc[0], _mm256_mul_ps(lo, blo));
                acc[1] = _mm256_add_ps(acc[1], _mm256_mul_ps(hi, bhi));
            }
        }
        let mut lanes = [[0f32; 16]; R];
        for (lanes, acc) in lanes.iter_mut().zip(&acc) {
            // SAFETY: 8 + 8 floats fit `lanes`.
            unsafe {
                _mm256_storeu_ps(lanes.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(lanes.as_mut_ptr().add(8), acc[1]);
            }
        }
        super::finish(a, b, n, &lanes)
    }
}

/// The end of [`dots`]: each row's partial sums added in order, then the tail past `n`.
#[inline(always)]
fn finish<const R: usize>(a: &[f32], b: [&[f32]; R], n: usize, lanes: &[[f32; 16]; R]) -> [f32; R] {
    let mut out = [0f32; R];
    for ((o, s), b) in out.iter_mut().zip(lanes).zip(&b) {
        let tail: f32 = a[n..].iter().zip(&b[n..]).map(|(x, y)| x * y).sum();
        *o = s.iter().sum::<f32>() + tail;
    }
    out
}

/// Dot products of `a` with each of `b`, with lane-wise partial sums so they vectorize (a
/// single running sum would pin the additions in order); each `a` chunk is loaded once for all
/// of `b`. Every product's additions happen in the same order whatever `R` is, so a row's
/// result is the same computed alone or beside others.
#[inline(always)]
fn dots<const R: usize>(a: &[f32], b: [&[f32]; R]) -> [f32; R] {
    const LANES: usize = 16;
    let n = a.len() / LANES * LANES;
    let mut sums = [[0f32; LANES]; R];
    for i in (0..n).step_by(LANES) {
        let ca = &a[i..i + LANES];
        for (s, b) in sums.iter_mut().zip(&b) {
            let cb = &b[i..i + LANES];
            for l in 0..LANES {
                s[l] += ca[l] * cb[l];
            }
        }
    }
    finish(a, b, n, &sums)
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
        for (out_dim, rows) in [(1000, 4), (7, 3), (1000, MAX_ROWS)] {
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
        // The vector kernels this CPU takes give the portable one's bits.
        let kernels = Kernels::detect();
        let a = Tensor::randn(0f32, 1.0, 1030, &dev)?.to_vec1::<f32>()?;
        let b: Vec<Vec<f32>> = (0..4)
            .map(|_| Tensor::randn(0f32, 1.0, 1030, &dev)?.to_vec1::<f32>())
            .collect::<candle_core::Result<_>>()?;
        let four = [&b[0][..], &b[1][..], &b[2][..], &b[3][..]];
        assert_eq!((kernels.four)(&a, four), dots::<4>(&a, four));
        assert_eq!((kernels.one)(&a, [&b[0]]), dots::<1>(&a, [&b[0]]));
        let w = Tensor::randn(0f32, 1.0, (4, 8), &dev)?;
        let x = Tensor::randn(0f32, 1.0, (MAX_ROWS + 1, 8), &dev)?;
        assert!(
            matvec_rows(&x, &w, None)?.is_none(),
            "more rows: the GEMM's job"
        );
        Ok(())
    }
}
