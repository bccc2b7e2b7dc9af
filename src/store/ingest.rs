//! Persistence of imports, on the caller's transaction: partners and their URL rewrite rules,
//! the few batched reads an import batch is decided on ([`load_known`]), the multi-row writes
//! that carry out its [`Plan`] ([`write_plan`]), and the retirement of sources a snapshot no
//! longer contains.
//!
//! Unified IDs are the database's job: images are inserted with "skip if the URL key exists"
//! and their IDs read back by URL key, so two concurrent imports of one URL give one image. The
//! loser of such a race learns it from the insert count and gets [`StoreError::Conflict`]: its
//! transaction is rolled back and retried, and then sees the winner's image.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{
    delivery, hotel, hotel_image, image, image_source, image_tag, legacy_image_id, partner,
};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait, LockType, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

use super::WriteTxn;
use super::bulk::{in_keys, insert_new, insert_rows, upsert};
use super::rows::{self, NewImage};
use super::{PartnerRecord, StoreError, StoreResult, hotel_id, image_id};
use crate::domain::catalog::{
    HotelId, ImageId, ParseError, PartnerId, PartnerKind, ProcessingState, SourceStatus, Status,
    effective_category,
};
use crate::domain::ingest::{
    Delivery, ImageRef, Known, KnownImage, NO_ACTIVE_SOURCE, Outcome, Plan,
};
use crate::domain::media::partner_storage_key;
use crate::domain::url::{UrlKey, UrlRewrite};

/// (hotel, image) pairs looked up per statement by [`load_known`].
const PAIRS_PER_STATEMENT: usize = 5_000;

/// A partner as an import needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerFeed {
    pub kind: PartnerKind,
    /// Its URL rewrite rules, in order.
    pub rewrites: Vec<UrlRewrite>,
}

/// The partner's kind and rewrite rules; `None` for an unknown partner.
pub async fn partner_feed<C: ConnectionTrait>(
    conn: &C,
    partner: PartnerId,
) -> StoreResult<Option<PartnerFeed>> {
    let Some(row) = partner::Entity::find_by_id(partner.get()).one(conn).await? else {
        return Ok(None);
    };
    let rewrites = serde_json::from_str(&row.url_rewrites).map_err(|_| ParseError {
        what: "partner URL rewrite rules",
        value: row.url_rewrites.clone(),
    })?;
    Ok(Some(PartnerFeed {
        kind: row.kind.parse()?,
        rewrites,
    }))
}

/// Creates or updates a partner; returns its kind before the call (`None` when it is new).
pub async fn upsert_partner(
    txn: &WriteTxn,
    record: &PartnerRecord,
    rewrites: &[UrlRewrite],
    now: DateTime<Utc>,
) -> StoreResult<Option<PartnerKind>> {
    let previous: Option<String> = partner::Entity::find_by_id(record.id.get())
        .select_only()
        .column(partner::Column::Kind)
        .into_tuple()
        .one(txn)
        .await?;
    let rules = serde_json::to_string(rewrites).map_err(|_| ParseError {
        what: "partner URL rewrite rules",
        value: format!("{rewrites:?}"),
    })?;
    upsert(
        txn,
        vec![partner::ActiveModel {
            id: Set(record.id.get()),
            name: Set(record.name.clone()),
            kind: Set(record.kind.as_str().to_owned()),
            url_rewrites: Set(rules),
            created_at: Set(now),
            updated_at: Set(now),
        }],
        [partner::Column::Id],
        [
            partner::Column::Name,
            partner::Column::Kind,
            partner::Column::UrlRewrites,
            partner::Column::UpdatedAt,
        ],
    )
    .await?;
    Ok(previous.map(|kind| kind.parse()).transpose()?)
}

/// Every hotel showing an image the partner delivered (ascending).
pub async fn hotels_of_partner(txn: &WriteTxn, partner: PartnerId) -> StoreResult<Vec<HotelId>> {
    let mut sources = Query::select();
    sources
        .column(image_source::Column::ImageId)
        .from(image_source::Entity)
        .and_where(Expr::col(image_source::Column::PartnerId).eq(partner.get()));
    let ids: Vec<i64> = hotel_image::Entity::find()
        .select_only()
        .column(hotel_image::Column::HotelId)
        .distinct()
        .filter(hotel_image::Column::ImageId.in_subquery(sources))
        .into_tuple()
        .all(txn)
        .await?;
    let ids: BTreeSet<i64> = ids.into_iter().collect();
    ids.into_iter().map(|id| Ok(hotel_id(id)?)).collect()
}

/// Locks the rows of `hotels` (ascending) for the rest of the transaction, creating an empty
/// row for a hotel that has none yet, so that concurrent imports into one hotel take turns
/// and none of them publishes a gallery computed without the other's images.
///
/// The insert is the transaction's first statement: on SQLite it takes the database's write
/// lock at once, so no snapshot read before it can go stale. PostgreSQL and MySQL also lock
/// the existing rows with `SELECT ... FOR UPDATE` (in ascending order: no deadlock between
/// importers).
pub async fn lock_hotels(
    txn: &WriteTxn,
    hotels: &[HotelId],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let empty: Vec<hotel::ActiveModel> = hotels
        .iter()
        .map(|hotel| rows::empty_hotel(hotel.get(), now))
        .collect();
    insert_new(txn, empty, [hotel::Column::Id]).await?;
    let backend = txn.get_database_backend();
    if backend != sea_orm::DbBackend::Sqlite {
        let ids: Vec<i64> = hotels.iter().map(|h| h.get()).collect();
        let mut lock = Query::select();
        lock.column(hotel::Column::Id)
            .from(hotel::Entity)
            .and_where(in_keys(backend, Expr::col(hotel::Column::Id), &ids))
            .order_by(hotel::Column::Id, sea_orm::sea_query::Order::Asc)
            .lock(LockType::Update);
        txn.query_all(&lock).await?;
    }
    Ok(())
}

/// Removes the rows [`lock_hotels`] created for hotels that ended up with no image at all
/// (every item for them was rejected): a rejected item leaves nothing behind.
pub async fn drop_empty_hotels(txn: &WriteTxn, hotels: &[HotelId]) -> StoreResult<()> {
    if hotels.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = hotels.iter().map(|h| h.get()).collect();
    let mut linked = Query::select();
    linked
        .column(hotel_image::Column::HotelId)
        .from(hotel_image::Entity)
        .and_where(Expr::col(hotel_image::Column::HotelId).is_in(ids.clone()));
    hotel::Entity::delete_many()
        .filter(hotel::Column::Id.is_in(ids))
        .filter(hotel::Column::Id.not_in_subquery(linked))
        .exec(txn)
        .await?;
    Ok(())
}

/// What the catalog holds about `deliveries` of `partner`: seven statements at most (per
/// [`PAIRS_PER_STATEMENT`] pairs of known images and hotels).
pub async fn load_known(
    txn: &WriteTxn,
    partner: PartnerId,
    deliveries: &[&Delivery],
) -> StoreResult<Known> {
    let backend = txn.get_database_backend();
    let keys: BTreeSet<&str> = deliveries.iter().map(|d| d.url_key.as_str()).collect();
    let keys: Vec<&str> = keys.into_iter().collect();
    let legacy_ids: BTreeSet<&str> = deliveries
        .iter()
        .filter_map(|d| d.legacy_id.as_deref())
        .collect();
    let legacy_ids: Vec<&str> = legacy_ids.into_iter().collect();

    let mut known = Known::default();
    if !keys.is_empty() {
        let rows: Vec<(i64, String, String, Option<String>)> = image::Entity::find()
            .select_only()
            .columns([
                image::Column::Id,
                image::Column::UrlKey,
                image::Column::Status,
                image::Column::StatusReason,
            ])
            .filter(in_keys(backend, Expr::col(image::Column::UrlKey), &keys))
            .into_tuple()
            .all(txn)
            .await?;
        let mut by_id: HashMap<i64, KnownImage> = HashMap::new();
        for (id, key, status, reason) in rows {
            let image = known_image(id, &status, reason.as_deref())?;
            by_id.insert(id, image);
            known.images.insert(UrlKey::from_stored(key), image);
        }
        // The URL of an image retired into another (same bytes) delivers the survivor.
        let missing: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|key| {
                !known
                    .images
                    .contains_key(&UrlKey::from_stored((*key).to_owned()))
            })
            .collect();
        let survivors = super::merge::survivors_by_url_key(txn, &missing).await?;
        let unread: Vec<i64> = survivors
            .values()
            .map(|id| id.get())
            .filter(|id| !by_id.contains_key(id))
            .collect();
        if !unread.is_empty() {
            let rows: Vec<(i64, String, Option<String>)> = image::Entity::find()
                .select_only()
                .columns([
                    image::Column::Id,
                    image::Column::Status,
                    image::Column::StatusReason,
                ])
                .filter(in_keys(backend, Expr::col(image::Column::Id), &unread))
                .into_tuple()
                .all(txn)
                .await?;
            for (id, status, reason) in rows {
                by_id.insert(id, known_image(id, &status, reason.as_deref())?);
            }
        }
        for (key, survivor) in survivors {
            if let Some(image) = by_id.get(&survivor.get()) {
                known.images.insert(UrlKey::from_stored(key), *image);
            }
        }
    }
    if !legacy_ids.is_empty() {
        let rows: Vec<(String, i64)> = legacy_image_id::Entity::find()
            .select_only()
            .columns([
                legacy_image_id::Column::LegacyId,
                legacy_image_id::Column::ImageId,
            ])
            .filter(in_keys(
                backend,
                Expr::col(legacy_image_id::Column::LegacyId),
                &legacy_ids,
            ))
            .into_tuple()
            .all(txn)
            .await?;
        for (legacy, id) in rows {
            known.legacy.insert(legacy, image_id(id)?);
        }
    }
    let hashes = deliveries
        .iter()
        .filter_map(|d| d.content_sha256.as_deref());
    let tombstone_keys: BTreeSet<&str> = keys.iter().copied().chain(hashes).collect();
    let tombstone_keys: Vec<&str> = tombstone_keys.into_iter().collect();
    known.purged = super::purge::purged_keys(txn, &tombstone_keys).await?;
    if known.images.is_empty() {
        return Ok(known);
    }
    // The (hotel, image) pairs of the batch whose image exists, looked up as pairs: the
    // earlier `hotel_id IN (...) AND image_id IN (...)` matched every combination of the two
    // lists and took most of an import's time (see BENCHMARKS.md).
    let pairs: BTreeSet<(i64, i64)> = deliveries
        .iter()
        .filter_map(|d| {
            let image = known.images.get(&d.url_key)?;
            Some((d.hotel.get(), image.id.get()))
        })
        .collect();
    let pairs: Vec<(i64, i64)> = pairs.into_iter().collect();
    known.deliveries = existing_pairs(txn, "delivery", Some(partner), &pairs).await?;
    known.links = existing_pairs(txn, "hotel_image", None, &pairs).await?;
    Ok(known)
}

/// An image as an import sees it: retired when a snapshot left it without an active source.
fn known_image(id: i64, status: &str, reason: Option<&str>) -> StoreResult<KnownImage> {
    let retired = status.parse::<Status>()? == Status::Inactive && reason == Some(NO_ACTIVE_SOURCE);
    Ok(KnownImage {
        id: image_id(id)?,
        retired,
    })
}

/// Which of `pairs` (hotel, image) have a row in `table` (`delivery` of `partner`, or
/// `hotel_image`): one statement per chunk, the pairs passed as one JSON parameter so that the
/// statement's text (and plan) is the same for every batch.
async fn existing_pairs(
    txn: &WriteTxn,
    table: &str,
    partner: Option<PartnerId>,
    pairs: &[(i64, i64)],
) -> StoreResult<HashSet<(HotelId, ImageId)>> {
    let backend = txn.get_database_backend();
    let mut found = HashSet::new();
    for chunk in pairs.chunks(PAIRS_PER_STATEMENT) {
        let json = serde_json::to_string(chunk).map_err(|e| ParseError {
            what: "import pairs",
            value: e.to_string(),
        })?;
        let partner_filter = match (partner, backend) {
            (None, _) => "",
            (Some(_), sea_orm::DbBackend::Postgres) => " AND t.partner_id = $2",
            (Some(_), _) => " AND t.partner_id = ?",
        };
        let sql = match backend {
            sea_orm::DbBackend::Postgres => format!(
                "SELECT t.hotel_id, t.image_id FROM json_array_elements($1::json) AS q \
                 JOIN {table} t ON t.hotel_id = (q.value->>0)::bigint AND t.image_id = (q.value->>1)::bigint{partner_filter}"
            ),
            sea_orm::DbBackend::MySql => format!(
                "SELECT t.hotel_id, t.image_id FROM JSON_TABLE(?, '$[*]' COLUMNS (h BIGINT PATH '$[0]', i BIGINT PATH '$[1]')) AS q \
                 JOIN {table} t ON t.hotel_id = q.h AND t.image_id = q.i{partner_filter}"
            ),
            _ => format!(
                "SELECT t.hotel_id, t.image_id FROM json_each(?) AS q \
                 JOIN {table} t ON t.hotel_id = json_extract(q.value, '$[0]') AND t.image_id = json_extract(q.value, '$[1]'){partner_filter}"
            ),
        };
        let mut values: Vec<sea_orm::Value> = vec![json.into()];
        values.extend(partner.map(|p| p.get().into()));
        let rows = txn
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                backend, sql, values,
            ))
            .await?;
        for row in rows {
            found.insert((
                hotel_id(row.try_get_by_index(0)?)?,
                image_id(row.try_get_by_index(1)?)?,
            ));
        }
    }
    Ok(found)
}

/// Writes what `plan` decided for `partner`: new images (with their model tags), links,
/// sources and deliveries ("last seen" refreshed for known ones), legacy IDs, and brings
/// retired images back. Returns the IDs of the new images, in [`Plan::created`] order.
///
/// The rows the plan found missing are inserted as new ([`insert_rows`]: `COPY` on
/// PostgreSQL), the batch's hotels being locked and [`load_known`] having read what exists.
/// Only a concurrent transaction can take one of their keys first (an import of the same
/// URL or legacy ID into another hotel): then this fails with [`StoreError::Conflict`], and
/// the batch runs again and finds the other's rows.
pub async fn write_plan(
    txn: &WriteTxn,
    partner: PartnerId,
    plan: &Plan,
    now: DateTime<Utc>,
) -> StoreResult<Vec<ImageId>> {
    let created = insert_images(txn, plan, now).await?;
    let resolve = |image: ImageRef| match image {
        ImageRef::Known(id) => Ok(id),
        ImageRef::New(n) => created.get(n).copied().ok_or(StoreError::Conflict),
    };

    // The first item of a (hotel, image) pair decides what is new about it: a later one is
    // UNCHANGED (delivered by the first).
    let mut pairs: BTreeMap<(HotelId, ImageId), Outcome> = BTreeMap::new();
    let mut new_sources: BTreeMap<ImageId, &Delivery> = BTreeMap::new();
    let mut known_sources: BTreeMap<ImageId, &Delivery> = BTreeMap::new();
    for accepted in &plan.accepted {
        let image = resolve(accepted.image)?;
        let pair = (accepted.delivery.hotel, image);
        pairs.entry(pair).or_insert(accepted.outcome);
        let sources = match accepted.image {
            ImageRef::New(_) => &mut new_sources,
            ImageRef::Known(_) => &mut known_sources,
        };
        sources.entry(image).or_insert(&accepted.delivery);
    }
    let links = pairs
        .iter()
        .filter(|(_, outcome)| matches!(outcome, Outcome::Created | Outcome::Linked))
        .map(|((hotel, image), _)| rows::link(hotel.get(), image.get(), now))
        .collect();
    insert_rows(txn, links).await?;
    let source_row = |(image, d): (&ImageId, &&Delivery)| {
        rows::source(
            image.get(),
            partner.get(),
            &d.source_url,
            d.partner_image_ref.clone(),
            now,
        )
    };
    insert_rows(txn, new_sources.iter().map(source_row).collect()).await?;
    // A known image's source may exist: seen again (and active again if a snapshot had
    // retired it).
    upsert(
        txn,
        known_sources.iter().map(source_row).collect(),
        [
            image_source::Column::ImageId,
            image_source::Column::PartnerId,
        ],
        [
            image_source::Column::Status,
            image_source::Column::LastSeenAt,
        ],
    )
    .await?;
    let (seen_again, new_deliveries): (Vec<_>, Vec<_>) = pairs
        .iter()
        .map(|((hotel, image), outcome)| {
            let row = rows::delivery(hotel.get(), image.get(), partner.get(), now);
            (*outcome == Outcome::Unchanged, row)
        })
        .partition(|(unchanged, _)| *unchanged);
    insert_rows(
        txn,
        new_deliveries.into_iter().map(|(_, row)| row).collect(),
    )
    .await?;
    upsert(
        txn,
        seen_again.into_iter().map(|(_, row)| row).collect(),
        [
            delivery::Column::HotelId,
            delivery::Column::ImageId,
            delivery::Column::PartnerId,
        ],
        [delivery::Column::LastSeenAt],
    )
    .await?;

    let legacy = plan
        .legacy
        .iter()
        .map(|(legacy_id, image)| {
            Ok(legacy_image_id::ActiveModel {
                legacy_id: Set(legacy_id.clone()),
                image_id: Set(resolve(*image)?.get()),
                created_at: Set(now),
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    insert_rows(txn, legacy).await?;
    revive(txn, &plan.revived, now).await?;
    Ok(created)
}

/// Inserts the plan's new images and their tags; returns their IDs in `created` order.
///
/// PostgreSQL draws the IDs from the table's sequence first, so the rows go in with them (by
/// `COPY`) and nothing is read back; the other engines insert, then read the IDs by URL key.
async fn insert_images(
    txn: &WriteTxn,
    plan: &Plan,
    now: DateTime<Utc>,
) -> StoreResult<Vec<ImageId>> {
    let creators: Vec<&Delivery> = (0..plan.created.len())
        .map(|n| plan.creator(n).map(|a| &a.delivery))
        .collect::<Option<_>>()
        .ok_or(StoreError::Conflict)?;
    if creators.is_empty() {
        return Ok(Vec::new());
    }
    // Ascending keys: concurrent importers wait for each other in one order, never in a cycle.
    let mut order: Vec<usize> = (0..creators.len()).collect();
    order.sort_by(|a, b| {
        creators[*a]
            .url_key
            .as_str()
            .cmp(creators[*b].url_key.as_str())
    });
    let drawn = super::bulk::draw_ids(txn, "image", creators.len()).await?;
    let mut ids = vec![None; creators.len()];
    let rows = order
        .iter()
        .enumerate()
        .map(|(n, &creator)| {
            let mut row = new_image(creators[creator], now);
            if let Some(drawn) = &drawn {
                row.id = Set(drawn[n]);
                ids[creator] = Some(drawn[n]);
            }
            row
        })
        .collect();
    insert_rows(txn, rows).await?;
    if drawn.is_none() {
        let keys: Vec<&str> = creators.iter().map(|d| d.url_key.as_str()).collect();
        let by_key: HashMap<String, i64> = image::Entity::find()
            .select_only()
            .columns([image::Column::UrlKey, image::Column::Id])
            .filter(in_keys(
                txn.get_database_backend(),
                Expr::col(image::Column::UrlKey),
                &keys,
            ))
            .into_tuple::<(String, i64)>()
            .all(txn)
            .await?
            .into_iter()
            .collect();
        for (creator, id) in creators.iter().zip(&mut ids) {
            *id = by_key.get(creator.url_key.as_str()).copied();
        }
    }
    let ids = ids
        .into_iter()
        .map(|id| Ok(image_id(id.ok_or(StoreError::Conflict)?)?))
        .collect::<StoreResult<Vec<ImageId>>>()?;

    let tags: Vec<image_tag::ActiveModel> = creators
        .iter()
        .zip(&ids)
        .flat_map(|(d, id)| d.tags.iter().map(|tag| rows::tag(id.get(), tag)))
        .collect();
    insert_rows(txn, tags).await?;
    Ok(ids)
}

/// The row of a new partner image: PENDING, whatever the partner declared. The workers fetch,
/// measure and store it; declared width, height and hash are hints that the measured values
/// replace, so an image is curated only on what the service saw. (Rows that predate processing
/// were moved by the migration `m20261204_process_processing_state`, its documented choice.)
fn new_image(d: &Delivery, now: DateTime<Utc>) -> image::ActiveModel {
    let key = d.url_key.as_str();
    let mut row = rows::image(
        NewImage {
            id: None,
            url_key: key,
            canonical_url: d.canonical_url.as_str(),
            storage_key: partner_storage_key(key),
            width: d.width,
            height: d.height,
            caption: d.caption.clone(),
            category: effective_category(&d.tags),
            quality_score: d.quality_score,
            content_sha256: d.content_sha256.clone(),
            processing: ProcessingState::Pending,
            adopted_key: d.storage_key.clone(),
        },
        now,
    );
    row.fetched_at = sea_orm::ActiveValue::Set(None);
    row
}

/// Activates images that went inactive only because their last source was retired.
async fn revive(txn: &WriteTxn, images: &[ImageId], now: DateTime<Utc>) -> StoreResult<()> {
    if images.is_empty() {
        return Ok(());
    }
    image::Entity::update_many()
        .col_expr(image::Column::Status, Expr::value(Status::Active.as_str()))
        .col_expr(
            image::Column::StatusReason,
            Expr::value(Option::<String>::None),
        )
        .col_expr(image::Column::UpdatedAt, Expr::value(now))
        .filter(image::Column::Id.is_in(images.iter().map(|i| i.get())))
        .filter(image::Column::Status.eq(Status::Inactive.as_str()))
        .filter(image::Column::StatusReason.eq(NO_ACTIVE_SOURCE))
        .exec(txn)
        .await?;
    Ok(())
}

/// The tables an import writes, whose planner statistics [`refresh_statistics`] renews.
const IMPORT_TABLES: &str =
    "image, image_tag, hotel, hotel_image, image_source, delivery, legacy_image_id";

/// Renews the planner's statistics of the tables an import writes. A bulk import can grow
/// them many times over before the server's automatic analysis runs, and a planner that still
/// believes them small scans them whole instead of looking up the batch's keys. SQLite's
/// planner, with no statistics, already prefers the indexes: nothing to do there.
pub async fn refresh_statistics<C: ConnectionTrait>(conn: &C) -> StoreResult<()> {
    let sql = match conn.get_database_backend() {
        sea_orm::DbBackend::Postgres => format!("ANALYZE {IMPORT_TABLES}"),
        sea_orm::DbBackend::MySql => format!("ANALYZE TABLE {IMPORT_TABLES}"),
        _ => return Ok(()),
    };
    conn.execute_unprepared(&sql).await?;
    Ok(())
}

/// Images (at most `limit`) with an active source of `partner` last seen before `before`.
pub async fn unseen_sources<C: ConnectionTrait>(
    conn: &C,
    partner: PartnerId,
    before: DateTime<Utc>,
    limit: u64,
) -> StoreResult<Vec<ImageId>> {
    let ids: Vec<i64> = image_source::Entity::find()
        .select_only()
        .column(image_source::Column::ImageId)
        .filter(image_source::Column::PartnerId.eq(partner.get()))
        .filter(image_source::Column::Status.eq(SourceStatus::Active.as_str()))
        .filter(image_source::Column::LastSeenAt.lt(before))
        .limit(limit)
        .into_tuple()
        .all(conn)
        .await?;
    ids.into_iter().map(|id| Ok(image_id(id)?)).collect()
}

/// Retires the partner's sources of `images` that were last seen before `before` (a source
/// seen meanwhile by a concurrent import stays); returns how many it retired.
pub async fn retire_sources(
    txn: &WriteTxn,
    partner: PartnerId,
    images: &[ImageId],
    before: DateTime<Utc>,
) -> StoreResult<u64> {
    let result = image_source::Entity::update_many()
        .col_expr(
            image_source::Column::Status,
            Expr::value(SourceStatus::Retired.as_str()),
        )
        .filter(image_source::Column::PartnerId.eq(partner.get()))
        .filter(image_source::Column::ImageId.is_in(images.iter().map(|i| i.get())))
        .filter(image_source::Column::Status.eq(SourceStatus::Active.as_str()))
        .filter(image_source::Column::LastSeenAt.lt(before))
        .exec(txn)
        .await?;
    Ok(result.rows_affected)
}

/// Takes offline those of `images` that are active and have neither an active source left nor
/// any hotelier source (hotelier uploads are never retired); returns them.
pub async fn deactivate_orphans(
    txn: &WriteTxn,
    images: &[ImageId],
    now: DateTime<Utc>,
) -> StoreResult<Vec<ImageId>> {
    let mut query = Query::select();
    query
        .from(image_source::Entity)
        .inner_join(
            partner::Entity,
            Expr::col((partner::Entity, partner::Column::Id))
                .equals((image_source::Entity, image_source::Column::PartnerId)),
        )
        .column((image_source::Entity, image_source::Column::ImageId))
        .column((image_source::Entity, image_source::Column::Status))
        .column((partner::Entity, partner::Column::Kind))
        .and_where(
            Expr::col((image_source::Entity, image_source::Column::ImageId))
                .is_in(images.iter().map(|i| i.get())),
        );
    let mut kept = HashSet::new();
    for row in txn.query_all(&query).await? {
        let image = image_id(row.try_get_by_index(0)?)?;
        let status: SourceStatus = row.try_get_by_index::<String>(1)?.parse()?;
        let kind: PartnerKind = row.try_get_by_index::<String>(2)?.parse()?;
        if status == SourceStatus::Active || kind == PartnerKind::Hotelier {
            kept.insert(image);
        }
    }
    let orphans: Vec<i64> = images
        .iter()
        .filter(|image| !kept.contains(image))
        .map(|image| image.get())
        .collect();
    if orphans.is_empty() {
        return Ok(Vec::new());
    }
    let active: Vec<i64> = image::Entity::find()
        .select_only()
        .column(image::Column::Id)
        .filter(image::Column::Id.is_in(orphans))
        .filter(image::Column::Status.eq(Status::Active.as_str()))
        .into_tuple()
        .all(txn)
        .await?;
    if active.is_empty() {
        return Ok(Vec::new());
    }
    image::Entity::update_many()
        .col_expr(
            image::Column::Status,
            Expr::value(Status::Inactive.as_str()),
        )
        .col_expr(image::Column::StatusReason, Expr::value(NO_ACTIVE_SOURCE))
        .col_expr(image::Column::UpdatedAt, Expr::value(now))
        .filter(image::Column::Id.is_in(active.iter().copied()))
        .exec(txn)
        .await?;
    active.into_iter().map(|id| Ok(image_id(id)?)).collect()
}
