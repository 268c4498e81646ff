//! Laying frames out in a grid with their timestamps: the `storyboard` image.

use frame_sampler::{ImageFormat, ThumbnailOptions, Video};
use image::{Rgb, RgbImage};

use crate::bitmap_font::{draw_text, fill_rect, format_timestamp, text_size};

const GAP: u32 = 4;
const BACKGROUND: Rgb<u8> = Rgb([24, 24, 24]);
const LABEL_BACKGROUND: Rgb<u8> = Rgb([0, 0, 0]);
const LABEL_TEXT: Rgb<u8> = Rgb([255, 255, 255]);

/// Longest side of each frame in a storyboard.
pub const TILE_SIZE: u32 = 320;

/// The storyboard of `video`: its `n` most representative frames (frame-sampler's pick) in a
/// grid, each labelled with its time, and how many frames it shows. `Err` is the frame-sampler
/// error, or an internal message.
pub fn storyboard(video: &mut Video, n: usize) -> Result<(RgbImage, usize), StoryboardError> {
    // PNG tiles: the sheet is encoded once, at the end, not twice.
    let options = ThumbnailOptions {
        max_size: TILE_SIZE,
        format: ImageFormat::Png,
        ..ThumbnailOptions::default()
    };
    let thumbs = video
        .storyboard(n, &options)
        .map_err(StoryboardError::Video)?;
    let mut tiles = Vec::with_capacity(thumbs.len());
    for thumb in &thumbs {
        let tile = image::load_from_memory(&thumb.data)
            .map_err(|e| StoryboardError::Tile(format!("decoding a storyboard frame: {e}")))?
            .to_rgb8();
        tiles.push((tile, thumb.timestamp));
    }
    Ok((compose(&tiles), tiles.len()))
}

/// Why a storyboard could not be made.
#[derive(Debug)]
pub enum StoryboardError {
    /// Sampling the frames failed.
    Video(frame_sampler::Error),
    /// A frame could not be read back (a bug).
    Tile(String),
}

/// The grid's column count for `n` frames: as square as possible.
pub fn columns(n: usize) -> usize {
    let mut c = 1;
    while c * c < n {
        c += 1;
    }
    c
}

/// One image: `frames` (each with its time in seconds) left to right, top to bottom, in cells as
/// large as the largest frame, each labelled with its timestamp in its bottom-left corner.
pub fn compose(frames: &[(RgbImage, f64)]) -> RgbImage {
    let cols = columns(frames.len()).max(1) as u32;
    let rows = (frames.len() as u32).div_ceil(cols).max(1);
    let cell_w = frames.iter().map(|(f, _)| f.width()).max().unwrap_or(1);
    let cell_h = frames.iter().map(|(f, _)| f.height()).max().unwrap_or(1);
    let mut sheet = RgbImage::from_pixel(
        GAP + cols * (cell_w + GAP),
        GAP + rows * (cell_h + GAP),
        BACKGROUND,
    );
    for (i, (frame, timestamp)) in frames.iter().enumerate() {
        let (col, row) = (i as u32 % cols, i as u32 / cols);
        let x = GAP + col * (cell_w + GAP) + (cell_w - frame.width()) / 2;
        let y = GAP + row * (cell_h + GAP) + (cell_h - frame.height()) / 2;
        image::imageops::replace(&mut sheet, frame, x as i64, y as i64);

        // Labels stay legible on large frames and fit on small ones.
        let scale = (frame.height() / 60).clamp(1, 6);
        let label = format_timestamp(*timestamp);
        let (tw, th) = text_size(&label, scale);
        let pad = scale * 2;
        let box_y = (y + frame.height()).saturating_sub(th + 2 * pad);
        fill_rect(
            &mut sheet,
            x,
            box_y,
            tw + 2 * pad,
            th + 2 * pad,
            LABEL_BACKGROUND,
        );
        draw_text(&mut sheet, x + pad, box_y + pad, &label, scale, LABEL_TEXT);
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_fill_a_square_grid_with_labels() {
        assert_eq!(
            (columns(1), columns(4), columns(5), columns(9), columns(10)),
            (1, 2, 3, 3, 4)
        );
        let red = RgbImage::from_pixel(120, 60, Rgb([200, 0, 0]));
        let frames: Vec<_> = (0..5).map(|i| (red.clone(), i as f64)).collect();
        let sheet = compose(&frames);
        assert_eq!(
            sheet.dimensions(),
            (GAP + 3 * (120 + GAP), GAP + 2 * (60 + GAP))
        );
        // A frame's interior is the frame; the sixth cell is background.
        assert_eq!(*sheet.get_pixel(GAP + 60, GAP + 10), Rgb([200, 0, 0]));
        assert_eq!(
            *sheet.get_pixel(GAP + 2 * (120 + GAP) + 60, GAP + 60 + GAP + 30),
            BACKGROUND
        );
        // The label box sits in the bottom-left corner of each frame.
        assert_eq!(*sheet.get_pixel(GAP, GAP + 59), LABEL_BACKGROUND);
    }
}
