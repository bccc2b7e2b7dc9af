//! L1: the in-process level (quick_cache), one bounded map per record kind, plus the stripe
//! generations that guard its fills.
//!
//! A fill is guarded by the generation of its key's stripe, noted *before* the reader looked
//! at the next level: the fill inserts, then re-reads the generation and removes its own
//! insert if an invalidation came in between. Because an invalidation bumps the generation
//! *before* it removes the entry, every interleaving ends without the old value: either the
//! invalidation's removal comes after the insert, or the reader sees the bumped generation.
//! A flush (the whole level dropped, when this replica may have missed invalidations) bumps a
//! shared generation that every key's generation includes.
//!
//! Why quick_cache rather than moka: a search page reads about a hundred entries, and moka's
//! reads (a policy record per read, its upkeep) were 12% of the CPU of a warm search page;
//! quick_cache reads cost a shard read-lock and a hash lookup. It has no time to live, so an
//! entry carries its expiry (with jitter) and a read past it is a miss.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{CacheKey, Record};
use crate::domain::curation::HotelRecord;
use crate::store::ImageRecord;

/// Stripes of the L1 generations: a false conflict (two keys sharing a stripe) only skips
/// one fill, so a few thousand counters are plenty.
const STRIPES: usize = 4096;

/// One level-1 map: a record kind by ID.
pub(crate) type Tier<R> = quick_cache::sync::Cache<<R as Record>::Id, Entry<R>>;

/// A cached answer ("does not exist" included) and when it expires.
#[derive(Clone)]
pub(crate) struct Entry<R> {
    record: Option<Arc<R>>,
    expires: Instant,
}

pub(crate) struct Local {
    hotels: Tier<HotelRecord>,
    images: Tier<ImageRecord>,
    stripes: Box<[AtomicU64]>,
    /// Bumped by every flush; part of every key's generation.
    flushes: AtomicU64,
    /// Time to live of an entry (plus up to 10% jitter, so that entries filled together do
    /// not expire together).
    ttl: Duration,
    enabled: bool,
}

impl Local {
    /// `capacity` entries per kind; 0 turns the level off.
    pub(crate) fn new(capacity: u64, ttl: Duration) -> Self {
        let enabled = capacity > 0;
        // (quick_cache wants a capacity of at least one; a level of capacity 0 is never used.)
        let capacity = capacity.max(1) as usize;
        Self {
            hotels: Tier::<HotelRecord>::new(capacity),
            images: Tier::<ImageRecord>::new(capacity),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            flushes: AtomicU64::new(0),
            ttl,
            enabled,
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
        let tier = R::tier(self);
        let entry = tier.get(&id)?;
        if entry.expires <= Instant::now() {
            tier.remove(&id);
            return None;
        }
        Some(entry.record)
    }

    /// Stores `entry` unless `key` was invalidated since `generation` was noted.
    pub(crate) fn fill<R: Record>(&self, id: R::Id, entry: Option<Arc<R>>, generation: u64) {
        if !self.enabled {
            return;
        }
        let tier = R::tier(self);
        let expires = Instant::now() + super::jittered(self.ttl);
        tier.insert(
            id,
            Entry {
                record: entry,
                expires,
            },
        );
        if self.generation(R::key(id)) != generation {
            tier.remove(&id);
        }
    }

    /// Drops `keys`: generation first, then the entry (see the module doc for why).
    pub(crate) fn invalidate(&self, keys: &[CacheKey]) {
        for key in keys {
            self.stripes[key.stripe(STRIPES)].fetch_add(1, Ordering::SeqCst);
            match *key {
                CacheKey::Hotel(id) => drop(self.hotels.remove(&id)),
                CacheKey::Image(id) => drop(self.images.remove(&id)),
            }
        }
    }

    /// Drops everything (this replica may have missed invalidations).
    pub(crate) fn flush(&self) {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        self.hotels.clear();
        self.images.clear();
    }
}

impl Record for HotelRecord {
    type Id = crate::domain::catalog::HotelId;

    fn key(id: Self::Id) -> CacheKey {
        CacheKey::Hotel(id)
    }

    fn tier(local: &Local) -> &Tier<Self> {
        &local.hotels
    }
}

impl Record for ImageRecord {
    type Id = crate::domain::catalog::ImageId;

    fn key(id: Self::Id) -> CacheKey {
        CacheKey::Image(id)
    }

    fn tier(local: &Local) -> &Tier<Self> {
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
            texts: Vec::new(),
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
    fn an_entry_past_its_time_to_live_is_a_miss() {
        let local = Local::new(100, Duration::ZERO);
        local.fill(
            id(1),
            Some(hotel(1, 1)),
            local.generation(CacheKey::Hotel(id(1))),
        );
        assert_eq!(local.get::<HotelRecord>(id(1)), None);
        let kept = Local::new(100, Duration::from_secs(60));
        kept.fill(
            id(1),
            Some(hotel(1, 1)),
            kept.generation(CacheKey::Hotel(id(1))),
        );
        assert_eq!(kept.get::<HotelRecord>(id(1)), Some(Some(hotel(1, 1))));
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
