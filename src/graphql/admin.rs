//! The admin tool's queries (scope `images:admin`): the audit log, image search, the hotels
//! without a main image, and the catalog's business figures. Anonymous callers get `UNAUTHENTICATED`, other tokens `FORBIDDEN`.

use async_graphql::{Context, ID, InputObject, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use super::connection::{CursorKind, PageArgs, PageInfo, page_info};
use super::error::{bad_input, refused, service};
use super::ingest::ImportOutcome;
use super::types::{
    Hotel, HotelConnection, HotelTotal, ImageCategory, ImageConnection, ImageStatus, ImageTotal,
    MainImageOrigin, load_images,
};
use crate::service::auth::Actor;
use crate::service::catalog::Catalog;
use crate::store::admin::{AuditFilter, AuditRecord};
use crate::store::search::ImageSearch;

/// Which audit rows to list; every condition given must hold.
#[derive(InputObject, Default)]
pub struct AuditLogFilter {
    /// Rows that name this hotel (setMainImage, setGalleryPins, uploadImage, a deactivation
    /// for some hotels, ...).
    pub hotel_id: Option<ID>,
    /// Rows that name this image.
    pub image_id: Option<ID>,
    /// The token subject (or system name) that made the change.
    pub actor: Option<String>,
    /// The operation, e.g. `setMainImage`, `deactivateImage`, `importImages`.
    pub action: Option<String>,
    /// Written at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Written before this time.
    pub to: Option<DateTime<Utc>>,
}

impl AuditLogFilter {
    fn parse(self) -> Result<AuditFilter> {
        Ok(AuditFilter {
            hotel: filter_id(self.hotel_id, "hotelId")?,
            image: filter_id(self.image_id, "imageId")?,
            actor: self.actor,
            action: self.action,
            from: self.from,
            to: self.to,
        })
    }
}

/// An ID of the filter, parsed; a malformed one is `BAD_USER_INPUT`.
fn filter_id<T: std::str::FromStr>(id: Option<ID>, name: &str) -> Result<Option<T>> {
    id.map(|id| {
        id.parse()
            .map_err(|_| bad_input(format!("`filter.{name}` is not a valid ID")))
    })
    .transpose()
}

/// One change: who made it, what, when, with which request, and the state before and after.
pub struct AuditEntry(AuditRecord);

/// A stored JSON text as a JSON value (as text when it no longer parses).
fn json(text: &str) -> Json<serde_json::Value> {
    Json(serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.into())))
}

#[Object]
impl AuditEntry {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// When the change committed.
    async fn at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// The token subject (or system name, e.g. `recompute`) that made the change.
    async fn actor(&self) -> &str {
        &self.0.actor
    }

    /// The operation, e.g. `setMainImage`.
    async fn action(&self) -> &str {
        &self.0.action
    }

    /// The `x-request-id` of the request that made the change.
    async fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// The IDs the change was about, e.g. `{"hotelId": "4", "imageId": "12"}`.
    async fn entity_ids(&self) -> Json<serde_json::Value> {
        json(&self.0.entity_ids)
    }

    /// The state before the change, as far as the operation records it.
    async fn before(&self) -> Option<Json<serde_json::Value>> {
        self.0.before.as_deref().map(json)
    }

    /// The state after the change, as far as the operation records it.
    async fn after(&self) -> Option<Json<serde_json::Value>> {
        self.0.after.as_deref().map(json)
    }
}

#[derive(SimpleObject)]
pub struct AuditEntryEdge {
    pub cursor: String,
    pub node: AuditEntry,
}

/// A page of the audit log, newest first.
pub struct AuditEntryConnection {
    entries: Vec<AuditRecord>,
    has_next_page: bool,
    has_previous_page: bool,
}

impl AuditEntryConnection {
    fn cursors(&self) -> Vec<(String, &AuditRecord)> {
        self.entries
            .iter()
            .map(|entry| (CursorKind::AuditLog.encode(entry.id), entry))
            .collect()
    }
}

#[Object]
impl AuditEntryConnection {
    async fn edges(&self) -> Vec<AuditEntryEdge> {
        self.cursors()
            .into_iter()
            .map(|(cursor, entry)| AuditEntryEdge {
                cursor,
                node: AuditEntry(entry.clone()),
            })
            .collect()
    }

    async fn nodes(&self) -> Vec<AuditEntry> {
        self.entries.iter().cloned().map(AuditEntry).collect()
    }

    async fn page_info(&self) -> PageInfo {
        page_info(&self.cursors(), self.has_next_page, self.has_previous_page)
    }
}

/// Admins only: `UNAUTHENTICATED` without a token, `FORBIDDEN` with another one.
fn require_admin(ctx: &Context<'_>) -> Result<()> {
    let actor = ctx.data::<Actor>()?;
    actor.require(actor.is_admin()).map_err(refused)
}

pub async fn audit_log(
    ctx: &Context<'_>,
    filter: Option<AuditLogFilter>,
    first: i32,
    after: Option<String>,
) -> Result<AuditEntryConnection> {
    require_admin(ctx)?;
    let page = PageArgs::parse(first, after.as_deref(), CursorKind::AuditLog)?;
    let filter = filter.unwrap_or_default().parse()?;
    let entries = ctx
        .data::<Catalog>()?
        .audit_log(&filter, page.window())
        .await
        .map_err(|e| service(&e))?;
    let (entries, has_next_page) = page.split(entries);
    Ok(AuditEntryConnection {
        entries,
        has_next_page,
        has_previous_page: page.after.is_some(),
    })
}

/// Which images `searchImages` lists; every condition given must hold.
#[derive(InputObject, Default)]
pub struct SearchImagesFilter {
    /// The image's own status (everywhere; a link's status for one hotel does not count).
    pub status: Option<ImageStatus>,
    /// Where the image is in processing (PENDING, READY, FAILED).
    pub processing_state: Option<crate::graphql::types::ProcessingState>,
    /// Images this partner delivered (is a source of, retired or not).
    pub partner_id: Option<ID>,
    /// The image's category (its highest-confidence tag, manual tags first).
    pub category: Option<ImageCategory>,
    /// Quality at least this (0..1): the model's score, else the measured one, else 0.
    pub min_quality: Option<f64>,
    /// Quality at most this (0..1), counted the same way.
    pub max_quality: Option<f64>,
    /// `true`: images without any tag (the tagging backlog); `false`: images with one.
    pub unclassified: Option<bool>,
    /// Images linked to this hotel (active or not).
    pub hotel_id: Option<ID>,
    /// Created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before this time.
    pub created_before: Option<DateTime<Utc>>,
}

impl SearchImagesFilter {
    fn parse(self) -> Result<ImageSearch> {
        for (name, value) in [
            ("minQuality", self.min_quality),
            ("maxQuality", self.max_quality),
        ] {
            if value.is_some_and(|q| !(0.0..=1.0).contains(&q)) {
                return Err(bad_input(format!(
                    "`filter.{name}` must be between 0 and 1"
                )));
            }
        }
        if let (Some(min), Some(max)) = (self.min_quality, self.max_quality)
            && min > max
        {
            return Err(bad_input(
                "`filter.minQuality` is above `filter.maxQuality`",
            ));
        }
        if let (Some(after), Some(before)) = (self.created_after, self.created_before)
            && after >= before
        {
            return Err(bad_input(
                "`filter.createdAfter` must be before `filter.createdBefore`",
            ));
        }
        Ok(ImageSearch {
            status: self.status.map(Into::into),
            processing: self.processing_state.map(Into::into),
            partner: filter_id(self.partner_id, "partnerId")?,
            category: self.category.map(Into::into),
            min_quality: self.min_quality,
            max_quality: self.max_quality,
            unclassified: self.unclassified,
            hotel: filter_id(self.hotel_id, "hotelId")?,
            created_after: self.created_after,
            created_before: self.created_before,
        })
    }
}

/// Rows of its driving index a search page may examine per item asked for: what bounds the
/// cost of a page whose filter matches few of the rows it reads (see `store::search`).
pub const SEARCH_SCAN_PER_ITEM: u64 = 50;

pub async fn search_images(
    ctx: &Context<'_>,
    filter: Option<SearchImagesFilter>,
    first: i32,
    after: Option<String>,
) -> Result<ImageConnection> {
    require_admin(ctx)?;
    let page = PageArgs::parse(first, after.as_deref(), CursorKind::SearchImages)?;
    let filter = filter.unwrap_or_default().parse()?;
    let found = ctx
        .data::<Catalog>()?
        .search_images(&filter, page.window(), page.first * SEARCH_SCAN_PER_ITEM)
        .await
        .map_err(|e| service(&e))?;
    let (ids, has_next_page) = page.split(found.ids);
    let edges = load_images(ctx, &ids)
        .await?
        .into_iter()
        .map(|image| {
            (
                CursorKind::SearchImages.encode(image.record.id.get()),
                image,
            )
        })
        .collect();
    Ok(ImageConnection {
        edges,
        has_next_page: has_next_page || found.stopped_at.is_some(),
        has_previous_page: page.after.is_some(),
        total: ImageTotal::NotCounted,
        resume: found
            .stopped_at
            .map(|id| CursorKind::SearchImages.encode(id)),
    })
}

pub async fn hotels_without_main_image(
    ctx: &Context<'_>,
    first: i32,
    after: Option<String>,
) -> Result<HotelConnection> {
    require_admin(ctx)?;
    let page = PageArgs::parse(first, after.as_deref(), CursorKind::HotelsWithoutMainImage)?;
    let ids = ctx
        .data::<Catalog>()?
        .hotels_without_main_image(page.window())
        .await
        .map_err(|e| service(&e))?;
    let (ids, has_next_page) = page.split(ids);
    Ok(HotelConnection {
        edges: ids
            .into_iter()
            .map(|id| {
                let cursor = CursorKind::HotelsWithoutMainImage.encode(id.get());
                (cursor, Hotel { id })
            })
            .collect(),
        has_next_page,
        has_previous_page: page.after.is_some(),
        total: HotelTotal::WithoutMainImage,
    })
}

/// Hotels whose main image was chosen one way.
#[derive(SimpleObject)]
pub struct MainImageOriginCount {
    pub origin: MainImageOrigin,
    pub count: i64,
    /// Of the hotels with a main image, 0..1.
    pub share: f64,
}

#[derive(SimpleObject)]
pub struct ImageStatusCount {
    pub status: ImageStatus,
    pub count: i64,
}

/// Items one partner imported with one outcome.
#[derive(SimpleObject)]
pub struct ImportOutcomeCount {
    pub partner_id: ID,
    pub outcome: ImportOutcome,
    /// Over the last 24 hours.
    pub last_day: i64,
    /// Over the last 7 days.
    pub last_week: i64,
}

/// The catalog's business figures, computed when asked.
#[derive(SimpleObject)]
pub struct CatalogStats {
    /// When they were computed.
    pub at: DateTime<Utc>,
    pub hotels: i64,
    pub hotels_with_main_image: i64,
    pub hotels_without_main_image: i64,
    /// Who chose the main images: computed, hoteliers, admins.
    pub main_images_by_origin: Vec<MainImageOriginCount>,
    pub images_by_status: Vec<ImageStatusCount>,
    /// Images without any tag, model or manual: the tagging pipeline's backlog.
    pub unclassified_images: i64,
    /// Per partner and outcome, items of the import batches of the last day and week.
    pub import_outcomes: Vec<ImportOutcomeCount>,
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub async fn catalog_stats(ctx: &Context<'_>) -> Result<CatalogStats> {
    require_admin(ctx)?;
    let stats = ctx
        .data::<Catalog>()?
        .stats()
        .await
        .map_err(|e| service(&e))?;
    let with_main = stats.hotels_with_main_image();
    Ok(CatalogStats {
        at: stats.at,
        hotels: count(with_main + stats.hotels_without_main_image),
        hotels_with_main_image: count(with_main),
        hotels_without_main_image: count(stats.hotels_without_main_image),
        main_images_by_origin: stats
            .main_images_by_origin
            .iter()
            .map(|(origin, n)| MainImageOriginCount {
                origin: (*origin).into(),
                count: count(*n),
                share: stats.main_image_share(*origin),
            })
            .collect(),
        images_by_status: stats
            .images_by_status
            .iter()
            .map(|(status, n)| ImageStatusCount {
                status: (*status).into(),
                count: count(*n),
            })
            .collect(),
        unclassified_images: count(stats.unclassified_images),
        import_outcomes: stats
            .imports
            .iter()
            .map(|((partner, outcome), n)| ImportOutcomeCount {
                partner_id: ID(partner.to_string()),
                outcome: (*outcome).into(),
                last_day: count(n.last_day),
                last_week: count(n.last_week),
            })
            .collect(),
    })
}
