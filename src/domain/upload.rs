//! What an uploaded file is: an image measured from its bytes (see [`super::measure`]: format
//! by magic bytes, dimensions checked before decoding, decoded, hashed and scored), within the
//! upload size limit. Its content hash is the dedup key of uploads: the same bytes are one
//! image.

use super::measure::{self, MeasureLimits, Measured, Refusal};

/// The URL key of uploaded bytes of hash `sha256`. Uploads have no partner URL: their key is
/// derived from the content, in a namespace of its own so it can never equal the key of a
/// canonical URL.
pub fn upload_url_key(sha256: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("upload:{sha256}")))
}

/// An accepted upload, measured.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectedUpload {
    pub measured: Measured,
}

impl InspectedUpload {
    /// Where the bytes are stored: one key per content.
    pub fn storage_key(&self) -> String {
        super::media::upload_storage_key(&self.measured.sha256, self.measured.format.extension())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// Not an image that can be taken: the measuring's reason says why.
    #[error(transparent)]
    Refused(Refusal),
}

/// Checks `bytes` against `max_bytes`, then measures them within `limits`.
pub fn inspect(
    bytes: &[u8],
    max_bytes: usize,
    limits: MeasureLimits,
) -> Result<InspectedUpload, UploadError> {
    if bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    if bytes.len() > max_bytes {
        return Err(UploadError::TooLarge { limit: max_bytes });
    }
    let measured = measure::measure(bytes, limits).map_err(UploadError::Refused)?;
    Ok(InspectedUpload { measured })
}

/// Files for tests and demos.
pub mod samples {
    use crate::domain::measure::samples::{encode, scene};

    /// A real PNG picture of `width` x `height` (the same arguments give the same bytes).
    pub fn png(width: u32, height: u32) -> Vec<u8> {
        encode(&scene(width, height, 0), image::ImageFormat::Png)
    }

    /// A JPEG picture of `width` x `height`, different for each `seed`.
    pub fn jpeg(width: u32, height: u32, seed: u32) -> Vec<u8> {
        encode(&scene(width, height, seed), image::ImageFormat::Jpeg)
    }

    /// A lossless WebP picture of `width` x `height`, different for each `seed`.
    pub fn webp(width: u32, height: u32, seed: u32) -> Vec<u8> {
        encode(&scene(width, height, seed), image::ImageFormat::WebP)
    }

    /// Only a PNG signature and a well-formed IHDR chunk claiming `width` x `height` (33
    /// bytes): what a forged file looks like. It has no pixels.
    pub fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut chunk = b"IHDR".to_vec();
        chunk.extend_from_slice(&width.to_be_bytes());
        chunk.extend_from_slice(&height.to_be_bytes());
        chunk.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
        bytes.extend_from_slice(&chunk);
        bytes.extend_from_slice(&crc32(&chunk).to_be_bytes());
        bytes
    }

    /// The CRC-32 (IEEE) a PNG chunk ends with.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// Only a lossless WebP header claiming `width` x `height` (1..=16384 a side), 30 bytes.
    pub fn webp_header(width: u32, height: u32) -> Vec<u8> {
        let bits = (width - 1) | ((height - 1) << 14);
        let mut bytes = b"RIFF\x16\0\0\0WEBPVP8L\x0a\0\0\0\x2f".to_vec();
        bytes.extend_from_slice(&bits.to_le_bytes());
        bytes.extend_from_slice(&[0; 5]);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::measure::{Format, Reason};

    #[test]
    fn uploads_are_measured_and_described() {
        let png = samples::png(640, 427);
        let described = inspect(&png, 1 << 20, MeasureLimits::default()).unwrap();
        let m = &described.measured;
        assert_eq!((m.format, m.width, m.height), (Format::Png, 640, 427));
        assert_eq!(m.sha256.len(), 64);
        assert!(
            described
                .storage_key()
                .starts_with(&format!("u/{}/", &m.sha256[..2]))
        );
        assert!(described.storage_key().ends_with(".png"));
    }

    #[test]
    fn empty_too_large_and_unmeasurable_files_are_refused() {
        let png = samples::png(64, 48);
        let limits = MeasureLimits::default();
        let refused = |reason| move |e: &UploadError| matches!(e, UploadError::Refused(r) if r.reason == reason);
        assert_eq!(inspect(b"", 10, limits), Err(UploadError::Empty));
        assert_eq!(
            inspect(&png, 10, limits),
            Err(UploadError::TooLarge { limit: 10 })
        );
        let gif = b"GIF89a\x10\x00\x10\x00\x00\x00\x00";
        assert!(
            inspect(gif, 1 << 20, limits).is_err_and(|e| refused(Reason::UnsupportedFormat)(&e))
        );
        let text = b"just some text, not an image";
        assert!(inspect(text, 1 << 20, limits).is_err_and(|e| refused(Reason::NotAnImage)(&e)));
        let bomb = samples::png_header(100_000, 100_000);
        assert!(inspect(&bomb, 1 << 20, limits).is_err_and(|e| refused(Reason::TooManyPixels)(&e)));
    }

    #[test]
    fn the_same_bytes_have_the_same_hash() {
        let limits = MeasureLimits::default();
        let a = inspect(&samples::png(80, 60), 1 << 20, limits).unwrap();
        let b = inspect(&samples::png(80, 60), 1 << 20, limits).unwrap();
        let c = inspect(&samples::png(80, 61), 1 << 20, limits).unwrap();
        assert_eq!(a.measured.sha256, b.measured.sha256);
        assert_ne!(a.measured.sha256, c.measured.sha256);
    }
}
