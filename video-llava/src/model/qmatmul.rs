//! Quantized matrix products on the CPU that read the GGUF blocks as loaded, with no second copy.
//!
//! candle's quantized op repacks a weight on first use into x86 tiles for one-row products
//! (0.75 bytes per Q4K weight) and, on AMX machines, into AMX tiles for many-row products
//! (1.25 bytes per weight), and keeps both beside the original blocks (0.56 bytes per weight): on
//! the 7B that took a Q4K load from about 4 GB of weights to a 20 GB peak (BENCHMARKS.md). Here:
//! - few rows (decode): candle's k-quants `matmul` straight on the blocks (activations quantized
//!   to 8 bits, dot products split across the cores);
//! - many rows (prefill, vision): the weight is dequantized a tile of rows at a time into f32 and
//!   multiplied by the f32 GEMM, so only one tile (a few MB) is ever expanded.
//!
//! Other devices, dtypes and block types keep candle's `QMatMul`. Setting
//! `VIDEO_LLAVA_REPACKED_KERNELS=1` makes the CPU take candle's repacked kernels too: on the
//! mid-size bench model about a third faster in decode and prefill, for 3-4x the weights' memory.

use candle_core::quantized::k_quants::{BlockQ4K, BlockQ6K, BlockQ8_0, GgmlType};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor, D};

/// From this many activation rows on, dequantized tiles into the f32 GEMM beat the 8-bit dot
/// products (measured on the mid-size bench model: prefill and vision take that path). Above
/// a batched decode step's rows ([`super::matvec::MAX_ROWS`]), whose rows must each come out as
/// they do alone.
const GEMM_MIN_ROWS: usize = super::matvec::MAX_ROWS + 1;

/// Weight rows dequantized at once on the GEMM path.
const TILE_ROWS: usize = 256;

/// Whether `VIDEO_LLAVA_REPACKED_KERNELS` asks for candle's repacked kernels (read once).
pub(crate) fn repacked_kernels() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("VIDEO_LLAVA_REPACKED_KERNELS").is_ok_and(|v| !v.is_empty() && v != "0")
    })
}

/// `xs @ weight^T` for `xs` `(.., k)` in f32 on the CPU and `weight` `(n, k)` in Q8_0, Q4K or
/// Q6K; `None` for anything else (the caller takes candle's `QMatMul`).
pub(crate) fn forward(weight: &QTensor, xs: &Tensor) -> candle_core::Result<Option<Tensor>> {
    if !matches!(xs.device(), Device::Cpu)
        || xs.dtype() != DType::F32
        || !matches!(weight.device(), Device::Cpu)
    {
        return Ok(None);
    }
    let (n, k) = weight.shape().dims2()?;
    if xs.dim(D::Minus1)? != k {
        return Ok(None);
    }
    let bytes = weight.data()?;
    match weight.dtype() {
        GgmlDType::Q8_0 => run::<BlockQ8_0>(&bytes, n, k, xs),
        GgmlDType::Q4K => run::<BlockQ4K>(&bytes, n, k, xs),
        GgmlDType::Q6K => run::<BlockQ6K>(&bytes, n, k, xs),
        _ => Ok(None),
    }
}

fn run<T: GgmlType>(
    bytes: &[u8],
    n: usize,
    k: usize,
    xs: &Tensor,
) -> candle_core::Result<Option<Tensor>> {
    let size = std::mem::size_of::<T>();
    let kb = k / T::BLCK_SIZE;
    if bytes.len() != n * kb * size
        || !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    {
        return Ok(None);
    }
    // SAFETY: the bytes are the QTensor's own block storage (a `Vec<T>` on the CPU: aligned, as
    // checked, and exactly n * kb blocks long); block types are plain data.
    let blocks: &[T] = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast(), n * kb) };
    let mut dims = xs.dims().to_vec();
    let m = xs.elem_count() / k;
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    if m >= GEMM_MIN_ROWS {
        let xs2 = xs.reshape((m, k))?;
        let mut parts = Vec::with_capacity(n.div_ceil(TILE_ROWS));
        let mut tile = vec![0f32; TILE_ROWS.min(n) * k];
        for first in (0..n).step_by(TILE_ROWS) {
            let rows = TILE_ROWS.min(n - first);
            let tile = &mut tile[..rows * k];
            T::to_float(&blocks[first * kb..(first + rows) * kb], tile);
            let w = Tensor::from_slice(tile, (rows, k), &Device::Cpu)?;
            parts.push(xs2.matmul(&w.t()?)?);
        }
        let out = Tensor::cat(&parts, 1)?;
        return Ok(Some(out.reshape(dims)?));
    }
    let lhs = xs.flatten_all()?.to_vec1::<f32>()?;
    let mut dst = vec![0f32; m * n];
    candle_core::quantized::k_quants::matmul::<T>((m, k, n), &lhs, blocks, &mut dst)?;
    Ok(Some(Tensor::from_vec(dst, dims, &Device::Cpu)?))
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::QMatMul;
    use candle_core::Module;

    use super::*;
    use crate::model::norm_error;

    /// Many rows: the dequantized tiles give the dequantized weights' product to float rounding
    /// (tiles of 256 rows, and a last partial one: 600 rows). Few rows: the 8-bit dot products
    /// agree with candle's own quantized op, which quantizes activations the same way.
    #[test]
    fn both_paths_match_their_references() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            let w = Tensor::randn(0f32, 1.0, (600, 512), &dev)?;
            let q = QTensor::quantize(&w, dtype)?;
            let dequantized = q.dequantize(&dev)?;
            for rows in [1, 5, GEMM_MIN_ROWS, 70] {
                let xs = Tensor::randn(0f32, 1.0, (1, rows, 512), &dev)?;
                let got = forward(&q, &xs)?.expect("f32 on the CPU takes this path");
                assert_eq!(got.dims(), &[1, rows, 600]);
                let exact = xs.broadcast_matmul(&dequantized.t()?)?;
                let err = norm_error(&got, &exact)?;
                if rows >= GEMM_MIN_ROWS {
                    assert!(err < 1e-5, "{dtype:?} {rows} rows: {err}");
                } else {
                    let candle =
                        QMatMul::from_qtensor(QTensor::quantize(&w, dtype)?)?.forward(&xs)?;
                    assert!(
                        norm_error(&got, &candle)? < 1e-4,
                        "{dtype:?} {rows} rows vs candle"
                    );
                    // Unseeded random data: 8-bit activations give 5e-3..1.1e-2 here; a wrong
                    // kernel (rows, scales) gives errors near 1.
                    assert!(err < 3e-2, "{dtype:?} {rows} rows: {err}");
                }
            }
        }
        // Not this kernel's job: bf16 activations.
        let q = QTensor::quantize(&Tensor::randn(0f32, 1.0, (32, 256), &dev)?, GgmlDType::Q8_0)?;
        let xs = Tensor::zeros((1, 256), DType::BF16, &dev)?;
        assert!(forward(&q, &xs)?.is_none());
        Ok(())
    }
}
