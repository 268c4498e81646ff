//! A 3x5 pixel font for timestamps (digits, `:` and `.`), drawn scaled onto RGB images, so labels
//! need no font files.

use image::{Rgb, RgbImage};

/// Glyph rows, top to bottom; the low 3 bits of each row are its pixels, left to right.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b001, 0b001, 0b001],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        ':' => [0b000, 0b010, 0b000, 0b010, 0b000],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        _ => return None,
    })
}

/// Glyph width and height in font pixels, and the gap between glyphs.
const GLYPH_W: u32 = 3;
const GLYPH_H: u32 = 5;
const SPACING: u32 = 1;

/// The size in image pixels of `text` drawn at `scale`.
pub fn text_size(text: &str, scale: u32) -> (u32, u32) {
    let n = text.chars().count() as u32;
    let w = if n == 0 {
        0
    } else {
        n * (GLYPH_W + SPACING) - SPACING
    };
    (w * scale, GLYPH_H * scale)
}

/// Draws `text` with its top-left corner at `(x, y)`, each font pixel a `scale` x `scale`
/// square; characters without a glyph leave a blank, pixels off the image are clipped.
pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32, color: Rgb<u8>) {
    for (i, c) in text.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        let gx = x + i as u32 * (GLYPH_W + SPACING) * scale;
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..GLYPH_W {
                if bits & (1 << (GLYPH_W - 1 - col)) == 0 {
                    continue;
                }
                fill_rect(
                    img,
                    gx + col * scale,
                    y + row as u32 * scale,
                    scale,
                    scale,
                    color,
                );
            }
        }
    }
}

/// Fills a rectangle, clipped to the image.
pub fn fill_rect(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, color: Rgb<u8>) {
    let (iw, ih) = img.dimensions();
    for py in y..(y + h).min(ih) {
        for px in x..(x + w).min(iw) {
            img.put_pixel(px, py, color);
        }
    }
}

/// `M:SS.s`, or `H:MM:SS.s` from an hour on.
pub fn format_timestamp(seconds: f64) -> String {
    let tenths = (seconds.max(0.0) * 10.0).round() as u64;
    let (h, rest) = (tenths / 36_000, tenths % 36_000);
    let (m, rest) = (rest / 600, rest % 600);
    let (s, t) = (rest / 10, rest % 10);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}.{t}")
    } else {
        format!("{m}:{s:02}.{t}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_clock_times() {
        assert_eq!(format_timestamp(0.0), "0:00.0");
        assert_eq!(format_timestamp(3.54), "0:03.5");
        assert_eq!(format_timestamp(61.96), "1:02.0");
        assert_eq!(format_timestamp(3725.25), "1:02:05.3");
    }

    #[test]
    fn digits_draw_their_pixels_at_scale() {
        let mut img = RgbImage::new(20, 12);
        let white = Rgb([255, 255, 255]);
        draw_text(&mut img, 1, 1, "1", 2, white);
        // The '1' glyph's top row is 010: only the middle column is lit.
        assert_eq!(*img.get_pixel(1 + 2, 1), white);
        assert_eq!(*img.get_pixel(1, 1), Rgb([0, 0, 0]));
        // Its bottom row is 111.
        assert_eq!(*img.get_pixel(1, 1 + 4 * 2), white);
        assert_eq!(text_size("0:00.0", 2), ((6 * 4 - 1) * 2, 10));
    }
}
