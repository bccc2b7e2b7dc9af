//! Writes of the management and upload use cases, on the caller's transaction: optimistic
//! version guards, main-image overrides, pins, statuses, tags, quality, captions, and the rows
//! of an upload.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use entity::{gallery_pin, hotel, hotel_image, image, image_tag, main_image_override};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::WriteTxn;
use super::rows::{self, NewImage};
use super::{StoreError, StoreResult, hotel_id, image_id};
use crate::domain::catalog::{
    Category, HotelId, ImageId, LinkStatusBy, MainImageOrigin, PartnerKind, Status, Tag, TagOrigin,
    effective_category,
};

/// Why a hotel could not be locked for a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionCheck {
    /// Locked: the change may proceed. Carries the version before the change.
    Locked(i64),
    NotFound,
    /// The hotel is at another version than the caller expected.
    Stale {
        actual: i64,
    },
}

/// Locks the hotel's row for the rest of the transaction, if it is at `expected` (any version
/// when `None`). This is the first statement of a hotel-scoped change: it takes the write lock
/// at once (also on SQLite), so concurrent changes with the same expected version queue here
/// and all but the first find the version moved on.
pub async fn lock_hotel(
    txn: &WriteTxn,
    hotel: HotelId,
    expected: Option<i64>,
    now: DateTime<Utc>,
) -> StoreResult<VersionCheck> {
    let mut update = hotel::Entity::update_many()
        .col_expr(hotel::Column::UpdatedAt, Expr::value(now))
        .filter(hotel::Column::Id.eq(hotel.get()));
    if let Some(expected) = expected {
        update = update.filter(hotel::Column::Version.eq(expected));
    }
    let locked = update.exec(txn).await?.rows_affected > 0;
    let current: Option<i64> = hotel::Entity::find_by_id(hotel.get())
        .select_only()
        .column(hotel::Column::Version)
        .into_tuple()
        .one(txn)
        .await?;
    Ok(match (locked, current) {
        (true, Some(version)) => VersionCheck::Locked(version),
        (_, None) => VersionCheck::NotFound,
        (false, Some(actual)) => VersionCheck::Stale { actual },
    })
}

/// For each of `images` linked to `hotel`: the link's status and the image's status.
pub async fn link_states(
    txn: &WriteTxn,
    hotel: HotelId,
    images: &[ImageId],
) -> StoreResult<HashMap<ImageId, (Status, Status)>> {
    let mut query = Query::select();
    query
        .from(hotel_image::Entity)
        .inner_join(
            image::Entity,
            Expr::col((image::Entity, image::Column::Id))
                .equals((hotel_image::Entity, hotel_image::Column::ImageId)),
        )
        .column((hotel_image::Entity, hotel_image::Column::ImageId))
        .column((hotel_image::Entity, hotel_image::Column::Status))
        .column((image::Entity, image::Column::Status))
        .and_where(Expr::col((hotel_image::Entity, hotel_image::Column::HotelId)).eq(hotel.get()))
        .and_where(
            Expr::col((hotel_image::Entity, hotel_image::Column::ImageId))
                .is_in(images.iter().map(|i| i.get())),
        );
    let rows = txn.query_all(&query).await?;
    rows.iter()
        .map(|row| {
            let link: String = row.try_get_by_index(1)?;
            let status: String = row.try_get_by_index(2)?;
            Ok((
                image_id(row.try_get_by_index(0)?)?,
                (link.parse()?, status.parse()?),
            ))
        })
        .collect()
}

pub async fn set_override(
    txn: &WriteTxn,
    hotel: HotelId,
    image: ImageId,
    origin: MainImageOrigin,
    chosen_by: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    main_image_override::Entity::delete_by_id(hotel.get())
        .exec(txn)
        .await?;
    main_image_override::Entity::insert(main_image_override::ActiveModel {
        hotel_id: Set(hotel.get()),
        image_id: Set(image.get()),
        origin: Set(origin.as_str().to_owned()),
        chosen_by: Set(chosen_by.to_owned()),
        chosen_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Removes the override; returns whether there was one.
pub async fn clear_override(txn: &WriteTxn, hotel: HotelId) -> StoreResult<bool> {
    let deleted = main_image_override::Entity::delete_by_id(hotel.get())
        .exec(txn)
        .await?;
    Ok(deleted.rows_affected > 0)
}

pub async fn set_pins(txn: &WriteTxn, hotel: HotelId, images: &[ImageId]) -> StoreResult<()> {
    gallery_pin::Entity::delete_many()
        .filter(gallery_pin::Column::HotelId.eq(hotel.get()))
        .exec(txn)
        .await?;
    let pins: Vec<_> = images
        .iter()
        .enumerate()
        .map(|(position, image)| gallery_pin::ActiveModel {
            hotel_id: Set(hotel.get()),
            position: Set(position as i32),
            image_id: Set(image.get()),
        })
        .collect();
    super::bulk::insert_rows(txn, pins).await
}

/// Which of `images` exist.
pub async fn existing_images(txn: &WriteTxn, images: &[ImageId]) -> StoreResult<BTreeSet<ImageId>> {
    let ids: Vec<i64> = image::Entity::find()
        .select_only()
        .column(image::Column::Id)
        .filter(image::Column::Id.is_in(images.iter().map(|i| i.get())))
        .into_tuple()
        .all(txn)
        .await?;
    ids.into_iter().map(|id| Ok(image_id(id)?)).collect()
}

/// Every hotel `image` is linked to, by ID.
pub async fn linked_hotels(
    txn: &impl ConnectionTrait,
    images: &[ImageId],
) -> StoreResult<Vec<HotelId>> {
    let ids: Vec<i64> = hotel_image::Entity::find()
        .select_only()
        .column(hotel_image::Column::HotelId)
        .distinct()
        .filter(hotel_image::Column::ImageId.is_in(images.iter().map(|i| i.get())))
        .order_by_asc(hotel_image::Column::HotelId)
        .into_tuple()
        .all(txn)
        .await?;
    ids.into_iter().map(|id| Ok(hotel_id(id)?)).collect()
}

pub async fn set_image_status(
    txn: &WriteTxn,
    image: ImageId,
    status: Status,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    image::Entity::update_many()
        .col_expr(image::Column::Status, Expr::value(status.as_str()))
        .col_expr(
            image::Column::StatusReason,
            Expr::value(reason.map(str::to_owned)),
        )
        .col_expr(image::Column::UpdatedAt, Expr::value(now))
        .filter(image::Column::Id.eq(image.get()))
        .exec(txn)
        .await?;
    Ok(())
}

/// Sets the status of the image's links to `hotels`, marked as set by `by`.
pub async fn set_link_status(
    txn: &WriteTxn,
    image: ImageId,
    hotels: &[HotelId],
    status: Status,
    reason: Option<&str>,
    by: LinkStatusBy,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    hotel_image::Entity::update_many()
        .col_expr(hotel_image::Column::Status, Expr::value(status.as_str()))
        .col_expr(
            hotel_image::Column::StatusReason,
            Expr::value(reason.map(str::to_owned)),
        )
        .col_expr(hotel_image::Column::StatusSetBy, Expr::value(by.as_str()))
        .col_expr(hotel_image::Column::UpdatedAt, Expr::value(now))
        .filter(hotel_image::Column::ImageId.eq(image.get()))
        .filter(hotel_image::Column::HotelId.is_in(hotels.iter().map(|h| h.get())))
        .exec(txn)
        .await?;
    Ok(())
}

/// A change of texts: for each, `None` leaves it, `Some(None)` clears it.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextsChange<'a> {
    pub caption: Option<Option<&'a str>>,
    pub alt_text: Option<Option<&'a str>>,
}

impl TextsChange<'_> {
    /// The API names of the texts it changes (for events and the audit log).
    pub fn fields(&self) -> Vec<&'static str> {
        let mut fields = Vec::new();
        if self.caption.is_some() {
            fields.push("caption");
        }
        if self.alt_text.is_some() {
            fields.push("altText");
        }
        fields
    }
}

/// The image's own texts (partners', admins').
pub async fn set_image_texts(
    txn: &WriteTxn,
    image: ImageId,
    texts: TextsChange<'_>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut update = image::Entity::update_many()
        .col_expr(image::Column::UpdatedAt, Expr::value(now))
        .filter(image::Column::Id.eq(image.get()));
    if let Some(caption) = texts.caption {
        update = update.col_expr(
            image::Column::Caption,
            Expr::value(caption.map(str::to_owned)),
        );
    }
    if let Some(alt_text) = texts.alt_text {
        update = update.col_expr(
            image::Column::AltText,
            Expr::value(alt_text.map(str::to_owned)),
        );
    }
    update.exec(txn).await?;
    Ok(())
}

/// The hotel's own texts of the image (its link's).
pub async fn set_link_texts(
    txn: &WriteTxn,
    hotel: HotelId,
    image: ImageId,
    texts: TextsChange<'_>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut update = hotel_image::Entity::update_many()
        .col_expr(hotel_image::Column::UpdatedAt, Expr::value(now))
        .filter(hotel_image::Column::HotelId.eq(hotel.get()))
        .filter(hotel_image::Column::ImageId.eq(image.get()));
    if let Some(caption) = texts.caption {
        update = update.col_expr(
            hotel_image::Column::Caption,
            Expr::value(caption.map(str::to_owned)),
        );
    }
    if let Some(alt_text) = texts.alt_text {
        update = update.col_expr(
            hotel_image::Column::AltText,
            Expr::value(alt_text.map(str::to_owned)),
        );
    }
    update.exec(txn).await?;
    Ok(())
}

/// The link of `image` to `hotel`: its status and who set it (`None`: not linked).
pub async fn link_status(
    txn: &WriteTxn,
    hotel: HotelId,
    image: ImageId,
) -> StoreResult<Option<(Status, LinkStatusBy)>> {
    let row: Option<(String, Option<String>)> = hotel_image::Entity::find()
        .select_only()
        .column(hotel_image::Column::Status)
        .column(hotel_image::Column::StatusSetBy)
        .filter(hotel_image::Column::HotelId.eq(hotel.get()))
        .filter(hotel_image::Column::ImageId.eq(image.get()))
        .into_tuple()
        .one(txn)
        .await?;
    row.map(|(status, by)| {
        let by = by.map_or(Ok(LinkStatusBy::Admin), |by| by.parse())?;
        Ok((status.parse()?, by))
    })
    .transpose()
}

pub async fn set_quality(
    txn: &WriteTxn,
    image: ImageId,
    quality: f64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    image::Entity::update_many()
        .col_expr(image::Column::QualityScore, Expr::value(quality))
        .col_expr(image::Column::UpdatedAt, Expr::value(now))
        .filter(image::Column::Id.eq(image.get()))
        .exec(txn)
        .await?;
    Ok(())
}

/// Replaces the image's tags of `origin` with `tags`.
pub async fn replace_tags(
    txn: &WriteTxn,
    image: ImageId,
    origin: TagOrigin,
    tags: &[Tag],
) -> StoreResult<()> {
    image_tag::Entity::delete_many()
        .filter(image_tag::Column::ImageId.eq(image.get()))
        .filter(image_tag::Column::Origin.eq(origin.as_str()))
        .exec(txn)
        .await?;
    let new_rows: Vec<_> = tags
        .iter()
        .map(|tag| rows::tag(image.get(), &Tag { origin, ..*tag }))
        .collect();
    super::bulk::insert_rows(txn, new_rows).await
}

/// Recomputes the stored effective category of `images` from their tags.
pub async fn refresh_categories(txn: &WriteTxn, images: &[ImageId]) -> StoreResult<()> {
    let rows = image_tag::Entity::find()
        .filter(image_tag::Column::ImageId.is_in(images.iter().map(|i| i.get())))
        .all(txn)
        .await?;
    let mut tags: HashMap<i64, Vec<Tag>> = HashMap::new();
    for row in rows {
        tags.entry(row.image_id).or_default().push(Tag {
            category: row.category.parse()?,
            confidence: row.confidence,
            origin: row.origin.parse()?,
        });
    }
    for image in images {
        let category = effective_category(tags.get(&image.get()).map_or(&[][..], Vec::as_slice));
        image::Entity::update_many()
            .col_expr(image::Column::Category, Expr::value(category.as_str()))
            .filter(image::Column::Id.eq(image.get()))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// What an upload needs stored.
#[derive(Debug, Clone)]
pub struct UploadRecord<'a> {
    pub hotel: HotelId,
    /// The HOTELIER partner uploads are credited to (created when missing).
    pub partner: i64,
    pub url_key: &'a str,
    pub source_url: &'a str,
    pub storage_key: &'a str,
    pub width: u32,
    pub height: u32,
    pub content_sha256: &'a str,
    /// The measured 64-bit perceptual hash.
    pub perceptual_hash: u64,
    /// The measured quality score in 0..1.
    pub measured_quality: f64,
    /// The hotel's caption of the image (its link's); `None` keeps the link's.
    pub caption: Option<&'a str>,
}

/// Stores an upload: the image (once per content), its HOTELIER source, its link to the hotel
/// and the delivery. Returns the image and whether it is new.
pub async fn record_upload(
    txn: &WriteTxn,
    upload: &UploadRecord<'_>,
    now: DateTime<Utc>,
) -> StoreResult<(ImageId, bool)> {
    use entity::{delivery, image_source, partner};
    // `do_nothing_on` names a column for MySQL's polyfill (`ON DUPLICATE KEY UPDATE c = c`):
    // plain `do_nothing` renders invalid SQL there.
    use sea_orm::sea_query::OnConflict;

    partner::Entity::insert(partner::ActiveModel {
        id: Set(upload.partner),
        name: Set("Hoteliers".to_owned()),
        kind: Set(PartnerKind::Hotelier.as_str().to_owned()),
        url_rewrites: Set("[]".to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(partner::Column::Id)
            .do_nothing_on([partner::Column::Id])
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;

    let existing = match image_by_url_key(txn, upload.url_key).await? {
        Some(image) => Some(image),
        // The same bytes as a live image (a partner's, or an upload retired into one): that
        // image, rather than a second ID for one picture (see `super::merge`).
        None => super::merge::image_of_bytes(txn, upload.url_key, upload.content_sha256).await?,
    };
    if existing.is_none() {
        let new = NewImage {
            id: None,
            url_key: upload.url_key,
            canonical_url: upload.source_url,
            storage_key: upload.storage_key.to_owned(),
            width: i32::try_from(upload.width).ok(),
            height: i32::try_from(upload.height).ok(),
            // A hotelier's caption is the hotel's (its link's), never the shared image's.
            caption: None,
            // No tags yet: the tagging pipeline classifies it later.
            category: Category::Other,
            quality_score: None,
            content_sha256: Some(upload.content_sha256.to_owned()),
            processing: crate::domain::catalog::ProcessingState::Ready,
            adopted_key: None,
        };
        let mut row = rows::image(new, now);
        // Stored as the signed reading of the 64 bits (the column is a BIGINT).
        row.perceptual_hash = Set(Some(upload.perceptual_hash as i64));
        row.measured_quality = Set(Some(upload.measured_quality));
        image::Entity::insert(row)
            // A concurrent upload of the same bytes may have won: one image either way.
            .on_conflict(
                OnConflict::column(image::Column::UrlKey)
                    .do_nothing_on([image::Column::Id])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    let image = match existing {
        Some(image) => Some(image),
        None => image_by_url_key(txn, upload.url_key).await?,
    };
    let image = image.ok_or_else(|| {
        StoreError::Corrupt(crate::domain::catalog::ParseError {
            what: "uploaded image",
            value: upload.url_key.to_owned(),
        })
    })?;

    image_source::Entity::insert(rows::source(
        image.get(),
        upload.partner,
        upload.source_url,
        None,
        now,
    ))
    .on_conflict(
        OnConflict::columns([
            image_source::Column::ImageId,
            image_source::Column::PartnerId,
        ])
        .do_nothing_on([image_source::Column::Id])
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    hotel_image::Entity::insert(rows::link(upload.hotel.get(), image.get(), now))
        .on_conflict(
            OnConflict::columns([hotel_image::Column::HotelId, hotel_image::Column::ImageId])
                .do_nothing_on([hotel_image::Column::HotelId])
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    if let Some(caption) = upload.caption {
        let texts = TextsChange {
            caption: Some(Some(caption)),
            alt_text: None,
        };
        set_link_texts(txn, upload.hotel, image, texts, now).await?;
    }
    delivery::Entity::insert(rows::delivery(
        upload.hotel.get(),
        image.get(),
        upload.partner,
        now,
    ))
    .on_conflict(
        OnConflict::columns([
            delivery::Column::HotelId,
            delivery::Column::ImageId,
            delivery::Column::PartnerId,
        ])
        .do_nothing_on([delivery::Column::HotelId])
        .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok((image, existing.is_none()))
}

/// The image of `url_key`, its row locked for the rest of the transaction (no-op on SQLite,
/// whose writers are serialized): an upload and a takedown of the same picture queue here, so
/// the upload sees the takedown's tombstones once it committed.
pub async fn lock_image_by_url_key(txn: &WriteTxn, url_key: &str) -> StoreResult<Option<ImageId>> {
    image_by_url_key(txn, url_key).await
}

async fn image_by_url_key(txn: &WriteTxn, url_key: &str) -> StoreResult<Option<ImageId>> {
    let id: Option<i64> = image::Entity::find()
        .select_only()
        .column(image::Column::Id)
        .filter(image::Column::UrlKey.eq(url_key))
        .lock_exclusive()
        .into_tuple()
        .one(txn)
        .await?;
    id.map(image_id).transpose().map_err(Into::into)
}

/// What removing a hotel's upload left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// Whether the image is no longer shown for the hotel (no other partner delivers it there).
    pub unlinked: bool,
    /// The storage key of bytes no image shown anywhere uses any more: delete them after the
    /// commit. `None` while some hotel still shows the bytes.
    pub orphaned_bytes: Option<String>,
}

/// Removes `partner`'s delivery of `image` for `hotel` (a hotelier's upload); `None` when
/// there was none. Without another partner's delivery there the link goes too, with the
/// hotel's pin and main-image choice of the image; without any delivery of `partner` left the
/// image loses that source.
pub async fn remove_delivery(
    txn: &WriteTxn,
    hotel: HotelId,
    image: ImageId,
    partner: i64,
) -> StoreResult<Option<Removal>> {
    use entity::{delivery, image_source};
    let deleted = delivery::Entity::delete_many()
        .filter(delivery::Column::HotelId.eq(hotel.get()))
        .filter(delivery::Column::ImageId.eq(image.get()))
        .filter(delivery::Column::PartnerId.eq(partner))
        .exec(txn)
        .await?;
    if deleted.rows_affected == 0 {
        return Ok(None);
    }
    let delivered_here = delivery::Entity::find()
        .filter(delivery::Column::HotelId.eq(hotel.get()))
        .filter(delivery::Column::ImageId.eq(image.get()))
        .one(txn)
        .await?
        .is_some();
    if !delivered_here {
        hotel_image::Entity::delete_many()
            .filter(hotel_image::Column::HotelId.eq(hotel.get()))
            .filter(hotel_image::Column::ImageId.eq(image.get()))
            .exec(txn)
            .await?;
        gallery_pin::Entity::delete_many()
            .filter(gallery_pin::Column::HotelId.eq(hotel.get()))
            .filter(gallery_pin::Column::ImageId.eq(image.get()))
            .exec(txn)
            .await?;
        main_image_override::Entity::delete_many()
            .filter(main_image_override::Column::HotelId.eq(hotel.get()))
            .filter(main_image_override::Column::ImageId.eq(image.get()))
            .exec(txn)
            .await?;
    }
    let still_delivered = delivery::Entity::find()
        .filter(delivery::Column::ImageId.eq(image.get()))
        .filter(delivery::Column::PartnerId.eq(partner))
        .one(txn)
        .await?
        .is_some();
    if !still_delivered {
        image_source::Entity::delete_many()
            .filter(image_source::Column::ImageId.eq(image.get()))
            .filter(image_source::Column::PartnerId.eq(partner))
            .exec(txn)
            .await?;
    }
    let storage_key: Option<String> = image::Entity::find_by_id(image.get())
        .select_only()
        .column(image::Column::StorageKey)
        .into_tuple()
        .one(txn)
        .await?;
    let orphaned_bytes = match storage_key {
        Some(key) if !storage_key_shown(txn, &key).await? => Some(key),
        _ => None,
    };
    Ok(Some(Removal {
        unlinked: !delivered_here,
        orphaned_bytes,
    }))
}

/// Whether any hotel shows an image stored under `key` (two images may share stored bytes).
/// The rows of the images stored there are locked first (no-op on SQLite): an upload of the
/// same bytes, which locks its image's row before it stores them, waits for the answer and
/// what the caller does with it.
pub async fn storage_key_shown(txn: &WriteTxn, key: &str) -> StoreResult<bool> {
    image::Entity::find()
        .select_only()
        .column(image::Column::Id)
        .filter(image::Column::StorageKey.eq(key))
        .lock_exclusive()
        .into_tuple::<i64>()
        .all(txn)
        .await?;
    let mut query = Query::select();
    query
        .expr(Expr::val(1))
        .from(hotel_image::Entity)
        .inner_join(
            image::Entity,
            Expr::col((image::Entity, image::Column::Id))
                .equals((hotel_image::Entity, hotel_image::Column::ImageId)),
        )
        .and_where(Expr::col((image::Entity, image::Column::StorageKey)).eq(key))
        .limit(1);
    Ok(txn.query_one(&query).await?.is_some())
}
