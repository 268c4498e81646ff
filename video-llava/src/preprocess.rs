//! The CLIP image processor on RGB8 frames: shortest side to 224 (bicubic, PIL's resampling),
//! center crop 224, rescale 1/255, normalize with CLIP's mean and std, channels first.
//!
//! Both reference processors resize in 8-bit: transformers' `VideoLlavaImageProcessor` through
//! Pillow's `Image.resize(BICUBIC)`, and `VideoLlavaVideoProcessor` through torchvision's native
//! uint8 antialiased bicubic, which is a port of the same Pillow algorithm. This module mirrors
//! Pillow's `ImagingResample`: a separable two-pass filter (horizontal first, into an 8-bit
//! intermediate), the bicubic kernel with `a = -0.5` whose support widens with the downscale
//! factor, and 22-bit fixed-point weights with rounding and clipping to `u8` after each pass.

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// Output side length.
pub const IMAGE_SIZE: usize = 224;
/// CLIP's normalization mean.
// Kept digit for digit as OpenAI published them (and transformers copies them).
#[allow(clippy::excessive_precision)]
pub const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's normalization std.
#[allow(clippy::excessive_precision)]
pub const STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Pillow's `PRECISION_BITS` for 8-bit resampling: weights are fixed-point with 22 fractional bits.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The size `(height, width)` a `height x width` frame is resized to before the center crop:
/// the shortest side becomes 224 and the long side is floored, as transformers'
/// `get_resize_output_image_size(default_to_square=False)` computes it.
pub fn resized_size(height: usize, width: usize) -> (usize, usize) {
    if width <= height {
        (IMAGE_SIZE * height / width, IMAGE_SIZE)
    } else {
        (IMAGE_SIZE, IMAGE_SIZE * width / height)
    }
}

/// Preprocesses `count` RGB8 frames of `height x width` into `count x 3 x 224 x 224` floats.
///
/// Frames are processed in parallel (one chunk of frames per available core).
pub fn preprocess_frames(
    data: &[u8],
    count: usize,
    height: usize,
    width: usize,
) -> Result<Vec<f32>> {
    validate(data, count, height, width)?;
    let plan = ResizePlan::new(height, width);
    let in_frame = height * width * 3;
    let out_frame = 3 * IMAGE_SIZE * IMAGE_SIZE;
    let mut out = vec![0f32; count * out_frame];

    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(count);
    if threads <= 1 {
        for (src, dst) in data
            .chunks_exact(in_frame)
            .zip(out.chunks_exact_mut(out_frame))
        {
            plan.run(src, dst);
        }
        return Ok(out);
    }
    let per_thread = count.div_ceil(threads);
    std::thread::scope(|scope| {
        for (src, dst) in data
            .chunks(per_thread * in_frame)
            .zip(out.chunks_mut(per_thread * out_frame))
        {
            let plan = &plan;
            scope.spawn(move || {
                for (src, dst) in src
                    .chunks_exact(in_frame)
                    .zip(dst.chunks_exact_mut(out_frame))
                {
                    plan.run(src, dst);
                }
            });
        }
    });
    Ok(out)
}

/// Preprocesses one RGB8 image of `height x width` into `3 x 224 x 224` floats.
pub fn preprocess_image(data: &[u8], height: usize, width: usize) -> Result<Vec<f32>> {
    preprocess_frames(data, 1, height, width)
}

/// [`preprocess_frames`] as an f32 tensor `(count, 3, 224, 224)` on `device`.
pub fn frames_tensor(
    data: &[u8],
    count: usize,
    height: usize,
    width: usize,
    device: &Device,
) -> Result<Tensor> {
    let pixels = preprocess_frames(data, count, height, width)?;
    Ok(Tensor::from_vec(
        pixels,
        (count, 3, IMAGE_SIZE, IMAGE_SIZE),
        device,
    )?)
}

/// [`preprocess_image`] as an f32 tensor `(3, 224, 224)` on `device`.
pub fn image_tensor(data: &[u8], height: usize, width: usize, device: &Device) -> Result<Tensor> {
    let pixels = preprocess_image(data, height, width)?;
    Ok(Tensor::from_vec(
        pixels,
        (3, IMAGE_SIZE, IMAGE_SIZE),
        device,
    )?)
}

fn validate(data: &[u8], count: usize, height: usize, width: usize) -> Result<()> {
    if count == 0 || height == 0 || width == 0 {
        return Err(Error::InvalidRequest(format!(
            "preprocess: empty input ({count} frames of {height}x{width})"
        )));
    }
    let expected = count
        .checked_mul(height)
        .and_then(|n| n.checked_mul(width))
        .and_then(|n| n.checked_mul(3))
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "preprocess: {count} frames of {height}x{width} overflow the address space"
            ))
        })?;
    if data.len() != expected {
        return Err(Error::InvalidRequest(format!(
            "preprocess: buffer has {} bytes, expected {expected} for {count} RGB8 frames of {height}x{width}",
            data.len()
        )));
    }
    // The long side grows by 224 / short side; refuse sizes whose resized frame would not fit.
    let (rh, rw) = resized_size(height, width);
    if rh.checked_mul(rw).and_then(|n| n.checked_mul(3)).is_none() {
        return Err(Error::InvalidRequest(format!(
            "preprocess: aspect ratio of {height}x{width} is too extreme"
        )));
    }
    Ok(())
}

/// Pillow's bicubic filter (`a = -0.5`), support 2.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point resampling weights from `in_size` to `out_size` samples along one axis, for the
/// output positions `first..first + len` only (the center crop never reads the rest).
struct AxisKernel {
    /// Per output position: the first input index and the number of taps.
    bounds: Vec<(usize, usize)>,
    /// `bounds.len() x ksize` weights, zero-padded.
    weights: Vec<i32>,
    ksize: usize,
}

impl AxisKernel {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`.
    fn new(in_size: usize, out_size: usize, first: usize, len: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = 2.0 * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(len);
        let mut weights = vec![0i32; len * ksize];
        let ss = 1.0 / filterscale;
        let mut taps = vec![0f64; ksize];
        for (i, xx) in (first..first + len).enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero; the clamp to 0 makes that the same as floor here.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin).min(ksize);
            let mut total = 0.0;
            for (x, tap) in taps.iter_mut().enumerate().take(n) {
                let w = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
                *tap = w;
                total += w;
            }
            let row = &mut weights[i * ksize..i * ksize + n];
            for (dst, &w) in row.iter_mut().zip(&taps[..n]) {
                let w = if total != 0.0 { w / total } else { w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                *dst = if w < 0.0 {
                    (fixed - 0.5) as i32
                } else {
                    (fixed + 0.5) as i32
                };
            }
            bounds.push((xmin, n));
        }
        Self {
            bounds,
            weights,
            ksize,
        }
    }

    fn taps(&self, i: usize) -> (usize, &[i32]) {
        let (start, n) = self.bounds[i];
        (start, &self.weights[i * self.ksize..i * self.ksize + n])
    }
}

/// Pillow's `clip8`: rounds (the accumulator starts at one half) and clamps to `u8`.
/// Like Pillow, accumulators are `i32`: weights sum to 2^22 (a little more in absolute value
/// with the negative lobes), so 255 x that stays far below `i32::MAX`.
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The per-size work of one resize + center crop, shared by all frames of a batch.
struct ResizePlan {
    in_h: usize,
    in_w: usize,
    /// Horizontal kernel over the cropped output columns; `None` when the width is unchanged.
    horizontal: Option<AxisKernel>,
    /// Vertical kernel over the cropped output rows; `None` when the height is unchanged.
    vertical: Option<AxisKernel>,
    /// Column crop offset into the resized frame (used when the width is not resampled).
    left: usize,
    /// Input rows the vertical pass reads (all of them when there is no vertical pass).
    row_first: usize,
    row_end: usize,
}

impl ResizePlan {
    fn new(in_h: usize, in_w: usize) -> Self {
        let (out_h, out_w) = resized_size(in_h, in_w);
        let top = (out_h - IMAGE_SIZE) / 2;
        let left = (out_w - IMAGE_SIZE) / 2;
        let horizontal = (out_w != in_w).then(|| AxisKernel::new(in_w, out_w, left, IMAGE_SIZE));
        let vertical = (out_h != in_h).then(|| AxisKernel::new(in_h, out_h, top, IMAGE_SIZE));
        let (row_first, row_end) = match &vertical {
            Some(k) => {
                let first = k.bounds.iter().map(|b| b.0).min().unwrap_or(0);
                let end = k.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
                (first, end)
            }
            None => (top, top + IMAGE_SIZE),
        };
        Self {
            in_h,
            in_w,
            horizontal,
            vertical,
            left,
            row_first,
            row_end,
        }
    }

    /// One frame: `src` is `in_h x in_w x 3` RGB8, `dst` is `3 x 224 x 224` normalized floats.
    fn run(&self, src: &[u8], dst: &mut [f32]) {
        debug_assert_eq!(src.len(), self.in_h * self.in_w * 3);
        let rows = self.row_end - self.row_first;
        let row_bytes = IMAGE_SIZE * 3;
        // Horizontal pass (or a plain column crop) over the rows the vertical pass needs.
        let mut temp = vec![0u8; rows * row_bytes];
        for (r, out_row) in temp.chunks_exact_mut(row_bytes).enumerate() {
            let y = self.row_first + r;
            let in_row = &src[y * self.in_w * 3..(y + 1) * self.in_w * 3];
            match &self.horizontal {
                Some(k) => {
                    for (x, out_px) in out_row.chunks_exact_mut(3).enumerate() {
                        let (start, w) = k.taps(x);
                        let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                        for (px, &w) in in_row[start * 3..].chunks_exact(3).zip(w) {
                            acc[0] += i32::from(px[0]) * w;
                            acc[1] += i32::from(px[1]) * w;
                            acc[2] += i32::from(px[2]) * w;
                        }
                        out_px[0] = clip8(acc[0]);
                        out_px[1] = clip8(acc[1]);
                        out_px[2] = clip8(acc[2]);
                    }
                }
                None => {
                    out_row.copy_from_slice(&in_row[self.left * 3..(self.left + IMAGE_SIZE) * 3])
                }
            }
        }

        let plane = IMAGE_SIZE * IMAGE_SIZE;
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * STD[c]));
        let offset: [f32; 3] = std::array::from_fn(|c| MEAN[c] / STD[c]);
        let mut store = |y: usize, x: usize, px: [u8; 3]| {
            for c in 0..3 {
                // (v / 255 - mean) / std, with the divisions folded into one multiply-add.
                dst[c * plane + y * IMAGE_SIZE + x] = f32::from(px[c]) * scale[c] - offset[c];
            }
        };
        match &self.vertical {
            Some(k) => {
                // Row-at-a-time accumulation: the inner loop runs over contiguous bytes and
                // vectorizes.
                let mut acc = vec![0i32; row_bytes];
                for y in 0..IMAGE_SIZE {
                    let (start, w) = k.taps(y);
                    let start = start - self.row_first;
                    acc.fill(1 << (PRECISION_BITS - 1));
                    for (r, &w) in w.iter().enumerate() {
                        let row = &temp[(start + r) * row_bytes..(start + r + 1) * row_bytes];
                        for (a, &v) in acc.iter_mut().zip(row) {
                            *a += i32::from(v) * w;
                        }
                    }
                    for (x, a) in acc.chunks_exact(3).enumerate() {
                        store(y, x, [clip8(a[0]), clip8(a[1]), clip8(a[2])]);
                    }
                }
            }
            None => {
                for y in 0..IMAGE_SIZE {
                    let row = &temp[y * row_bytes..(y + 1) * row_bytes];
                    for (x, px) in row.chunks_exact(3).enumerate() {
                        store(y, x, [px[0], px[1], px[2]]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_size_floors_the_long_side() {
        assert_eq!(resized_size(480, 640), (224, 298)); // 224 * 640 / 480 = 298.67
        assert_eq!(resized_size(640, 480), (298, 224));
        assert_eq!(resized_size(224, 224), (224, 224));
        assert_eq!(resized_size(100, 333), (224, 745)); // 745.92
    }

    #[test]
    fn shape_of_a_batch() {
        let data: Vec<u8> = (0..2 * 30 * 50 * 3).map(|i| (i % 251) as u8).collect();
        let out = preprocess_frames(&data, 2, 30, 50).unwrap();
        assert_eq!(out.len(), 2 * 3 * 224 * 224);
        let t = frames_tensor(&data, 2, 30, 50, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[2, 3, 224, 224]);
        let t = image_tensor(&data[..30 * 50 * 3], 30, 50, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[3, 224, 224]);
    }

    #[test]
    fn constant_image_gives_constant_normalized_values() {
        // Normalized weights sum to one, so a flat image stays flat through both passes,
        // for a downscale, an upscale and an unchanged axis.
        for (h, w) in [(480, 640), (100, 150), (224, 300), (300, 224)] {
            let rgb = [200u8, 10, 77];
            let data: Vec<u8> = (0..h * w).flat_map(|_| rgb).collect();
            let out = preprocess_image(&data, h, w).unwrap();
            for c in 0..3 {
                let expected = (f32::from(rgb[c]) / 255.0 - MEAN[c]) / STD[c];
                let plane = &out[c * 224 * 224..(c + 1) * 224 * 224];
                assert!(
                    plane.iter().all(|v| (v - expected).abs() < 1e-5),
                    "{h}x{w} channel {c}: {} vs {expected}",
                    plane[0]
                );
            }
        }
    }

    #[test]
    fn frames_are_independent_of_batching() {
        let (h, w) = (90, 160);
        let data: Vec<u8> = (0..5 * h * w * 3)
            .map(|i| ((i * 7919) % 256) as u8)
            .collect();
        let batch = preprocess_frames(&data, 5, h, w).unwrap();
        let frame = h * w * 3;
        for i in 0..5 {
            let one = preprocess_image(&data[i * frame..(i + 1) * frame], h, w).unwrap();
            assert_eq!(&batch[i * one.len()..(i + 1) * one.len()], &one[..]);
        }
    }

    #[test]
    fn identity_size_is_a_plain_normalization() {
        let data: Vec<u8> = (0..224 * 224 * 3).map(|i| (i % 256) as u8).collect();
        let out = preprocess_image(&data, 224, 224).unwrap();
        for (i, &v) in data.iter().enumerate().step_by(997) {
            let (y, x, c) = (i / (224 * 3), (i / 3) % 224, i % 3);
            let expected = (f32::from(v) / 255.0 - MEAN[c]) / STD[c];
            assert!((out[c * 224 * 224 + y * 224 + x] - expected).abs() < 1e-5);
        }
    }

    #[test]
    fn bad_inputs_are_invalid_requests() {
        let data = vec![0u8; 10 * 10 * 3];
        for (count, h, w) in [
            (1, 10, 11),
            (2, 10, 10),
            (0, 10, 10),
            (1, 0, 10),
            (1, 10, 0),
        ] {
            let err = preprocess_frames(&data, count, h, w).unwrap_err();
            assert!(
                matches!(err, Error::InvalidRequest(_)),
                "{count} {h} {w}: {err}"
            );
        }
        assert!(matches!(
            preprocess_image(&[], 0, 0),
            Err(Error::InvalidRequest(_))
        ));
    }

    #[test]
    fn kernel_weights_sum_to_one() {
        for (inp, out) in [(640, 298), (100, 224), (1000, 224)] {
            let k = AxisKernel::new(inp, out, 0, out);
            for i in 0..out {
                let sum: i64 = k.taps(i).1.iter().map(|&w| i64::from(w)).sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= k.ksize as i64,
                    "{inp}->{out} @ {i}"
                );
            }
        }
    }
}
