//! The CLIP image processor on RGB8 frames: shortest side to 224 (bicubic, PIL's resampling),
//! center crop 224, rescale 1/255, normalize with CLIP's mean and std, channels first.

use crate::Result;

/// Output side length.
pub const IMAGE_SIZE: usize = 224;
/// CLIP's normalization mean.
pub const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's normalization std.
pub const STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Preprocesses `count` RGB8 frames of `height x width` into `count x 3 x 224 x 224` floats.
pub fn preprocess_frames(data: &[u8], count: usize, height: usize, width: usize) -> Result<Vec<f32>> {
    let _ = (data, count, height, width);
    todo!()
}

/// Preprocesses one RGB8 image of `height x width` into `3 x 224 x 224` floats.
pub fn preprocess_image(data: &[u8], height: usize, width: usize) -> Result<Vec<f32>> {
    preprocess_frames(data, 1, height, width)
}
