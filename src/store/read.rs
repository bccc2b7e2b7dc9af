//! Batched reads: each function takes a set of keys and runs one statement.

use std::collections::HashMap;

use entity::{hotel, hotel_image, image, image_source, image_tag, legacy_image_id, partner};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query, SelectStatement};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{
    ImageRecord, LinkFilter, PartnerRecord, SourceRecord, Store, StoreResult, Window, hotel_id,
    image_id, partner_id,
};
use crate::domain::catalog::{HotelId, ImageId, PartnerId, Status, Tag};
use crate::domain::curation::{HotelRecord, LinkTexts, PublishedMain};

fn raw<T: Copy>(ids: &[T], get: impl Fn(T) -> i64) -> Vec<i64> {
    ids.iter().map(|&id| get(id)).collect()
}

impl Store {
    pub async fn hotels(&self, ids: &[HotelId]) -> StoreResult<HashMap<HotelId, HotelRecord>> {
        hotels_on(&self.db, &raw(ids, HotelId::get)).await
    }

    pub async fn images(&self, ids: &[ImageId]) -> StoreResult<HashMap<ImageId, ImageRecord>> {
        let rows = image::Entity::find()
            .filter(image::Column::Id.is_in(raw(ids, ImageId::get)))
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|row| {
                let record = image_record(row)?;
                Ok((record.id, record))
            })
            .collect()
    }

    /// Tags per image, strongest first.
    pub async fn tags(&self, ids: &[ImageId]) -> StoreResult<HashMap<ImageId, Vec<Tag>>> {
        let rows = image_tag::Entity::find()
            .filter(image_tag::Column::ImageId.is_in(raw(ids, ImageId::get)))
            .all(&self.db)
            .await?;
        let mut out: HashMap<ImageId, Vec<Tag>> = HashMap::new();
        for row in rows {
            out.entry(image_id(row.image_id)?).or_default().push(Tag {
                category: row.category.parse()?,
                confidence: row.confidence,
                origin: row.origin.parse()?,
            });
        }
        for tags in out.values_mut() {
            tags.sort_by(|a, b| {
                b.confidence
                    .total_cmp(&a.confidence)
                    .then(a.origin.cmp(&b.origin).reverse())
                    .then(a.category.cmp(&b.category))
            });
        }
        Ok(out)
    }

    /// Sources per image, by partner ID.
    pub async fn sources(
        &self,
        ids: &[ImageId],
    ) -> StoreResult<HashMap<ImageId, Vec<SourceRecord>>> {
        let rows = image_source::Entity::find()
            .filter(image_source::Column::ImageId.is_in(raw(ids, ImageId::get)))
            .order_by_asc(image_source::Column::PartnerId)
            .all(&self.db)
            .await?;
        let mut out: HashMap<ImageId, Vec<SourceRecord>> = HashMap::new();
        for row in rows {
            out.entry(image_id(row.image_id)?)
                .or_default()
                .push(SourceRecord {
                    partner_id: partner_id(row.partner_id)?,
                    source_url: row.source_url,
                    partner_image_ref: row.partner_image_ref,
                    first_seen_at: row.first_seen_at,
                    last_seen_at: row.last_seen_at,
                });
        }
        Ok(out)
    }

    /// Legacy IDs per image, sorted.
    pub async fn legacy_ids(&self, ids: &[ImageId]) -> StoreResult<HashMap<ImageId, Vec<String>>> {
        let rows = legacy_image_id::Entity::find()
            .filter(legacy_image_id::Column::ImageId.is_in(raw(ids, ImageId::get)))
            .order_by_asc(legacy_image_id::Column::LegacyId)
            .all(&self.db)
            .await?;
        let mut out: HashMap<ImageId, Vec<String>> = HashMap::new();
        for row in rows {
            out.entry(image_id(row.image_id)?)
                .or_default()
                .push(row.legacy_id);
        }
        Ok(out)
    }

    /// The images that legacy IDs map to.
    pub async fn images_by_legacy_id(
        &self,
        legacy_ids: &[String],
    ) -> StoreResult<HashMap<String, ImageId>> {
        let rows = legacy_image_id::Entity::find()
            .filter(legacy_image_id::Column::LegacyId.is_in(legacy_ids.iter().cloned()))
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|row| Ok((row.legacy_id, image_id(row.image_id)?)))
            .collect()
    }

    /// The images that URL keys map to; the URL key of a retired image maps to its survivor.
    pub async fn images_by_url_key(
        &self,
        url_keys: &[String],
    ) -> StoreResult<HashMap<String, ImageId>> {
        let rows: Vec<(String, i64)> = image::Entity::find()
            .select_only()
            .column(image::Column::UrlKey)
            .column(image::Column::Id)
            .filter(image::Column::UrlKey.is_in(url_keys.iter().cloned()))
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut found: HashMap<String, ImageId> = rows
            .into_iter()
            .map(|(key, id)| Ok((key, image_id(id)?)))
            .collect::<StoreResult<_>>()?;
        let missing: Vec<&str> = url_keys
            .iter()
            .map(String::as_str)
            .filter(|key| !found.contains_key(*key))
            .collect();
        found.extend(super::merge::survivors_by_url_key(&self.db, &missing).await?);
        Ok(found)
    }

    /// The survivors that retired image IDs answer as (see [`super::merge`]).
    pub async fn survivors(&self, ids: &[ImageId]) -> StoreResult<HashMap<ImageId, ImageId>> {
        super::merge::survivors(&self.db, ids).await
    }

    pub async fn partners(&self, ids: Option<&[PartnerId]>) -> StoreResult<Vec<PartnerRecord>> {
        let mut query = partner::Entity::find().order_by_asc(partner::Column::Id);
        if let Some(ids) = ids {
            query = query.filter(partner::Column::Id.is_in(raw(ids, PartnerId::get)));
        }
        let rows = query.all(&self.db).await?;
        rows.into_iter()
            .map(|row| {
                Ok(PartnerRecord {
                    id: partner_id(row.id)?,
                    name: row.name,
                    kind: row.kind.parse()?,
                })
            })
            .collect()
    }

    /// A window of each hotel's linked images (by image ID), in one statement for all hotels.
    pub async fn hotel_links(
        &self,
        hotels: &[HotelId],
        filter: LinkFilter,
        window: Window,
    ) -> StoreResult<HashMap<HotelId, Vec<ImageId>>> {
        let mut inner = links_query(hotels, filter);
        inner.column((hotel_image::Entity, hotel_image::Column::ImageId));
        if let Some(after) = window.after {
            inner.and_where(
                Expr::col((hotel_image::Entity, hotel_image::Column::ImageId)).gt(after),
            );
        }
        inner.expr_as(
            Expr::cust("ROW_NUMBER() OVER (PARTITION BY hotel_image.hotel_id ORDER BY hotel_image.image_id)"),
            Alias::new("rn"),
        );
        let rows = self.windowed(inner, window.limit).await?;
        let mut out: HashMap<HotelId, Vec<ImageId>> = HashMap::new();
        for (parent, child) in rows {
            out.entry(hotel_id(parent)?)
                .or_default()
                .push(image_id(child)?);
        }
        Ok(out)
    }

    /// How many linked images each hotel has that pass `filter`.
    pub async fn hotel_link_counts(
        &self,
        hotels: &[HotelId],
        filter: LinkFilter,
    ) -> StoreResult<HashMap<HotelId, i64>> {
        let mut query = links_query(hotels, filter);
        query
            .expr(Expr::col((hotel_image::Entity, hotel_image::Column::ImageId)).count())
            .group_by_col((hotel_image::Entity, hotel_image::Column::HotelId));
        let rows = self.db.query_all(&query).await?;
        rows.iter()
            .map(|row| {
                Ok((
                    hotel_id(row.try_get_by_index(0)?)?,
                    row.try_get_by_index(1)?,
                ))
            })
            .collect()
    }

    /// A window of the hotels each image is linked to (by hotel ID), in one statement.
    pub async fn image_hotels(
        &self,
        images: &[ImageId],
        window: Window,
    ) -> StoreResult<HashMap<ImageId, Vec<HotelId>>> {
        let mut inner = Query::select();
        inner
            .from(hotel_image::Entity)
            .column(hotel_image::Column::ImageId)
            .column(hotel_image::Column::HotelId)
            .and_where(hotel_image::Column::ImageId.is_in(raw(images, ImageId::get)));
        if let Some(after) = window.after {
            inner.and_where(hotel_image::Column::HotelId.gt(after));
        }
        inner.expr_as(
            Expr::cust("ROW_NUMBER() OVER (PARTITION BY hotel_image.image_id ORDER BY hotel_image.hotel_id)"),
            Alias::new("rn"),
        );
        let rows = self.windowed(inner, window.limit).await?;
        let mut out: HashMap<ImageId, Vec<HotelId>> = HashMap::new();
        for (parent, child) in rows {
            out.entry(image_id(parent)?)
                .or_default()
                .push(hotel_id(child)?);
        }
        Ok(out)
    }

    /// How many hotels each image is linked to.
    pub async fn image_hotel_counts(
        &self,
        images: &[ImageId],
    ) -> StoreResult<HashMap<ImageId, i64>> {
        let mut query = Query::select();
        query
            .from(hotel_image::Entity)
            .column(hotel_image::Column::ImageId)
            .expr(Expr::col(hotel_image::Column::HotelId).count())
            .and_where(hotel_image::Column::ImageId.is_in(raw(images, ImageId::get)))
            .group_by_col(hotel_image::Column::ImageId);
        let rows = self.db.query_all(&query).await?;
        rows.iter()
            .map(|row| {
                Ok((
                    image_id(row.try_get_by_index(0)?)?,
                    row.try_get_by_index(1)?,
                ))
            })
            .collect()
    }

    /// Runs `inner` (selecting parent, child, rn) and keeps the first `limit` rows per parent.
    async fn windowed(&self, inner: SelectStatement, limit: u64) -> StoreResult<Vec<(i64, i64)>> {
        let window = Alias::new("w");
        let mut outer = Query::select();
        outer
            .expr(Expr::cust("*"))
            .from_subquery(inner, window)
            .and_where(Expr::col(Alias::new("rn")).lte(limit as i64))
            .order_by(Alias::new("rn"), Order::Asc);
        let rows = self.db.query_all(&outer).await?;
        rows.iter()
            .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
            .collect()
    }
}

/// `hotel_image` joined to `image`, restricted to `hotels` and `filter`, selecting the hotel ID.
fn links_query(hotels: &[HotelId], filter: LinkFilter) -> SelectStatement {
    let mut query = Query::select();
    query
        .from(hotel_image::Entity)
        .column((hotel_image::Entity, hotel_image::Column::HotelId))
        .and_where(
            Expr::col((hotel_image::Entity, hotel_image::Column::HotelId))
                .is_in(raw(hotels, HotelId::get)),
        );
    let needs_image = filter.status.is_some() || filter.category.is_some();
    if needs_image {
        query.inner_join(
            image::Entity,
            Expr::col((image::Entity, image::Column::Id))
                .equals((hotel_image::Entity, hotel_image::Column::ImageId)),
        );
    }
    let link_status = Expr::col((hotel_image::Entity, hotel_image::Column::Status));
    let image_status = Expr::col((image::Entity, image::Column::Status));
    match filter.status {
        Some(Status::Active) => {
            query
                .and_where(link_status.eq(Status::Active.as_str()))
                .and_where(image_status.eq(Status::Active.as_str()));
        }
        Some(Status::Inactive) => {
            query.and_where(
                link_status
                    .eq(Status::Inactive.as_str())
                    .or(image_status.eq(Status::Inactive.as_str())),
            );
        }
        None => {}
    }
    if let Some(category) = filter.category {
        query.and_where(Expr::col((image::Entity, image::Column::Category)).eq(category.as_str()));
    }
    query
}

/// [`Store::hotels`] on any connection (also inside a transaction).
pub async fn hotels_on<C: ConnectionTrait>(
    conn: &C,
    ids: &[i64],
) -> StoreResult<HashMap<HotelId, HotelRecord>> {
    hotels_where(conn, hotel::Column::Id.is_in(ids.iter().copied())).await
}

/// The hotels that match `condition`.
pub async fn hotels_where<C: ConnectionTrait>(
    conn: &C,
    condition: impl sea_orm::sea_query::IntoCondition,
) -> StoreResult<HashMap<HotelId, HotelRecord>> {
    let rows = hotel::Entity::find().filter(condition).all(conn).await?;
    rows.into_iter()
        .map(|row| {
            let record = hotel_record(row)?;
            Ok((record.id, record))
        })
        .collect()
}

pub(super) fn hotel_record(row: hotel::Model) -> StoreResult<HotelRecord> {
    let main = match (row.main_image_id, row.main_image_origin) {
        (Some(id), Some(origin)) => Some(PublishedMain {
            image_id: image_id(id)?,
            origin: origin.parse()?,
            chosen_by: row.main_image_chosen_by,
            chosen_at: row.main_image_chosen_at,
        }),
        _ => None,
    };
    Ok(HotelRecord {
        id: hotel_id(row.id)?,
        version: row.version,
        main,
        image_count: row.image_count.into(),
        gallery: parse_gallery(&row.gallery)?,
        texts: parse_link_texts(row.link_texts.as_deref())?,
    })
}

/// The stored link texts: a JSON list (null when the hotel has none).
fn parse_link_texts(
    text: Option<&str>,
) -> Result<Vec<LinkTexts>, crate::domain::catalog::ParseError> {
    text.map_or(Ok(Vec::new()), |text| {
        serde_json::from_str(text).map_err(|_| crate::domain::catalog::ParseError {
            what: "link texts",
            value: text.chars().take(80).collect(),
        })
    })
}

/// The link texts as stored: see [`parse_link_texts`].
pub(super) fn link_texts_text(texts: &[LinkTexts]) -> Option<String> {
    (!texts.is_empty()).then(|| serde_json::to_string(texts).unwrap_or_default())
}

/// The stored gallery text: image IDs in order, comma-separated.
fn parse_gallery(text: &str) -> Result<Vec<ImageId>, crate::domain::catalog::ParseError> {
    text.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| part.parse())
        .collect()
}

/// The gallery as stored: see [`parse_gallery`].
pub(super) fn gallery_text(gallery: &[ImageId]) -> String {
    let parts: Vec<String> = gallery.iter().map(ToString::to_string).collect();
    parts.join(",")
}

fn image_record(row: image::Model) -> StoreResult<ImageRecord> {
    Ok(ImageRecord {
        id: image_id(row.id)?,
        canonical_url: row.canonical_url,
        storage_key: row.storage_key,
        width: row.width,
        height: row.height,
        caption: row.caption,
        alt_text: row.alt_text,
        category: row.category.parse()?,
        // A model's (or partner's) score wins; the measured one counts where there is none.
        quality_score: row.quality_score.or(row.measured_quality),
        status: row.status.parse()?,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}
