//! Building blocks shared by the towers, the projector and the LM: weights loaded with their
//! expected shapes, and linears fused at load so one matmul serves several projections.

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use super::matvec::{matvec, matvec_rows};
use crate::weights::{Scope, WeightTensor};
use crate::Result;

/// LayerNorm weights.
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub(crate) fn load(vb: &Scope<'_>, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(&[dim], "weight")?,
            bias: vb.get(&[dim], "bias")?,
            eps: eps as f32,
        })
    }

    pub(crate) fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(xs, &self.weight, &self.bias, self.eps)
    }
}

/// A linear layer `xs @ weight^T (+ bias)` whose weight is dense or quantized GGUF blocks.
pub(crate) enum Linear {
    /// A dense weight in the compute dtype.
    Dense(candle_nn::Linear),
    /// Quantized blocks (candle's quantized matmul on every backend); the bias stays dense.
    Quantized {
        weight: QMatMul,
        bias: Option<Tensor>,
    },
}

impl Linear {
    pub(crate) fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Dense(linear) => match matvec(xs, linear.weight(), linear.bias())? {
                Some(out) => Ok(out),
                None => linear.forward(xs),
            },
            Linear::Quantized { weight, bias } => {
                let lean = match weight {
                    QMatMul::QTensor(q) if !super::qmatmul::repacked_kernels() => {
                        super::qmatmul::forward(q, xs)?
                    }
                    _ => None,
                };
                // The CPU kernels take f32, f16 and bf16 activations; the GPU ones f32.
                let native = matches!(xs.device(), Device::Cpu) || xs.dtype() == DType::F32;
                let out = if let Some(out) = lean {
                    out
                } else if native {
                    weight.forward(xs)?
                } else {
                    weight
                        .forward(&xs.to_dtype(DType::F32)?)?
                        .to_dtype(xs.dtype())?
                };
                match bias {
                    Some(b) => out.broadcast_add(b),
                    None => Ok(out),
                }
            }
        }
    }

    /// [`Linear::forward`] for one row per sequence of a batched decode step (up to
    /// [`super::matvec::MAX_ROWS`]): each row comes out as `forward` gives it alone, the weights
    /// read once for all of them. Dense f32 weights on the CPU take the many-row matvec; the
    /// quantized kernels treat rows independently already; anything else is candle's matmul.
    pub(crate) fn forward_rows(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Dense(linear) => match matvec_rows(xs, linear.weight(), linear.bias())? {
                Some(out) => Ok(out),
                None => linear.forward(xs),
            },
            Linear::Quantized { .. } => self.forward(xs),
        }
    }

    /// Whether the weight is quantized.
    #[cfg(test)]
    pub(crate) fn is_quantized(&self) -> bool {
        matches!(self, Linear::Quantized { .. })
    }
}

/// A linear layer `(out, in)` with optional bias, checked against the expected shape.
pub(crate) fn linear(vb: &Scope<'_>, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
    fused_linear(std::slice::from_ref(vb), in_dim, &[out_dim], bias)
}

/// Several linears sharing an input, fused into one matmul (q/k/v, or gate/up): dense weights
/// are concatenated, quantized ones too (blocks run along rows, so stacking rows stacks blocks).
pub(crate) fn fused_linear(
    vbs: &[Scope<'_>],
    in_dim: usize,
    out_dims: &[usize],
    bias: bool,
) -> Result<Linear> {
    let mut parts = Vec::with_capacity(vbs.len());
    let mut biases = Vec::with_capacity(vbs.len());
    for (vb, &out_dim) in vbs.iter().zip(out_dims) {
        parts.push(vb.get_linear(&[out_dim, in_dim], "weight")?);
        if bias {
            biases.push(vb.get(&[out_dim], "bias")?);
        }
    }
    let device = vbs
        .first()
        .map(|vb| vb.weights().device().clone())
        .unwrap_or(Device::Cpu);
    let dtype = vbs
        .first()
        .map(|vb| vb.weights().dtype())
        .unwrap_or(DType::F32);
    let bias = match biases.len() {
        0 => None,
        1 => biases.pop(),
        _ => Some(Tensor::cat(&biases, 0)?),
    };
    let rows: usize = out_dims.iter().sum();
    let all_quantized_alike = match parts.first() {
        Some(WeightTensor::Quantized(first)) => parts
            .iter()
            .all(|p| matches!(p, WeightTensor::Quantized(q) if q.dtype() == first.dtype())),
        _ => false,
    };
    if all_quantized_alike {
        let quantized = parts
            .into_iter()
            .filter_map(|p| match p {
                WeightTensor::Quantized(q) => Some(q),
                WeightTensor::Dense(_) => None,
            })
            .collect::<Vec<_>>();
        let weight = stack_rows(quantized, rows, in_dim, &device)?;
        return Ok(Linear::Quantized {
            weight: QMatMul::from_qtensor(weight)?,
            bias,
        });
    }
    // Dense (or, from a foreign file, mixed): every part in the compute dtype.
    let dense = parts
        .into_iter()
        .map(|p| match p {
            WeightTensor::Dense(t) => Ok(t),
            WeightTensor::Quantized(q) => Ok(q.dequantize(&device)?.to_dtype(dtype)?),
        })
        .collect::<Result<Vec<_>>>()?;
    let weight = match dense.len() {
        1 => dense.into_iter().next().expect("one part"),
        _ => Tensor::cat(&dense, 0)?,
    };
    Ok(Linear::Dense(candle_nn::Linear::new(weight, bias)))
}

/// Stacks the rows of same-typed quantized CPU tensors into one `(rows, in_dim)` tensor on
/// `device`.
fn stack_rows(parts: Vec<QTensor>, rows: usize, in_dim: usize, device: &Device) -> Result<QTensor> {
    if parts.len() == 1 && matches!(device, Device::Cpu) {
        return Ok(parts.into_iter().next().expect("one part"));
    }
    let dtype = parts[0].dtype();
    let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.storage_size_in_bytes()).sum());
    for p in &parts {
        bytes.extend_from_slice(&p.data()?);
    }
    drop(parts);
    Ok(qtensor_from_ggml(
        dtype,
        &bytes,
        vec![rows, in_dim],
        device,
    )?)
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::GgmlDType;

    use super::*;
    use crate::model::norm_error;

    /// The quantized product against the product of the dequantized weights in f32. Many rows
    /// (prefill) multiply dequantized tiles, so they agree to float rounding; one row and a few
    /// (decode) use 8-bit activations (llama.cpp's scheme), measured here at 5e-3..7.3e-3 of the
    /// output's norm; shapes that take candle's repacked x86 kernels (rows a multiple of 256) and
    /// shapes that do not.
    #[test]
    fn quantized_linear_matches_the_dequantized_weights() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for (dtype, out_dim, in_dim) in [
            (GgmlDType::Q8_0, 96, 64),
            (GgmlDType::Q8_0, 512, 512),
            (GgmlDType::Q4K, 64, 256),
            (GgmlDType::Q4K, 512, 512),
            (GgmlDType::Q6K, 512, 256),
        ] {
            let w = Tensor::randn(0f32, 1.0, (out_dim, in_dim), &dev)?;
            let bias = Tensor::randn(0f32, 1.0, out_dim, &dev)?;
            let q = QTensor::quantize(&w, dtype)?;
            let dequantized = q.dequantize(&dev)?;
            let linear = Linear::Quantized {
                weight: QMatMul::from_qtensor(q)?,
                bias: Some(bias.clone()),
            };
            assert!(linear.is_quantized());
            for rows in [1, 7, 64] {
                let xs = Tensor::randn(0f32, 1.0, (1, rows, in_dim), &dev)?;
                let got = linear.forward(&xs)?;
                let want = xs
                    .broadcast_matmul(&dequantized.t()?)?
                    .broadcast_add(&bias)?;
                assert_eq!(got.dims(), want.dims());
                let err = norm_error(&got, &want)?;
                eprintln!("{dtype:?} ({out_dim}x{in_dim}), {rows} rows: relative error {err:.2e}");
                // Unseeded random data: 8-bit activations give 5e-3..1.1e-2 here; a wrong
                // kernel (rows, scales) gives errors near 1.
                assert!(err < 3e-2, "{dtype:?} {rows} rows: {err}");
            }
            // The weights themselves: the round trip error of the block type.
            let werr = norm_error(&dequantized, &w)?;
            let limit = match dtype {
                GgmlDType::Q8_0 => 0.01,
                GgmlDType::Q6K => 0.03,
                _ => 0.12,
            };
            assert!(werr < limit, "{dtype:?}: weights error {werr}");
        }
        Ok(())
    }

    #[test]
    fn stacked_quantized_rows_are_the_blocks_of_the_stacked_weights() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4K] {
            let a = Tensor::randn(0f32, 1.0, (48, 256), &dev)?;
            let b = Tensor::randn(0f32, 1.0, (16, 256), &dev)?;
            let parts = vec![QTensor::quantize(&a, dtype)?, QTensor::quantize(&b, dtype)?];
            let stacked = stack_rows(parts, 64, 256, &dev).map_err(candle_core::Error::wrap)?;
            let whole = QTensor::quantize(&Tensor::cat(&[&a, &b], 0)?, dtype)?;
            assert_eq!(stacked.shape().dims(), &[64, 256]);
            assert_eq!(stacked.dtype(), dtype);
            assert_eq!(*stacked.data()?, *whole.data()?);
        }
        Ok(())
    }
}
