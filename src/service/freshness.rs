//! What keeps every reader fresh once a change has committed (DESIGN sections 6 and 7).
//!
//! - [`Freshness::committed`], called by every use case right after its commit: the cache
//!   drops the keys the change made stale (this replica's L1, Redis, and through Redis every
//!   other replica's L1), and the outbox relay is woken to publish the change's events.
//! - [`Replaying`], the sink the relay publishes through when there is Redis: it invalidates
//!   the keys of every event again before the event leaves, and fails the batch when that
//!   fails, so the relay keeps the events and tries again. This is how invalidations lost to a
//!   Redis outage are replayed from the outbox, even when the replica whose invalidation failed
//!   has crashed meanwhile, or lost only its own link to Redis while the others kept serving
//!   from it (any replica's relay may publish the event, so each replays them all). The cost
//!   is a second invalidation of each changed key, a few milliseconds after the first: one
//!   more cache miss per changed hotel, never a stale read.
//! - [`recovery_check`]: a degraded cache is used again only once every event committed
//!   before Redis came back has been published (so replayed).
//! - [`OutboxFollower`], without Redis: processes on one catalog (replicas, or a `serve` beside
//!   an `import` or `recompute` command) have no channel to tell each other of changes, so each
//!   relay follows the outbox and drops from its own L1 the keys of every event committed
//!   elsewhere. A change made by another process is then visible within about a poll interval
//!   (`OUTBOX_POLL_MS`), not after the cache TTL.
//!
//! The keys of an event: a `Hotel` event, that hotel; an `Image` event, that image and every
//! hotel it is linked to (its status, tags and score feed their counts and curation).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::Notify;

use super::events;
use crate::cache::{Cache, CacheKey, RecoveryCheck};
use crate::domain::catalog::{HotelId, ImageId};
use crate::store::Store;
use crate::store::StoreResult;
use crate::store::manage::linked_hotels;
use crate::store::outbox::{RelayedEvent, changes_after, last_seq, unpublished_through};
use crate::store::stream::{EventSink, SinkError};

/// The cache and the relay's wake-up, handed to every use case that writes. Clones share both.
#[derive(Clone, Debug)]
pub struct Freshness {
    cache: Cache,
    outbox: Arc<Notify>,
}

impl Freshness {
    pub fn new(cache: Cache, outbox: Arc<Notify>) -> Self {
        Self { cache, outbox }
    }

    /// After a commit: drops `stale` from the cache everywhere and wakes the relay (a wake-up
    /// sent while the relay is busy is kept for its next round).
    pub async fn committed(&self, stale: &[CacheKey]) {
        self.cache.invalidate(stale).await;
        self.outbox.notify_one();
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// What wakes the outbox relay of this process (the relay listens on it).
    pub fn outbox_wake(&self) -> Arc<Notify> {
        self.outbox.clone()
    }
}

/// The relay's sink behind the cache replay (see the module doc). Its `store` should be on the
/// relay's pool, so that the replay's reads do not queue behind requests.
pub struct Replaying {
    inner: Arc<dyn EventSink>,
    cache: Cache,
    store: Store,
}

impl Replaying {
    pub fn new(inner: Arc<dyn EventSink>, cache: Cache, store: Store) -> Self {
        Self {
            inner,
            cache,
            store,
        }
    }

    async fn replay(&self, events: &[RelayedEvent]) -> Result<(), SinkError> {
        let changed = events
            .iter()
            .map(|e| (e.aggregate_type.as_str(), e.aggregate_id.as_str()));
        let keys = stale_keys(&self.store, changed)
            .await
            .map_err(|error| SinkError::Other(format!("cannot read linked hotels: {error}")))?;
        self.cache
            .replay(&keys)
            .await
            .map_err(|error| SinkError::Other(error.to_string()))
    }
}

/// The cache keys that changes of these aggregates (type, ID) made stale: a hotel, itself; an
/// image, itself and every hotel it is linked to.
async fn stale_keys<'a>(
    store: &Store,
    changed: impl Iterator<Item = (&'a str, &'a str)>,
) -> StoreResult<Vec<CacheKey>> {
    let (hotels, images) = aggregates(changed);
    let linked = if images.is_empty() {
        Vec::new()
    } else {
        linked_hotels(store.connection(), &images).await?
    };
    let keys: BTreeSet<CacheKey> = hotels
        .into_iter()
        .chain(linked)
        .map(CacheKey::Hotel)
        .chain(images.into_iter().map(CacheKey::Image))
        .collect();
    Ok(keys.into_iter().collect())
}

impl EventSink for Replaying {
    fn publish<'a>(
        &'a self,
        events: &'a [RelayedEvent],
        round: i64,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if !events.is_empty() {
                self.replay(events).await?;
            }
            self.inner.publish(events, round).await
        })
    }

    fn holds(&self, published: i64) -> BoxFuture<'_, Result<bool, SinkError>> {
        self.inner.holds(published)
    }

    fn resynced(&self, round: i64) -> BoxFuture<'_, Result<(), SinkError>> {
        self.inner.resynced(round)
    }
}

/// The hotels and images that changed, from (aggregate type, ID) pairs (IDs that do not parse
/// are skipped: they name nothing the cache holds).
fn aggregates<'a>(
    changed: impl Iterator<Item = (&'a str, &'a str)>,
) -> (Vec<HotelId>, Vec<ImageId>) {
    let mut hotels = BTreeSet::new();
    let mut images = BTreeSet::new();
    for (aggregate_type, aggregate_id) in changed {
        match aggregate_type {
            events::HOTEL => hotels.extend(aggregate_id.parse::<HotelId>().ok()),
            events::IMAGE => images.extend(aggregate_id.parse::<ImageId>().ok()),
            _ => {}
        }
    }
    (hotels.into_iter().collect(), images.into_iter().collect())
}

/// Most outbox events one look of the follower reads.
const FOLLOW_BATCH: u64 = 5_000;
/// How long a `seq` skipped by the outbox (a transaction still running, or one that rolled
/// back) is looked for again: a transaction that commits later than this after a later `seq`
/// was seen is not followed (its keys expire with the TTL).
const GAP_PATIENCE: Duration = Duration::from_secs(120);
/// Most ranges of skipped `seq`s looked for at once (the oldest are dropped beyond).
const MAX_GAP_RANGES: usize = 32;

/// Follows the outbox for a process without Redis (see the module doc): every look reads the
/// events committed since the last one and drops their keys from this process's L1. Events
/// are read by `seq`; a `seq` skipped (its transaction had not committed, or rolled back) is
/// looked for again for [`GAP_PATIENCE`], so a late commit is not missed.
pub struct OutboxFollower {
    cache: Cache,
    store: Store,
    state: Mutex<Followed>,
}

#[derive(Default)]
struct Followed {
    /// The highest `seq` seen; `None` before the first look.
    last: Option<i64>,
    /// `seq`s skipped so far, and when each was first skipped.
    skipped: BTreeMap<i64, Instant>,
}

impl Followed {
    /// Inclusive ranges of the skipped `seq`s still worth looking for (prunes the others).
    fn gaps(&mut self, now: Instant) -> Vec<(i64, i64)> {
        self.skipped
            .retain(|_, since| now.duration_since(*since) < GAP_PATIENCE);
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        for &seq in self.skipped.keys() {
            match ranges.last_mut() {
                Some((_, last)) if *last + 1 == seq => *last = seq,
                _ => ranges.push((seq, seq)),
            }
        }
        let excess = ranges.len().saturating_sub(MAX_GAP_RANGES);
        for (first, last) in ranges.drain(..excess) {
            for seq in first..=last {
                self.skipped.remove(&seq);
            }
        }
        ranges
    }

    /// Notes the `seq`s read (in order): those filling a gap leave it, and new ones skipped
    /// after the last one become gaps.
    fn saw(&mut self, seqs: &[i64], now: Instant) {
        for &seq in seqs {
            self.skipped.remove(&seq);
            let last = self.last.unwrap_or(seq);
            if seq > last {
                for skipped in last + 1..seq {
                    self.skipped.insert(skipped, now);
                }
            }
            if seq > last || self.last.is_none() {
                self.last = Some(seq);
            }
        }
    }
}

impl OutboxFollower {
    pub fn new(cache: Cache, store: Store) -> Self {
        Self {
            cache,
            store,
            state: Mutex::new(Followed::default()),
        }
    }

    /// One look: drops the keys of the events committed since the last look from L1. The
    /// first look only notes where the outbox stands (L1 starts empty).
    pub async fn follow(&self) -> StoreResult<()> {
        let now = Instant::now();
        let (last, gaps) = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            (state.last, state.gaps(now))
        };
        let Some(after) = last else {
            let last = last_seq(self.store.connection()).await?.unwrap_or(0);
            self.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .last = Some(last);
            return Ok(());
        };
        let changes = changes_after(self.store.connection(), after, &gaps, FOLLOW_BATCH).await?;
        if changes.is_empty() {
            return Ok(());
        }
        let changed = changes
            .iter()
            .map(|c| (c.aggregate_type.as_str(), c.aggregate_id.as_str()));
        let keys = stale_keys(&self.store, changed).await?;
        // Without Redis this only touches L1, and cannot fail.
        let _ = self.cache.replay(&keys).await;
        let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saw(&seqs, now);
        Ok(())
    }
}

/// A degradation episode and the outbox's last `seq` when its recovery was first checked.
type EpisodeMark = (u64, Option<i64>);

/// The cache's recovery check with the relay on: at the first check of a degradation episode
/// (Redis answers again) it notes the outbox's last `seq`; it passes once no event up to that
/// mark is unpublished. A change whose invalidation failed committed before Redis came back,
/// so its events are within the mark, and a relay replays them before they count as
/// published. Should Redis fail again, a new episode takes a
/// new mark. A database error fails the check (it is tried again at the next probe).
pub fn recovery_check(store: Store) -> RecoveryCheck {
    let mark: Arc<Mutex<Option<EpisodeMark>>> = Arc::new(Mutex::new(None));
    Arc::new(move |episode| {
        let store = store.clone();
        let mark = mark.clone();
        Box::pin(async move {
            let noted = *mark.lock().unwrap_or_else(PoisonError::into_inner);
            let through = match noted {
                Some((seen, through)) if seen == episode => through,
                _ => match last_seq(store.connection()).await {
                    Ok(through) => {
                        *mark.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some((episode, through));
                        through
                    }
                    Err(_) => return false,
                },
            };
            match through {
                None => true,
                Some(through) => matches!(
                    unpublished_through(store.connection(), through).await,
                    Ok(false)
                ),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn event(aggregate_type: &str, aggregate_id: &str) -> RelayedEvent {
        RelayedEvent {
            seq: 1,
            id: "e".into(),
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            event_type: "X".into(),
            payload: "{}".into(),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn events_name_their_hotels_and_images_once_each() {
        let events = [
            event("Hotel", "7"),
            event("Image", "3"),
            event("Hotel", "7"),
            event("Image", "not-an-id"),
            event("Partner", "1"),
            event("Hotel", "2"),
        ];
        let (hotels, images) = aggregates(
            events
                .iter()
                .map(|e| (e.aggregate_type.as_str(), e.aggregate_id.as_str())),
        );
        assert_eq!(hotels, ["2".parse().unwrap(), "7".parse().unwrap()]);
        assert_eq!(images, ["3".parse::<ImageId>().unwrap()]);
    }

    #[test]
    fn the_follower_looks_again_for_skipped_seqs_until_they_commit_or_it_gives_up() {
        let start = Instant::now();
        let mut followed = Followed {
            last: Some(10),
            ..Followed::default()
        };
        // 12, 13 and 15 are not committed yet.
        followed.saw(&[11, 14, 16], start);
        assert_eq!(followed.last, Some(16));
        assert_eq!(followed.gaps(start), [(12, 13), (15, 15)]);
        // 13 commits late.
        followed.saw(&[13, 17], start);
        assert_eq!(followed.gaps(start), [(12, 12), (15, 15)]);
        assert_eq!(followed.last, Some(17));
        // The others rolled back: given up after a while.
        assert_eq!(followed.gaps(start + GAP_PATIENCE), []);
    }
}
