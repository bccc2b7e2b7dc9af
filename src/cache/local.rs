//! L1: the in-process level (moka), one bounded map per record kind, plus the stripe
//! generations that guard its fills.
//!
//! A fill is guarded by the generation of its key's stripe, noted *before* the reader looked
//! at the next level: the fill inserts, then re-reads the generation and removes its own
//! insert if an invalidation came in between. Because an invalidation bumps the generation
//! *before* it removes the entry, every interleaving ends without the old value: either the
//! invalidation's removal comes after the insert, or the reader sees the bumped generation.
//! A flush (the whole level dropped, when this replica may have missed invalidations) bumps a
//! shared generation that every key's generation includes.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;

use super::{CacheKey, Record};
use crate::store::{HotelRecord, ImageRecord};

/// Stripes of the L1 generations: a false conflict (two keys sharing a stripe) only skips
/// one fill, so a few thousand counters are plenty.
const STRIPES: usize = 4096;

pub(crate) struct Local {
    hotels: moka::sync::Cache<crate::domain::catalog::HotelId, Option<Arc<HotelRecord>>>,
    images: moka::sync::Cache<crate::domain::catalog::ImageId, Option<Arc<ImageRecord>>>,
    stripes: Box<[AtomicU64]>,
    /// Bumped by every flush; part of every key's generation.
    flushes: AtomicU64,
    enabled: bool,
}

/// A TTL with up to +10% jitter, so that entries filled together do not expire together.
struct Jittered(Duration);

impl<K, V> Expiry<K, V> for Jittered {
    fn expire_after_create(&self, _key: &K, _value: &V, _created_at: Instant) -> Option<Duration> {
        Some(super::jittered(self.0))
    }
}

fn tier<K, V>(capacity: u64, ttl: Duration) -> moka::sync::Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .expire_after(Jittered(ttl))
        .build()
}

impl Local {
    /// `capacity` entries per kind; 0 turns the level off.
    pub(crate) fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            hotels: tier(capacity, ttl),
            images: tier(capacity, ttl),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            flushes: AtomicU64::new(0),
            enabled: capacity > 0,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The generation to note before reading past this level.
    pub(crate) fn generation(&self, key: CacheKey) -> u64 {
        let stripe = self.stripes[key.stripe(STRIPES)].load(Ordering::SeqCst);
        stripe.wrapping_add(self.flushes.load(Ordering::SeqCst))
    }

    /// `Some(entry)` on a hit (the entry itself may say "does not exist"). Records are shared,
    /// not copied: a hit costs a reference count, whatever the record's size.
    pub(crate) fn get<R: Record>(&self, id: R::Id) -> Option<Option<Arc<R>>> {
        if !self.enabled {
            return None;
        }
        R::tier(self).get(&id)
    }

    /// Stores `entry` unless `key` was invalidated since `generation` was noted.
    pub(crate) fn fill<R: Record>(&self, id: R::Id, entry: Option<Arc<R>>, generation: u64) {
        if !self.enabled {
            return;
        }
        let tier = R::tier(self);
        tier.insert(id, entry);
        if self.generation(R::key(id)) != generation {
            tier.invalidate(&id);
        }
    }

    /// Drops `keys`: generation first, then the entry (see the module doc for why).
    pub(crate) fn invalidate(&self, keys: &[CacheKey]) {
        for key in keys {
            self.stripes[key.stripe(STRIPES)].fetch_add(1, Ordering::SeqCst);
            match *key {
                CacheKey::Hotel(id) => self.hotels.invalidate(&id),
                CacheKey::Image(id) => self.images.invalidate(&id),
            }
        }
    }

    /// Drops everything (this replica may have missed invalidations).
    pub(crate) fn flush(&self) {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        self.hotels.invalidate_all();
        self.images.invalidate_all();
    }
}

impl Record for HotelRecord {
    type Id = crate::domain::catalog::HotelId;

    fn key(id: Self::Id) -> CacheKey {
        CacheKey::Hotel(id)
    }

    fn tier(local: &Local) -> &moka::sync::Cache<Self::Id, Option<Arc<Self>>> {
        &local.hotels
    }
}

impl Record for ImageRecord {
    type Id = crate::domain::catalog::ImageId;

    fn key(id: Self::Id) -> CacheKey {
        CacheKey::Image(id)
    }

    fn tier(local: &Local) -> &moka::sync::Cache<Self::Id, Option<Arc<Self>>> {
        &local.images
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog::HotelId;

    fn hotel(id: i64, version: i64) -> Arc<HotelRecord> {
        Arc::new(HotelRecord {
            id: HotelId::new(id).expect("id"),
            version,
            main: None,
            image_count: 0,
            gallery: Vec::new(),
        })
    }

    fn id(n: i64) -> HotelId {
        HotelId::new(n).expect("id")
    }

    #[test]
    fn a_fill_noted_before_an_invalidation_is_dropped() {
        let local = Local::new(100, Duration::from_secs(60));
        let noted = local.generation(CacheKey::Hotel(id(1)));
        local.invalidate(&[CacheKey::Hotel(id(1))]);
        local.fill(id(1), Some(hotel(1, 1)), noted);
        assert_eq!(local.get::<HotelRecord>(id(1)), None);
    }

    #[test]
    fn a_fill_after_the_invalidation_is_kept() {
        let local = Local::new(100, Duration::from_secs(60));
        local.invalidate(&[CacheKey::Hotel(id(1))]);
        let noted = local.generation(CacheKey::Hotel(id(1)));
        local.fill(id(1), Some(hotel(1, 2)), noted);
        assert_eq!(local.get::<HotelRecord>(id(1)), Some(Some(hotel(1, 2))));
    }

    #[test]
    fn a_flush_drops_entries_and_guards_fills_noted_before_it() {
        let local = Local::new(100, Duration::from_secs(60));
        local.fill::<HotelRecord>(id(1), None, local.generation(CacheKey::Hotel(id(1))));
        assert_eq!(local.get::<HotelRecord>(id(1)), Some(None));
        let noted = local.generation(CacheKey::Hotel(id(2)));
        local.flush();
        local.fill(id(2), Some(hotel(2, 1)), noted);
        assert_eq!(local.get::<HotelRecord>(id(1)), None);
        assert_eq!(local.get::<HotelRecord>(id(2)), None);
    }

    #[test]
    fn a_zero_capacity_level_stores_nothing() {
        let local = Local::new(0, Duration::from_secs(60));
        local.fill(
            id(1),
            Some(hotel(1, 1)),
            local.generation(CacheKey::Hotel(id(1))),
        );
        assert_eq!(local.get::<HotelRecord>(id(1)), None);
    }
}
