//! Persistence of curation: for a set of hotels, the inputs the pure rules need, loaded in a
//! few batched statements ([`load_inputs`]), and the published views the rules decided, written
//! as hotel rows ([`save_hotels`]). Which view to publish, and when its version grows, is
//! decided in [`crate::domain::curation`]; running the two together inside a change's
//! transaction is the write kernel's job ([`crate::service::write`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{gallery_pin, hotel, hotel_image, image, image_source, main_image_override, partner};
use sea_orm::sea_query::{Expr, ExprTrait, Func, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::bulk::in_keys;
use super::read;
use super::{StoreResult, hotel_id, image_id};
use crate::domain::catalog::{
    HotelId, ImageId, PartnerKind, ProcessingState, SourceStatus, Status,
};
use crate::domain::curation::{
    Candidate, HotelInputs, HotelRecord, LinkTexts, Override, StoredOverride,
};

/// What curation reads about a set of hotels.
#[derive(Debug, Default)]
pub struct CurationInputs {
    candidates: HashMap<HotelId, Vec<Candidate>>,
    pins: HashMap<HotelId, Vec<ImageId>>,
    overrides: HashMap<HotelId, StoredOverride>,
    texts: HashMap<HotelId, Vec<LinkTexts>>,
    current: HashMap<HotelId, HotelRecord>,
}

impl CurationInputs {
    /// The inputs of one hotel (empty ones for a hotel nothing is known of).
    pub fn of(&self, hotel: HotelId) -> HotelInputs<'_> {
        HotelInputs {
            candidates: self.candidates.get(&hotel).map_or(&[][..], Vec::as_slice),
            pins: self.pins.get(&hotel).map_or(&[][..], Vec::as_slice),
            main_override: self.overrides.get(&hotel),
            texts: self.texts.get(&hotel).map_or(&[][..], Vec::as_slice),
            current: self.current.get(&hotel),
        }
    }
}

/// Loads what curation needs to know of `hotels`: their linked images (candidates), pins,
/// main-image overrides, the texts of their links and current published views. Five statements, whatever the number of
/// hotels.
pub async fn load_inputs<C: ConnectionTrait>(
    conn: &C,
    hotels: &[HotelId],
) -> StoreResult<CurationInputs> {
    if hotels.is_empty() {
        return Ok(CurationInputs::default());
    }
    let backend = conn.get_database_backend();
    let raw_ids: Vec<i64> = hotels.iter().map(|h| h.get()).collect();
    let (candidates, texts) = load_candidates(conn, &raw_ids).await?;
    Ok(CurationInputs {
        candidates,
        texts,
        pins: load_pins(conn, &raw_ids).await?,
        overrides: load_overrides(conn, &raw_ids).await?,
        current: read::hotels_where(
            conn,
            in_keys(backend, Expr::col(hotel::Column::Id), &raw_ids),
        )
        .await?,
    })
}

/// Writes published views: inserts the rows of new hotels, updates the others (everything but
/// `created_at`).
pub async fn save_hotels<C: ConnectionTrait>(
    conn: &C,
    records: &[HotelRecord],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let rows = records.iter().map(|r| hotel_row(r, now)).collect();
    upsert_hotels(conn, rows).await
}

/// The row of a published view.
pub fn hotel_row(record: &HotelRecord, now: DateTime<Utc>) -> hotel::ActiveModel {
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
        link_texts: Set(read::link_texts_text(&record.texts)),
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
            hotel::Column::LinkTexts,
            hotel::Column::UpdatedAt,
        ],
    )
    .await
}

/// Every linked image of the hotels with what curation needs to know about it, and the texts
/// of the links that have any (read in the same statement).
async fn load_candidates<C: ConnectionTrait>(
    conn: &C,
    hotels: &[i64],
) -> StoreResult<(
    HashMap<HotelId, Vec<Candidate>>,
    HashMap<HotelId, Vec<LinkTexts>>,
)> {
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
        ])
        // A model's (or partner's) score wins; the measured one counts where there is none.
        .expr(Func::coalesce([
            Expr::col((image::Entity, image::Column::QualityScore)),
            Expr::col((image::Entity, image::Column::MeasuredQuality)),
        ]))
        .columns([
            (image::Entity, image::Column::ContentSha256),
            (image::Entity, image::Column::PerceptualHash),
        ])
        .columns([
            (hotel_image::Entity, hotel_image::Column::Caption),
            (hotel_image::Entity, hotel_image::Column::AltText),
        ])
        .column((image::Entity, image::Column::ProcessingState))
        .and_where(in_keys(
            conn.get_database_backend(),
            Expr::col((hotel_image::Entity, hotel_image::Column::HotelId)),
            hotels,
        ));
    let rows = conn.query_all(&query).await?;

    let mut by_hotel: HashMap<HotelId, Vec<Candidate>> = HashMap::new();
    let mut texts: HashMap<HotelId, Vec<LinkTexts>> = HashMap::new();
    for row in &rows {
        let hotel = hotel_id(row.try_get_by_index(0)?)?;
        let image = image_id(row.try_get_by_index(1)?)?;
        let caption: Option<String> = row.try_get_by_index(10)?;
        let alt_text: Option<String> = row.try_get_by_index(11)?;
        if caption.is_some() || alt_text.is_some() {
            texts.entry(hotel).or_default().push(LinkTexts {
                image_id: image,
                caption,
                alt_text,
            });
        }
        let link_status: String = row.try_get_by_index(2)?;
        let image_status: String = row.try_get_by_index(3)?;
        let width: Option<i32> = row.try_get_by_index(4)?;
        let height: Option<i32> = row.try_get_by_index(5)?;
        let category: String = row.try_get_by_index(6)?;
        let perceptual_hash: Option<i64> = row.try_get_by_index(9)?;
        let processing: String = row.try_get_by_index(12)?;
        by_hotel.entry(hotel).or_default().push(Candidate {
            image_id: image,
            link_status: link_status.parse::<Status>()?,
            image_status: image_status.parse::<Status>()?,
            ready: processing.parse::<ProcessingState>()? == ProcessingState::Ready,
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
    Ok((by_hotel, texts))
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
                .eq(SourceStatus::Active.as_str()),
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
