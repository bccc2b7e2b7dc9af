//! The demo catalog's pictures: one generated picture per distinct demo image, so that
//! `url(size)` of the embedded default opens a real image. Each is drawn from its image ID
//! (the same ID and size give the same bytes), encoded as PNG (a picture of flat shapes is
//! small as PNG, and encoding it costs a fraction of JPEG's) and measured by the code that
//! measures uploads and fetched partner images ([`measure`]): the rows say what was measured.
//!
//! A picture is a colour gradient with a few large rectangles and discs in random colours, and
//! the image's ID written in its lower left corner. The large shapes make the coarse layout
//! (what the perceptual hash sees) differ from one picture to the next, so that curation does
//! not take two demo pictures for near-duplicates. Drawing copies whole rows (no per-pixel
//! arithmetic), which keeps it fast in a debug build, where `cargo run` draws them.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::domain::measure::{self, Format, MeasureLimits, Measured};
use crate::domain::media::upload_storage_key;

/// A drawn picture: its bytes, what measuring them found, and its content-addressed key (where
/// processing stores fetched bytes).
#[derive(Debug, Clone)]
pub struct Picture {
    pub bytes: Vec<u8>,
    pub measured: Measured,
    pub storage_key: String,
}

/// The picture of demo image `id`, `width` x `height` pixels, drawn with `random_seed`.
pub fn picture(random_seed: u64, id: i64, width: u32, height: u32) -> anyhow::Result<Picture> {
    let mut rng =
        SmallRng::seed_from_u64(random_seed ^ (id as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let drawn = draw(width, height, id, &mut rng);
    let bytes = measure::encode(&image::DynamicImage::ImageRgb8(drawn), Format::Png)?;
    let measured = measure::measure(&bytes, MeasureLimits::default())
        .map_err(|refusal| anyhow::anyhow!("demo picture {id}: {refusal}"))?;
    let storage_key = upload_storage_key(&measured.sha256, measured.format.extension());
    Ok(Picture {
        bytes,
        measured,
        storage_key,
    })
}

type Colour = [u8; 3];

/// An RGB canvas drawn by whole spans of rows.
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    /// Paints `x0..x1` of row `y` (clipped to the canvas) with `line`, a row of one colour.
    fn span(&mut self, y: usize, x0: usize, x1: usize, line: &[u8]) {
        let x1 = x1.min(self.width);
        if y >= self.height || x0 >= x1 {
            return;
        }
        let start = (y * self.width + x0) * 3;
        let len = (x1 - x0) * 3;
        self.pixels[start..start + len].copy_from_slice(&line[..len]);
    }

    /// A full row of `colour`, to paint spans with.
    fn line(&self, colour: Colour) -> Vec<u8> {
        colour.repeat(self.width)
    }

    fn rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, colour: Colour) {
        let line = self.line(colour);
        for y in y0..y1.min(self.height) {
            self.span(y, x0, x1, &line);
        }
    }

    fn disc(&mut self, cx: usize, cy: usize, r: usize, colour: Colour) {
        let line = self.line(colour);
        for y in cy.saturating_sub(r)..(cy + r).min(self.height) {
            let dy = y.abs_diff(cy) as f64;
            let dx = ((r * r) as f64 - dy * dy).max(0.0).sqrt() as usize;
            self.span(y, cx.saturating_sub(dx), cx + dx, &line);
        }
    }
}

fn draw(width: u32, height: u32, id: i64, rng: &mut SmallRng) -> image::RgbImage {
    let (w, h) = (width as usize, height as usize);
    let mut canvas = Canvas {
        width: w,
        height: h,
        pixels: vec![0; w * h * 3],
    };
    let (top, bottom) = (colour(rng), colour(rng));
    for y in 0..h {
        let t = y as f64 / h.max(1) as f64;
        let mixed = std::array::from_fn(|c| {
            (f64::from(top[c]) * (1.0 - t) + f64::from(bottom[c]) * t) as u8
        });
        let line = canvas.line(mixed);
        canvas.span(y, 0, w, &line);
    }
    for _ in 0..rng.random_range(5..9) {
        let (x, y) = (rng.random_range(0..w), rng.random_range(0..h));
        if rng.random_bool(0.5) {
            let (rw, rh) = (
                rng.random_range(w / 8..w / 2),
                rng.random_range(h / 8..h / 2),
            );
            canvas.rect(x, y, x + rw, y + rh, colour(rng));
        } else {
            canvas.disc(x, y, rng.random_range(h / 10..h / 3), colour(rng));
        }
    }
    label(&mut canvas, &id.to_string());
    image::RgbImage::from_raw(width, height, canvas.pixels)
        .unwrap_or_else(|| image::RgbImage::new(width, height))
}

fn colour(rng: &mut SmallRng) -> Colour {
    [
        rng.random_range(20..236),
        rng.random_range(20..236),
        rng.random_range(20..236),
    ]
}

/// The digits 0-9 in a 3x5 pixel font, one byte per row (the low 3 bits, left to right).
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// `text` (digits) in white on a dark box in the lower left corner.
fn label(canvas: &mut Canvas, text: &str) {
    let scale = (canvas.height / 40).max(2);
    let margin = scale * 2;
    let digits: Vec<usize> = text
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| usize::from(b - b'0'))
        .collect();
    let box_w = digits.len() * 4 * scale + scale;
    let box_h = 7 * scale;
    let y0 = canvas.height.saturating_sub(margin + box_h);
    canvas.rect(margin, y0, margin + box_w, y0 + box_h, [20, 20, 20]);
    for (i, digit) in digits.into_iter().enumerate() {
        let x = margin + scale + i * 4 * scale;
        for (row, bits) in DIGITS[digit].iter().enumerate() {
            for col in 0..3 {
                if bits & (0b100 >> col) != 0 {
                    let (px, py) = (x + col * scale, y0 + scale + row * scale);
                    canvas.rect(px, py, px + scale, py + scale, [245, 245, 245]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::measure::{NEAR_DUPLICATE_DISTANCE, hash_distance};

    #[test]
    fn a_picture_is_a_measured_jpeg_of_its_size_and_the_same_arguments_draw_the_same_bytes() {
        let a = picture(7, 12, 516, 344).unwrap();
        assert_eq!(
            (a.measured.format, a.measured.width, a.measured.height),
            (Format::Png, 516, 344)
        );
        assert_eq!(
            a.storage_key,
            format!("u/{}/{}.png", &a.measured.sha256[..2], a.measured.sha256)
        );
        assert_eq!(picture(7, 12, 516, 344).unwrap().bytes, a.bytes);
        assert_ne!(picture(8, 12, 516, 344).unwrap().bytes, a.bytes);
    }

    /// Curation leaves near-duplicates out of a gallery: the demo's pictures must not be.
    #[test]
    fn demo_pictures_are_not_near_duplicates_of_each_other() {
        let hashes: Vec<(i64, u64)> = (1..=40)
            .map(|id| {
                let (w, h) = if id % 3 == 0 { (344, 516) } else { (516, 344) };
                (id, picture(7, id, w, h).unwrap().measured.perceptual_hash)
            })
            .collect();
        for (i, (a, hash_a)) in hashes.iter().enumerate() {
            for (b, hash_b) in &hashes[i + 1..] {
                let distance = hash_distance(*hash_a, *hash_b);
                assert!(
                    distance > NEAR_DUPLICATE_DISTANCE,
                    "pictures {a} and {b} differ in {distance} bits"
                );
            }
        }
    }
}
