//! The CDN's sizes of a stored picture (pure: bytes in, bytes out): what the embedded
//! default's `/media` route serves in place of the CDN or image server of a production setup.
//! A [`ImageSize::Thumbnail`] is a square crop of its side; the other sizes bound the width,
//! keeping the proportions and never enlarging. The picture is decoded within the measuring
//! limits ([`measure::decode`]) and encoded again in its own format.

use image::imageops::FilterType;

use super::measure::{self, Format, MeasureLimits, Refusal};
use super::media::{ImageSize, SizeTable};

/// The picture at the size asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Resized {
    /// The stored bytes are that size already (an original, or narrower than the bound).
    Unchanged(Format),
    /// New bytes in the stored picture's format.
    Encoded(Format, Vec<u8>),
}

/// `bytes` at `size` of `sizes`.
pub fn resize(
    bytes: &[u8],
    size: ImageSize,
    sizes: &SizeTable,
    limits: MeasureLimits,
) -> Result<Resized, Refusal> {
    let Some(px) = sizes.pixels(size).map(|px| px.max(1)) else {
        // The original is served as stored: only its format is read.
        return Ok(Resized::Unchanged(measure::sniff(bytes)?));
    };
    let (format, width, height) = measure::header(bytes)?;
    let (new_width, new_height) = match size {
        ImageSize::Thumbnail => (px, px),
        _ => bounded_width(width, height, px),
    };
    if (new_width, new_height) == (width, height) {
        return Ok(Resized::Unchanged(format));
    }
    let (format, decoded) = measure::decode(bytes, limits)?;
    let resized = match size {
        ImageSize::Thumbnail => decoded.resize_to_fill(px, px, FilterType::Triangle),
        _ => decoded.resize_exact(new_width, new_height, FilterType::Triangle),
    };
    drop(decoded);
    let encoded = measure::encode(&resized, format).map_err(|error| Refusal {
        reason: measure::Reason::DecodeError,
        message: format!("cannot encode the resized picture: {error}"),
    })?;
    Ok(Resized::Encoded(format, encoded))
}

/// `width` x `height` brought to at most `max_width` wide, in proportion (at least 1 px high).
fn bounded_width(width: u32, height: u32, max_width: u32) -> (u32, u32) {
    if width <= max_width {
        return (width, height);
    }
    let scaled = (u64::from(height) * u64::from(max_width)).div_ceil(u64::from(width).max(1));
    (max_width, u32::try_from(scaled).unwrap_or(u32::MAX).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::measure::samples::{encode, scene};

    fn sizes() -> SizeTable {
        SizeTable::default()
    }

    fn dimensions(resized: &Resized, original: &[u8]) -> (Format, u32, u32) {
        let bytes = match resized {
            Resized::Unchanged(_) => original,
            Resized::Encoded(_, bytes) => bytes,
        };
        let measured = measure::measure(bytes, MeasureLimits::default()).unwrap();
        (measured.format, measured.width, measured.height)
    }

    #[test]
    fn each_size_is_a_square_crop_or_a_bounded_width_in_the_stored_format() {
        let jpeg = encode(&scene(800, 500, 1), image::ImageFormat::Jpeg);
        let png = encode(&scene(300, 500, 2), image::ImageFormat::Png);
        let cases = [
            (&jpeg, ImageSize::Thumbnail, (Format::Jpeg, 160, 160), false),
            (&jpeg, ImageSize::Small, (Format::Jpeg, 320, 200), false),
            (&jpeg, ImageSize::Medium, (Format::Jpeg, 640, 400), false),
            // Never enlarged: narrower than the bound is the stored picture.
            (&jpeg, ImageSize::Large, (Format::Jpeg, 800, 500), true),
            (&jpeg, ImageSize::Original, (Format::Jpeg, 800, 500), true),
            (&png, ImageSize::Thumbnail, (Format::Png, 160, 160), false),
            (&png, ImageSize::Small, (Format::Png, 300, 500), true),
        ];
        for (bytes, size, want, unchanged) in cases {
            let resized = resize(bytes, size, &sizes(), MeasureLimits::default()).unwrap();
            assert_eq!(dimensions(&resized, bytes), want, "{size:?}");
            assert_eq!(
                matches!(resized, Resized::Unchanged(_)),
                unchanged,
                "{size:?}"
            );
        }
    }

    #[test]
    fn what_is_not_a_picture_within_the_limits_is_refused() {
        let limits = MeasureLimits::default();
        let bomb = crate::domain::upload::samples::png_header(100_000, 100_000);
        let not_an_image = b"<html></html>".to_vec();
        for bytes in [bomb, not_an_image] {
            assert!(resize(&bytes, ImageSize::Thumbnail, &sizes(), limits).is_err());
        }
    }

    #[test]
    fn bounded_widths_keep_the_proportions() {
        assert_eq!(bounded_width(1600, 1067, 320), (320, 214));
        assert_eq!(bounded_width(1067, 1600, 320), (320, 480));
        assert_eq!(bounded_width(5000, 1, 320), (320, 1));
        assert_eq!(bounded_width(200, 150, 320), (200, 150));
    }
}
