//! The object types of the API contract (DESIGN section 3). They wrap records of the service
//! layer and load every relation through the request's [`Loaders`]; they are never SeaORM
//! models, so a column rename cannot change the contract.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use super::connection::{CursorKind, PageArgs, PageInfo, page_complexity, page_info};
use super::error::{bad_input, load, refused, unexpected};
use super::loader::{
    HotelLinkCount, HotelLinks, ImageHotelCount, ImageHotels, LegacyIdsOf, Loaders, ProcessingOf,
    SourcesOf, StatusReasonOf, TagsOf,
};
use crate::domain::catalog::{HotelId, ImageId, Status, Tag};
use crate::domain::curation::{HotelRecord, LinkTexts};
use crate::domain::media;
use crate::service::auth::Actor;
use crate::service::catalog::Catalog;
use crate::store::{ImageRecord, LinkFilter, PartnerRecord, SourceRecord};

/// How image URLs are built: shared by every request (schema data).
#[derive(Debug)]
pub struct Media {
    pub cdn: media::Cdn,
    /// `None` when no signing key is configured: `transformUrl` is then null.
    pub imgproxy: Option<media::Imgproxy>,
}

/// The largest width or height `transformUrl` accepts.
const MAX_TRANSFORM_PIXELS: i32 = 10_000;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::domain::catalog::Category")]
pub enum ImageCategory {
    Exterior,
    Lobby,
    Bedroom,
    Bathroom,
    Pool,
    Restaurant,
    Bar,
    Spa,
    Fitness,
    Meeting,
    View,
    Beach,
    Amenity,
    Food,
    Logo,
    Map,
    Other,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::domain::catalog::PartnerKind")]
pub enum PartnerKind {
    Ota,
    HotelChain,
    ContentProvider,
    Hotelier,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::domain::catalog::Status")]
pub enum ImageStatus {
    Active,
    Inactive,
}

/// Where an image is in processing: PENDING (bytes not fetched yet), READY (stored and
/// measured; only READY images are shown), FAILED (given up on, see `reason`).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::domain::catalog::ProcessingState")]
pub enum ProcessingState {
    Pending,
    Ready,
    Failed,
}

/// An image's processing and measured values (internal).
pub struct ImageProcessing(crate::store::admin::Processing);

#[Object]
impl ImageProcessing {
    async fn state(&self) -> ProcessingState {
        self.0.state.into()
    }
    /// The stable reason code of the last failure (`HTTP_STATUS`, `TIMEOUT`, `NOT_AN_IMAGE`,
    /// ...); null when none failed since it was last retried.
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
    /// Fetches tried.
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    /// The last failure, in words.
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    /// When a PENDING image is tried next.
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_attempt_at
    }
    /// When its bytes were fetched (or uploaded).
    async fn fetched_at(&self) -> Option<DateTime<Utc>> {
        self.0.fetched_at
    }
    /// The quality score measured from the pixels, in 0..1.
    async fn measured_quality(&self) -> Option<f64> {
        self.0.measured_quality
    }
    /// The tagging model's (or a partner's) score, which wins over the measured one.
    async fn model_quality(&self) -> Option<f64> {
        self.0.model_quality
    }
    /// Hex SHA-256 of the bytes.
    async fn content_sha256(&self) -> Option<&str> {
        self.0.content_sha256.as_deref()
    }
    /// The 64-bit perceptual hash, as 16 hex digits.
    async fn perceptual_hash(&self) -> Option<&str> {
        self.0.perceptual_hash.as_deref()
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::domain::catalog::TagOrigin")]
pub enum TagOrigin {
    Model,
    Manual,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::domain::catalog::MainImageOrigin")]
pub enum MainImageOrigin {
    Computed,
    Hotelier,
    Admin,
}

/// Pixel sizes per size are configuration.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::domain::media::ImageSize")]
pub enum ImageSize {
    /// A square crop.
    Thumbnail,
    Small,
    Medium,
    Large,
    Xlarge,
    Original,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::domain::media::ImageFit")]
pub enum ImageFit {
    Fit,
    Fill,
    FillDown,
    Force,
    Auto,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::domain::media::ImageFormat")]
pub enum ImageFormat {
    Auto,
    Jpeg,
    Png,
    Webp,
    Avif,
}

fn loaders<'a>(ctx: &Context<'a>) -> Result<&'a Loaders> {
    ctx.data::<Loaders>()
}

fn actor<'a>(ctx: &Context<'a>) -> Result<&'a Actor> {
    ctx.data::<Actor>()
}

/// Loads images by ID, in the given order, skipping any that no longer exist; outside any
/// hotel (each shows its own texts).
pub async fn load_images(ctx: &Context<'_>, ids: &[ImageId]) -> Result<Vec<Image>> {
    load_images_shown_by(ctx, ids, None).await
}

/// Loads images as `hotel` shows them: with the hotel's own texts where it gave any.
pub async fn load_images_shown_by(
    ctx: &Context<'_>,
    ids: &[ImageId],
    hotel: Option<&Arc<HotelRecord>>,
) -> Result<Vec<Image>> {
    let found = loaders(ctx)?
        .load_many(ids.iter().copied())
        .await
        .map_err(load)?;
    Ok(ids
        .iter()
        .filter_map(|id| {
            found.get(id).cloned().flatten().map(|record| Image {
                record,
                shown_by: hotel.filter(|h| h.texts_of(*id).is_some()).cloned(),
            })
        })
        .collect())
}

/// A hotel of the platform. Other subgraphs own its name, address and so on; this one adds
/// its images. Any well-formed hotel ID resolves (with empty image fields when this subgraph
/// has no images for it).
#[derive(Clone, Debug)]
pub struct Hotel {
    pub id: HotelId,
}

impl Hotel {
    pub(crate) async fn record(&self, ctx: &Context<'_>) -> Result<Option<Arc<HotelRecord>>> {
        Ok(loaders(ctx)?
            .load_one(self.id)
            .await
            .map_err(load)?
            .flatten())
    }

    fn require_internals(&self, ctx: &Context<'_>) -> Result<()> {
        let actor = actor(ctx)?;
        actor
            .require(actor.may_read_hotel_internals(self.id))
            .map_err(refused)
    }
}

#[Object]
impl Hotel {
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }

    /// The hotel's thumbnail; null when the hotel has no eligible image.
    async fn main_image(&self, ctx: &Context<'_>) -> Result<Option<Image>> {
        let record = self.record(ctx).await?;
        let Some(main) = record.as_ref().and_then(|h| h.main.as_ref()) else {
            return Ok(None);
        };
        Ok(load_images_shown_by(ctx, &[main.image_id], record.as_ref())
            .await?
            .pop())
    }

    /// Who chose the main image, and when (internal).
    #[graphql(cache_control(no_cache))]
    async fn main_image_choice(&self, ctx: &Context<'_>) -> Result<Option<MainImageChoice>> {
        self.require_internals(ctx)?;
        let record = self.record(ctx).await?;
        let Some(main) = record.as_ref().and_then(|h| h.main.clone()) else {
            return Ok(None);
        };
        let image = load_images_shown_by(ctx, &[main.image_id], record.as_ref())
            .await?
            .pop();
        Ok(image.map(|image| MainImageChoice {
            image,
            origin: main.origin.into(),
            chosen_by: main.chosen_by,
            chosen_at: main.chosen_at,
        }))
    }

    /// The curated, ordered list of the hotel's best active images, main image first.
    #[graphql(complexity = "page_complexity(first, child_complexity)")]
    async fn gallery(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<ImageConnection> {
        let page = PageArgs::parse(first, after.as_deref(), CursorKind::Gallery)?;
        let record = self.record(ctx).await?;
        let gallery: &[ImageId] = record.as_deref().map_or(&[], |h| &h.gallery);
        let start = page
            .after
            .map_or(0, |position| position as usize + 1)
            .min(gallery.len());
        let end = (start + page.first as usize).min(gallery.len());
        let images = load_images_shown_by(ctx, &gallery[start..end], record.as_ref()).await?;
        let edges = (start..end)
            .zip(images)
            .map(|(position, image)| (CursorKind::Gallery.encode(position as i64), image))
            .collect();
        Ok(ImageConnection {
            edges,
            has_next_page: end < gallery.len(),
            has_previous_page: start > 0,
            total: ImageTotal::Known(gallery.len() as i64),
            resume: None,
        })
    }

    /// Every linked image, by ID (internal). `status` is the status for this hotel: ACTIVE when
    /// both the image and its link to this hotel are active.
    #[graphql(
        complexity = "page_complexity(first, child_complexity)",
        cache_control(no_cache)
    )]
    async fn images(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
        status: Option<ImageStatus>,
        category: Option<ImageCategory>,
    ) -> Result<ImageConnection> {
        self.require_internals(ctx)?;
        let page = PageArgs::parse(first, after.as_deref(), CursorKind::HotelImages)?;
        let filter = LinkFilter {
            status: status.map(Into::into),
            category: category.map(Into::into),
        };
        let links = loaders(ctx)?
            .load_one(HotelLinks {
                hotel: self.id,
                filter,
                window: page.window(),
            })
            .await
            .map_err(load)?
            .unwrap_or_default();
        let (ids, has_next_page) = page.split(links);
        let record = self.record(ctx).await?;
        let edges = load_images_shown_by(ctx, &ids, record.as_ref())
            .await?
            .into_iter()
            .map(|image| (CursorKind::HotelImages.encode(image.record.id.get()), image))
            .collect();
        Ok(ImageConnection {
            edges,
            has_next_page,
            has_previous_page: page.after.is_some(),
            total: ImageTotal::HotelLinks(HotelLinkCount {
                hotel: self.id,
                filter,
            }),
            resume: None,
        })
    }

    /// Active linked images.
    async fn image_count(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(self.record(ctx).await?.map_or(0, |h| h.image_count))
    }

    /// Curation version: grows by one with every change of the gallery or main image (internal).
    #[graphql(cache_control(no_cache))]
    async fn version(&self, ctx: &Context<'_>) -> Result<i64> {
        self.require_internals(ctx)?;
        Ok(self.record(ctx).await?.map_or(0, |h| h.version))
    }
}

/// One picture, with one unified ID whatever partners and URL spellings it came under.
#[derive(Clone, Debug)]
pub struct Image {
    pub record: Arc<ImageRecord>,
    /// The hotel whose gallery, main image or image list shows it, when that hotel gave the
    /// image texts of its own (they come before the image's own).
    pub shown_by: Option<Arc<HotelRecord>>,
}

impl Image {
    fn link_texts(&self) -> Option<&LinkTexts> {
        self.shown_by
            .as_ref()
            .and_then(|h| h.texts_of(self.record.id))
    }

    fn require_internals(ctx: &Context<'_>) -> Result<()> {
        let actor = actor(ctx)?;
        actor
            .require(actor.may_read_image_internals())
            .map_err(refused)
    }
}

#[Object]
impl Image {
    async fn id(&self) -> ID {
        ID(self.record.id.to_string())
    }

    /// CDN URL of the picture at this size.
    async fn url(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "ImageSize::Large")] size: ImageSize,
    ) -> Result<String> {
        Ok(ctx
            .data::<Arc<Media>>()?
            .cdn
            .url(&self.record.storage_key, size.into()))
    }

    /// Signed image-server URL for a custom rendition of the stored copy (the image server
    /// fetches the ORIGINAL-size CDN URL, never the partner's URL); null when no signing key is
    /// configured.
    async fn transform_url(
        &self,
        ctx: &Context<'_>,
        width: Option<i32>,
        height: Option<i32>,
        #[graphql(default_with = "ImageFit::Fit")] fit: ImageFit,
        #[graphql(default_with = "ImageFormat::Auto")] format: ImageFormat,
    ) -> Result<Option<String>> {
        let pixels = |value: Option<i32>, name: &str| match value.unwrap_or(0) {
            v @ 0..=MAX_TRANSFORM_PIXELS => Ok(v as u32),
            _ => Err(bad_input(format!(
                "`{name}` must be between 0 and {MAX_TRANSFORM_PIXELS}"
            ))),
        };
        let (width, height) = (pixels(width, "width")?, pixels(height, "height")?);
        let media = ctx.data::<Arc<Media>>()?;
        // The source is the stored copy as the CDN serves it: public already, so the signed
        // URL reveals nothing new (no partner URL or credentials, no object-store path), and
        // the image server only ever fetches from the operator's CDN.
        Ok(media.imgproxy.as_ref().map(|signer| {
            let original = media
                .cdn
                .url(&self.record.storage_key, media::ImageSize::Original);
            signer.transform_url(&original, width, height, fit.into(), format.into())
        }))
    }

    async fn width(&self) -> Option<i32> {
        self.record.width
    }

    async fn height(&self) -> Option<i32> {
        self.record.height
    }

    /// Width divided by height, when both are known.
    async fn aspect_ratio(&self) -> Option<f64> {
        match (self.record.width, self.record.height) {
            (Some(w), Some(h)) if w > 0 && h > 0 => Some(f64::from(w) / f64::from(h)),
            _ => None,
        }
    }

    /// In a hotel's gallery, main image or image list: the hotel's own caption, else the
    /// image's. Elsewhere: the image's own (its partner's or an admin's).
    async fn caption(&self) -> Option<&str> {
        self.link_texts()
            .and_then(|t| t.caption.as_deref())
            .or(self.record.caption.as_deref())
    }

    /// Text for readers who cannot see the picture; resolved like `caption`.
    async fn alt_text(&self) -> Option<&str> {
        self.link_texts()
            .and_then(|t| t.alt_text.as_deref())
            .or(self.record.alt_text.as_deref())
    }

    /// The highest-confidence tag (manual tags first); OTHER when untagged.
    async fn category(&self) -> Option<ImageCategory> {
        Some(self.record.category.into())
    }

    async fn tags(&self, ctx: &Context<'_>) -> Result<Vec<ImageTag>> {
        let tags = loaders(ctx)?
            .load_one(TagsOf(self.record.id))
            .await
            .map_err(load)?
            .unwrap_or_default();
        Ok(tags.into_iter().map(ImageTag::from).collect())
    }

    /// In 0..1; null when not yet classified.
    async fn quality_score(&self) -> Option<f64> {
        self.record.quality_score
    }

    async fn status(&self) -> ImageStatus {
        self.record.status.into()
    }

    /// Why the image was taken offline everywhere (the `reason` of `deactivateImage`); null
    /// while it is active (internal: admins). Reasons of deactivations for some hotels only
    /// are in the audit log.
    #[graphql(cache_control(no_cache))]
    async fn status_reason(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        Self::require_internals(ctx)?;
        if self.record.status == Status::Active {
            return Ok(None);
        }
        loaders(ctx)?
            .load_one(StatusReasonOf(self.record.id))
            .await
            .map_err(load)
    }

    /// Where the image is in processing (fetched, measured, stored), with the measured values
    /// (internal). Null for an unknown image.
    #[graphql(cache_control(no_cache))]
    async fn processing(&self, ctx: &Context<'_>) -> Result<Option<ImageProcessing>> {
        Self::require_internals(ctx)?;
        Ok(loaders(ctx)?
            .load_one(ProcessingOf(self.record.id))
            .await
            .map_err(load)?
            .map(ImageProcessing))
    }

    /// IDs the old systems used for this image (internal).
    #[graphql(cache_control(no_cache))]
    async fn legacy_ids(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        Self::require_internals(ctx)?;
        Ok(loaders(ctx)?
            .load_one(LegacyIdsOf(self.record.id))
            .await
            .map_err(load)?
            .unwrap_or_default())
    }

    /// Every partner delivery of this image (internal).
    #[graphql(cache_control(no_cache))]
    async fn sources(&self, ctx: &Context<'_>) -> Result<Vec<ImageSource>> {
        Self::require_internals(ctx)?;
        let sources = loaders(ctx)?
            .load_one(SourcesOf(self.record.id))
            .await
            .map_err(load)?
            .unwrap_or_default();
        Ok(sources.into_iter().map(ImageSource).collect())
    }

    /// Hotels this image is linked to, by ID (internal).
    #[graphql(
        complexity = "page_complexity(first, child_complexity)",
        cache_control(no_cache)
    )]
    async fn hotels(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> Result<HotelConnection> {
        Self::require_internals(ctx)?;
        let page = PageArgs::parse(first, after.as_deref(), CursorKind::ImageHotels)?;
        let hotels = loaders(ctx)?
            .load_one(ImageHotels {
                image: self.record.id,
                window: page.window(),
            })
            .await
            .map_err(load)?
            .unwrap_or_default();
        let (ids, has_next_page) = page.split(hotels);
        Ok(HotelConnection {
            edges: ids
                .into_iter()
                .map(|id| (CursorKind::ImageHotels.encode(id.get()), Hotel { id }))
                .collect(),
            has_next_page,
            has_previous_page: page.after.is_some(),
            total: HotelTotal::OfImage(ImageHotelCount(self.record.id)),
        })
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.record.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.record.updated_at
    }
}

/// A source of images.
#[derive(Clone, Debug)]
pub struct Partner(pub PartnerRecord);

#[Object]
impl Partner {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn kind(&self) -> PartnerKind {
        self.0.kind.into()
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ImageTag {
    pub category: ImageCategory,
    /// In 0..1.
    pub confidence: f64,
    pub origin: TagOrigin,
}

impl From<Tag> for ImageTag {
    fn from(tag: Tag) -> Self {
        Self {
            category: tag.category.into(),
            confidence: tag.confidence,
            origin: tag.origin.into(),
        }
    }
}

/// One partner's delivery of an image.
pub struct ImageSource(SourceRecord);

#[Object]
impl ImageSource {
    async fn partner(&self, ctx: &Context<'_>) -> Result<Partner> {
        let partner = loaders(ctx)?
            .load_one(self.0.partner_id)
            .await
            .map_err(load)?;
        // Sources are only ever written for existing partners, and partners are never deleted.
        partner.map(Partner).ok_or_else(|| {
            unexpected(&crate::store::StoreError::Corrupt(
                crate::domain::catalog::ParseError {
                    what: "partner of a source",
                    value: self.0.partner_id.to_string(),
                },
            ))
        })
    }

    /// The URL as the partner sent it.
    async fn source_url(&self) -> &str {
        &self.0.source_url
    }

    async fn partner_image_ref(&self) -> Option<&str> {
        self.0.partner_image_ref.as_deref()
    }

    async fn first_seen_at(&self) -> DateTime<Utc> {
        self.0.first_seen_at
    }

    async fn last_seen_at(&self) -> DateTime<Utc> {
        self.0.last_seen_at
    }
}

/// The main image and who chose it: COMPUTED by curation, or a HOTELIER's or an ADMIN's
/// override (which wins while its image stays eligible).
#[derive(SimpleObject)]
pub struct MainImageChoice {
    pub image: Image,
    pub origin: MainImageOrigin,
    pub chosen_by: Option<String>,
    pub chosen_at: Option<DateTime<Utc>>,
}

// Relay connections (`edges`, `nodes`, `pageInfo`, `totalCount`) of images and hotels. They
// and their edges are `@shareable`: a neighbouring subgraph may declare the same Relay types
// (with compatible fields), and composition then merges them instead of failing.

/// Where an image list's total comes from: known already, counted on demand, or not counted.
pub enum ImageTotal {
    Known(i64),
    HotelLinks(HotelLinkCount),
    /// A search: counting its matches would read every one of them, whatever the page size.
    NotCounted,
}

pub struct ImageConnection {
    pub edges: Vec<(String, Image)>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub total: ImageTotal,
    /// Where the list goes on when that is not after the last edge: a search page that ended
    /// early because its scan budget ran out (`pageInfo.endCursor` is then this).
    pub resume: Option<String>,
}

#[derive(SimpleObject)]
#[graphql(shareable)]
pub struct ImageEdge {
    pub cursor: String,
    pub node: Image,
}

#[Object(shareable)]
impl ImageConnection {
    async fn edges(&self) -> Vec<ImageEdge> {
        self.edges
            .iter()
            .map(|(cursor, node)| ImageEdge {
                cursor: cursor.clone(),
                node: node.clone(),
            })
            .collect()
    }

    async fn nodes(&self) -> Vec<Image> {
        self.edges.iter().map(|(_, node)| node.clone()).collect()
    }

    async fn page_info(&self) -> PageInfo {
        let mut info = page_info(&self.edges, self.has_next_page, self.has_previous_page);
        if let Some(resume) = &self.resume {
            info.end_cursor = Some(resume.clone());
        }
        info
    }

    /// Every item of the list (not only this page). Not available on `searchImages`.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        match self.total {
            ImageTotal::NotCounted => Err(bad_input(
                "`totalCount` is not available on a search: counting would read every match",
            )),
            ImageTotal::Known(total) => Ok(total),
            ImageTotal::HotelLinks(key) => Ok(ctx
                .data::<Loaders>()?
                .load_one(key)
                .await
                .map_err(load)?
                .unwrap_or(0)),
        }
    }
}

pub struct HotelConnection {
    pub edges: Vec<(String, Hotel)>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub total: HotelTotal,
}

/// What a hotel list counts, when asked.
#[derive(Debug, Clone, Copy)]
pub enum HotelTotal {
    /// The hotels an image is linked to.
    OfImage(ImageHotelCount),
    /// The hotels without a main image.
    WithoutMainImage,
}

#[derive(SimpleObject)]
#[graphql(shareable)]
pub struct HotelEdge {
    pub cursor: String,
    pub node: Hotel,
}

#[Object(shareable)]
impl HotelConnection {
    async fn edges(&self) -> Vec<HotelEdge> {
        self.edges
            .iter()
            .map(|(cursor, node)| HotelEdge {
                cursor: cursor.clone(),
                node: node.clone(),
            })
            .collect()
    }

    async fn nodes(&self) -> Vec<Hotel> {
        self.edges.iter().map(|(_, node)| node.clone()).collect()
    }

    async fn page_info(&self) -> PageInfo {
        page_info(&self.edges, self.has_next_page, self.has_previous_page)
    }

    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        match self.total {
            HotelTotal::OfImage(count) => Ok(ctx
                .data::<Loaders>()?
                .load_one(count)
                .await
                .map_err(load)?
                .unwrap_or(0)),
            HotelTotal::WithoutMainImage => {
                let count = ctx
                    .data::<Catalog>()?
                    .count_hotels_without_main_image()
                    .await
                    .map_err(|e| super::error::service(&e))?;
                Ok(count as i64)
            }
        }
    }
}
