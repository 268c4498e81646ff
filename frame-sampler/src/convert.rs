//! Decoded frame -> RGB8 in the output batch: colour conversion and resize in one swscale pass,
//! then rotation on the RGB buffer.

use ffmpeg_next as ffmpeg;
use ffmpeg_next::ffi;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling;
use ffmpeg_next::util::frame::video::Video as VideoFrame;

use crate::plan::OutputSize;

/// Converts frames of any decoded format and size to RGB24 of one fixed output size.
pub(crate) struct RgbConverter {
    size: OutputSize,
    rotation: u32,
    /// The scaler and the source geometry it was built for (a stream may change size mid-way).
    scaler: Option<(ScalerKey, scaling::Context)>,
    scaled: VideoFrame,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct ScalerKey {
    format: Pixel,
    width: u32,
    height: u32,
    colorspace: i32,
    range: i32,
}

impl RgbConverter {
    /// `rotation` is the clockwise rotation to apply after scaling (0 when not rotating).
    pub fn new(size: OutputSize, rotation: u32) -> Self {
        RgbConverter {
            size,
            rotation,
            scaler: None,
            scaled: VideoFrame::new(Pixel::RGB24, size.scaled_width, size.scaled_height),
        }
    }

    /// Bytes of one output frame.
    pub fn frame_bytes(&self) -> usize {
        self.size.width as usize * self.size.height as usize * 3
    }

    /// Writes `frame` as RGB8 into `dst` (exactly [`Self::frame_bytes`] long).
    pub fn write(&mut self, frame: &VideoFrame, dst: &mut [u8]) -> Result<(), ffmpeg::Error> {
        debug_assert_eq!(dst.len(), self.frame_bytes());
        // SAFETY: reading two plain enum fields of a valid, decoded AVFrame.
        let (colorspace, range) = unsafe {
            let f = frame.as_ptr();
            ((*f).colorspace as i32, (*f).color_range as i32)
        };
        let key = ScalerKey {
            format: frame.format(),
            width: frame.width(),
            height: frame.height(),
            colorspace,
            range,
        };
        if self.scaler.as_ref().map(|(k, _)| *k != key).unwrap_or(true) {
            let mut ctx = scaling::Context::get(
                key.format,
                key.width,
                key.height,
                Pixel::RGB24,
                self.size.scaled_width,
                self.size.scaled_height,
                scaling::Flags::BICUBIC,
            )?;
            set_colorspace(&mut ctx, colorspace, range);
            self.scaler = Some((key, ctx));
        }
        let (_, ctx) = self.scaler.as_mut().expect("scaler set above");
        ctx.run(frame, &mut self.scaled)?;
        let (w, h) = (
            self.size.scaled_width as usize,
            self.size.scaled_height as usize,
        );
        let stride = self.scaled.stride(0);
        let src = self.scaled.data(0);
        match self.rotation {
            90 => rotate(src, stride, w, h, dst, |x, y| (h - 1 - y, x), h),
            180 => rotate(src, stride, w, h, dst, |x, y| (w - 1 - x, h - 1 - y), w),
            270 => rotate(src, stride, w, h, dst, |x, y| (y, w - 1 - x), h),
            _ => {
                for y in 0..h {
                    dst[y * w * 3..(y + 1) * w * 3]
                        .copy_from_slice(&src[y * stride..y * stride + w * 3]);
                }
            }
        }
        Ok(())
    }
}

/// Copies each source pixel (x, y) to `map(x, y)` in a destination `dst_width` pixels wide.
fn rotate(
    src: &[u8],
    stride: usize,
    w: usize,
    h: usize,
    dst: &mut [u8],
    map: impl Fn(usize, usize) -> (usize, usize),
    dst_width: usize,
) {
    for y in 0..h {
        let row = &src[y * stride..y * stride + w * 3];
        for x in 0..w {
            let (dx, dy) = map(x, y);
            let d = (dy * dst_width + dx) * 3;
            dst[d..d + 3].copy_from_slice(&row[x * 3..x * 3 + 3]);
        }
    }
}

/// Sets the YUV->RGB matrix and input range as FFmpeg's `scale` filter does by default
/// (`in_color_matrix=auto`): the frame's tagged colorspace (BT.601 when untagged or unknown) and
/// its tagged range (the pixel format's own when untagged), so the RGB matches `ffmpeg -pix_fmt rgb24`.
fn set_colorspace(ctx: &mut scaling::Context, colorspace: i32, range: i32) {
    // Values swscale has coefficient tables for; others mean BT.601 (SWS_CS_DEFAULT).
    let cs = if (1..=10).contains(&colorspace) && colorspace != 8 {
        colorspace
    } else {
        ffi::SWS_CS_DEFAULT
    };
    // SAFETY: `ctx` wraps a valid, initialized SwsContext. sws_getColorspaceDetails writes to the
    // out-pointers we pass (all valid locals); sws_getCoefficients returns a pointer to a static
    // table; sws_setColorspaceDetails copies the tables it is given.
    unsafe {
        let sws = ctx.as_mut_ptr();
        let mut inv_table: *mut i32 = std::ptr::null_mut();
        let mut table: *mut i32 = std::ptr::null_mut();
        let (mut src_range, mut dst_range, mut brightness, mut contrast, mut saturation) =
            (0, 0, 0, 0, 0);
        if ffi::sws_getColorspaceDetails(
            sws,
            &mut inv_table,
            &mut src_range,
            &mut table,
            &mut dst_range,
            &mut brightness,
            &mut contrast,
            &mut saturation,
        ) < 0
        {
            // RGB input or another case swscale has no YUV details for: nothing to set.
            return;
        }
        let coefficients = ffi::sws_getCoefficients(cs);
        if range == ffi::AVColorRange::AVCOL_RANGE_JPEG as i32 {
            src_range = 1;
        } else if range == ffi::AVColorRange::AVCOL_RANGE_MPEG as i32 {
            src_range = 0;
        }
        ffi::sws_setColorspaceDetails(
            sws,
            coefficients,
            src_range,
            coefficients,
            dst_range,
            brightness,
            contrast,
            saturation,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_move_pixels_where_a_viewer_expects() {
        // 3x2 image, pixel value = 10*y + x in every channel.
        let (w, h) = (3usize, 2usize);
        let src: Vec<u8> = (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| [(10 * y + x) as u8; 3]))
            .collect();
        let px = |buf: &[u8], width: usize, x: usize, y: usize| buf[(y * width + x) * 3];
        let mut dst = vec![0; w * h * 3];
        // 90 clockwise: the bottom-left source pixel becomes the top-left one.
        rotate(&src, w * 3, w, h, &mut dst, |x, y| (h - 1 - y, x), h);
        assert_eq!(px(&dst, h, 0, 0), 10);
        assert_eq!(px(&dst, h, 1, 0), 0);
        assert_eq!(px(&dst, h, 0, 2), 12);
        rotate(
            &src,
            w * 3,
            w,
            h,
            &mut dst,
            |x, y| (w - 1 - x, h - 1 - y),
            w,
        );
        assert_eq!(px(&dst, w, 0, 0), 12);
        // 270 clockwise: the top-right source pixel becomes the top-left one.
        rotate(&src, w * 3, w, h, &mut dst, |x, y| (y, w - 1 - x), h);
        assert_eq!(px(&dst, h, 0, 0), 2);
        assert_eq!(px(&dst, h, 1, 2), 10);
    }
}
