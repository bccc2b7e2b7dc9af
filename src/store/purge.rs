//! Takedowns: an image's rows taken out of every hotel, its tombstones (the keys that must
//! never bring it back), and the CDN purge requests sent after commit (an outbox of their own:
//! written with the change, sent and retried by [`crate::service::purge::CdnPurges`]).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use entity::{
    cdn_purge, gallery_pin, hotel_image, image, image_source, main_image_override, purged_key,
};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::StoreResult;
use super::WriteTxn;
use super::bulk::in_keys;
use super::manage::linked_hotels;
use crate::domain::catalog::{HotelId, ImageId, Status};

/// `status_reason` of a purged image.
pub const PURGED: &str = "PURGED";

/// What a tombstone key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TombstoneKind {
    UrlKey,
    ContentSha256,
}

impl TombstoneKind {
    fn as_str(self) -> &'static str {
        match self {
            TombstoneKind::UrlKey => "URL_KEY",
            TombstoneKind::ContentSha256 => "CONTENT_SHA256",
        }
    }
}

/// What the catalog knew of an image before it was purged.
#[derive(Debug, Clone)]
pub struct PurgedImage {
    pub url_key: String,
    pub storage_key: String,
    pub content_sha256: Option<String>,
    /// The URLs partners sent it by.
    pub source_urls: Vec<String>,
    /// The hotels that showed it (now none does).
    pub hotels: Vec<HotelId>,
    /// Purged before already (a repeated takedown only deletes the bytes again).
    pub already: bool,
}

/// Takes `image` out of every hotel (links, pins, main-image choices), clears its texts and
/// marks it inactive as [`PURGED`]; `None` for an unknown image. Its sources, legacy IDs and
/// row stay, so lookups by them answer the purged (inactive) image and not a new one.
pub async fn take_down(
    txn: &WriteTxn,
    image: ImageId,
    now: DateTime<Utc>,
) -> StoreResult<Option<PurgedImage>> {
    // The image's row is locked first (no-op on SQLite, whose writers are serialized): two
    // takedowns of one image, or a takedown and an upload of its bytes, queue here, and the
    // second sees the first's tombstones.
    let Some(row) = image::Entity::find_by_id(image.get())
        .lock_exclusive()
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    let source_urls: Vec<String> = image_source::Entity::find()
        .select_only()
        .column(image_source::Column::SourceUrl)
        .filter(image_source::Column::ImageId.eq(image.get()))
        .order_by_asc(image_source::Column::Id)
        .into_tuple()
        .all(txn)
        .await?;
    let hotels = linked_hotels(txn, &[image]).await?;
    hotel_image::Entity::delete_many()
        .filter(hotel_image::Column::ImageId.eq(image.get()))
        .exec(txn)
        .await?;
    gallery_pin::Entity::delete_many()
        .filter(gallery_pin::Column::ImageId.eq(image.get()))
        .exec(txn)
        .await?;
    main_image_override::Entity::delete_many()
        .filter(main_image_override::Column::ImageId.eq(image.get()))
        .exec(txn)
        .await?;
    image::Entity::update_many()
        .col_expr(
            image::Column::Status,
            Expr::value(Status::Inactive.as_str()),
        )
        .col_expr(image::Column::StatusReason, Expr::value(PURGED))
        .col_expr(image::Column::Caption, Expr::value(Option::<String>::None))
        .col_expr(image::Column::AltText, Expr::value(Option::<String>::None))
        .col_expr(image::Column::UpdatedAt, Expr::value(now))
        .filter(image::Column::Id.eq(image.get()))
        .exec(txn)
        .await?;
    Ok(Some(PurgedImage {
        // Tombstones alone say it: `status_reason` is also written by other changes.
        already: is_purged(txn, image).await?,
        url_key: row.url_key,
        storage_key: row.storage_key,
        content_sha256: row.content_sha256,
        source_urls,
        hotels,
    }))
}

/// Whether `image` has tombstones.
pub async fn is_purged(txn: &impl ConnectionTrait, image: ImageId) -> StoreResult<bool> {
    Ok(purged_key::Entity::find()
        .filter(purged_key::Column::ImageId.eq(image.get()))
        .one(txn)
        .await?
        .is_some())
}

/// Which of `images` have tombstones: one statement.
pub async fn purged_images(
    txn: &impl ConnectionTrait,
    images: &[ImageId],
) -> StoreResult<HashSet<ImageId>> {
    if images.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<i64> = images.iter().map(|i| i.get()).collect();
    let backend = txn.get_database_backend();
    let found: Vec<i64> = purged_key::Entity::find()
        .select_only()
        .column(purged_key::Column::ImageId)
        .distinct()
        .filter(in_keys(
            backend,
            Expr::col(purged_key::Column::ImageId),
            &ids,
        ))
        .into_tuple()
        .all(txn)
        .await?;
    found
        .into_iter()
        .map(|id| Ok(super::image_id(id)?))
        .collect()
}

/// A tombstone to write.
#[derive(Debug, Clone)]
pub struct Tombstone {
    pub key: String,
    pub kind: TombstoneKind,
}

/// Writes the tombstones of `image` (keys already there are kept as they are).
pub async fn bury(
    txn: &WriteTxn,
    image: ImageId,
    tombstones: &[Tombstone],
    reason: &str,
    by: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for tombstone in tombstones {
        purged_key::Entity::insert(purged_key::ActiveModel {
            key: Set(tombstone.key.clone()),
            kind: Set(tombstone.kind.as_str().to_owned()),
            image_id: Set(image.get()),
            reason: Set(Some(reason.to_owned())),
            purged_by: Set(by.to_owned()),
            purged_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(purged_key::Column::Key)
                .do_nothing_on([purged_key::Column::Key])
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

/// Which of `keys` (URL keys, content hashes) name a purged picture: one statement.
pub async fn purged_keys(
    txn: &impl ConnectionTrait,
    keys: &[&str],
) -> StoreResult<HashSet<String>> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let backend = txn.get_database_backend();
    let found: Vec<String> = purged_key::Entity::find()
        .select_only()
        .column(purged_key::Column::Key)
        .filter(in_keys(backend, Expr::col(purged_key::Column::Key), keys))
        .into_tuple()
        .all(txn)
        .await?;
    Ok(found.into_iter().collect())
}

/// A CDN purge request waiting to be sent.
#[derive(Debug, Clone)]
pub struct PendingPurge {
    pub id: i64,
    pub payload: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
}

/// Queues a CDN purge request (`payload` is the JSON body), due at once.
pub async fn queue_cdn_purge(
    txn: &WriteTxn,
    payload: &serde_json::Value,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    cdn_purge::Entity::insert(cdn_purge::ActiveModel {
        id: NotSet,
        payload: Set(payload.to_string()),
        created_at: Set(now),
        attempts: Set(0),
        next_attempt_at: Set(now),
        sent_at: Set(None),
        last_error: Set(None),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// The unsent requests due at `now`, oldest first.
pub async fn due_cdn_purges(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> StoreResult<Vec<PendingPurge>> {
    let rows = cdn_purge::Entity::find()
        .filter(cdn_purge::Column::SentAt.is_null())
        .filter(cdn_purge::Column::NextAttemptAt.lte(now))
        .order_by_asc(cdn_purge::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| PendingPurge {
            id: row.id,
            payload: row.payload,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
        })
        .collect())
}

/// When the next unsent request is due (`None`: nothing waits).
pub async fn next_cdn_purge_at(db: &impl ConnectionTrait) -> StoreResult<Option<DateTime<Utc>>> {
    Ok(cdn_purge::Entity::find()
        .select_only()
        .column(cdn_purge::Column::NextAttemptAt)
        .filter(cdn_purge::Column::SentAt.is_null())
        .order_by_asc(cdn_purge::Column::NextAttemptAt)
        .into_tuple()
        .one(db)
        .await?)
}

/// Claims `purge` until `until` (moves its due time ahead, if no other replica did first):
/// whether this replica may send it now.
pub async fn claim_cdn_purge(
    db: &impl ConnectionTrait,
    purge: &PendingPurge,
    until: DateTime<Utc>,
) -> StoreResult<bool> {
    let claimed = cdn_purge::Entity::update_many()
        .col_expr(cdn_purge::Column::NextAttemptAt, Expr::value(until))
        .filter(cdn_purge::Column::Id.eq(purge.id))
        .filter(cdn_purge::Column::SentAt.is_null())
        .filter(cdn_purge::Column::NextAttemptAt.eq(purge.next_attempt_at))
        .exec(db)
        .await?;
    Ok(claimed.rows_affected == 1)
}

/// Records the outcome of one attempt: sent, or failed with `error` and due again at `retry_at`.
pub async fn record_cdn_attempt(
    db: &impl ConnectionTrait,
    id: i64,
    outcome: Result<DateTime<Utc>, (String, DateTime<Utc>)>,
) -> StoreResult<()> {
    let update = cdn_purge::Entity::update_many()
        .col_expr(
            cdn_purge::Column::Attempts,
            Expr::col(cdn_purge::Column::Attempts).add(1),
        )
        .filter(cdn_purge::Column::Id.eq(id));
    let update = match outcome {
        Ok(sent_at) => update
            .col_expr(cdn_purge::Column::SentAt, Expr::value(sent_at))
            .col_expr(
                cdn_purge::Column::LastError,
                Expr::value(Option::<String>::None),
            ),
        Err((error, retry_at)) => update
            .col_expr(cdn_purge::Column::NextAttemptAt, Expr::value(retry_at))
            .col_expr(
                cdn_purge::Column::LastError,
                Expr::value(error.chars().take(1000).collect::<String>()),
            ),
    };
    update.exec(db).await?;
    Ok(())
}
