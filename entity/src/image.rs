//! One picture with its unified ID, dedup keys, dimensions and classification summary.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "image")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Hex SHA-256 of the canonical URL: the same key is the same image, forever.
    #[sea_orm(unique)]
    pub url_key: String,
    #[sea_orm(column_type = "Text")]
    pub canonical_url: String,
    /// Path of the picture behind the CDN (and in the object store for uploads).
    pub storage_key: String,
    pub width: Option<i32>,
    pub height: Option<i32>,
    /// The image's own caption (partners, admins); a hotel's link may have its own.
    pub caption: Option<String>,
    /// The image's own alt text (admins); a hotel's link may have its own.
    pub alt_text: Option<String>,
    /// Effective category (highest-confidence tag, manual first), kept in step with `image_tag`.
    pub category: String,
    /// The tagging model's (or a partner's) score in 0..1; wins over `measured_quality`.
    pub quality_score: Option<f64>,
    /// Hex SHA-256 of the bytes, when known: curation keeps the better of two identical copies.
    pub content_sha256: Option<String>,
    /// 64-bit perceptual hash of the pixels (stored as the signed reading of the bits).
    pub perceptual_hash: Option<i64>,
    /// `ACTIVE` or `INACTIVE` (everywhere).
    pub status: String,
    pub status_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Quality score in 0..1 measured from the pixels (resolution, sharpness, exposure).
    pub measured_quality: Option<f64>,
    /// `PENDING` (bytes not fetched yet), `READY` (stored and measured) or `FAILED`; only READY
    /// images are curated.
    pub processing_state: String,
    /// The stable reason code of the last processing failure (`HTTP_STATUS`, `TIMEOUT`, ...).
    pub processing_reason: Option<String>,
    /// Fetches tried so far.
    pub processing_attempts: i32,
    /// The last processing failure, in words.
    pub processing_error: Option<String>,
    /// When a PENDING image is due; while a worker holds it, the end of its lease.
    pub next_attempt_at: Option<DateTimeUtc>,
    /// The worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the bytes were last fetched (or uploaded).
    pub fetched_at: Option<DateTimeUtc>,
    /// The stored object an import named as the image's bytes (`storage_key` of a feed line):
    /// processing reads and measures it instead of fetching the URL. `None`: fetch the URL.
    pub adopted_key: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
