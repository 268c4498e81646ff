//! Building blocks shared by the towers, the projector and the LM: weights loaded with their
//! expected shapes, and linears fused at load so one matmul serves several projections.

use candle_core::Tensor;
use candle_nn::Linear;

use crate::weights::Scope;
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

/// A linear layer `(out, in)` with optional bias, checked against the expected shape.
pub(crate) fn linear(vb: &Scope<'_>, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
    let weight = vb.get(&[out_dim, in_dim], "weight")?;
    let bias = if bias {
        Some(vb.get(&[out_dim], "bias")?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

/// Several linears sharing an input, fused into one matmul (q/k/v, or gate/up).
pub(crate) fn fused_linear(
    vbs: &[Scope<'_>],
    in_dim: usize,
    out_dims: &[usize],
    bias: bool,
) -> Result<Linear> {
    let mut weights = Vec::with_capacity(vbs.len());
    let mut biases = Vec::with_capacity(vbs.len());
    for (vb, &out_dim) in vbs.iter().zip(out_dims) {
        weights.push(vb.get(&[out_dim, in_dim], "weight")?);
        if bias {
            biases.push(vb.get(&[out_dim], "bias")?);
        }
    }
    let weight = Tensor::cat(&weights, 0)?;
    let bias = if bias {
        Some(Tensor::cat(&biases, 0)?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}
