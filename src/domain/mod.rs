//! Pure rules of the image catalog: no I/O, no framework types.
//!
//! # Layout
//! - [`catalog`]: the vocabulary (IDs, categories, partner kinds, statuses) as validated types.
//! - [`curation`]: which images make a hotel's gallery and which one is its main image.
//! - [`ingest`]: validating partner deliveries and deciding each one's import outcome.
//! - [`measure`]: what an image's bytes are: format, dimensions, hashes, measured quality.
//! - [`media`]: storage keys, CDN URLs per image size and imgproxy-signed transformation URLs.
//! - [`resize`]: the CDN's sizes of a stored picture (what `/media` serves).
//! - [`upload`]: what an uploaded file is: a measured image within the upload size limit.
//! - [`url`]: canonical URLs and URL keys: one picture, one key, whatever its spelling.

pub mod catalog;
pub mod curation;
pub mod ingest;
pub mod measure;
pub mod media;
pub mod resize;
pub mod upload;
pub mod url;
