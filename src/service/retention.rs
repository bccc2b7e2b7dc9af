//! Outbox retention: published events older than a configured age are deleted in small
//! batches (the `prune-outbox` command, and a periodic task of `serve` when
//! `OUTBOX_RETENTION_HOURS` is set). An unpublished event is never deleted, so with
//! `OUTBOX_RELAY=off` (Debezium, which never marks events) nothing is.
//!
//! The retained window is also what the relay can publish again when Redis loses the stream
//! (see `service::relay`): keep it longer than Redis could take to be noticed as short.

use std::time::Duration;

use chrono::Utc;

use super::ServiceResult;
use crate::store::{Store, outbox};

/// How pruning goes.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Events published longer ago than this are deleted.
    pub age: Duration,
    /// Rows per delete statement: small, so that no delete holds locks for long.
    pub batch: u64,
    /// Pause between two batches, to leave the database to the service.
    pub pause: Duration,
}

impl Retention {
    /// An age of `hours` hours (the unit of `OUTBOX_RETENTION_HOURS` and `--older-than-hours`,
    /// which accept 1 to 87,600: ten years).
    pub fn hours(hours: u64) -> Duration {
        Duration::from_secs(hours.saturating_mul(3600))
    }
}

/// Deletes every event published longer than `retention.age` ago, batch by batch; `progress`
/// gets each batch's count. Returns how many were deleted.
pub async fn prune(
    store: &Store,
    retention: Retention,
    mut progress: impl FnMut(u64),
) -> ServiceResult<u64> {
    let cutoff = Utc::now() - chrono::Duration::from_std(retention.age).unwrap_or_default();
    let mut total = 0;
    loop {
        let deleted =
            outbox::delete_published_before(store.connection(), cutoff, retention.batch.max(1))
                .await?;
        if deleted == 0 {
            return Ok(total);
        }
        total += deleted;
        progress(deleted);
        tokio::time::sleep(retention.pause).await;
    }
}

/// Prunes every `interval`, for good (the periodic task of `serve`, aborted at shutdown: a
/// delete cut off rolls back, and the next run deletes those rows).
pub async fn run_periodically(store: Store, retention: Retention, interval: Duration) {
    loop {
        match prune(&store, retention, |_| {}).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "outbox retention: published events deleted"),
            Err(error) => tracing::warn!(%error, "outbox retention failed; trying again later"),
        }
        tokio::time::sleep(interval).await;
    }
}
