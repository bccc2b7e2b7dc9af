//! The processing queue (issue 16): the image rows themselves. A PENDING image is due at its
//! `next_attempt_at`; a worker claims due images by moving `next_attempt_at` to the end of its
//! lease and writing its name in `lease_owner`. PostgreSQL and MariaDB read the due rows
//! `FOR UPDATE SKIP LOCKED`, so replicas claiming at once each get other rows without waiting;
//! SQLite has no row locks, but its write transaction (`BEGIN IMMEDIATE`) already lets one
//! claimer in at a time. A worker that dies leaves its images due again when the lease ends.
//!
//! Every outcome is written only while the worker still holds the lease (`lease_owner` is its
//! name and the image is PENDING): a worker whose lease ran out, and whose job another took
//! over, writes nothing.

use chrono::{DateTime, Utc};
use entity::{image, image_source};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, UpdateMany,
};

use super::{StoreResult, image_id};
use crate::domain::catalog::{ImageId, PartnerId, ProcessingState};
use crate::domain::measure::Measured;

/// A claimed image: what a worker needs to process it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub image: ImageId,
    /// The canonical URL the bytes are fetched from.
    pub url: String,
    /// The stored object whose bytes are read instead (an import's `storage_key`).
    pub adopted_key: Option<String>,
    /// Fetches tried before this one.
    pub attempts: u32,
}

/// Claims up to `limit` due PENDING images for `owner` until `lease_until`, on `txn` (a write
/// transaction: the caller commits it).
pub async fn claim_due(
    txn: &impl ConnectionTrait,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u64,
) -> StoreResult<Vec<Job>> {
    let mut due = image::Entity::find()
        .select_only()
        .columns([
            image::Column::Id,
            image::Column::CanonicalUrl,
            image::Column::AdoptedKey,
            image::Column::ProcessingAttempts,
        ])
        .filter(image::Column::ProcessingState.eq(ProcessingState::Pending.as_str()))
        .filter(image::Column::NextAttemptAt.lte(now))
        .order_by_asc(image::Column::NextAttemptAt)
        .order_by_asc(image::Column::Id)
        .limit(limit);
    if txn.get_database_backend() != DatabaseBackend::Sqlite {
        due = due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let rows: Vec<(i64, String, Option<String>, i32)> = due.into_tuple().all(txn).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    image::Entity::update_many()
        .col_expr(image::Column::NextAttemptAt, Expr::value(lease_until))
        .col_expr(image::Column::LeaseOwner, Expr::value(owner))
        .filter(image::Column::Id.is_in(rows.iter().map(|r| r.0)))
        .exec(txn)
        .await?;
    rows.into_iter()
        .map(|(id, url, adopted_key, attempts)| {
            Ok(Job {
                image: image_id(id)?,
                url,
                adopted_key,
                attempts: u32::try_from(attempts).unwrap_or(0),
            })
        })
        .collect()
}

/// When the next PENDING image is due (`None`: none is pending).
pub async fn next_due_at(conn: &impl ConnectionTrait) -> StoreResult<Option<DateTime<Utc>>> {
    let next: Option<Option<DateTime<Utc>>> = image::Entity::find()
        .select_only()
        .column(image::Column::NextAttemptAt)
        .filter(image::Column::ProcessingState.eq(ProcessingState::Pending.as_str()))
        .order_by_asc(image::Column::NextAttemptAt)
        .into_tuple()
        .one(conn)
        .await?;
    Ok(next.flatten())
}

/// An update of `image` that applies only while `owner` holds its lease.
fn held(image: ImageId, owner: &str) -> UpdateMany<image::Entity> {
    image::Entity::update_many()
        .filter(image::Column::Id.eq(image.get()))
        .filter(image::Column::LeaseOwner.eq(owner))
        .filter(image::Column::ProcessingState.eq(ProcessingState::Pending.as_str()))
        .col_expr(
            image::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
}

/// Counts one more attempt.
fn attempted(update: UpdateMany<image::Entity>) -> UpdateMany<image::Entity> {
    update.col_expr(
        image::Column::ProcessingAttempts,
        Expr::col(image::Column::ProcessingAttempts).add(1),
    )
}

/// Records measured bytes stored under `storage_key`: the image is READY, and the measured
/// values replace what the partner declared. `false`: the lease was lost, nothing written.
pub async fn mark_ready(
    txn: &impl ConnectionTrait,
    image: ImageId,
    owner: &str,
    measured: &Measured,
    storage_key: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let update = attempted(held(image, owner))
        .col_expr(
            image::Column::ProcessingState,
            Expr::value(ProcessingState::Ready.as_str()),
        )
        .col_expr(
            image::Column::ProcessingReason,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            image::Column::ProcessingError,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            image::Column::NextAttemptAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(image::Column::FetchedAt, Expr::value(now))
        .col_expr(image::Column::StorageKey, Expr::value(storage_key))
        .col_expr(
            image::Column::Width,
            Expr::value(i32::try_from(measured.width).ok()),
        )
        .col_expr(
            image::Column::Height,
            Expr::value(i32::try_from(measured.height).ok()),
        )
        .col_expr(
            image::Column::ContentSha256,
            Expr::value(measured.sha256.clone()),
        )
        // Stored as the signed reading of the 64 bits (the column is a BIGINT).
        .col_expr(
            image::Column::PerceptualHash,
            Expr::value(measured.perceptual_hash as i64),
        )
        .col_expr(
            image::Column::MeasuredQuality,
            Expr::value(measured.quality.score),
        )
        .col_expr(image::Column::UpdatedAt, Expr::value(now));
    Ok(update.exec(txn).await?.rows_affected == 1)
}

/// A failed attempt: FAILED for good (`retry_at` `None`), or PENDING again at `retry_at`.
/// `false`: the lease was lost, nothing written.
pub async fn mark_failed(
    txn: &impl ConnectionTrait,
    image: ImageId,
    owner: &str,
    reason: &str,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let state = match retry_at {
        Some(_) => ProcessingState::Pending,
        None => ProcessingState::Failed,
    };
    let error: String = error.chars().take(1000).collect();
    let update = attempted(held(image, owner))
        .col_expr(image::Column::ProcessingState, Expr::value(state.as_str()))
        .col_expr(image::Column::ProcessingReason, Expr::value(reason))
        .col_expr(image::Column::ProcessingError, Expr::value(error))
        .col_expr(image::Column::NextAttemptAt, Expr::value(retry_at))
        .col_expr(image::Column::UpdatedAt, Expr::value(now));
    Ok(update.exec(txn).await?.rows_affected == 1)
}

/// Gives a claimed image back, due at `at`, without counting an attempt (its host was busy).
pub async fn release(
    conn: &impl ConnectionTrait,
    image: ImageId,
    owner: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    held(image, owner)
        .col_expr(image::Column::NextAttemptAt, Expr::value(at))
        .exec(conn)
        .await?;
    Ok(())
}

/// Which images a retry names: some by ID, or every FAILED image a partner delivers.
#[derive(Debug, Clone)]
pub enum RetryScope {
    Images(Vec<ImageId>),
    Partner(PartnerId),
}

/// Turns the FAILED images of `scope` PENDING again, due at once, with their attempts reset;
/// returns them.
pub async fn retry_failed(
    txn: &impl ConnectionTrait,
    scope: &RetryScope,
    now: DateTime<Utc>,
) -> StoreResult<Vec<ImageId>> {
    let mut failed = image::Entity::find()
        .select_only()
        .column(image::Column::Id)
        .filter(image::Column::ProcessingState.eq(ProcessingState::Failed.as_str()))
        .order_by_asc(image::Column::Id);
    failed = match scope {
        RetryScope::Images(ids) => {
            failed.filter(image::Column::Id.is_in(ids.iter().map(|i| i.get())))
        }
        RetryScope::Partner(partner) => failed.filter(
            image::Column::Id.in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(image_source::Column::ImageId)
                    .from(image_source::Entity)
                    .and_where(Expr::col(image_source::Column::PartnerId).eq(partner.get()))
                    .to_owned(),
            ),
        ),
    };
    let ids: Vec<i64> = failed.into_tuple().all(txn).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    image::Entity::update_many()
        .col_expr(
            image::Column::ProcessingState,
            Expr::value(ProcessingState::Pending.as_str()),
        )
        .col_expr(image::Column::ProcessingAttempts, Expr::value(0))
        .col_expr(image::Column::NextAttemptAt, Expr::value(now))
        .col_expr(
            image::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(image::Column::UpdatedAt, Expr::value(now))
        .filter(image::Column::Id.is_in(ids.iter().copied()))
        .filter(image::Column::ProcessingState.eq(ProcessingState::Failed.as_str()))
        .exec(txn)
        .await?;
    ids.into_iter().map(|id| Ok(image_id(id)?)).collect()
}

/// The queue at a glance: the images waiting (PENDING) and given up on (FAILED), and the age
/// of the oldest due PENDING image (the "iterator age").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueFigures {
    pub by_state: Vec<(ProcessingState, i64)>,
    pub oldest_due_secs: f64,
}

/// The states [`queue_figures`] counts: the queue, not the catalog. Each count is a range of
/// `idx_image_processing_due`; READY, nearly every image of a catalog, would be a scan of the
/// whole index, every few seconds, on every replica.
pub const QUEUE_STATES: [ProcessingState; 2] = [ProcessingState::Pending, ProcessingState::Failed];

/// The [`QueueFigures`] at `now`: two statements, each reading ranges of the index.
pub async fn queue_figures(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> StoreResult<QueueFigures> {
    let counts: Vec<(String, i64)> = image::Entity::find()
        .select_only()
        .column(image::Column::ProcessingState)
        .column_as(image::Column::Id.count(), "n")
        .filter(image::Column::ProcessingState.is_in(QUEUE_STATES.map(|s| s.as_str())))
        .group_by(image::Column::ProcessingState)
        .into_tuple()
        .all(conn)
        .await?;
    let by_state = QUEUE_STATES
        .map(|state| {
            let n = counts.iter().find(|(s, _)| s == state.as_str());
            (state, n.map_or(0, |(_, n)| *n))
        })
        .to_vec();
    let oldest_due = image::Entity::find()
        .select_only()
        .column(image::Column::NextAttemptAt)
        .filter(image::Column::ProcessingState.eq(ProcessingState::Pending.as_str()))
        .filter(image::Column::NextAttemptAt.lte(now))
        .order_by_asc(image::Column::NextAttemptAt)
        .into_tuple::<Option<DateTime<Utc>>>()
        .one(conn)
        .await?
        .flatten();
    let oldest_due_secs = oldest_due
        .map(|at| Ord::max((now - at).num_milliseconds(), 0) as f64 / 1000.0)
        .unwrap_or(0.0);
    Ok(QueueFigures {
        by_state,
        oldest_due_secs,
    })
}
