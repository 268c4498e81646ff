//! Fused elementwise kernels for the CPU: one parallel pass where the generic ops would take
//! several single-purpose passes (each allocating a full activation tensor).
//!
//! Every kernel has a generic fallback built from candle ops, taken on other devices, other
//! dtypes and strided inputs, so the model stays backend-agnostic.

use candle_core::{CpuStorage, CustomOp1, DType, Device, InplaceOp1, Layout, Shape, Tensor, D};

use super::activate;
use crate::config::Activation;

/// Below this many elements a kernel runs on the calling thread (decode steps).
const PARALLEL_MIN: usize = 1 << 15;

/// Splits `rows` rows of `dst` (each `dst_cols` wide) into one part per CPU thread candle uses and
/// runs `f(first_row, dst_rows)` on each part, on the kernels' pool.
fn par_rows<F>(dst: &mut [f32], dst_cols: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let rows = dst.len() / dst_cols.max(1);
    let threads = super::pool::threads().clamp(1, rows.max(1));
    if threads == 1 || dst.len() < PARALLEL_MIN {
        f(0, dst);
        return;
    }
    let per = rows.div_ceil(threads);
    super::pool::for_each_part(dst, per * dst_cols, |i, part| f(i * per, part));
}

fn is_cpu_f32_contiguous(xs: &Tensor) -> bool {
    matches!(xs.device(), Device::Cpu) && xs.dtype() == DType::F32 && xs.is_contiguous()
}

/// `e^x` without a libm call, so loops over slices vectorize (libm's `expf` is scalar and was
/// a tenth of prefill's time). Cephes' single-precision polynomial: relative error below
/// 2e-7 for `|x| <= 87`; inputs are clamped there (softmax inputs are `<= 0`, and the
/// activations only need `e^-x` to saturate).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Select forms (not branches) so the clamps become vector min/max.
    let x = if x > -87.0 { x } else { -87.0 };
    let x = if x < 87.0 { x } else { 87.0 };
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // `t`'s low mantissa bits hold `n` (two's complement) on top of ROUND's bits: rebias them
    // to the exponent of 2^n with integer ops (a float-to-int cast would not vectorize).
    let scale = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits() - 127) << 23);
    y * scale
}

fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + exp(-1.702 * x))
}

/// `act(gate) * up` where `gate_up` is `(..., 2 * inter)` with the gate half first (the fused
/// gate/up projection's output); returns `(..., inter)`.
pub(crate) fn gated(act: Activation, gate_up: &Tensor) -> candle_core::Result<Tensor> {
    let inter = gate_up.dim(D::Minus1)? / 2;
    if act == Activation::Silu && is_cpu_f32_contiguous(gate_up) {
        return gate_up.apply_op1_no_bwd(&SiluMul);
    }
    let gate = activate(act, &gate_up.narrow(D::Minus1, 0, inter)?)?;
    gate * gate_up.narrow(D::Minus1, inter, inter)?
}

/// Applies `act`, overwriting `xs` when it is a CPU f32 tensor this caller owns (a fresh
/// matmul output) and the kernel exists; otherwise the generic op.
pub(crate) fn activate_owned(act: Activation, xs: Tensor) -> candle_core::Result<Tensor> {
    if act == Activation::QuickGelu && is_cpu_f32_contiguous(&xs) {
        xs.inplace_op1(&QuickGeluInPlace)?;
        return Ok(xs);
    }
    activate(act, &xs)
}

struct SiluMul;

impl CustomOp1 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(src) = storage else {
            candle_core::bail!("silu-mul: f32 only")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("silu-mul: contiguous input only")
        };
        let src = &src[start..end];
        let mut dims = layout.dims().to_vec();
        let cols = dims.last().copied().unwrap_or(0);
        if cols % 2 != 0 {
            candle_core::bail!("silu-mul: odd last dimension {cols}")
        }
        let inter = cols / 2;
        if let Some(last) = dims.last_mut() {
            *last = inter;
        }
        let mut dst = vec![0f32; src.len() / 2];
        if inter > 0 {
            par_rows(&mut dst, inter, |first_row, part| {
                for (r, out) in part.chunks_exact_mut(inter).enumerate() {
                    let row = &src[(first_row + r) * cols..(first_row + r + 1) * cols];
                    let (gate, up) = row.split_at(inter);
                    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
                        *o = silu(g) * u;
                    }
                }
            });
        }
        Ok((CpuStorage::F32(dst), Shape::from(dims)))
    }
}

struct QuickGeluInPlace;

impl InplaceOp1 for QuickGeluInPlace {
    fn name(&self) -> &'static str {
        "quick-gelu"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("quick-gelu: f32 only")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("quick-gelu: contiguous input only")
        };
        let cols = layout.dims().last().copied().unwrap_or(1).max(1);
        par_rows(&mut data[start..end], cols, |_, part| {
            for x in part.iter_mut() {
                *x = quick_gelu(*x);
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Largest `|a - b| / (1 + |b|)`: absolute near zero, relative for large activations.
    fn max_diff(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
        ((a - b)?.abs()? / (b.abs()? + 1.0)?)?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()
    }

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        for i in -90_000..=90_000 {
            let x = i as f32 * 1e-3;
            let want = (x as f64).exp().clamp((-87f64).exp(), 87f64.exp());
            worst = worst.max(((exp(x) as f64 - want) / want).abs());
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn silu_mul_matches_generic_ops() -> candle_core::Result<()> {
        // Large enough to take the threaded path, and a single row as in decode.
        for rows in [300, 1] {
            let gate_up = Tensor::randn(0f32, 2.0, (1, rows, 2 * 96), &Device::Cpu)?;
            let fused = gated(Activation::Silu, &gate_up)?;
            let gate = gate_up.narrow(D::Minus1, 0, 96)?;
            let up = gate_up.narrow(D::Minus1, 96, 96)?;
            let want = (gate.silu()? * up)?;
            assert_eq!(fused.dims(), &[1, rows, 96]);
            assert!(max_diff(&fused, &want)? < 1e-6);
        }
        Ok(())
    }

    #[test]
    fn quick_gelu_in_place_matches_generic_op() -> candle_core::Result<()> {
        let xs = Tensor::randn(0f32, 3.0, (4, 257, 64), &Device::Cpu)?;
        let want = activate(Activation::QuickGelu, &xs)?;
        let got = activate_owned(Activation::QuickGelu, xs.copy()?)?;
        assert!(max_diff(&got, &want)? < 1e-6);
        Ok(())
    }
}
