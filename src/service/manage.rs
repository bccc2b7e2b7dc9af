//! Management use cases: main image, pins, (de)activation, manual edits and classification.
//!
//! Every change runs in one transaction: authorization that depends on data is checked inside
//! it, hotel-scoped changes lock the hotel's row at the expected version first (optimistic
//! concurrency), and the change, the curation of every affected hotel, one audit row and the
//! outbox events commit together or not at all. An expected failure returns a [`UserError`]
//! and changes nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;
use serde_json::json;

use super::auth::Actor;
use super::events;
use super::freshness::Freshness;
use crate::cache::CacheKey;
use crate::domain::catalog::{HotelId, ImageId, MainImageOrigin, Status, Tag, TagOrigin};
use crate::domain::curation::Rules;
use crate::store::manage::{self as writes, AuditEntry, OutboxEvent, VersionCheck};
use crate::store::publish::{PublishedChange, publish};
use crate::store::{Store, StoreError};

/// Hotels curated per statement batch when one change touches many of them.
const CURATION_CHUNK: usize = 500;
/// Most items `classifyImages` takes.
pub const MAX_CLASSIFY_ITEMS: usize = 500;
/// Longest caption or reason.
pub const MAX_TEXT: usize = 1_000;

/// A stable code for an expected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserErrorCode {
    NotFound,
    StaleVersion,
    ImageNotLinked,
    ImageInactive,
    ImageNotEligible,
    InvalidInput,
    TooManyItems,
}

/// An expected failure: where in the input (`field`, a path), and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    pub code: UserErrorCode,
    pub field: Vec<String>,
    pub message: String,
}

impl UserError {
    pub fn new(code: UserErrorCode, field: &[&str], message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.iter().map(|s| (*s).to_owned()).collect(),
            message: message.into(),
        }
    }

    fn at(mut self, index: usize) -> Self {
        self.field.insert(1, index.to_string());
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("not allowed for this caller")]
    Forbidden,
    #[error(transparent)]
    User(#[from] UserError),
    #[error("unexpected failure")]
    Unexpected(#[from] StoreError),
}

impl From<sea_orm::DbErr> for ManageError {
    fn from(error: sea_orm::DbErr) -> Self {
        ManageError::Unexpected(StoreError::Db(error))
    }
}

pub type ManageResult<T> = Result<T, ManageError>;

/// Who asks, and the request it came with (for the audit log).
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    pub request_id: Option<String>,
}

impl Caller {
    /// The caller acting on its own behalf: the import command, seeding.
    pub fn system(name: &str) -> Self {
        Self {
            actor: Actor {
                subject: Some(name.to_owned()),
                scopes: [super::auth::Scope::Admin].into(),
                ..Actor::default()
            },
            request_id: None,
        }
    }

    /// Who the audit log names: the token's subject.
    pub(crate) fn name(&self) -> String {
        self.actor
            .subject
            .clone()
            .unwrap_or_else(|| "anonymous".to_owned())
    }

    pub(super) fn require(&self, allowed: bool) -> ManageResult<()> {
        if allowed {
            Ok(())
        } else {
            Err(ManageError::Forbidden)
        }
    }
}

/// One tag as given by a client, before validation.
#[derive(Debug, Clone, Copy)]
pub struct TagInput {
    pub category: crate::domain::catalog::Category,
    pub confidence: f64,
}

/// One item of a classification batch.
#[derive(Debug, Clone)]
pub struct Classification {
    pub image: ImageId,
    pub tags: Vec<TagInput>,
    pub quality_score: Option<f64>,
}

/// What `deactivateImage`/`activateImage` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub image: ImageId,
    /// The hotels whose link (or whose view of the image) changed.
    pub affected_hotels: Vec<HotelId>,
}

#[derive(Clone, Debug)]
pub struct Manager {
    store: Store,
    rules: Arc<Rules>,
    /// Told what each committed change made stale.
    freshness: Freshness,
}

fn check_text(value: Option<&str>, field: &str) -> Result<(), UserError> {
    match value {
        Some(text) if text.chars().count() > MAX_TEXT => Err(UserError::new(
            UserErrorCode::InvalidInput,
            &[field],
            format!("at most {MAX_TEXT} characters"),
        )),
        _ => Ok(()),
    }
}

fn check_unit(value: f64, field: &[&str]) -> Result<(), UserError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(UserError::new(
            UserErrorCode::InvalidInput,
            field,
            "must be between 0 and 1",
        ))
    }
}

fn tags(inputs: &[TagInput], origin: TagOrigin, field: &str) -> Result<Vec<Tag>, UserError> {
    let mut seen = BTreeSet::new();
    inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let index = i.to_string();
            check_unit(input.confidence, &[field, &index, "confidence"])?;
            if !seen.insert(input.category) {
                return Err(UserError::new(
                    UserErrorCode::InvalidInput,
                    &[field, &index, "category"],
                    "each category at most once",
                ));
            }
            Ok(Tag {
                category: input.category,
                confidence: input.confidence,
                origin,
            })
        })
        .collect()
}

/// Each use case below is one transaction, run again (whole) when it fails with a transient
/// error such as a deadlock between concurrent changes of one hotel (see [`retrying`]).
impl Manager {
    pub fn new(store: Store, rules: Rules, freshness: Freshness) -> Self {
        Self {
            store,
            rules: Arc::new(rules),
            freshness,
        }
    }

    /// The hotelier's (own hotels) or admin's choice of main image.
    pub async fn set_main_image(
        &self,
        caller: &Caller,
        hotel: HotelId,
        image: ImageId,
        expected_version: Option<i64>,
    ) -> ManageResult<()> {
        retrying(|| self.set_main_image_once(caller, hotel, image, expected_version)).await
    }

    /// Back to the computed main image.
    pub async fn reset_main_image(
        &self,
        caller: &Caller,
        hotel: HotelId,
        expected_version: Option<i64>,
    ) -> ManageResult<()> {
        retrying(|| self.reset_main_image_once(caller, hotel, expected_version)).await
    }

    /// These images lead the gallery, in this order, after the main image.
    pub async fn set_gallery_pins(
        &self,
        caller: &Caller,
        hotel: HotelId,
        images: &[ImageId],
        expected_version: Option<i64>,
    ) -> ManageResult<()> {
        retrying(|| self.set_gallery_pins_once(caller, hotel, images, expected_version)).await
    }

    /// Deactivates (`active` false) or activates an image everywhere (`hotels` is `None`) or
    /// for some hotels only; curates every hotel affected.
    pub async fn set_image_status(
        &self,
        caller: &Caller,
        image: ImageId,
        active: bool,
        reason: Option<&str>,
        hotels: Option<&[HotelId]>,
    ) -> ManageResult<StatusChange> {
        retrying(|| self.set_image_status_once(caller, image, active, reason, hotels)).await
    }

    /// An admin's edit: caption (`Some(None)` clears it) and manual tags (which beat model tags).
    pub async fn update_image(
        &self,
        caller: &Caller,
        image: ImageId,
        caption: Option<Option<&str>>,
        manual_tags: Option<&[TagInput]>,
    ) -> ManageResult<()> {
        retrying(|| self.update_image_once(caller, image, caption, manual_tags)).await
    }

    /// The tagging pipeline's batch: model tags and quality per image; all or nothing.
    pub async fn classify_images(
        &self,
        caller: &Caller,
        items: &[Classification],
    ) -> ManageResult<Vec<ImageId>> {
        retrying(|| self.classify_images_once(caller, items)).await
    }

    async fn begin(&self) -> ManageResult<DatabaseTransaction> {
        Ok(self.store.begin_write().await?)
    }

    /// Locks `hotel` at `expected` (see [`writes::lock_hotel`]).
    async fn lock(
        txn: &DatabaseTransaction,
        hotel: HotelId,
        expected: Option<i64>,
        now: DateTime<Utc>,
    ) -> ManageResult<i64> {
        match writes::lock_hotel(txn, hotel, expected, now).await? {
            VersionCheck::Locked(version) => Ok(version),
            VersionCheck::NotFound => {
                Err(UserError::new(UserErrorCode::NotFound, &["hotelId"], "no such hotel").into())
            }
            VersionCheck::Stale { actual } => Err(UserError::new(
                UserErrorCode::StaleVersion,
                &["expectedVersion"],
                format!("the hotel is at version {actual}"),
            )
            .into()),
        }
    }

    /// Curates `hotels` in chunks on `txn`.
    async fn curate(
        &self,
        txn: &DatabaseTransaction,
        hotels: &[HotelId],
        now: DateTime<Utc>,
    ) -> ManageResult<Vec<PublishedChange>> {
        curate(txn, &self.rules, hotels, now).await
    }

    /// Opens the transaction of a hotel-scoped change: checks the caller's right to the hotel,
    /// then locks the hotel at `expected`. Returns the transaction, the time of the change and
    /// the version before it.
    async fn begin_hotel_change(
        &self,
        caller: &Caller,
        hotel: HotelId,
        expected: Option<i64>,
    ) -> ManageResult<(DatabaseTransaction, DateTime<Utc>, i64)> {
        caller.require(caller.actor.may_manage_hotel(hotel))?;
        let now = Utc::now();
        let txn = self.begin().await?;
        let before = Self::lock(&txn, hotel, expected, now).await?;
        Ok((txn, now, before))
    }

    async fn set_main_image_once(
        &self,
        caller: &Caller,
        hotel: HotelId,
        image: ImageId,
        expected_version: Option<i64>,
    ) -> ManageResult<()> {
        let (txn, now, before) = self
            .begin_hotel_change(caller, hotel, expected_version)
            .await?;
        let states = writes::link_states(&txn, hotel, &[image]).await?;
        match states.get(&image) {
            None => {
                return Err(UserError::new(
                    UserErrorCode::ImageNotLinked,
                    &["imageId"],
                    "the image is not shown for this hotel",
                )
                .into());
            }
            Some((Status::Active, Status::Active)) => {}
            Some(_) => {
                return Err(UserError::new(
                    UserErrorCode::ImageInactive,
                    &["imageId"],
                    "the image is inactive for this hotel",
                )
                .into());
            }
        }
        let origin = if caller.actor.is_admin() {
            MainImageOrigin::Admin
        } else {
            MainImageOrigin::Hotelier
        };
        writes::set_override(&txn, hotel, image, origin, &caller.name(), now).await?;
        let changes = self.curate(&txn, &[hotel], now).await?;
        let published = match changes.first() {
            Some(change) => change.main,
            None => crate::store::read::hotels_on(&txn, &[hotel.get()])
                .await?
                .get(&hotel)
                .and_then(|h| h.main.as_ref().map(|m| m.image_id)),
        };
        if published != Some(image) {
            // Dropping the transaction rolls the override back.
            return Err(UserError::new(
                UserErrorCode::ImageNotEligible,
                &["imageId"],
                "the image is not eligible as a main image (too small, a logo or map, or a duplicate)",
            )
            .into());
        }
        let mut audit = audit_entry(
            caller,
            "setMainImage",
            json!({ "hotelId": hotel.to_string(), "imageId": image.to_string() }),
        );
        audit.before = Some(json!({ "version": before }));
        audit.after = Some(json!({ "mainImageId": image.to_string(), "origin": origin.as_str() }));
        commit(&self.freshness, txn, audit, Vec::new(), &changes, now).await
    }

    async fn reset_main_image_once(
        &self,
        caller: &Caller,
        hotel: HotelId,
        expected_version: Option<i64>,
    ) -> ManageResult<()> {
        let (txn, now, before) = self
            .begin_hotel_change(caller, hotel, expected_version)
            .await?;
        writes::clear_override(&txn, hotel).await?;
        let changes = self.curate(&txn, &[hotel], now).await?;
        let mut audit = audit_entry(
            caller,
            "resetMainImage",
            json!({ "hotelId": hotel.to_string() }),
        );
        audit.before = Some(json!({ "version": before }));
        commit(&self.freshness, txn, audit, Vec::new(), &changes, now).await
    }

    async fn set_gallery_pins_once(
        &self,
        caller: &Caller,
        hotel: HotelId,
        images: &[ImageId],
        expected_version: Option<i64>,
    ) -> ManageResult<()> {
        caller.require(caller.actor.may_manage_hotel(hotel))?;
        if images.len() > self.rules.gallery_size {
            return Err(UserError::new(
                UserErrorCode::TooManyItems,
                &["imageIds"],
                format!("at most {} pins", self.rules.gallery_size),
            )
            .into());
        }
        let mut seen = BTreeSet::new();
        if let Some(i) = images.iter().position(|image| !seen.insert(*image)) {
            return Err(UserError::new(
                UserErrorCode::InvalidInput,
                &["imageIds"],
                "each image at most once",
            )
            .at(i)
            .into());
        }
        let (txn, now, before) = self
            .begin_hotel_change(caller, hotel, expected_version)
            .await?;
        let states = writes::link_states(&txn, hotel, images).await?;
        if let Some(i) = images.iter().position(|image| !states.contains_key(image)) {
            return Err(UserError::new(
                UserErrorCode::ImageNotLinked,
                &["imageIds"],
                "the image is not shown for this hotel",
            )
            .at(i)
            .into());
        }
        writes::set_pins(&txn, hotel, images).await?;
        let changes = self.curate(&txn, &[hotel], now).await?;
        let mut audit = audit_entry(
            caller,
            "setGalleryPins",
            json!({ "hotelId": hotel.to_string() }),
        );
        audit.before = Some(json!({ "version": before }));
        audit.after =
            Some(json!({ "pins": images.iter().map(ToString::to_string).collect::<Vec<_>>() }));
        commit(&self.freshness, txn, audit, Vec::new(), &changes, now).await
    }

    async fn set_image_status_once(
        &self,
        caller: &Caller,
        image: ImageId,
        active: bool,
        reason: Option<&str>,
        hotels: Option<&[HotelId]>,
    ) -> ManageResult<StatusChange> {
        caller.require(caller.actor.is_admin())?;
        check_text(reason, "reason")?;
        let status = if active {
            Status::Active
        } else {
            Status::Inactive
        };
        let now = Utc::now();
        let txn = self.begin().await?;
        if writes::existing_images(&txn, &[image]).await?.is_empty() {
            return Err(
                UserError::new(UserErrorCode::NotFound, &["imageId"], "no such image").into(),
            );
        }
        let linked = writes::linked_hotels(&txn, &[image]).await?;
        let affected = match hotels {
            None => {
                writes::set_image_status(&txn, image, status, reason.filter(|_| !active), now)
                    .await?;
                linked
            }
            Some(wanted) => {
                let linked: BTreeSet<HotelId> = linked.into_iter().collect();
                if let Some(i) = wanted.iter().position(|h| !linked.contains(h)) {
                    return Err(UserError::new(
                        UserErrorCode::ImageNotLinked,
                        &["hotelIds"],
                        "the image is not shown for this hotel",
                    )
                    .at(i)
                    .into());
                }
                let wanted: Vec<HotelId> = wanted
                    .iter()
                    .copied()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                writes::set_link_status(
                    &txn,
                    image,
                    &wanted,
                    status,
                    reason.filter(|_| !active),
                    now,
                )
                .await?;
                wanted
            }
        };
        let changes = self.curate(&txn, &affected, now).await?;
        let operation = if active {
            "activateImage"
        } else {
            "deactivateImage"
        };
        let mut audit = audit_entry(
            caller,
            operation,
            json!({ "imageId": image.to_string(), "hotelIds": hotels.map(|h| h.iter().map(ToString::to_string).collect::<Vec<_>>()) }),
        );
        audit.after = Some(json!({ "status": status.as_str(), "reason": reason }));
        let event = events::status_event(image, active, reason, hotels, now);
        commit(&self.freshness, txn, audit, vec![event], &changes, now).await?;
        Ok(StatusChange {
            image,
            affected_hotels: affected,
        })
    }

    async fn update_image_once(
        &self,
        caller: &Caller,
        image: ImageId,
        caption: Option<Option<&str>>,
        manual_tags: Option<&[TagInput]>,
    ) -> ManageResult<()> {
        caller.require(caller.actor.is_admin())?;
        check_text(caption.flatten(), "caption")?;
        let manual = manual_tags
            .map(|t| tags(t, TagOrigin::Manual, "tags"))
            .transpose()?;
        let now = Utc::now();
        let txn = self.begin().await?;
        if writes::existing_images(&txn, &[image]).await?.is_empty() {
            return Err(
                UserError::new(UserErrorCode::NotFound, &["imageId"], "no such image").into(),
            );
        }
        let mut fields = Vec::new();
        if let Some(caption) = caption {
            writes::set_caption(&txn, image, caption, now).await?;
            fields.push("caption");
        }
        if let Some(manual) = &manual {
            writes::replace_tags(&txn, image, TagOrigin::Manual, manual).await?;
            writes::refresh_categories(&txn, &[image]).await?;
            fields.push("tags");
        }
        let hotels = writes::linked_hotels(&txn, &[image]).await?;
        let changes = self.curate(&txn, &hotels, now).await?;
        let mut audit = audit_entry(
            caller,
            "updateImage",
            json!({ "imageId": image.to_string() }),
        );
        audit.after = Some(json!({ "changedFields": fields }));
        let event = events::image_updated(image, &fields, now);
        commit(&self.freshness, txn, audit, vec![event], &changes, now).await
    }

    async fn classify_images_once(
        &self,
        caller: &Caller,
        items: &[Classification],
    ) -> ManageResult<Vec<ImageId>> {
        use super::auth::Scope;
        caller.require(caller.actor.is_admin() || caller.actor.has(Scope::Classify))?;
        if items.len() > MAX_CLASSIFY_ITEMS {
            return Err(UserError::new(
                UserErrorCode::TooManyItems,
                &["items"],
                format!("at most {MAX_CLASSIFY_ITEMS} items"),
            )
            .into());
        }
        let mut validated = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let model = tags(&item.tags, TagOrigin::Model, "tags").map_err(|e| prefix(e, i))?;
            if let Some(quality) = item.quality_score {
                check_unit(quality, &["qualityScore"]).map_err(|e| prefix(e, i))?;
            }
            validated.push((item.image, model, item.quality_score));
        }
        let images: Vec<ImageId> = items.iter().map(|i| i.image).collect();
        let now = Utc::now();
        let txn = self.begin().await?;
        let existing = writes::existing_images(&txn, &images).await?;
        if let Some(i) = images.iter().position(|image| !existing.contains(image)) {
            return Err(prefix(
                UserError::new(UserErrorCode::NotFound, &["imageId"], "no such image"),
                i,
            )
            .into());
        }
        let mut events = Vec::with_capacity(validated.len());
        for (image, model, quality) in &validated {
            writes::replace_tags(&txn, *image, TagOrigin::Model, model).await?;
            let mut fields = vec!["tags"];
            if let Some(quality) = quality {
                writes::set_quality(&txn, *image, *quality, now).await?;
                fields.push("qualityScore");
            }
            events.push(events::image_updated(*image, &fields, now));
        }
        writes::refresh_categories(&txn, &images).await?;
        let hotels = writes::linked_hotels(&txn, &images).await?;
        let changes = self.curate(&txn, &hotels, now).await?;
        let audit = audit_entry(
            caller,
            "classifyImages",
            json!({ "imageIds": images.iter().map(ToString::to_string).collect::<Vec<_>>() }),
        );
        commit(&self.freshness, txn, audit, events, &changes, now).await?;
        Ok(images)
    }
}

/// Curates `hotels` in chunks on `txn` (shared by every use case that changes hotels).
pub(crate) async fn curate(
    txn: &DatabaseTransaction,
    rules: &Rules,
    hotels: &[HotelId],
    now: DateTime<Utc>,
) -> ManageResult<Vec<PublishedChange>> {
    let mut changes = Vec::new();
    for chunk in hotels.chunks(CURATION_CHUNK) {
        changes.extend(publish(txn, chunk, rules, now).await?);
    }
    Ok(changes)
}

/// Writes the audit row and the events (with the curation events of `changes`), commits, then
/// tells the cache what the change made stale and wakes the outbox relay.
pub(crate) async fn commit(
    freshness: &Freshness,
    txn: DatabaseTransaction,
    audit: AuditEntry,
    mut events: Vec<OutboxEvent>,
    changes: &[PublishedChange],
    now: DateTime<Utc>,
) -> ManageResult<()> {
    events.extend(events::curation_events(changes, now));
    let stale = stale_keys(changes, &events);
    writes::append_audit(&txn, audit, now).await?;
    writes::append_events(&txn, events, now).await?;
    txn.commit().await?;
    freshness.committed(&stale).await;
    Ok(())
}

/// What a change made stale: every hotel whose published row it wrote, and every image an
/// event names (the events name each image whose stored fields changed).
pub(crate) fn stale_keys(changes: &[PublishedChange], events: &[OutboxEvent]) -> Vec<CacheKey> {
    let hotels = changes.iter().map(|c| CacheKey::Hotel(c.hotel_id));
    let images = events
        .iter()
        .filter(|e| e.aggregate_type == events::IMAGE)
        .filter_map(|e| e.aggregate_id.parse().ok())
        .map(CacheKey::Image);
    let keys: BTreeSet<CacheKey> = hotels.chain(images).collect();
    keys.into_iter().collect()
}

/// Runs of one transaction before a transient failure is given up on.
const MAX_ATTEMPTS: u32 = 6;

/// Runs `attempt` again while it fails with a transient store error (a deadlock, a
/// serialization failure, SQLite's busy database), backing off a little: every use case is one
/// transaction that can simply run again.
pub(crate) async fn retrying<T, F, Fut>(mut attempt: F) -> ManageResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ManageResult<T>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(ManageError::Unexpected(error)) if error.is_transient() && tries < MAX_ATTEMPTS => {
                tracing::debug!(%error, tries, "transient failure; running the transaction again");
                let jitter = u64::from(rand::random::<u8>() % 20);
                tokio::time::sleep(Duration::from_millis(10 * u64::from(tries) + jitter)).await;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// An audit row of `operation` by `caller` (before/after left to the use case).
pub(super) fn audit_entry(
    caller: &Caller,
    operation: &'static str,
    entity_ids: serde_json::Value,
) -> AuditEntry {
    AuditEntry {
        actor: caller.name(),
        operation,
        entity_ids,
        before: None,
        after: None,
        request_id: caller.request_id.clone(),
    }
}

/// Puts an item's error under `items.<index>`.
fn prefix(mut error: UserError, index: usize) -> UserError {
    error
        .field
        .splice(0..0, ["items".to_owned(), index.to_string()]);
    error
}
