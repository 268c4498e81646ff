//! Single-row matrix products (decode steps) on the CPU.
//!
//! A decode step multiplies one activation row by every weight matrix: pure memory streaming.
//! gemm's 1-row path runs on one core here; splitting the output rows across the cores reads the
//! weights with all of them. Other shapes, devices and dtypes take candle's matmul.

use candle_core::{CpuStorage, DType, Device, Storage, Tensor, D};

/// Below this many weights one thread streams them faster than threads start.
const PARALLEL_MIN: usize = 1 << 18;

/// `xs @ weight^T (+ bias)` for `xs` `(.., in)` holding one row and `weight` `(out, in)`, both
/// contiguous f32 on the CPU; `None` for anything else (the caller uses candle's matmul).
pub(crate) fn matvec(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Option<Tensor>> {
    let (out_dim, in_dim) = weight.dims2()?;
    let usable = |t: &Tensor| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32;
    if xs.elem_count() != in_dim
        || xs.dim(D::Minus1)? != in_dim
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
    let mut out = match bias {
        Some(b) => b.to_vec1::<f32>()?,
        None => vec![0f32; out_dim],
    };
    let rows = |first: usize, dst: &mut [f32]| {
        for (o, y) in dst.iter_mut().enumerate() {
            let row = &w[(first + o) * in_dim..(first + o + 1) * in_dim];
            *y += dot(row, &x);
        }
    };
    let threads = candle_core::utils::get_num_threads().clamp(1, out_dim.max(1));
    if threads == 1 || out_dim * in_dim < PARALLEL_MIN {
        rows(0, &mut out);
    } else {
        let per = out_dim.div_ceil(threads);
        let rows = &rows;
        std::thread::scope(|s| {
            for (i, part) in out.chunks_mut(per).enumerate() {
                s.spawn(move || rows(i * per, part));
            }
        });
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
}
