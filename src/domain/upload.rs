//! What an uploaded file is: its format (JPEG, PNG or WebP only), its dimensions read from the
//! bytes, and its content hash (the dedup key of uploads: the same bytes are one image).

use sha2::{Digest, Sha256};

/// The formats hoteliers may upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadFormat {
    Jpeg,
    Png,
    Webp,
}

impl UploadFormat {
    pub fn extension(self) -> &'static str {
        match self {
            UploadFormat::Jpeg => "jpg",
            UploadFormat::Png => "png",
            UploadFormat::Webp => "webp",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            UploadFormat::Jpeg => "image/jpeg",
            UploadFormat::Png => "image/png",
            UploadFormat::Webp => "image/webp",
        }
    }

    /// The format a stored file's extension names.
    pub fn from_extension(extension: &str) -> Option<Self> {
        match extension {
            "jpg" => Some(UploadFormat::Jpeg),
            "png" => Some(UploadFormat::Png),
            "webp" => Some(UploadFormat::Webp),
            _ => None,
        }
    }
}

/// An accepted upload, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectedUpload {
    pub format: UploadFormat,
    pub width: u32,
    pub height: u32,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
}

impl InspectedUpload {
    /// Where the bytes are stored: one key per content.
    pub fn storage_key(&self) -> String {
        super::media::upload_storage_key(&self.sha256, self.format.extension())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("only JPEG, PNG and WebP images are accepted")]
    UnsupportedFormat,
    #[error("the image's dimensions cannot be read")]
    Unreadable,
}

/// Checks `bytes` against `max_bytes` and the accepted formats, and describes them.
pub fn inspect(bytes: &[u8], max_bytes: usize) -> Result<InspectedUpload, UploadError> {
    if bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    if bytes.len() > max_bytes {
        return Err(UploadError::TooLarge { limit: max_bytes });
    }
    let format = match imagesize::image_type(bytes) {
        Ok(imagesize::ImageType::Jpeg) => UploadFormat::Jpeg,
        Ok(imagesize::ImageType::Png) => UploadFormat::Png,
        Ok(imagesize::ImageType::Webp) => UploadFormat::Webp,
        _ => return Err(UploadError::UnsupportedFormat),
    };
    let size = imagesize::blob_size(bytes).map_err(|_| UploadError::Unreadable)?;
    let dimension = |value: usize| u32::try_from(value).ok().filter(|v| *v > 0);
    let (Some(width), Some(height)) = (dimension(size.width), dimension(size.height)) else {
        return Err(UploadError::Unreadable);
    };
    Ok(InspectedUpload {
        format,
        width,
        height,
        sha256: hex::encode(Sha256::digest(bytes)),
    })
}

/// The smallest files that carry a format and dimensions (for tests and demos).
pub mod samples {
    /// A PNG signature and IHDR chunk of `width` x `height`.
    pub fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
        bytes.extend_from_slice(b"IHDR");
        bytes.extend_from_slice(&width.to_be_bytes());
        bytes.extend_from_slice(&height.to_be_bytes());
        bytes.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_accepted_by_format_and_described() {
        let png = samples::png(1600, 1067);
        let described = inspect(&png, 1 << 20).unwrap();
        assert_eq!(
            (described.format, described.width, described.height),
            (UploadFormat::Png, 1600, 1067)
        );
        assert_eq!(described.sha256.len(), 64);
        assert!(
            described
                .storage_key()
                .starts_with(&format!("u/{}/", &described.sha256[..2]))
        );
        assert!(described.storage_key().ends_with(".png"));

        let gif = b"GIF89a\x10\x00\x10\x00\x00\x00\x00".to_vec();
        let cases: [(&[u8], usize, UploadError); 4] = [
            (b"", 10, UploadError::Empty),
            (&png, 10, UploadError::TooLarge { limit: 10 }),
            (&gif, 1 << 20, UploadError::UnsupportedFormat),
            (
                b"just some text, not an image",
                1 << 20,
                UploadError::UnsupportedFormat,
            ),
        ];
        for (bytes, limit, want) in cases {
            assert_eq!(inspect(bytes, limit), Err(want.clone()), "{want:?}");
        }
        assert_eq!(
            inspect(&samples::png(0, 10), 1 << 20),
            Err(UploadError::Unreadable)
        );
    }

    #[test]
    fn the_same_bytes_have_the_same_hash() {
        let a = inspect(&samples::png(800, 600), 1 << 20).unwrap();
        let b = inspect(&samples::png(800, 600), 1 << 20).unwrap();
        let c = inspect(&samples::png(800, 601), 1 << 20).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_ne!(a.sha256, c.sha256);
    }
}
