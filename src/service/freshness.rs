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
//!
//! The keys of an event: a `Hotel` event, that hotel; an `Image` event, that image and every
//! hotel it is linked to (its status, tags and score feed their counts and curation).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use tokio::sync::Notify;

use super::events;
use crate::cache::{Cache, CacheKey, RecoveryCheck};
use crate::domain::catalog::{HotelId, ImageId};
use crate::store::Store;
use crate::store::manage::linked_hotels;
use crate::store::outbox::{RelayedEvent, last_seq, unpublished_through};
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
        let (hotels, images) = aggregates(events);
        let linked = linked_hotels(self.store.connection(), &images)
            .await
            .map_err(|error| SinkError::Other(format!("cannot read linked hotels: {error}")))?;
        let keys: BTreeSet<CacheKey> = hotels
            .into_iter()
            .chain(linked)
            .map(CacheKey::Hotel)
            .chain(images.into_iter().map(CacheKey::Image))
            .collect();
        let keys: Vec<CacheKey> = keys.into_iter().collect();
        self.cache
            .replay(&keys)
            .await
            .map_err(|error| SinkError::Other(error.to_string()))
    }
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

/// The hotels and images the events are about (IDs that do not parse are skipped: they name
/// nothing the cache holds).
fn aggregates(events: &[RelayedEvent]) -> (Vec<HotelId>, Vec<ImageId>) {
    let mut hotels = BTreeSet::new();
    let mut images = BTreeSet::new();
    for event in events {
        match event.aggregate_type.as_str() {
            events::HOTEL => hotels.extend(event.aggregate_id.parse::<HotelId>().ok()),
            events::IMAGE => images.extend(event.aggregate_id.parse::<ImageId>().ok()),
            _ => {}
        }
    }
    (hotels.into_iter().collect(), images.into_iter().collect())
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
        let (hotels, images) = aggregates(&[
            event("Hotel", "7"),
            event("Image", "3"),
            event("Hotel", "7"),
            event("Image", "not-an-id"),
            event("Partner", "1"),
            event("Hotel", "2"),
        ]);
        assert_eq!(hotels, ["2".parse().unwrap(), "7".parse().unwrap()]);
        assert_eq!(images, ["3".parse::<ImageId>().unwrap()]);
    }
}
