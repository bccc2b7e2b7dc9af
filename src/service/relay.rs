//! The built-in outbox relay: publishes the outbox's events to the event sink (a Redis stream,
//! or the in-process bus of the embedded default) at least once and in order per aggregate,
//! with any number of replicas running it at once (DESIGN section 7).
//!
//! # Guarantees
//! - **One publisher at a time.** A round (read a batch, publish it, mark it) is one
//!   transaction holding the relay lock (see [`crate::store::outbox`]), so two replicas never
//!   publish the same event in a crash-free run: the second waits for the lock and then finds
//!   the batch marked.
//! - **At least once.** The batch is marked only after the sink said `Ok`, in the transaction
//!   that holds the lock. A crash, a sink error or a failed commit leaves it unmarked, and the
//!   next round (of any replica) publishes it again. Consumers dedupe by the event `id`.
//! - **Order per aggregate.** Batches are read in `seq` order, and the changes of one hotel or
//!   image commit their events in `seq` order; no cursor is kept, so an event whose transaction
//!   committed late is the first of the next round, never skipped.
//!
//! # When it runs
//! Woken by [`Relay::waker`] (poked after each commit with `notify_one`, which keeps one
//! wake-up for a relay that is busy, so none is lost), and every poll interval anyway (changes
//! committed by another replica or by the `import` command). Each wake-up drains: batches until
//! nothing is left. A sink or database error backs off exponentially from the poll interval
//! up to [`MAX_BACKOFF`], ignoring wake-ups meanwhile. When told to stop, it makes one last
//! drain (bounded by [`STOP_DRAIN`]) so the events of the last requests leave too.
//!
//! Before each round one indexed read asks for the oldest unpublished event; an idle relay
//! costs that one read per poll interval and takes no lock. The same read feeds the lag metric
//! ([`RelayFigures`]).
//!
//! # A stream that lost events
//! A Redis restarted with less data than the relay published (no persistence, an older
//! snapshot, a failover) is found by the round that publishes next (see
//! [`crate::store::stream`]), or, with nothing to publish, by [`STREAM_CHECK`]: every so often
//! an idle relay asks the sink whether it still holds every published round. Then, in the
//! round's transaction, the events the stream no longer holds are unmarked
//! ([`take_back_since`]) and published again in `seq` order before anything newer: at least
//! once, in order per aggregate, nothing lost while the outbox retains it.
//!
//! Without Redis, the relay also carries the process's [`OutboxFollower`] (it wakes up anyway).
//!
//! The relay runs on a pool of its own, so that it never waits for a connection behind
//! requests (nor counts in their statement figures).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

use crate::service::freshness::OutboxFollower;
use crate::store::StoreError;
use crate::store::outbox::{
    begin_locked, mark_published, oldest_unpublished, published_rounds, round_number,
    take_back_since, unpublished,
};
use crate::store::stream::{EventSink, SinkError};

/// The longest wait between two attempts while the sink or the database fails.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the last drain at shutdown may take.
pub const STOP_DRAIN: Duration = Duration::from_secs(3);
/// How often an idle relay asks the sink whether it still holds every published round.
pub const STREAM_CHECK: Duration = Duration::from_secs(1);

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Most events per round (one sink call, one transaction).
    pub batch_size: u64,
    /// How often to look for events when nobody wakes the relay.
    pub poll: Duration,
    /// Names this replica in the lock row (for operators).
    pub holder: String,
}

/// Why a round failed; the relay logs it and backs off.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox read or mark failed")]
    Store(#[from] StoreError),
    #[error("the event sink failed")]
    Sink(#[from] SinkError),
}

impl From<sea_orm::DbErr> for RelayError {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Store(error.into())
    }
}

/// What the relay has seen, for `/metrics`. Clones share the same figures.
#[derive(Debug, Clone, Default)]
pub struct RelayFigures(Arc<Figures>);

#[derive(Debug)]
struct Figures {
    /// `created_at` of the oldest unpublished event (Unix microseconds), [`NONE`] when none.
    oldest_unpublished: AtomicI64,
    published: AtomicU64,
    /// Events taken back from a stream that lost them, to be published again.
    taken_back: AtomicU64,
}

/// "No unpublished event" in [`Figures::oldest_unpublished`].
const NONE: i64 = i64::MIN;

impl Default for Figures {
    fn default() -> Self {
        Self {
            oldest_unpublished: AtomicI64::new(NONE),
            published: AtomicU64::new(0),
            taken_back: AtomicU64::new(0),
        }
    }
}

impl RelayFigures {
    /// Age of the oldest unpublished event at `now`, in seconds; 0 when there is none. It keeps
    /// growing between two looks at the outbox (e.g. while the relay backs off).
    pub fn lag_seconds(&self, now: DateTime<Utc>) -> f64 {
        match self.0.oldest_unpublished.load(Ordering::Relaxed) {
            NONE => 0.0,
            micros => ((now.timestamp_micros() - micros).max(0) as f64) / 1e6,
        }
    }

    /// Events this relay published (and marked) since start.
    pub fn published(&self) -> u64 {
        self.0.published.load(Ordering::Relaxed)
    }

    /// Events this relay took back from a stream that had lost them (to publish them again).
    pub fn taken_back(&self) -> u64 {
        self.0.taken_back.load(Ordering::Relaxed)
    }

    fn set_oldest(&self, oldest: Option<DateTime<Utc>>) {
        let value = oldest.map_or(NONE, |at| at.timestamp_micros());
        self.0.oldest_unpublished.store(value, Ordering::Relaxed);
    }

    fn add_published(&self, count: u64) {
        self.0.published.fetch_add(count, Ordering::Relaxed);
    }
}

/// The relay of one replica.
pub struct Relay {
    /// The relay's own pool.
    db: DatabaseConnection,
    sink: Arc<dyn EventSink>,
    wake: Arc<Notify>,
    settings: RelaySettings,
    figures: RelayFigures,
    /// When the idle relay last asked the sink whether it holds every round.
    checked_at: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Without Redis: follows the outbox for this process's L1 at every wake-up.
    follower: Option<OutboxFollower>,
    /// The router whose response cache drops the changed hotels and images of each round.
    router: Option<super::router_cache::RouterInvalidation>,
}

impl Relay {
    /// A relay on `db` (a pool of its own) publishing to `sink`, woken through `wake`.
    pub fn new(
        db: DatabaseConnection,
        sink: Arc<dyn EventSink>,
        wake: Arc<Notify>,
        settings: RelaySettings,
    ) -> Self {
        Self {
            db,
            sink,
            wake,
            settings,
            figures: RelayFigures::default(),
            checked_at: std::sync::Mutex::new(None),
            follower: None,
            router: None,
        }
    }

    /// Also invalidates the router's response cache for the hotels and images of every
    /// round's events, once they are published (see [`super::router_cache`]).
    pub fn invalidating(mut self, router: super::router_cache::RouterInvalidation) -> Self {
        self.router = Some(router);
        self
    }

    /// Also follows the outbox for this process's in-process cache at every wake-up (a
    /// deployment without Redis, see [`OutboxFollower`]).
    pub fn following(mut self, follower: OutboxFollower) -> Self {
        self.follower = Some(follower);
        self
    }

    /// The handle to poke after a commit that wrote events: `waker().notify_one()`.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn figures(&self) -> RelayFigures {
        self.figures.clone()
    }

    /// Publishes until `stop` completes, then drains once more and closes its pool.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut backoff: Option<Duration> = None;
        if let Some(follower) = &self.follower {
            // Notes where the outbox stands before this process's cache takes anything in.
            let _ = follower.follow().await;
        }
        loop {
            let pause = backoff.unwrap_or(self.settings.poll);
            tokio::select! {
                biased;
                () = &mut stop => break,
                () = self.wake.notified(), if backoff.is_none() => {}
                () = tokio::time::sleep(pause) => {}
            }
            if let Some(follower) = &self.follower
                && let Err(error) = follower.follow().await
            {
                tracing::debug!(error = %error, "outbox follower: cannot read the outbox");
            }
            match self.drain().await {
                Ok(()) => backoff = None,
                Err(error) => {
                    let next = next_backoff(backoff, self.settings.poll);
                    tracing::warn!(
                        error = %error,
                        cause = ?std::error::Error::source(&error),
                        retry_in_ms = u64::try_from(next.as_millis()).unwrap_or(u64::MAX),
                        "outbox relay: round failed; the events stay unpublished"
                    );
                    backoff = Some(next);
                }
            }
        }
        match tokio::time::timeout(STOP_DRAIN, self.drain()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "outbox relay: last drain failed; the next start publishes the rest");
            }
            Err(_) => tracing::warn!("outbox relay: last drain did not finish in time"),
        }
        if let Err(error) = self.db.close().await {
            tracing::warn!(error = %error, "outbox relay: cannot close its pool");
        }
    }

    /// Rounds until no unpublished event is left (or a round finds nothing it can take).
    /// With nothing left, checks now and then that the sink still holds what was published.
    pub async fn drain(&self) -> Result<(), RelayError> {
        loop {
            let oldest = oldest_unpublished(&self.db).await?;
            self.figures.set_oldest(oldest);
            let published = if oldest.is_none() {
                if self.sink_holds_everything().await {
                    return Ok(());
                }
                self.round_with(true).await?
            } else {
                self.round().await?
            };
            if published == 0 {
                return Ok(());
            }
        }
    }

    /// One round: under the relay lock, publishes the oldest unpublished events (at most a
    /// batch) and marks them. Returns how many it published.
    pub async fn round(&self) -> Result<u64, RelayError> {
        self.round_with(false).await
    }

    /// A round; with `check`, one that goes to the sink even with nothing to publish, to find
    /// out whether the stream lost events. Returns how many events it published, or took back
    /// from a stream that had lost them.
    async fn round_with(&self, check: bool) -> Result<u64, RelayError> {
        let txn = begin_locked(&self.db, &self.settings.holder, Utc::now()).await?;
        let round = round_number(&txn).await?;
        let events = unpublished(&txn, self.settings.batch_size).await?;
        if events.is_empty() && !check {
            txn.rollback().await?;
            return Ok(0);
        }
        match self.sink.publish(&events, round).await {
            Ok(()) => {}
            Err(SinkError::StreamLost { last_held }) => {
                let taken_back = take_back_since(&txn, last_held).await?;
                txn.commit().await?;
                tracing::warn!(
                    last_held,
                    taken_back,
                    "outbox relay: the event stream lost events (Redis restarted with less data); publishing them again"
                );
                self.figures
                    .0
                    .taken_back
                    .fetch_add(taken_back, Ordering::Relaxed);
                // Until this succeeds, every round finds the stream short again and takes back
                // nothing more (what it lost is unmarked already): no event is lost meanwhile.
                self.sink.resynced(round).await?;
                return Ok(taken_back.max(1));
            }
            Err(error) => {
                txn.rollback().await?;
                return Err(error.into());
            }
        }
        let marked = mark_published(&txn, &events, Utc::now()).await?;
        txn.commit().await?;
        if let Some(router) = &self.router
            && let Err(error) = router.invalidate(&events).await
        {
            tracing::warn!(error = %error, cause = ?std::error::Error::source(&error), "outbox relay: the router's response cache was not invalidated; its entries expire with their max-age");
        }
        self.figures.add_published(marked);
        if marked > 0 {
            tracing::debug!(events = marked, "outbox relay: published");
        }
        Ok(marked)
    }

    /// Whether the sink still holds every published round. Asked at most every
    /// [`STREAM_CHECK`]; in between, and when the question itself fails (the next round that
    /// publishes asks it again anyway), the answer is yes.
    async fn sink_holds_everything(&self) -> bool {
        let now = tokio::time::Instant::now();
        {
            let mut checked_at = self
                .checked_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if checked_at.is_some_and(|at| now.duration_since(at) < STREAM_CHECK) {
                return true;
            }
            *checked_at = Some(now);
        }
        let published = match published_rounds(&self.db).await {
            Ok(published) => published,
            Err(_) => return true,
        };
        match self.sink.holds(published).await {
            Ok(holds) => holds,
            Err(error) => {
                tracing::debug!(error = %error, "outbox relay: cannot check the event stream");
                true
            }
        }
    }
}

/// Doubles the wait from the poll interval up to [`MAX_BACKOFF`].
fn next_backoff(current: Option<Duration>, poll: Duration) -> Duration {
    match current {
        None => poll.max(Duration::from_millis(50)),
        Some(wait) => (wait * 2).min(MAX_BACKOFF),
    }
}

/// A name for this replica in the lock row: host, process and a random tag (several apps may
/// run in one process, e.g. in tests).
pub fn holder_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown-host".to_owned());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}/{}/{}", std::process::id(), &tag[..8])
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    use futures::future::BoxFuture;
    use migration::MigratorTrait as _;
    use sea_orm::ConnectionTrait as _;

    use super::*;
    use crate::store::journal::{OutboxEvent, append_events};
    use crate::store::outbox::RelayedEvent;

    /// Records every batch; the first call "crashes" after publishing: it answers an error.
    struct CrashOnce {
        seen: Mutex<Vec<String>>,
        crashed: AtomicBool,
    }

    impl EventSink for CrashOnce {
        fn publish<'a>(
            &'a self,
            events: &'a [RelayedEvent],
            _round: i64,
        ) -> BoxFuture<'a, Result<(), SinkError>> {
            let mut seen = self.seen.lock().unwrap();
            seen.extend(events.iter().map(|e| e.id.clone()));
            let crash = !self.crashed.swap(true, Ordering::SeqCst);
            Box::pin(std::future::ready(if crash {
                Err(SinkError::Other("crashed before the marks".into()))
            } else {
                Ok(())
            }))
        }
    }

    #[tokio::test]
    async fn a_batch_published_but_never_marked_is_published_again_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let (db, _) = crate::store::connect(&url, 2, Duration::from_secs(5))
            .await
            .unwrap();
        migration::Migrator::up(&db, None).await.unwrap();
        let txn = crate::store::Store::new(db.clone())
            .begin_write()
            .await
            .unwrap();
        let events = (1..=3)
            .map(|i| OutboxEvent {
                aggregate_type: "Hotel",
                aggregate_id: i.to_string(),
                event_type: "GalleryChanged",
                payload: serde_json::json!({ "n": i }),
            })
            .collect();
        append_events(&txn, events, Utc::now()).await.unwrap();
        txn.commit().await.unwrap();

        let sink = Arc::new(CrashOnce {
            seen: Mutex::new(Vec::new()),
            crashed: AtomicBool::new(false),
        });
        let relay = Relay::new(
            db.clone(),
            sink.clone(),
            Arc::new(Notify::new()),
            RelaySettings {
                batch_size: 2,
                poll: Duration::from_millis(10),
                holder: holder_name(),
            },
        );
        assert!(relay.drain().await.is_err(), "the first round fails");
        assert!(relay.figures().lag_seconds(Utc::now()) > 0.0);
        relay.drain().await.unwrap();

        let seen = sink.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 5, "two, the same two again, then the third");
        assert_eq!(seen[..2], seen[2..4]);
        let distinct: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(distinct.len(), 3);
        let unpublished = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap();
        assert_eq!(unpublished, 0);
        assert_eq!(relay.figures().published(), 3);
        assert_eq!(relay.figures().lag_seconds(Utc::now()), 0.0);
    }

    #[test]
    fn backoff_doubles_from_the_poll_interval_up_to_the_cap() {
        let poll = Duration::from_millis(200);
        let mut wait = None;
        let mut seen = Vec::new();
        for _ in 0..8 {
            let next = next_backoff(wait, poll);
            seen.push(next.as_millis());
            wait = Some(next);
        }
        assert_eq!(seen, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn lag_is_zero_without_unpublished_events_and_the_age_of_the_oldest_otherwise() {
        let figures = RelayFigures::default();
        let now = Utc::now();
        assert_eq!(figures.lag_seconds(now), 0.0);
        figures.set_oldest(Some(now - chrono::Duration::milliseconds(2500)));
        assert!((figures.lag_seconds(now) - 2.5).abs() < 1e-9);
        // A clock step backwards never makes it negative.
        assert_eq!(
            figures.lag_seconds(now - chrono::Duration::seconds(10)),
            0.0
        );
        figures.set_oldest(None);
        assert_eq!(figures.lag_seconds(now), 0.0);
    }
}
