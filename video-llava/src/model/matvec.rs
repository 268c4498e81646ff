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
    let outputs = |first: usize, dst: &mut [f32]| {
        for (o, ys) in dst.chunks_mut(rows).enumerate() {
            let row = &w[(first + o) * in_dim..(first + o + 1) * in_dim];
            let b = bias.as_ref().map_or(0.0, |b| b[first + o]);
            for (r, y) in ys.iter_mut().enumerate() {
                *y = b + dot(row, &x[r * in_dim..(r + 1) * in_dim]);
            }
        }
    };
    let threads = candle_core::utils::get_num_threads().clamp(1, out_dim.max(1));
    if threads == 1 || out_dim * in_dim < PARALLEL_MIN {
        outputs(0, &mut out);
    } else {
        let per = out_dim.div_ceil(threads);
        let outputs = &outputs;
        std::thread::scope(|s| {
            for (i, part) in out.chunks_mut(per * rows).enumerate() {
                s.spawn(move || outputs(i * per, part));
            }
        });
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

/// Dot product with lane-wise partial sums, so it vectorizes (a single running sum would pin the
/// additions in order).
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
        let w = Tensor::randn(0f32, 1.0, (4, 8), &dev)?;
        let x = Tensor::randn(0f32, 1.0, (MAX_ROWS + 1, 8), &dev)?;
        assert!(
            matvec_rows(&x, &w, None)?.is_none(),
            "more rows: the GEMM's job"
        );
        Ok(())
    }
}
