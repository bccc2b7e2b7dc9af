//! Management use cases: main image, pins, (de)activation, manual edits and classification,
//! and a hotel's own view of its images (hiding and showing one for the hotel, the hotel's
//! caption and alt text of it).
//!
//! Each is one change through the write kernel ([`super::write`]): authorization that depends
//! on data is checked inside its transaction, hotel-scoped changes lock the hotel's row at the
//! expected version first (optimistic concurrency), and the change, the curation of every
//! affected hotel, one audit row and the outbox events commit together or not at all. An
//! expected failure returns a [`UserError`] and changes nothing.

use std::collections::BTreeSet;

use serde_json::json;

use super::auth::Refused;
use super::events;
use super::write::{
    Caller, Change, UserError, UserErrorCode, Writer, check_score, check_text, retrying,
    use_case_error,
};
use crate::domain::catalog::{
    HotelId, ImageId, LinkStatusBy, MainImageOrigin, Status, Tag, TagOrigin,
};
use crate::store::StoreError;
pub use crate::store::manage::TextsChange;
use crate::store::manage::{self as writes, VersionCheck};

/// Most items `classifyImages` takes.
pub const MAX_CLASSIFY_ITEMS: usize = 500;

use_case_error!(
    /// How a management use case failed.
    ManageError
);

pub type ManageResult<T> = Result<T, ManageError>;

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
    writer: Writer,
}

fn tags(inputs: &[TagInput], origin: TagOrigin, field: &str) -> Result<Vec<Tag>, UserError> {
    let mut seen = BTreeSet::new();
    inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let index = i.to_string();
            check_score(input.confidence, &[field, &index, "confidence"])?;
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

/// Opens a hotel-scoped change: checks the caller's right to manage the hotel (a hotelier's own
/// hotels, or an admin), then locks the hotel's row at `expected` (any version when `None`;
/// see [`writes::lock_hotel`]). Returns the change and the version before it.
pub(crate) async fn begin_hotel_change<E>(
    writer: &Writer,
    caller: &Caller,
    hotel: HotelId,
    expected: Option<i64>,
) -> Result<(Change, i64), E>
where
    E: From<Refused> + From<UserError> + From<StoreError>,
{
    caller.require(caller.actor.may_manage_hotel(hotel))?;
    let change = writer.begin().await?;
    match writes::lock_hotel(change.txn(), hotel, expected, change.now()).await? {
        VersionCheck::Locked(version) => Ok((change, version)),
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

/// Captions and alt texts longer than the catalog allows are refused.
fn check_texts(texts: TextsChange<'_>) -> Result<(), UserError> {
    check_text(texts.caption.flatten(), "caption")?;
    check_text(texts.alt_text.flatten(), "altText")
}

/// `IMAGE_NOT_LINKED` at `imageId`.
pub(crate) fn not_linked() -> UserError {
    not_linked_at("imageId")
}

/// `IMAGE_NOT_LINKED` at `field`.
fn not_linked_at(field: &str) -> UserError {
    UserError::new(
        UserErrorCode::ImageNotLinked,
        &[field],
        "the image is not shown for this hotel",
    )
}

/// The first of `images` that is unknown (`NOT_FOUND`) or taken down (`PURGED`: a purged image
/// stays as it was left), with its position; `None` when every one may change.
async fn refuse_missing_or_purged(
    txn: &crate::store::WriteTxn,
    images: &[ImageId],
) -> Result<Option<(usize, UserError)>, StoreError> {
    let existing = writes::existing_images(txn, images).await?;
    let purged = crate::store::purge::purged_images(txn, images).await?;
    Ok(images.iter().enumerate().find_map(|(i, image)| {
        if !existing.contains(image) {
            Some((
                i,
                UserError::new(UserErrorCode::NotFound, &["imageId"], "no such image"),
            ))
        } else if purged.contains(image) {
            Some((i, super::purge::purged_error("imageId")))
        } else {
            None
        }
    }))
}

/// Each use case below is one transaction, run again (whole) when it fails with a transient
/// error such as a deadlock between concurrent changes of one hotel (see [`retrying`]).
impl Manager {
    pub fn new(writer: Writer) -> Self {
        Self { writer }
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

    /// An admin's edit of the image itself: its own caption and alt text (`Some(None)` clears
    /// one) and manual tags (which beat model tags).
    pub async fn update_image(
        &self,
        caller: &Caller,
        image: ImageId,
        texts: TextsChange<'_>,
        manual_tags: Option<&[TagInput]>,
    ) -> ManageResult<()> {
        retrying(|| self.update_image_once(caller, image, texts, manual_tags)).await
    }

    /// Hides (`visible` false) or shows an image for one hotel: a hotelier for their own
    /// hotels, or an admin. A hotelier cannot show what an admin took offline.
    pub async fn set_link_visibility(
        &self,
        caller: &Caller,
        hotel: HotelId,
        image: ImageId,
        visible: bool,
        reason: Option<&str>,
        expected_version: Option<i64>,
    ) -> ManageResult<()> {
        retrying(|| {
            self.set_link_visibility_once(caller, hotel, image, visible, reason, expected_version)
        })
        .await
    }

    /// The hotel's own caption and alt text of one of its images (its link's): a hotelier for
    /// their own hotels, or an admin.
    pub async fn update_hotel_image(
        &self,
        caller: &Caller,
        hotel: HotelId,
        image: ImageId,
        texts: TextsChange<'_>,
        expected_version: Option<i64>,
    ) -> ManageResult<()> {
        retrying(|| self.update_hotel_image_once(caller, hotel, image, texts, expected_version))
            .await
    }

    /// The tagging pipeline's batch: model tags and quality per image; all or nothing.
    pub async fn classify_images(
        &self,
        caller: &Caller,
        items: &[Classification],
    ) -> ManageResult<Vec<ImageId>> {
        retrying(|| self.classify_images_once(caller, items)).await
    }

    /// Opens a hotel-scoped change (see [`begin_hotel_change`]).
    async fn begin_hotel_change(
        &self,
        caller: &Caller,
        hotel: HotelId,
        expected: Option<i64>,
    ) -> ManageResult<(Change, i64)> {
        begin_hotel_change(&self.writer, caller, hotel, expected).await
    }

    /// Opens an image-scoped change, once the image is known to exist and not purged.
    async fn begin_image_change(&self, image: ImageId) -> ManageResult<Change> {
        let change = self.writer.begin().await?;
        let refusal = refuse_missing_or_purged(change.txn(), &[image]).await?;
        match refusal {
            Some((_, error)) => Err(error.into()),
            None => Ok(change),
        }
    }

    async fn set_main_image_once(
        &self,
        caller: &Caller,
        hotel: HotelId,
        image: ImageId,
        expected_version: Option<i64>,
    ) -> ManageResult<()> {
        let (mut change, before) = self
            .begin_hotel_change(caller, hotel, expected_version)
            .await?;
        let states = writes::link_states(change.txn(), hotel, &[image]).await?;
        match states.get(&image) {
            None => return Err(not_linked().into()),
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
        let now = change.now();
        writes::set_override(change.txn(), hotel, image, origin, &caller.name(), now).await?;
        let published = match change.curate(&[hotel]).await?.first() {
            Some(published) => published.main,
            None => crate::store::read::hotels_on(change.txn(), &[hotel.get()])
                .await?
                .get(&hotel)
                .and_then(|h| h.main.as_ref().map(|m| m.image_id)),
        };
        if published != Some(image) {
            // Dropping the change rolls the override back.
            return Err(UserError::new(
                UserErrorCode::ImageNotEligible,
                &["imageId"],
                "the image is not eligible as a main image (too small, a logo or map, or a duplicate)",
            )
            .into());
        }
        let audit = caller
            .audit(
                "setMainImage",
                json!({ "hotelId": hotel.to_string(), "imageId": image.to_string() }),
            )
            .with_before(json!({ "version": before }))
            .with_after(json!({ "mainImageId": image.to_string(), "origin": origin.as_str() }));
        Ok(change.commit(Some(audit)).await?)
    }

    async fn reset_main_image_once(
        &self,
        caller: &Caller,
        hotel: HotelId,
        expected_version: Option<i64>,
    ) -> ManageResult<()> {
        let (mut change, before) = self
            .begin_hotel_change(caller, hotel, expected_version)
            .await?;
        writes::clear_override(change.txn(), hotel).await?;
        change.curate(&[hotel]).await?;
        let audit = caller
            .audit("resetMainImage", json!({ "hotelId": hotel.to_string() }))
            .with_before(json!({ "version": before }));
        Ok(change.commit(Some(audit)).await?)
    }

    async fn set_gallery_pins_once(
        &self,
        caller: &Caller,
        hotel: HotelId,
        images: &[ImageId],
        expected_version: Option<i64>,
    ) -> ManageResult<()> {
        caller.require(caller.actor.may_manage_hotel(hotel))?;
        let gallery_size = self.writer.rules().gallery_size;
        if images.len() > gallery_size {
            return Err(UserError::too_many("imageIds", gallery_size, "pins").into());
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
        let (mut change, before) = self
            .begin_hotel_change(caller, hotel, expected_version)
            .await?;
        let states = writes::link_states(change.txn(), hotel, images).await?;
        if let Some(i) = images.iter().position(|image| !states.contains_key(image)) {
            return Err(not_linked_at("imageIds").at(i).into());
        }
        writes::set_pins(change.txn(), hotel, images).await?;
        change.curate(&[hotel]).await?;
        let pins: Vec<String> = images.iter().map(ToString::to_string).collect();
        let audit = caller
            .audit("setGalleryPins", json!({ "hotelId": hotel.to_string() }))
            .with_before(json!({ "version": before }))
            .with_after(json!({ "pins": pins }));
        Ok(change.commit(Some(audit)).await?)
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
        // A reason explains a deactivation; activating clears it.
        let stored_reason = reason.filter(|_| !active);
        let mut change = self.begin_image_change(image).await?;
        let now = change.now();
        let linked = writes::linked_hotels(change.txn(), &[image]).await?;
        let affected = match hotels {
            None => {
                writes::set_image_status(change.txn(), image, status, stored_reason, now).await?;
                linked
            }
            Some(wanted) => {
                let linked: BTreeSet<HotelId> = linked.into_iter().collect();
                if let Some(i) = wanted.iter().position(|h| !linked.contains(h)) {
                    return Err(not_linked_at("hotelIds").at(i).into());
                }
                let wanted: Vec<HotelId> = wanted
                    .iter()
                    .copied()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                writes::set_link_status(
                    change.txn(),
                    image,
                    &wanted,
                    status,
                    stored_reason,
                    LinkStatusBy::Admin,
                    now,
                )
                .await?;
                wanted
            }
        };
        change.curate(&affected).await?;
        let operation = if active {
            "activateImage"
        } else {
            "deactivateImage"
        };
        let hotel_ids = hotels.map(|h| h.iter().map(ToString::to_string).collect::<Vec<_>>());
        let audit = caller
            .audit(
                operation,
                json!({ "imageId": image.to_string(), "hotelIds": hotel_ids }),
            )
            .with_after(json!({ "status": status.as_str(), "reason": reason }));
        change.emit(events::status_event(image, active, reason, hotels, now));
        change.commit(Some(audit)).await?;
        Ok(StatusChange {
            image,
            affected_hotels: affected,
        })
    }

    async fn update_image_once(
        &self,
        caller: &Caller,
        image: ImageId,
        texts: TextsChange<'_>,
        manual_tags: Option<&[TagInput]>,
    ) -> ManageResult<()> {
        caller.require(caller.actor.is_admin())?;
        check_texts(texts)?;
        let manual = manual_tags
            .map(|t| tags(t, TagOrigin::Manual, "tags"))
            .transpose()?;
        let mut change = self.begin_image_change(image).await?;
        let now = change.now();
        let mut fields = texts.fields();
        if fields.is_empty() && manual.is_none() {
            // Nothing given: nothing changes, nothing to audit or announce.
            return Ok(());
        }
        if !fields.is_empty() {
            writes::set_image_texts(change.txn(), image, texts, now).await?;
        }
        if let Some(manual) = &manual {
            writes::replace_tags(change.txn(), image, TagOrigin::Manual, manual).await?;
            writes::refresh_categories(change.txn(), &[image]).await?;
            fields.push("tags");
        }
        let hotels = writes::linked_hotels(change.txn(), &[image]).await?;
        change.curate(&hotels).await?;
        let audit = caller
            .audit("updateImage", json!({ "imageId": image.to_string() }))
            .with_after(json!({ "changedFields": fields }));
        change.emit(events::image_updated(image, None, &fields, now));
        Ok(change.commit(Some(audit)).await?)
    }

    async fn set_link_visibility_once(
        &self,
        caller: &Caller,
        hotel: HotelId,
        image: ImageId,
        visible: bool,
        reason: Option<&str>,
        expected_version: Option<i64>,
    ) -> ManageResult<()> {
        check_text(reason, "reason")?;
        let (mut change, before) = self
            .begin_hotel_change(caller, hotel, expected_version)
            .await?;
        let Some((status, set_by)) = writes::link_status(change.txn(), hotel, image).await? else {
            return Err(not_linked().into());
        };
        let by = if caller.actor.is_admin() {
            LinkStatusBy::Admin
        } else {
            LinkStatusBy::Hotelier
        };
        let target = if visible {
            Status::Active
        } else {
            Status::Inactive
        };
        let admins_offline = status == Status::Inactive && set_by == LinkStatusBy::Admin;
        if visible && admins_offline && by == LinkStatusBy::Hotelier {
            return Err(UserError::new(
                UserErrorCode::ImageInactive,
                &["imageId"],
                "an admin took the image offline for this hotel",
            )
            .into());
        }
        // Already so: nothing changes, nothing to audit or announce. Who set the status
        // matters only when an admin hides what a hotelier hid (the admin's mark keeps the
        // hotelier from showing it again); a hotelier's mark never replaces an admin's.
        let upgrades_hide = !visible && by == LinkStatusBy::Admin && set_by != by;
        if status == target && !upgrades_hide {
            return Ok(());
        }
        let operation = if visible { "showImage" } else { "hideImage" };
        let reason = reason.filter(|_| !visible);
        let now = change.now();
        writes::set_link_status(change.txn(), image, &[hotel], target, reason, by, now).await?;
        change.curate(&[hotel]).await?;
        let audit = caller
            .audit(
                operation,
                json!({ "hotelId": hotel.to_string(), "imageId": image.to_string() }),
            )
            .with_before(json!({ "version": before }))
            .with_after(json!({ "status": target.as_str(), "reason": reason }));
        change.emit(events::status_event(
            image,
            visible,
            reason,
            Some(&[hotel]),
            now,
        ));
        Ok(change.commit(Some(audit)).await?)
    }

    async fn update_hotel_image_once(
        &self,
        caller: &Caller,
        hotel: HotelId,
        image: ImageId,
        texts: TextsChange<'_>,
        expected_version: Option<i64>,
    ) -> ManageResult<()> {
        check_texts(texts)?;
        let (mut change, before) = self
            .begin_hotel_change(caller, hotel, expected_version)
            .await?;
        if writes::link_status(change.txn(), hotel, image)
            .await?
            .is_none()
        {
            return Err(not_linked().into());
        }
        let fields = texts.fields();
        if fields.is_empty() {
            // Neither text given: nothing changes, nothing to audit or announce.
            return Ok(());
        }
        let now = change.now();
        writes::set_link_texts(change.txn(), hotel, image, texts, now).await?;
        // The texts are part of the hotel's published view: curation publishes them.
        change.curate(&[hotel]).await?;
        let audit = caller
            .audit(
                "updateHotelImage",
                json!({ "hotelId": hotel.to_string(), "imageId": image.to_string() }),
            )
            .with_before(json!({ "version": before }))
            .with_after(json!({ "caption": texts.caption, "altText": texts.alt_text }));
        change.emit(events::image_updated(image, Some(hotel), &fields, now));
        Ok(change.commit(Some(audit)).await?)
    }

    async fn classify_images_once(
        &self,
        caller: &Caller,
        items: &[Classification],
    ) -> ManageResult<Vec<ImageId>> {
        use super::auth::Scope;
        caller.require(caller.actor.is_admin() || caller.actor.has(Scope::Classify))?;
        if items.len() > MAX_CLASSIFY_ITEMS {
            return Err(UserError::too_many("items", MAX_CLASSIFY_ITEMS, "items").into());
        }
        let mut validated = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let model = tags(&item.tags, TagOrigin::Model, "tags").map_err(|e| e.in_item(i))?;
            if let Some(quality) = item.quality_score {
                check_score(quality, &["qualityScore"]).map_err(|e| e.in_item(i))?;
            }
            validated.push((item.image, model, item.quality_score));
        }
        let images: Vec<ImageId> = items.iter().map(|i| i.image).collect();
        let mut change = self.writer.begin().await?;
        let now = change.now();
        if let Some((i, error)) = refuse_missing_or_purged(change.txn(), &images).await? {
            return Err(error.in_item(i).into());
        }
        for (image, model, quality) in &validated {
            writes::replace_tags(change.txn(), *image, TagOrigin::Model, model).await?;
            let mut fields = vec!["tags"];
            if let Some(quality) = quality {
                writes::set_quality(change.txn(), *image, *quality, now).await?;
                fields.push("qualityScore");
            }
            change.emit(events::image_updated(*image, None, &fields, now));
        }
        writes::refresh_categories(change.txn(), &images).await?;
        let hotels = writes::linked_hotels(change.txn(), &images).await?;
        change.curate(&hotels).await?;
        let ids: Vec<String> = images.iter().map(ToString::to_string).collect();
        let audit = caller.audit("classifyImages", json!({ "imageIds": ids }));
        change.commit(Some(audit)).await?;
        Ok(images)
    }
}
