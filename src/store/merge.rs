//! Images merged by their bytes (issue 16 item 6, DESIGN 5b): when two live images hold the
//! same measured bytes, the younger ID is retired into the older one (the survivor), on the
//! caller's transaction.
//!
//! Everything a hotel or a partner attached to the retired image moves to the survivor:
//!
//! | rows | when the survivor has one of its own already |
//! |---|---|
//! | links (`hotel_image`) | one link stays, the survivor's: it is inactive when either link was (a picture hidden or taken offline for the hotel under either ID stays so), and it keeps its own caption and alt text, taking the retired link's where it has none |
//! | sources (`image_source`) | one per partner, the survivor's: first seen the earlier, last seen the later, active when either was |
//! | deliveries | the survivor's (same hotel and partner) |
//! | gallery pins | the earlier position of the two |
//! | main-image overrides | always move (one per hotel) |
//! | legacy IDs | always move (one image per legacy ID) |
//!
//! The survivor keeps its own image fields (caption, alt text, tags, scores, status): they
//! describe the same picture. The retired row is then deleted, so nothing that reads images,
//! links, counts or the queue can see it again, and a [`merged_image`] row keeps its ID and its
//! URL key resolving to the survivor ([`survivors`], [`survivors_by_url_key`]).
//!
//! Which images merge: the `ACTIVE` `READY` images of one SHA-256. An inactive image (an
//! admin's decision, a snapshot's retirement, a takedown) is left alone: merging it would
//! have to choose whose availability wins. A `PENDING` image's hash is a partner's claim, not
//! a measurement.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{
    delivery, gallery_pin, hotel_image, image, image_source, image_tag, legacy_image_id,
    main_image_override, merged_image,
};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::bulk::in_keys;
use super::{StoreResult, image_id};
use crate::domain::catalog::{ImageId, ProcessingState, SourceStatus, Status};

/// Images that became one: the survivor, and the IDs retired into it (ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    pub survivor: ImageId,
    pub retired: Vec<ImageId>,
}

/// The live images holding the bytes `sha256` (see the module doc), `image` among them, as
/// one: the oldest survives. `None` when `image` is not live or no other image holds them.
/// Their rows are locked for the rest of the transaction (no-op on SQLite, whose writers are
/// serialized), so two changes merging one picture take turns.
pub async fn same_bytes(
    txn: &impl ConnectionTrait,
    image: ImageId,
    sha256: &str,
) -> StoreResult<Option<Merge>> {
    let ids: Vec<i64> = live_with_bytes(sha256)
        .lock_exclusive()
        .into_tuple()
        .all(txn)
        .await?;
    let ids: Vec<ImageId> = ids.into_iter().map(image_id).collect::<Result<_, _>>()?;
    let (Some(&survivor), true) = (ids.first(), ids.len() > 1 && ids.contains(&image)) else {
        return Ok(None);
    };
    Ok(Some(Merge {
        survivor,
        retired: ids[1..].to_vec(),
    }))
}

/// The live image that bytes about to be recorded under `url_key` (an upload) belong to,
/// other than the image of `url_key` itself: the survivor `url_key` was retired into, or else
/// the oldest live image holding the bytes `sha256` (its row locked, see [`same_bytes`]).
pub async fn image_of_bytes(
    txn: &impl ConnectionTrait,
    url_key: &str,
    sha256: &str,
) -> StoreResult<Option<ImageId>> {
    if let Some(survivor) = survivors_by_url_key(txn, &[url_key])
        .await?
        .into_values()
        .next()
    {
        return Ok(Some(survivor));
    }
    let id: Option<i64> = live_with_bytes(sha256)
        .lock_exclusive()
        .into_tuple()
        .one(txn)
        .await?;
    Ok(id.map(image_id).transpose()?)
}

/// The IDs of the live images holding the bytes `sha256`, oldest first.
fn live_with_bytes(sha256: &str) -> sea_orm::Select<image::Entity> {
    image::Entity::find()
        .select_only()
        .column(image::Column::Id)
        .filter(image::Column::ContentSha256.eq(sha256))
        .filter(image::Column::Status.eq(Status::Active.as_str()))
        .filter(image::Column::ProcessingState.eq(ProcessingState::Ready.as_str()))
        .order_by_asc(image::Column::Id)
}

/// Retires every image of `merge` into its survivor (see the module doc).
pub async fn merge(
    txn: &impl ConnectionTrait,
    merge: &Merge,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for &retired in &merge.retired {
        retire(txn, retired, merge.survivor, now).await?;
    }
    Ok(())
}

async fn retire(
    txn: &impl ConnectionTrait,
    retired: ImageId,
    survivor: ImageId,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let (from, to) = (retired.get(), survivor.get());
    move_links(txn, from, to, now).await?;
    move_sources(txn, from, to).await?;
    move_deliveries(txn, from, to).await?;
    move_pins(txn, from, to).await?;
    main_image_override::Entity::update_many()
        .col_expr(main_image_override::Column::ImageId, Expr::value(to))
        .filter(main_image_override::Column::ImageId.eq(from))
        .exec(txn)
        .await?;
    legacy_image_id::Entity::update_many()
        .col_expr(legacy_image_id::Column::ImageId, Expr::value(to))
        .filter(legacy_image_id::Column::ImageId.eq(from))
        .exec(txn)
        .await?;
    image_tag::Entity::delete_many()
        .filter(image_tag::Column::ImageId.eq(from))
        .exec(txn)
        .await?;
    // IDs retired into this one before answer the survivor from now on: one hop, always.
    merged_image::Entity::update_many()
        .col_expr(merged_image::Column::SurvivorId, Expr::value(to))
        .filter(merged_image::Column::SurvivorId.eq(from))
        .exec(txn)
        .await?;
    let url_key: Option<String> = image::Entity::find_by_id(from)
        .select_only()
        .column(image::Column::UrlKey)
        .into_tuple()
        .one(txn)
        .await?;
    if let Some(url_key) = url_key {
        merged_image::Entity::insert(merged_image::ActiveModel {
            id: Set(from),
            survivor_id: Set(to),
            url_key: Set(url_key),
            merged_at: Set(now),
        })
        .exec_without_returning(txn)
        .await?;
    }
    image::Entity::delete_by_id(from).exec(txn).await?;
    Ok(())
}

/// The retired image's links become the survivor's (see the module doc for a hotel linked to
/// both).
async fn move_links(
    txn: &impl ConnectionTrait,
    from: i64,
    to: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let theirs = hotel_image::Entity::find()
        .filter(hotel_image::Column::ImageId.eq(from))
        .all(txn)
        .await?;
    if theirs.is_empty() {
        return Ok(());
    }
    let ours: HashMap<i64, hotel_image::Model> = hotel_image::Entity::find()
        .filter(hotel_image::Column::ImageId.eq(to))
        .filter(hotel_image::Column::HotelId.is_in(theirs.iter().map(|l| l.hotel_id)))
        .all(txn)
        .await?
        .into_iter()
        .map(|l| (l.hotel_id, l))
        .collect();
    let inactive = Status::Inactive.as_str();
    for link in theirs.iter().filter(|l| ours.contains_key(&l.hotel_id)) {
        let kept = &ours[&link.hotel_id];
        // The status of the inactive one of the two (the survivor's when both are).
        let status_of = if kept.status != inactive && link.status == inactive {
            link
        } else {
            kept
        };
        hotel_image::Entity::update_many()
            .col_expr(
                hotel_image::Column::Status,
                Expr::value(status_of.status.clone()),
            )
            .col_expr(
                hotel_image::Column::StatusReason,
                Expr::value(status_of.status_reason.clone()),
            )
            .col_expr(
                hotel_image::Column::StatusSetBy,
                Expr::value(status_of.status_set_by.clone()),
            )
            .col_expr(
                hotel_image::Column::Caption,
                Expr::value(kept.caption.clone().or_else(|| link.caption.clone())),
            )
            .col_expr(
                hotel_image::Column::AltText,
                Expr::value(kept.alt_text.clone().or_else(|| link.alt_text.clone())),
            )
            .col_expr(hotel_image::Column::UpdatedAt, Expr::value(now))
            .filter(hotel_image::Column::HotelId.eq(link.hotel_id))
            .filter(hotel_image::Column::ImageId.eq(to))
            .exec(txn)
            .await?;
    }
    hotel_image::Entity::delete_many()
        .filter(hotel_image::Column::ImageId.eq(from))
        .filter(hotel_image::Column::HotelId.is_in(ours.keys().copied()))
        .exec(txn)
        .await?;
    hotel_image::Entity::update_many()
        .col_expr(hotel_image::Column::ImageId, Expr::value(to))
        .filter(hotel_image::Column::ImageId.eq(from))
        .exec(txn)
        .await?;
    Ok(())
}

/// The retired image's sources become the survivor's: one per partner.
async fn move_sources(txn: &impl ConnectionTrait, from: i64, to: i64) -> StoreResult<()> {
    let theirs = image_source::Entity::find()
        .filter(image_source::Column::ImageId.eq(from))
        .all(txn)
        .await?;
    if theirs.is_empty() {
        return Ok(());
    }
    let ours: HashMap<i64, image_source::Model> = image_source::Entity::find()
        .filter(image_source::Column::ImageId.eq(to))
        .all(txn)
        .await?
        .into_iter()
        .map(|s| (s.partner_id, s))
        .collect();
    let active = SourceStatus::Active.as_str();
    for source in theirs.iter().filter(|s| ours.contains_key(&s.partner_id)) {
        let kept = &ours[&source.partner_id];
        let status = if kept.status == active || source.status == active {
            active
        } else {
            kept.status.as_str()
        };
        image_source::Entity::update_many()
            .col_expr(image_source::Column::Status, Expr::value(status))
            .col_expr(
                image_source::Column::FirstSeenAt,
                Expr::value(kept.first_seen_at.min(source.first_seen_at)),
            )
            .col_expr(
                image_source::Column::LastSeenAt,
                Expr::value(kept.last_seen_at.max(source.last_seen_at)),
            )
            .filter(image_source::Column::Id.eq(kept.id))
            .exec(txn)
            .await?;
    }
    image_source::Entity::delete_many()
        .filter(image_source::Column::ImageId.eq(from))
        .filter(image_source::Column::PartnerId.is_in(ours.keys().copied()))
        .exec(txn)
        .await?;
    image_source::Entity::update_many()
        .col_expr(image_source::Column::ImageId, Expr::value(to))
        .filter(image_source::Column::ImageId.eq(from))
        .exec(txn)
        .await?;
    Ok(())
}

/// The retired image's deliveries become the survivor's, except where the survivor has the
/// same (hotel, partner) already.
async fn move_deliveries(txn: &impl ConnectionTrait, from: i64, to: i64) -> StoreResult<()> {
    let ours: Vec<(i64, i64)> = delivery::Entity::find()
        .select_only()
        .columns([delivery::Column::HotelId, delivery::Column::PartnerId])
        .filter(delivery::Column::ImageId.eq(to))
        .into_tuple()
        .all(txn)
        .await?;
    for (hotel, partner) in ours {
        delivery::Entity::delete_many()
            .filter(delivery::Column::ImageId.eq(from))
            .filter(delivery::Column::HotelId.eq(hotel))
            .filter(delivery::Column::PartnerId.eq(partner))
            .exec(txn)
            .await?;
    }
    delivery::Entity::update_many()
        .col_expr(delivery::Column::ImageId, Expr::value(to))
        .filter(delivery::Column::ImageId.eq(from))
        .exec(txn)
        .await?;
    Ok(())
}

/// The retired image's pins become the survivor's; a hotel that pinned both keeps the earlier
/// position.
async fn move_pins(txn: &impl ConnectionTrait, from: i64, to: i64) -> StoreResult<()> {
    let pins = gallery_pin::Entity::find()
        .filter(gallery_pin::Column::ImageId.is_in([from, to]))
        .order_by_asc(gallery_pin::Column::HotelId)
        .order_by_asc(gallery_pin::Column::Position)
        .all(txn)
        .await?;
    let mut first: HashMap<i64, i32> = HashMap::new();
    for pin in &pins {
        if *first.entry(pin.hotel_id).or_insert(pin.position) != pin.position {
            gallery_pin::Entity::delete_by_id((pin.hotel_id, pin.position))
                .exec(txn)
                .await?;
        }
    }
    gallery_pin::Entity::update_many()
        .col_expr(gallery_pin::Column::ImageId, Expr::value(to))
        .filter(gallery_pin::Column::ImageId.eq(from))
        .exec(txn)
        .await?;
    Ok(())
}

/// The survivors that retired `ids` answer as (IDs that were never merged are absent).
pub async fn survivors(
    conn: &impl ConnectionTrait,
    ids: &[ImageId],
) -> StoreResult<HashMap<ImageId, ImageId>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, i64)> = merged_image::Entity::find()
        .select_only()
        .columns([merged_image::Column::Id, merged_image::Column::SurvivorId])
        .filter(in_keys(
            conn.get_database_backend(),
            Expr::col(merged_image::Column::Id),
            &ids.iter().map(|i| i.get()).collect::<Vec<_>>(),
        ))
        .into_tuple()
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|(id, survivor)| Ok((image_id(id)?, image_id(survivor)?)))
        .collect()
}

/// The survivors that the URL keys of retired images answer as.
pub async fn survivors_by_url_key(
    conn: &impl ConnectionTrait,
    url_keys: &[&str],
) -> StoreResult<HashMap<String, ImageId>> {
    if url_keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, i64)> = merged_image::Entity::find()
        .select_only()
        .columns([
            merged_image::Column::UrlKey,
            merged_image::Column::SurvivorId,
        ])
        .filter(in_keys(
            conn.get_database_backend(),
            Expr::col(merged_image::Column::UrlKey),
            url_keys,
        ))
        .into_tuple()
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|(key, survivor)| Ok((key, image_id(survivor)?)))
        .collect()
}
