//! Publishing curation: for a set of hotels, load their curation inputs in a few batched
//! statements, run the pure [`curate`](crate::domain::curation::curate) rules, and write what
//! changed (the hotel row: main image, gallery, counts, version) on the caller's connection or
//! transaction.
//!
//! Callers run this inside the transaction of the change that touched the hotels, so the
//! published view is never behind the source data.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use entity::{gallery_pin, hotel, hotel_image, image, image_source, main_image_override, partner};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::bulk::in_keys;
use super::read;
use super::{HotelRecord, PublishedMain, StoreResult, hotel_id, image_id};
use crate::domain::catalog::{HotelId, ImageId, MainImageOrigin, PartnerKind, Status};
use crate::domain::curation::{Candidate, Override, Rules, curate};

/// What publishing changed for one hotel (used for events and cache invalidation).
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedChange {
    pub hotel_id: HotelId,
    /// The version after the change.
    pub version: i64,
    pub previous_main: Option<ImageId>,
    pub main: Option<ImageId>,
    pub gallery_changed: bool,
    /// The published gallery after the change.
    pub gallery: Vec<ImageId>,
}

impl PublishedChange {
    pub fn main_changed(&self) -> bool {
        self.previous_main != self.main
    }
}

/// The stored override and who made it.
struct StoredOverride {
    rule: Override,
    chosen_by: String,
    chosen_at: DateTime<Utc>,
}

/// Curates `hotels` and writes the published view of each one whose outcome changed.
/// Hotels without a row get one. Returns every hotel whose published row it wrote: its main
/// image or gallery changed (and its version with them), or only its image count (events are
/// only for the former; the cache must forget both).
pub async fn publish<C: ConnectionTrait>(
    conn: &C,
    hotels: &[HotelId],
    rules: &Rules,
    now: DateTime<Utc>,
) -> StoreResult<Vec<PublishedChange>> {
    if hotels.is_empty() {
        return Ok(Vec::new());
    }
    let backend = conn.get_database_backend();
    let raw_ids: Vec<i64> = hotels.iter().map(|h| h.get()).collect();
    let candidates = load_candidates(conn, &raw_ids).await?;
    let pins = load_pins(conn, &raw_ids).await?;
    let overrides = load_overrides(conn, &raw_ids).await?;
    let current = read::hotels_where(
        conn,
        in_keys(backend, Expr::col(hotel::Column::Id), &raw_ids),
    )
    .await?;

    let mut changes = Vec::new();
    let mut new_rows = Vec::new();
    let unique: BTreeSet<HotelId> = hotels.iter().copied().collect();
    for hotel in unique {
        let stored_override = overrides.get(&hotel);
        let outcome = curate(
            candidates.get(&hotel).map_or(&[][..], Vec::as_slice),
            pins.get(&hotel).map_or(&[][..], Vec::as_slice),
            stored_override.map(|o| &o.rule),
            rules,
        );
        let main = outcome.main.map(|choice| {
            let by_override = stored_override.filter(|o| {
                choice.origin != MainImageOrigin::Computed && o.rule.image_id == choice.image_id
            });
            PublishedMain {
                image_id: choice.image_id,
                origin: choice.origin,
                chosen_by: by_override.map(|o| o.chosen_by.clone()),
                chosen_at: by_override.map(|o| o.chosen_at),
            }
        });
        let old = current.get(&hotel);
        let old_gallery = old.map_or(&[][..], |h| h.gallery.as_slice());
        let gallery_changed = old_gallery != outcome.gallery.as_slice();
        let old_main = old.and_then(|h| h.main.clone());
        let main_changed = old_main != main;
        let version_bump = i64::from(main_changed || gallery_changed);
        let version = old.map_or(0, |h| h.version) + version_bump;
        let record = HotelRecord {
            id: hotel,
            version,
            main: main.clone(),
            image_count: outcome.active_image_count as i64,
            gallery: outcome.gallery,
        };
        if old == Some(&record) {
            continue;
        }
        changes.push(PublishedChange {
            hotel_id: hotel,
            version,
            previous_main: old_main.map(|m| m.image_id),
            main: main.map(|m| m.image_id),
            gallery_changed,
            gallery: record.gallery.clone(),
        });
        new_rows.push(hotel_row(&record, now));
    }

    upsert_hotels(conn, new_rows).await?;
    Ok(changes)
}

/// The row [`publish`] writes for a hotel that has no row, pins or override yet, from its
/// candidates: for bulk loads that curate in memory (the `seed` command's COPY path).
pub fn first_publication(
    hotel: HotelId,
    candidates: &[Candidate],
    rules: &Rules,
    now: DateTime<Utc>,
) -> hotel::ActiveModel {
    let outcome = curate(candidates, &[], None, rules);
    let main = outcome.main.map(|choice| PublishedMain {
        image_id: choice.image_id,
        origin: choice.origin,
        chosen_by: None,
        chosen_at: None,
    });
    // Version 0 plus one for the change from nothing, as `publish` counts it.
    let version = i64::from(main.is_some() || !outcome.gallery.is_empty());
    let record = HotelRecord {
        id: hotel,
        version,
        main,
        image_count: outcome.active_image_count as i64,
        gallery: outcome.gallery,
    };
    hotel_row(&record, now)
}

fn hotel_row(record: &HotelRecord, now: DateTime<Utc>) -> hotel::ActiveModel {
    let main = record.main.as_ref();
    hotel::ActiveModel {
        id: Set(record.id.get()),
        version: Set(record.version),
        main_image_id: Set(main.map(|m| m.image_id.get())),
        main_image_origin: Set(main.map(|m| m.origin.as_str().to_owned())),
        main_image_chosen_by: Set(main.and_then(|m| m.chosen_by.clone())),
        main_image_chosen_at: Set(main.and_then(|m| m.chosen_at)),
        image_count: Set(record.image_count as i32),
        gallery: Set(read::gallery_text(&record.gallery)),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// Inserts new hotel rows and updates existing ones (everything but `created_at`).
async fn upsert_hotels<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<hotel::ActiveModel>,
) -> StoreResult<()> {
    super::bulk::upsert(
        conn,
        rows,
        [hotel::Column::Id],
        [
            hotel::Column::Version,
            hotel::Column::MainImageId,
            hotel::Column::MainImageOrigin,
            hotel::Column::MainImageChosenBy,
            hotel::Column::MainImageChosenAt,
            hotel::Column::ImageCount,
            hotel::Column::Gallery,
            hotel::Column::UpdatedAt,
        ],
    )
    .await
}

/// Every linked image of the hotels with what curation needs to know about it.
async fn load_candidates<C: ConnectionTrait>(
    conn: &C,
    hotels: &[i64],
) -> StoreResult<HashMap<HotelId, Vec<Candidate>>> {
    let mut query = Query::select();
    query
        .from(hotel_image::Entity)
        .inner_join(
            image::Entity,
            Expr::col((image::Entity, image::Column::Id))
                .equals((hotel_image::Entity, hotel_image::Column::ImageId)),
        )
        .columns([
            (hotel_image::Entity, hotel_image::Column::HotelId),
            (hotel_image::Entity, hotel_image::Column::ImageId),
            (hotel_image::Entity, hotel_image::Column::Status),
        ])
        .columns([
            (image::Entity, image::Column::Status),
            (image::Entity, image::Column::Width),
            (image::Entity, image::Column::Height),
            (image::Entity, image::Column::Category),
            (image::Entity, image::Column::QualityScore),
            (image::Entity, image::Column::ContentSha256),
            (image::Entity, image::Column::PerceptualHash),
        ])
        .and_where(in_keys(
            conn.get_database_backend(),
            Expr::col((hotel_image::Entity, hotel_image::Column::HotelId)),
            hotels,
        ));
    let rows = conn.query_all(&query).await?;

    let mut by_hotel: HashMap<HotelId, Vec<Candidate>> = HashMap::new();
    for row in &rows {
        let image = image_id(row.try_get_by_index(1)?)?;
        let link_status: String = row.try_get_by_index(2)?;
        let image_status: String = row.try_get_by_index(3)?;
        let width: Option<i32> = row.try_get_by_index(4)?;
        let height: Option<i32> = row.try_get_by_index(5)?;
        let category: String = row.try_get_by_index(6)?;
        let perceptual_hash: Option<i64> = row.try_get_by_index(9)?;
        by_hotel
            .entry(hotel_id(row.try_get_by_index(0)?)?)
            .or_default()
            .push(Candidate {
                image_id: image,
                link_status: link_status.parse::<Status>()?,
                image_status: image_status.parse::<Status>()?,
                width: width.and_then(|w| u32::try_from(w).ok()),
                height: height.and_then(|h| u32::try_from(h).ok()),
                category: category.parse()?,
                quality: row.try_get_by_index(7)?,
                best_partner_kind: None,
                content_sha256: row.try_get_by_index(8)?,
                // Stored as the signed reinterpretation of the 64 bits.
                perceptual_hash: perceptual_hash.map(|h| h as u64),
            });
    }

    let kinds = best_partner_kinds(conn, hotels).await?;
    for candidate in by_hotel.values_mut().flatten() {
        candidate.best_partner_kind = kinds.get(&candidate.image_id).copied();
    }
    Ok(by_hotel)
}

/// The most trusted kind among the active sources of each image of `hotels`: joined from the
/// hotels in SQL rather than passed back as a list of image IDs.
async fn best_partner_kinds<C: ConnectionTrait>(
    conn: &C,
    hotels: &[i64],
) -> StoreResult<HashMap<ImageId, PartnerKind>> {
    let mut query = Query::select();
    query
        .distinct()
        .from(hotel_image::Entity)
        .inner_join(
            image_source::Entity,
            Expr::col((image_source::Entity, image_source::Column::ImageId))
                .equals((hotel_image::Entity, hotel_image::Column::ImageId)),
        )
        .inner_join(
            partner::Entity,
            Expr::col((partner::Entity, partner::Column::Id))
                .equals((image_source::Entity, image_source::Column::PartnerId)),
        )
        .column((image_source::Entity, image_source::Column::ImageId))
        .column((partner::Entity, partner::Column::Kind))
        .and_where(in_keys(
            conn.get_database_backend(),
            Expr::col((hotel_image::Entity, hotel_image::Column::HotelId)),
            hotels,
        ))
        .and_where(
            Expr::col((image_source::Entity, image_source::Column::Status))
                .eq(Status::Active.as_str()),
        );
    let rows = conn.query_all(&query).await?;
    let mut best: HashMap<ImageId, PartnerKind> = HashMap::new();
    for row in &rows {
        let image = image_id(row.try_get_by_index(0)?)?;
        let kind: PartnerKind = row.try_get_by_index::<String>(1)?.parse()?;
        best.entry(image)
            .and_modify(|k| {
                if kind.rank() < k.rank() {
                    *k = kind;
                }
            })
            .or_insert(kind);
    }
    Ok(best)
}

async fn load_pins<C: ConnectionTrait>(
    conn: &C,
    hotels: &[i64],
) -> StoreResult<HashMap<HotelId, Vec<ImageId>>> {
    let rows = gallery_pin::Entity::find()
        .filter(in_keys(
            conn.get_database_backend(),
            Expr::col(gallery_pin::Column::HotelId),
            hotels,
        ))
        .order_by_asc(gallery_pin::Column::HotelId)
        .order_by_asc(gallery_pin::Column::Position)
        .all(conn)
        .await?;
    let mut out: HashMap<HotelId, Vec<ImageId>> = HashMap::new();
    for row in rows {
        out.entry(hotel_id(row.hotel_id)?)
            .or_default()
            .push(image_id(row.image_id)?);
    }
    Ok(out)
}

async fn load_overrides<C: ConnectionTrait>(
    conn: &C,
    hotels: &[i64],
) -> StoreResult<HashMap<HotelId, StoredOverride>> {
    let rows = main_image_override::Entity::find()
        .filter(in_keys(
            conn.get_database_backend(),
            Expr::col(main_image_override::Column::HotelId),
            hotels,
        ))
        .all(conn)
        .await?;
    rows.into_iter()
        .map(|row| {
            Ok((
                hotel_id(row.hotel_id)?,
                StoredOverride {
                    rule: Override {
                        image_id: image_id(row.image_id)?,
                        origin: row.origin.parse()?,
                    },
                    chosen_by: row.chosen_by,
                    chosen_at: row.chosen_at,
                },
            ))
        })
        .collect()
}

impl super::Store {
    /// Curates `hotels` in a transaction of its own (the recompute command, seeding).
    pub async fn publish_in_transaction(
        &self,
        hotels: &[HotelId],
        rules: &Rules,
    ) -> StoreResult<Vec<PublishedChange>> {
        let txn = sea_orm::TransactionTrait::begin(&self.db).await?;
        let changes = publish(&txn, hotels, rules, Utc::now()).await?;
        txn.commit().await?;
        Ok(changes)
    }

    /// Hotel IDs in ascending order, after `after`: keyset paging over every hotel.
    pub async fn hotel_ids_after(
        &self,
        after: Option<HotelId>,
        limit: u64,
    ) -> StoreResult<Vec<HotelId>> {
        let mut query = hotel::Entity::find()
            .select_only()
            .column(hotel::Column::Id)
            .order_by_asc(hotel::Column::Id)
            .limit(limit);
        if let Some(after) = after {
            query = query.filter(hotel::Column::Id.gt(after.get()));
        }
        let ids: Vec<i64> = query.into_tuple().all(&self.db).await?;
        ids.into_iter().map(|id| Ok(hotel_id(id)?)).collect()
    }

    pub async fn hotel_count(&self) -> StoreResult<u64> {
        Ok(sea_orm::PaginatorTrait::count(hotel::Entity::find(), &self.db).await?)
    }
}
