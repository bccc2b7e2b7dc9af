//! The relay's side of the outbox: the relay lock, the oldest unpublished events, marking them
//! published, and the age of the oldest one (the lag).
//!
//! Events are written by the changes themselves ([`super::journal::append_events`]), in their
//! transaction. A relay round is one transaction of its own here:
//!
//! 1. [`begin_locked`]: take the relay lock, the one row of `outbox_relay`, with an `UPDATE` as
//!    the first statement. On PostgreSQL and MySQL/MariaDB it holds the row lock until the end
//!    of the transaction (like `SELECT ... FOR UPDATE`); on SQLite the transaction takes the
//!    database write lock at `BEGIN IMMEDIATE` (SQLite has no row locks and no `FOR UPDATE`; a
//!    transaction that read first and wrote later could publish what another replica publishes
//!    too). So one replica at a
//!    time publishes; the others wait for the lock, then find the events already marked.
//! 2. [`unpublished`]: the oldest unpublished events in `seq` order.
//! 3. The sink publishes them (outside this module).
//! 4. [`mark_published`], then commit: the lock is released with the marks.
//!
//! The lock row's `turns` counts the rounds that published (a round that publishes nothing or
//! fails rolls its increment back): [`round_number`] is the current round's number, which the
//! stream keeps with the entries to find out when it lost some ([`super::stream`]), and
//! [`take_back_since`] unmarks what a stream that lost data no longer holds.
//!
//! A crash or a failed commit between 3 and 4 rolls the marks back, so the events are published
//! again by the next round: at least once, never lost.
//!
//! # No cursor: late commits are never skipped
//! `seq` is taken at insert time, so a transaction can commit an event with a smaller `seq`
//! after a later one was already published. Each round therefore asks for "unpublished, by
//! `seq`", never "after the last `seq` seen": a late event is simply the first one of the next
//! round. Order per aggregate still holds: the changes of one hotel (or image) lock its row
//! before they write their events, so the later change's events get a larger `seq` and commit
//! after the earlier change's, and a round that sees the later ones also sees the earlier ones.
//!
//! # Isolation
//! PostgreSQL and MySQL/MariaDB run the round in READ COMMITTED, so that its reads (taken after
//! the lock) see every mark of the previous holder (MySQL's default REPEATABLE READ would keep
//! a snapshot; a locking read of the events would take gap locks and block writers).
//!
//! Both reads are served by `idx_outbox_published_seq` (`published_at`, `seq`): a range scan of
//! the NULL prefix, at most a batch long.

use chrono::{DateTime, TimeDelta, Utc};
use entity::{outbox, outbox_relay};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, IsolationLevel, QueryFilter, QueryOrder, QuerySelect,
};

use super::StoreResult;

/// The one row of `outbox_relay`.
const LOCK_ROW: i32 = 1;

/// An outbox event on its way out: the outbox row as consumers get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedEvent {
    /// Commit-time order of the outbox (order per aggregate; see the module doc).
    pub seq: i64,
    /// Event ID (UUID): what consumers dedupe on.
    pub id: String,
    /// `Hotel` or `Image`.
    pub aggregate_type: String,
    /// The hotel's or image's ID.
    pub aggregate_id: String,
    /// `MainImageChanged`, `ImageCreated`, ...
    pub event_type: String,
    /// The versioned JSON document, as stored (see `schema/events/`).
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

impl From<outbox::Model> for RelayedEvent {
    fn from(row: outbox::Model) -> Self {
        Self {
            seq: row.seq,
            id: row.id,
            aggregate_type: row.aggregatetype,
            aggregate_id: row.aggregateid,
            event_type: row.event_type,
            payload: row.payload,
            created_at: row.created_at,
        }
    }
}

/// Begins a relay round: a transaction holding the relay lock (waits while another replica
/// holds it). `holder` names this replica in the lock row, for operators.
pub async fn begin_locked(
    db: &DatabaseConnection,
    holder: &str,
    now: DateTime<Utc>,
) -> StoreResult<DatabaseTransaction> {
    let txn = super::begin_write(db, Some(IsolationLevel::ReadCommitted)).await?;
    let locked = take_lock(&txn, holder, now).await?;
    if !locked {
        // The row is gone (deleted by hand): put it back, then lock it. A concurrent replica
        // doing the same makes one of the inserts fail; that round fails and the next one
        // finds the row.
        outbox_relay::Entity::insert(outbox_relay::ActiveModel {
            id: Set(LOCK_ROW),
            turns: Set(0),
            holder: Set(None),
            locked_at: Set(None),
        })
        .exec_without_returning(&txn)
        .await?;
        take_lock(&txn, holder, now).await?;
    }
    Ok(txn)
}

/// Updates the lock row; false when it is missing. `turns` grows, so the row always changes
/// (MySQL counts unchanged rows as not affected).
async fn take_lock(
    txn: &DatabaseTransaction,
    holder: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let updated = outbox_relay::Entity::update_many()
        .col_expr(
            outbox_relay::Column::Turns,
            Expr::col(outbox_relay::Column::Turns).add(1),
        )
        .col_expr(outbox_relay::Column::Holder, Expr::value(holder.to_owned()))
        .col_expr(outbox_relay::Column::LockedAt, Expr::value(now))
        .filter(outbox_relay::Column::Id.eq(LOCK_ROW))
        .exec(txn)
        .await?;
    Ok(updated.rows_affected > 0)
}

/// The oldest unpublished events, at most `limit`, in `seq` order.
pub async fn unpublished(txn: &DatabaseTransaction, limit: u64) -> StoreResult<Vec<RelayedEvent>> {
    let rows = outbox::Entity::find()
        .filter(outbox::Column::PublishedAt.is_null())
        .order_by_asc(outbox::Column::Seq)
        .limit(limit)
        .all(txn)
        .await?;
    Ok(rows.into_iter().map(RelayedEvent::from).collect())
}

/// Marks `events` published at `at`; returns how many rows changed.
pub async fn mark_published(
    txn: &DatabaseTransaction,
    events: &[RelayedEvent],
    at: DateTime<Utc>,
) -> StoreResult<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    let updated = outbox::Entity::update_many()
        .col_expr(outbox::Column::PublishedAt, Expr::value(at))
        .filter(outbox::Column::Seq.is_in(events.iter().map(|e| e.seq)))
        .filter(outbox::Column::PublishedAt.is_null())
        .exec(txn)
        .await?;
    Ok(updated.rows_affected)
}

/// When the oldest unpublished event was written, `None` when every event is published: one
/// index seek. "Oldest" is by `seq`, which follows the write order up to the length of a
/// transaction (`created_at` is taken when the change starts): close enough for a lag.
pub async fn oldest_unpublished(db: &impl ConnectionTrait) -> StoreResult<Option<DateTime<Utc>>> {
    let oldest: Option<DateTime<Utc>> = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::CreatedAt)
        .filter(outbox::Column::PublishedAt.is_null())
        .order_by_asc(outbox::Column::Seq)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    Ok(oldest)
}

/// The largest `seq` written so far, `None` for an empty outbox.
pub async fn last_seq(db: &impl ConnectionTrait) -> StoreResult<Option<i64>> {
    let last: Option<i64> = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::Seq)
        .order_by_desc(outbox::Column::Seq)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    Ok(last)
}

/// Whether an event with `seq` up to `through` is still unpublished: one index seek.
pub async fn unpublished_through(db: &impl ConnectionTrait, through: i64) -> StoreResult<bool> {
    let first: Option<i64> = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::Seq)
        .filter(outbox::Column::PublishedAt.is_null())
        .filter(outbox::Column::Seq.lte(through))
        .order_by_asc(outbox::Column::Seq)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    Ok(first.is_some())
}

/// The number of the round `txn` (holding the relay lock) runs: the rounds published before
/// it, plus one (`turns` was raised when the lock was taken).
pub async fn round_number(txn: &DatabaseTransaction) -> StoreResult<i64> {
    let row = outbox_relay::Entity::find_by_id(LOCK_ROW).one(txn).await?;
    Ok(row.map_or(1, |row| row.turns))
}

/// How many rounds have published so far (no lock taken).
pub async fn published_rounds(db: &impl ConnectionTrait) -> StoreResult<i64> {
    let row = outbox_relay::Entity::find_by_id(LOCK_ROW).one(db).await?;
    Ok(row.map_or(0, |row| row.turns))
}

/// How far before the publication of the stream's last entry [`take_back_since`] reaches:
/// `published_at` comes from each replica's clock, so a batch published just after that entry
/// by a replica whose clock is behind may carry an earlier time. What the margin takes back in
/// excess is published twice, which consumers drop by event ID.
pub const CLOCK_MARGIN: TimeDelta = TimeDelta::seconds(5);

/// Unmarks the events the stream may have lost, so that the relay publishes them again:
/// those published since the event `last_held` (the `seq` of the stream's last entry), less
/// [`CLOCK_MARGIN`]; every published event when the stream is empty (`None`) or its last
/// entry has been purged from the outbox. Nothing when that event is itself unpublished (its
/// round never committed: every committed round is older and still in the stream). Returns
/// how many events were unmarked.
pub async fn take_back_since(
    txn: &DatabaseTransaction,
    last_held: Option<i64>,
) -> StoreResult<u64> {
    let since = match last_held {
        None => None,
        Some(seq) => {
            let published: Option<Option<DateTime<Utc>>> = outbox::Entity::find()
                .select_only()
                .column(outbox::Column::PublishedAt)
                .filter(outbox::Column::Seq.eq(seq))
                .into_tuple()
                .one(txn)
                .await?;
            match published {
                Some(None) => return Ok(0),
                Some(Some(at)) => Some(at - CLOCK_MARGIN),
                None => None,
            }
        }
    };
    let mut unmark = outbox::Entity::update_many()
        .col_expr(
            outbox::Column::PublishedAt,
            Expr::value(None::<DateTime<Utc>>),
        )
        .filter(outbox::Column::PublishedAt.is_not_null());
    if let Some(since) = since {
        unmark = unmark.filter(outbox::Column::PublishedAt.gte(since));
    }
    Ok(unmark.exec(txn).await?.rows_affected)
}

/// An outbox event as a follower of the outbox sees it: which aggregate changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    /// `Hotel` or `Image`.
    pub aggregate_type: String,
    pub aggregate_id: String,
}

/// Events with a `seq` above `after` or within one of `gaps` (inclusive ranges of `seq`s not
/// seen yet, which a late commit may still fill), at most `limit`, in `seq` order. Served by
/// the primary key.
pub async fn changes_after(
    db: &impl ConnectionTrait,
    after: i64,
    gaps: &[(i64, i64)],
    limit: u64,
) -> StoreResult<Vec<Change>> {
    let mut wanted = sea_orm::Condition::any().add(outbox::Column::Seq.gt(after));
    for &(first, last) in gaps {
        wanted = wanted.add(outbox::Column::Seq.between(first, last));
    }
    let rows: Vec<(i64, String, String)> = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::Seq)
        .column(outbox::Column::Aggregatetype)
        .column(outbox::Column::Aggregateid)
        .filter(wanted)
        .order_by_asc(outbox::Column::Seq)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, aggregate_type, aggregate_id)| Change {
            seq,
            aggregate_type,
            aggregate_id,
        })
        .collect())
}

/// Deletes up to `limit` events published before `cutoff`, oldest first (two statements: the
/// `seq`s by the `(published_at, seq)` index, then those rows). An unpublished event is never
/// deleted. Returns how many were.
pub async fn delete_published_before(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> StoreResult<u64> {
    let seqs: Vec<i64> = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::Seq)
        .filter(outbox::Column::PublishedAt.is_not_null())
        .filter(outbox::Column::PublishedAt.lt(cutoff))
        .order_by_asc(outbox::Column::PublishedAt)
        .order_by_asc(outbox::Column::Seq)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    if seqs.is_empty() {
        return Ok(0);
    }
    let deleted = outbox::Entity::delete_many()
        .filter(outbox::Column::Seq.is_in(seqs))
        // Taken back by a relay meanwhile (Redis lost the stream): kept.
        .filter(outbox::Column::PublishedAt.is_not_null())
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}
