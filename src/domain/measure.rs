//! Measuring an image from its bytes: what it is (format by magic bytes), how large it is
//! (dimensions from the header, checked against a pixel limit *before* anything is decoded),
//! whether it decodes, and what it looks like: SHA-256 of the bytes, a 64-bit perceptual hash
//! and a measured quality score in 0..1. Uploads are measured at once; fetched partner images
//! will be measured the same way.
//!
//! Pure: bytes in, [`Measured`] or a [`Reason`] out. It is CPU work (a 1600x1067 JPEG takes
//! tens of milliseconds): async callers run it on a blocking thread.
//!
//! # How
//!
//! 1. The format is read from the magic bytes (never from a file name or a content type):
//!    JPEG, PNG and WebP are measured. AVIF is recognised and refused as
//!    [`Reason::UnsupportedFormat`]: decoding it needs a C decoder (dav1d) this build does not
//!    carry; GIF, BMP, TIFF and HEIC likewise. Anything else (SVG, HTML, text) is
//!    [`Reason::NotAnImage`].
//! 2. The header alone gives the dimensions (read by `imagesize`, which needs nothing
//!    past the header); more than [`MeasureLimits::max_pixels`] pixels or
//!    a side over [`MeasureLimits::max_side`] is [`Reason::TooManyPixels`] before a single
//!    pixel is decoded (a 30-byte file may claim 100000x100000).
//! 3. The image is decoded once, with the decoder's own limits set to the same bounds (and an
//!    allocation cap), so a header that lies cannot make it allocate more. A file that does
//!    not decode (truncated, corrupt), or a PNG with bytes after its end (a PNG+HTML
//!    polyglot), is [`Reason::DecodeError`].
//! 4. It is shrunk once, in one pass, to a grayscale image of at most [`ANALYSIS_SIDE`] pixels
//!    on its long side (block means); the perceptual hash and the statistics of the quality
//!    score are both computed on that.
//!
//! # Perceptual hash
//!
//! `image_hasher`'s median hash with DCT preprocessing, 8x8 bits: pHash (the analysis image
//! shrunk to 16x16, its 2-D DCT, each of the 8x8 lowest frequencies compared with their
//! median, so half the bits are set; with the mean instead, the DC term dominates and nearly
//! every bit is 0). Stored
//! as the 64 bits of a `u64`. Two images whose hashes differ in at most
//! [`NEAR_DUPLICATE_DISTANCE`] (8) bits are near-duplicates (the same picture resized,
//! re-encoded or lightly edited); unrelated photos differ in about 32. Curation uses it as its
//! default (`Rules::phash_max_distance`).
//!
//! # Quality score
//!
//! A weighted mean of three statistics, each in 0..1 (see [`QualityParts`]):
//!
//! ```text
//! quality    = 0.30 * resolution + 0.40 * sharpness + 0.30 * exposure
//! resolution = clamp(log2(short side / 300) / log2(1080 / 300), 0, 1)
//!              (300 px, curation's minimum, is 0; 1080 px, full HD, and beyond is 1)
//! sharpness  = v / (v + 200), v = variance of the 4-neighbour Laplacian of the analysis image
//!              (gray levels 0..255; a blurred photo has v well under 100, a crisp one
//!              several hundred to thousands)
//! exposure   = (1 - min(1, 2 * clipped)) * (1 - ((mean - 0.5) / 0.5)^2)
//!              clipped = share of pixels at gray level <= 5 or >= 250, mean = mean gray / 255
//!              (half the picture blown out or crushed is 0; a mean at mid-gray is best)
//! ```
//!
//! Sharpness weighs most: it tells a usable photo from a blurred one best. A model's score
//! (from `classifyImages`) wins over this one where there is one.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use image_hasher::{HashAlg, HasherConfig};
use sha2::{Digest, Sha256};

/// Long side of the image the hash and the statistics are computed on.
pub const ANALYSIS_SIDE: u32 = 512;

/// Hamming distance (of 64 bits) up to which two perceptual hashes are near-duplicates:
/// curation's default. A picture halved and re-encoded as JPEG measured 4; unrelated pictures
/// differ in about 32 bits (34 and 44 in the tests), so 8 leaves room on both sides.
pub const NEAR_DUPLICATE_DISTANCE: u32 = 8;

/// Why an image could not be taken: stable codes, shared by measuring (here) and fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The server answered with a status other than 2xx.
    HttpStatus,
    /// Connecting or reading took too long.
    Timeout,
    /// More bytes than allowed.
    TooLarge,
    /// The bytes are no image (SVG, HTML, text, ...).
    NotAnImage,
    /// An image format that is not served (AVIF, GIF, HEIC, ...).
    UnsupportedFormat,
    /// The bytes claim a served format but do not decode (truncated, corrupt, polyglot).
    DecodeError,
    /// The header claims more pixels than allowed (a decompression bomb).
    TooManyPixels,
    /// The host resolves to an address that is not public (loopback, private, metadata, ...).
    BlockedAddress,
    /// More redirects than allowed.
    TooManyRedirects,
    /// The host could not be reached: no DNS answer, connection refused or reset.
    NetworkError,
    /// The bytes are those of a picture taken down (`purgeImage`): never stored again.
    Purged,
    /// The stored object an import named as the image's bytes does not exist.
    ObjectMissing,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::HttpStatus,
        Reason::Timeout,
        Reason::TooLarge,
        Reason::NotAnImage,
        Reason::UnsupportedFormat,
        Reason::DecodeError,
        Reason::TooManyPixels,
        Reason::BlockedAddress,
        Reason::TooManyRedirects,
        Reason::NetworkError,
        Reason::Purged,
        Reason::ObjectMissing,
    ];

    /// The stable code, as stored and reported.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HttpStatus => "HTTP_STATUS",
            Reason::Timeout => "TIMEOUT",
            Reason::TooLarge => "TOO_LARGE",
            Reason::NotAnImage => "NOT_AN_IMAGE",
            Reason::UnsupportedFormat => "UNSUPPORTED_FORMAT",
            Reason::DecodeError => "DECODE_ERROR",
            Reason::TooManyPixels => "TOO_MANY_PIXELS",
            Reason::BlockedAddress => "BLOCKED_ADDRESS",
            Reason::TooManyRedirects => "TOO_MANY_REDIRECTS",
            Reason::NetworkError => "NETWORK_ERROR",
            Reason::Purged => "PURGED",
            Reason::ObjectMissing => "OBJECT_MISSING",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Reason {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Reason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == s)
            .ok_or(())
    }
}

/// A refused image: the stable reason and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
}

impl Refusal {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The formats that are measured (and served).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
        }
    }

    fn decoder_format(self) -> ImageFormat {
        match self {
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Png => ImageFormat::Png,
            Format::Webp => ImageFormat::WebP,
        }
    }
}

/// Bounds on what is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeasureLimits {
    /// Most pixels (width x height) an image may have.
    pub max_pixels: u64,
    /// Longest side, in pixels.
    pub max_side: u32,
}

impl Default for MeasureLimits {
    /// 50 megapixels (a full-frame camera's picture) and 20,000 px a side.
    fn default() -> Self {
        Self {
            max_pixels: 50_000_000,
            max_side: 20_000,
        }
    }
}

/// What measuring found.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub format: Format,
    pub width: u32,
    pub height: u32,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    /// The 64-bit perceptual hash (see the module doc).
    pub perceptual_hash: u64,
    /// The measured quality score in 0..1 and its parts.
    pub quality: QualityParts,
}

/// The statistics of the quality score, each in 0..1, and the score they make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityParts {
    pub resolution: f64,
    pub sharpness: f64,
    pub exposure: f64,
    pub score: f64,
}

/// The number of bits in which two perceptual hashes differ.
pub fn hash_distance(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// The format `bytes` are in, by their magic bytes.
pub fn sniff(bytes: &[u8]) -> Result<Format, Refusal> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    let at = |offset: usize, magic: &[u8]| bytes.get(offset..offset + magic.len()) == Some(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Format::Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    if starts(b"RIFF") && at(8, b"WEBP") {
        return Ok(Format::Webp);
    }
    // ISO base media files name their brand after `ftyp`: AVIF and HEIC.
    let unsupported = if at(4, b"ftyp") {
        let brand = bytes.get(8..12).unwrap_or_default();
        match brand {
            b"avif" | b"avis" => {
                Some("AVIF (decoding it needs a C decoder this build does not carry)")
            }
            b"heic" | b"heix" | b"mif1" | b"msf1" => Some("HEIC"),
            _ => None,
        }
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some("GIF")
    } else if starts(b"BM") && bytes.len() > 14 {
        Some("BMP")
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Some("TIFF")
    } else {
        None
    };
    Err(match unsupported {
        Some(name) => Refusal::new(
            Reason::UnsupportedFormat,
            format!("{name} is not accepted: only JPEG, PNG and WebP images are"),
        ),
        None => Refusal::new(
            Reason::NotAnImage,
            "not an image: only JPEG, PNG and WebP images are accepted",
        ),
    })
}

/// Measures `bytes` (see the module doc).
pub fn measure(bytes: &[u8], limits: MeasureLimits) -> Result<Measured, Refusal> {
    let (format, decoded) = decode(bytes, limits)?;
    let (width, height) = (decoded.width(), decoded.height());
    let analysis = analysis_image(&decoded);
    drop(decoded);
    Ok(Measured {
        format,
        width,
        height,
        sha256: hex::encode(Sha256::digest(bytes)),
        perceptual_hash: perceptual_hash(&analysis),
        quality: quality(width, height, &analysis),
    })
}

/// The format and the dimensions the header claims (steps 1 and 2 of the module doc), without
/// decoding anything.
pub fn header(bytes: &[u8]) -> Result<(Format, u32, u32), Refusal> {
    let format = sniff(bytes)?;
    let (width, height) = header_dimensions(bytes)?;
    Ok((format, width, height))
}

/// The picture in `bytes`, decoded within `limits` (steps 1 to 3 of the module doc): what
/// measuring and resizing start from.
pub fn decode(bytes: &[u8], limits: MeasureLimits) -> Result<(Format, DynamicImage), Refusal> {
    let (format, width, height) = header(bytes)?;
    check_size(width, height, limits)?;
    check_end(bytes, format)?;
    let mut reader = reader(bytes, format);
    reader.limits(decoder_limits(limits));
    let decoded = reader.decode().map_err(|_| undecodable())?;
    if (decoded.width(), decoded.height()) != (width, height) {
        return Err(undecodable());
    }
    Ok((format, decoded))
}

/// `image` encoded as `format` (JPEG at the encoder's default quality, WebP lossless: the
/// encoders this build has). Fails only for a pixel type the format cannot hold (JPEG has no
/// alpha channel nor 16 bits).
pub fn encode(image: &DynamicImage, format: Format) -> Result<Vec<u8>, image::ImageError> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format.decoder_format())?;
    Ok(bytes.into_inner())
}

/// The dimensions the header claims, read from the header alone (`imagesize` parses the few
/// bytes that carry them; the decoders' own `into_dimensions` wants the PNG data to begin, so
/// a bare forged header would be a decode error rather than a pixel-limit refusal).
fn header_dimensions(bytes: &[u8]) -> Result<(u32, u32), Refusal> {
    let size = imagesize::blob_size(bytes).map_err(|_| undecodable())?;
    match (u32::try_from(size.width), u32::try_from(size.height)) {
        (Ok(width), Ok(height)) => Ok((width, height)),
        _ => Err(undecodable()),
    }
}

fn reader(bytes: &[u8], format: Format) -> ImageReader<Cursor<&[u8]>> {
    ImageReader::with_format(Cursor::new(bytes), format.decoder_format())
}

fn undecodable() -> Refusal {
    Refusal::new(
        Reason::DecodeError,
        "the image does not decode (truncated or corrupt)",
    )
}

/// Dimensions in range: at least 1x1, each side and the pixel count within the limits.
fn check_size(width: u32, height: u32, limits: MeasureLimits) -> Result<(), Refusal> {
    if width == 0 || height == 0 {
        return Err(undecodable());
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels || width.max(height) > limits.max_side {
        return Err(Refusal::new(
            Reason::TooManyPixels,
            format!(
                "the image claims {width}x{height} pixels; at most {} pixels and {} a side are accepted",
                limits.max_pixels, limits.max_side
            ),
        ));
    }
    Ok(())
}

/// The decoder's own bounds: the same sides, and an allocation cap of 4 bytes per allowed
/// pixel (RGBA) plus room for the decoder's working buffers.
fn decoder_limits(limits: MeasureLimits) -> Limits {
    let mut decoder = Limits::default();
    decoder.max_image_width = Some(limits.max_side);
    decoder.max_image_height = Some(limits.max_side);
    decoder.max_alloc = Some(limits.max_pixels.saturating_mul(4) + (64 << 20));
    decoder
}

/// The file must be whole: the JPEG decoder fills a truncated picture with gray rather than
/// fail, so the end is checked by its marker.
///
/// - PNG: the last chunk is `IEND` and nothing follows it (bytes after it are how a PNG+HTML
///   polyglot is made).
/// - JPEG: an end-of-image marker (`FF D9`) follows the start of the image data (the first
///   `FF DA`; the entropy-coded data cannot contain `FF D9`, and an EXIF thumbnail's end comes
///   before it). Data after that end is allowed: cameras and phones append their own.
/// - WebP: its decoder refuses a truncated file itself.
fn check_end(bytes: &[u8], format: Format) -> Result<(), Refusal> {
    let whole = match format {
        Format::Png => {
            bytes.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82])
        }
        Format::Jpeg => {
            let marker = |m: [u8; 2]| move |w: &[u8]| w == m;
            let scan = bytes.windows(2).position(marker([0xFF, 0xDA]));
            let end = bytes.windows(2).rposition(marker([0xFF, 0xD9]));
            matches!((scan, end), (Some(scan), Some(end)) if end > scan)
        }
        Format::Webp => true,
    };
    if whole {
        Ok(())
    } else {
        Err(Refusal::new(
            Reason::DecodeError,
            format!(
                "the {} file is truncated, or has data after its end",
                format.extension().to_uppercase()
            ),
        ))
    }
}

/// The image in gray (Rec. 709 weights), shrunk (never enlarged) by the smallest whole
/// factor that brings its long side to at most [`ANALYSIS_SIDE`], each pixel the mean of its
/// block: one pass over the decoded pixels. (The library's `thumbnail` and `to_luma8` took
/// 28 and 18 ms on a 1600x1067 picture, against 10 ms for decoding it.)
fn analysis_image(decoded: &DynamicImage) -> image::GrayImage {
    let factor = decoded
        .width()
        .max(decoded.height())
        .div_ceil(ANALYSIS_SIDE)
        .max(1);
    let (width, height) = (decoded.width(), decoded.height());
    match decoded {
        DynamicImage::ImageRgb8(rgb) => shrink_to_gray::<3>(rgb.as_raw(), width, height, factor),
        DynamicImage::ImageRgba8(rgba) => shrink_to_gray::<4>(rgba.as_raw(), width, height, factor),
        DynamicImage::ImageLuma8(gray) => shrink_to_gray::<1>(gray.as_raw(), width, height, factor),
        DynamicImage::ImageLumaA8(gray) => {
            shrink_to_gray::<2>(gray.as_raw(), width, height, factor)
        }
        // 16-bit and float pictures are rare: converted first.
        other => shrink_to_gray::<3>(other.to_rgb8().as_raw(), width, height, factor),
    }
}

/// See [`analysis_image`]: `raw` holds `C` bytes per pixel (gray first, or RGB first). The
/// channel count is a constant so that the inner loop is compiled for it.
fn shrink_to_gray<const C: usize>(
    raw: &[u8],
    width: u32,
    height: u32,
    factor: u32,
) -> image::GrayImage {
    let (w, h, f) = (width as usize, height as usize, factor as usize);
    let (out_w, out_h) = (w.div_ceil(f), h.div_ceil(f));
    let gray = |p: &[u8]| -> u32 {
        if C >= 3 {
            (54 * u32::from(p[0]) + 183 * u32::from(p[1]) + 19 * u32::from(p[2])) >> 8
        } else {
            u32::from(p[0])
        }
    };
    let mut sums = vec![0u32; out_w * out_h];
    // Each row is turned to gray first (a loop the compiler vectorizes), then summed by block.
    let mut row_gray = vec![0u32; w];
    for (y, row) in raw.chunks_exact(w * C).take(h).enumerate() {
        for (g, p) in row_gray.iter_mut().zip(row.chunks_exact(C)) {
            *g = gray(p);
        }
        let out_row = &mut sums[(y / f) * out_w..][..out_w];
        for (cell, block) in out_row.iter_mut().zip(row_gray.chunks(f)) {
            *cell += block.iter().sum::<u32>();
        }
    }
    // Blocks on the right and bottom edges may be narrower.
    let side = |index: usize, length: usize| (length - index * f).min(f) as u32;
    let pixels = sums
        .iter()
        .enumerate()
        .map(|(i, sum)| {
            let count = side(i % out_w, w) * side(i / out_w, h);
            ((sum + count / 2) / count.max(1)) as u8
        })
        .collect();
    image::GrayImage::from_raw(out_w as u32, out_h as u32, pixels)
        .unwrap_or_else(|| image::GrayImage::new(1, 1))
}

/// The pHash of the module doc; the hasher (with its DCT tables) is built once.
fn perceptual_hash(gray: &image::GrayImage) -> u64 {
    static HASHER: std::sync::LazyLock<image_hasher::Hasher<[u8; 8]>> =
        std::sync::LazyLock::new(|| {
            HasherConfig::with_bytes_type::<[u8; 8]>()
                .hash_size(8, 8)
                .hash_alg(HashAlg::Median)
                .preproc_dct()
                .to_hasher()
        });
    let hash = HASHER.hash_image(gray);
    let mut bits = [0u8; 8];
    bits.copy_from_slice(hash.as_bytes());
    u64::from_be_bytes(bits)
}

/// The quality score of an image of `width` x `height` whose analysis image is `gray` (the
/// formula is in the module doc).
pub fn quality(width: u32, height: u32, gray: &image::GrayImage) -> QualityParts {
    let short_side = f64::from(width.min(height));
    let resolution = ((short_side / 300.0).log2() / (1080.0_f64 / 300.0).log2()).clamp(0.0, 1.0);
    let variance = laplacian_variance(gray);
    let sharpness = variance / (variance + 200.0);
    let exposure = exposure(gray);
    let score = (0.30 * resolution + 0.40 * sharpness + 0.30 * exposure).clamp(0.0, 1.0);
    QualityParts {
        resolution,
        sharpness,
        exposure,
        score,
    }
}

/// Variance of the 4-neighbour Laplacian (`up + down + left + right - 4 * centre`) over the
/// interior pixels; 0 for images too small to have an interior.
fn laplacian_variance(gray: &image::GrayImage) -> f64 {
    let (w, h) = (gray.width() as usize, gray.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let pixels = gray.as_raw();
    let (mut sum, mut sum_sq) = (0.0f64, 0.0f64);
    for y in 1..h - 1 {
        let row = y * w;
        for x in 1..w - 1 {
            let i = row + x;
            let response = i32::from(pixels[i - w])
                + i32::from(pixels[i + w])
                + i32::from(pixels[i - 1])
                + i32::from(pixels[i + 1])
                - 4 * i32::from(pixels[i]);
            let response = f64::from(response);
            sum += response;
            sum_sq += response * response;
        }
    }
    let n = ((w - 2) * (h - 2)) as f64;
    let mean = sum / n;
    (sum_sq / n - mean * mean).max(0.0)
}

/// The exposure statistic: clipped share and mean luminance (see the module doc).
fn exposure(gray: &image::GrayImage) -> f64 {
    let pixels = gray.as_raw();
    if pixels.is_empty() {
        return 0.0;
    }
    let n = pixels.len() as f64;
    let clipped = pixels.iter().filter(|&&p| p <= 5 || p >= 250).count() as f64 / n;
    let mean = pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / n / 255.0;
    let clip_factor = (1.0 - 2.0 * clipped).max(0.0);
    let mean_factor = 1.0 - ((mean - 0.5) / 0.5).powi(2);
    (clip_factor * mean_factor).clamp(0.0, 1.0)
}

/// Generated images for tests, benchmarks and demos.
pub mod samples {
    use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
    use std::io::Cursor;

    /// A checkerboard of `square`-pixel squares in two mid-grays (nothing clipped).
    pub fn checkerboard(width: u32, height: u32, square: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            if (x / square + y / square).is_multiple_of(2) {
                Rgb([64, 64, 64])
            } else {
                Rgb([192, 192, 192])
            }
        })
    }

    /// A photo-like picture: smooth colour gradients with a few sharp-edged shapes, different
    /// for each `seed` (any `u32`).
    pub fn scene(width: u32, height: u32, seed: u32) -> RgbImage {
        let s = (seed % 10_007) as f32;
        let block_width = 40 + (seed % 61) * 7;
        RgbImage::from_fn(width, height, |x, y| {
            let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
            let wave = ((fx * (7.0 + s) + fy * 3.0).sin() * 0.5 + 0.5) * 120.0;
            let block = if ((x / block_width) + (y / 50)).is_multiple_of(3) {
                60.0
            } else {
                0.0
            };
            Rgb([
                (40.0 + wave + block) as u8,
                (60.0 + fy * 100.0 + block / 2.0) as u8,
                (80.0 + fx * 90.0) as u8,
            ])
        })
    }

    /// `image` encoded as `format` (JPEG at the encoder's default quality).
    ///
    /// Only tests call this (through `upload::samples` too), never a request. It cannot fail for
    /// the formats this build encodes (JPEG, PNG, WebP): an 8-bit RGB image is a color type
    /// each of them takes, and writing into a `Vec` has no I/O error; a build without one of
    /// those encoders would fail here at once, which is what a sample should do.
    pub fn encode(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = Cursor::new(Vec::new());
        match DynamicImage::ImageRgb8(image.clone()).write_to(&mut bytes, format) {
            Ok(()) => bytes.into_inner(),
            Err(error) => panic!("encoding a sample as {format:?}: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::samples::{checkerboard, encode, scene};
    use super::*;
    use crate::domain::upload::samples::{png_header, webp_header};
    use image::imageops::blur;

    fn measured(bytes: &[u8]) -> Measured {
        measure(bytes, MeasureLimits::default()).unwrap()
    }

    fn png(image: &image::RgbImage) -> Vec<u8> {
        encode(image, ImageFormat::Png)
    }

    #[test]
    fn formats_are_recognised_by_their_magic_bytes() {
        let image = scene(64, 48, 1);
        let avif = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf".to_vec();
        let cases: Vec<(&str, Vec<u8>, Result<Format, Reason>)> = vec![
            ("jpeg", encode(&image, ImageFormat::Jpeg), Ok(Format::Jpeg)),
            ("png", png(&image), Ok(Format::Png)),
            ("webp", encode(&image, ImageFormat::WebP), Ok(Format::Webp)),
            ("avif", avif, Err(Reason::UnsupportedFormat)),
            (
                "gif",
                b"GIF89a\x10\x00\x10\x00".to_vec(),
                Err(Reason::UnsupportedFormat),
            ),
            (
                "svg",
                b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec(),
                Err(Reason::NotAnImage),
            ),
            (
                "html",
                b"<!doctype html><p>hi".to_vec(),
                Err(Reason::NotAnImage),
            ),
            ("empty", Vec::new(), Err(Reason::NotAnImage)),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(sniff(&bytes).map_err(|r| r.reason), want, "{name}");
        }
    }

    #[test]
    fn every_served_format_is_measured_alike() {
        let image = scene(640, 480, 2);
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP] {
            let m = measured(&encode(&image, format));
            assert_eq!((m.width, m.height), (640, 480), "{format:?}");
            assert_eq!(m.sha256.len(), 64);
            assert!((0.0..=1.0).contains(&m.quality.score), "{format:?}");
        }
        // Cameras and phones append data after a JPEG's end marker: still a whole JPEG.
        let mut with_trailer = encode(&image, ImageFormat::Jpeg);
        with_trailer.extend_from_slice(b"SEFT trailer of a phone");
        assert_eq!(measured(&with_trailer).format, Format::Jpeg);
    }

    /// Bad files and the reason each gets.
    #[test]
    fn bad_files_are_refused_with_their_reason() {
        let good = png(&scene(64, 48, 3));
        let jpeg = encode(&scene(400, 300, 3), ImageFormat::Jpeg);
        let webp = encode(&scene(400, 300, 3), ImageFormat::WebP);
        let mut polyglot = good.clone();
        polyglot.extend_from_slice(b"<html><script>alert(1)</script></html>");
        let mut header_only = png_header(16, 16);
        header_only.extend_from_slice(b"<html></html>");
        let cases: Vec<(&str, Vec<u8>, Reason)> = vec![
            (
                "huge png header",
                png_header(100_000, 100_000),
                Reason::TooManyPixels,
            ),
            (
                "png side over the limit",
                png_header(30_000, 10),
                Reason::TooManyPixels,
            ),
            (
                "png claiming 2^32-1 a side",
                png_header(u32::MAX, u32::MAX),
                Reason::TooManyPixels,
            ),
            (
                "webp header claiming 16383x16383",
                webp_header(16383, 16383),
                Reason::TooManyPixels,
            ),
            (
                "truncated jpeg",
                jpeg[..jpeg.len() / 2].to_vec(),
                Reason::DecodeError,
            ),
            (
                "jpeg without its last byte",
                jpeg[..jpeg.len() - 1].to_vec(),
                Reason::DecodeError,
            ),
            (
                "truncated webp",
                webp[..webp.len() - 20].to_vec(),
                Reason::DecodeError,
            ),
            ("png with html after its end", polyglot, Reason::DecodeError),
            ("png header and html", header_only, Reason::DecodeError),
            ("zero-width png", png_header(0, 10), Reason::DecodeError),
        ];
        for (name, bytes, want) in cases {
            let got = measure(&bytes, MeasureLimits::default()).map_err(|r| r.reason);
            assert_eq!(got.err(), Some(want), "{name}");
        }
    }

    /// Generated images with known sharpness and exposure, and what their statistics must be.
    #[test]
    fn the_quality_score_follows_sharpness_exposure_and_resolution() {
        let sharp = checkerboard(1200, 800, 24);
        let blurred = image::DynamicImage::ImageRgb8(blur(&sharp, 6.0)).to_rgb8();
        let white = image::RgbImage::from_pixel(1200, 800, image::Rgb([255, 255, 255]));
        let dark = image::RgbImage::from_pixel(1200, 800, image::Rgb([20, 20, 20]));
        let small = checkerboard(200, 150, 4);

        let sharp = measured(&png(&sharp)).quality;
        let blurred = measured(&png(&blurred)).quality;
        let white = measured(&png(&white)).quality;
        let dark = measured(&png(&dark)).quality;
        let small = measured(&png(&small)).quality;

        // A crisp checkerboard is sharp; blurring it takes most of that away.
        assert!(sharp.sharpness > 0.9, "{sharp:?}");
        assert!(blurred.sharpness < 0.5 * sharp.sharpness, "{blurred:?}");
        assert!(sharp.score > blurred.score);
        // 800 px short side: between 300 (0) and 1080 (1).
        let want = (800.0_f64 / 300.0).log2() / (1080.0_f64 / 300.0).log2();
        assert!((sharp.resolution - want).abs() < 1e-9);
        // Two mid-grays averaging 128: nothing clipped, mean at mid-gray.
        assert!(sharp.exposure > 0.99, "{sharp:?}");
        // All white: every pixel clipped, no detail; only resolution counts.
        assert_eq!((white.sharpness, white.exposure), (0.0, 0.0));
        assert!((white.score - 0.30 * white.resolution).abs() < 1e-9);
        // Uniformly dark (level 20, not clipped): no detail, exposure low but not nil.
        assert!(dark.exposure > 0.0 && dark.exposure < 0.35, "{dark:?}");
        // Below curation's minimum side: no resolution credit.
        assert_eq!(small.resolution, 0.0);
        // The orderings a gallery relies on.
        assert!(sharp.score > small.score);
        assert!(blurred.score > white.score);
    }

    /// Fixed fixtures have fixed hashes: a change of algorithm or size shows here first.
    #[test]
    fn perceptual_hashes_of_fixed_fixtures_are_stable() {
        let cases = [
            (
                "scene 1",
                png(&scene(800, 600, 1)),
                0xad06_52be_d2ae_52aa_u64,
            ),
            ("scene 2", png(&scene(800, 600, 2)), 0xada6_52ae_52aa_d2aa),
            (
                "checkerboard",
                png(&checkerboard(800, 600, 50)),
                0xff55_ff55_ff55_ff55,
            ),
        ];
        for (name, bytes, want) in cases {
            let got = measured(&bytes).perceptual_hash;
            assert_eq!(got, want, "{name}: {got:#018x}");
        }
    }

    #[test]
    fn near_duplicates_are_close_and_other_pictures_far() {
        let original = scene(1600, 1067, 4);
        let resized =
            image::imageops::resize(&original, 800, 533, image::imageops::FilterType::Triangle);
        let a = measured(&encode(&original, ImageFormat::Jpeg)).perceptual_hash;
        let b = measured(&encode(&resized, ImageFormat::Jpeg)).perceptual_hash;
        let c = measured(&png(&scene(1600, 1067, 9))).perceptual_hash;
        let d = measured(&png(&checkerboard(1600, 1067, 40))).perceptual_hash;
        assert!(
            hash_distance(a, b) <= NEAR_DUPLICATE_DISTANCE,
            "{}",
            hash_distance(a, b)
        );
        assert!(
            hash_distance(a, c) > NEAR_DUPLICATE_DISTANCE,
            "{}",
            hash_distance(a, c)
        );
        assert!(
            hash_distance(a, d) > NEAR_DUPLICATE_DISTANCE,
            "{}",
            hash_distance(a, d)
        );
    }

    #[test]
    fn reason_codes_are_stable() {
        let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            codes,
            [
                "HTTP_STATUS",
                "TIMEOUT",
                "TOO_LARGE",
                "NOT_AN_IMAGE",
                "UNSUPPORTED_FORMAT",
                "DECODE_ERROR",
                "TOO_MANY_PIXELS",
                "BLOCKED_ADDRESS",
                "TOO_MANY_REDIRECTS",
                "NETWORK_ERROR",
                "PURGED",
                "OBJECT_MISSING"
            ]
        );
        for reason in Reason::ALL {
            assert_eq!(reason.as_str().parse(), Ok(reason));
        }
    }

    /// The time per 1600x1067 JPEG (the floor issue 16's benchmark compares against):
    /// `cargo test --release --lib measure_timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn measure_timing() {
        let jpegs: Vec<Vec<u8>> = (0..8)
            .map(|seed| encode(&scene(1600, 1067, seed), ImageFormat::Jpeg))
            .collect();
        let rounds = 25;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            for jpeg in &jpegs {
                std::hint::black_box(measured(jpeg));
            }
        }
        let per_image = started.elapsed() / (rounds * jpegs.len() as u32);
        let mean_bytes = jpegs.iter().map(Vec::len).sum::<usize>() / jpegs.len();
        println!("measure: {per_image:?} per 1600x1067 JPEG ({mean_bytes} bytes on average)");
    }
}
