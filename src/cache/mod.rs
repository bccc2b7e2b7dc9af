//! The read cache of the hot paths: hotels' published views (main image, gallery, image count,
//! version) and images, by ID. It sits behind [`crate::service::catalog::Catalog`]; resolvers
//! and loaders do not know it exists.
//!
//! # Levels
//! - **L1**, in process ([`local`], quick_cache): bounded by entries per kind, TTL with jitter.
//! - **L2**, Redis ([`shared`], when `REDIS_URL` is set): one `MGET` per batch (on a cluster,
//!   one per stripe, sent together), fills in one script call per batch (on a cluster, one per
//!   stripe), TTL with jitter.
//!
//! A batch goes L1 → L2 → database (one statement for what is still missing) and fills the
//! levels it missed. "Does not exist" is cached as well (as `null`), so a warm search page
//! whose hotels have no images costs no SQL either. The TTL is only a backstop: correctness
//! comes from invalidation.
//!
//! # Keys
//! Named after the catalog's identity (see [`crate::redis_link`]), so that catalogs sharing a
//! Redis never read each other's entries:
//! (`<...>` is a placeholder; braces are literal: the hash tag of a cluster.)
//! - `<prefix>:{<catalog>:s<stripe>}:h:<hotel id>` / `...:i:<image id>`: JSON of the record,
//!   or `null`; `{<catalog>:s<stripe>}` is the hash tag it shares with its stripe's generation.
//! - `<prefix>:{<catalog>:s<stripe>}:gen`: a generation counter shared by the keys of one of
//!   16,384 stripes (no TTL).
//! - channel `<prefix>:<catalog>:invalidate`: space-separated keys (`h:1 i:7`), to every
//!   replica's L1.
//!
//! # Invalidation, and why a slow reader cannot write old data back
//! After a change commits, the service calls [`Cache::invalidate`] with the hotels whose
//! published rows it wrote and the images it changed. This replica's L1 drops them at once;
//! in Redis one script (on a cluster, one per stripe, then a publish from every node) bumps
//! their generations, deletes them and publishes them, and every
//! replica's subscriber drops them from its L1 on receipt.
//!
//! A reader notes each key's generation before it reads the next level (L1: an in-process
//! stripe counter; L2: the counter fetched by the same `MGET`), and its fill lands only if the
//! generation is unchanged (Redis checks this atomically in the fill script; L1 re-checks
//! after inserting). A reader that loaded the old state before a commit therefore cannot
//! store it after that commit's invalidation.
//!
//! # When Redis fails
//! Every Redis call has a short timeout. A failed read or fill falls back (the read goes to
//! the database, the fill is skipped), and counts towards the **breaker**: the cache turns
//! **degraded** (the breaker opens) once [`BREAKER_FAILURES`] calls failed within
//! [`BREAKER_WINDOW`], or at once when the invalidation subscription is lost or does not
//! answer, or when an invalidation fails (Redis may then still hold the changed record, and
//! this replica would read it back). Degraded, this replica flushes its L1 (it may miss invalidations now) and serves
//! from the database without filling anything; `/health/ready` says `degraded`. Writes still
//! commit and still try to invalidate; an invalidation that fails is replayed by the outbox
//! relay, which invalidates the keys of every event it publishes. A prober retries Redis; the
//! cache is used again once Redis answers, the subscription is back, and the recovery check
//! (see [`Cache::set_recovery_check`]: the outbox holds nothing unpublished from before the
//! recovery) passes.
//!
//! # Why one slow call does not flush L1, and nothing stale is served
//! L1 is only as fresh as the invalidations that reach it, and those come through the
//! subscription, not through the reads and fills that fail. So a failed read is not a reason
//! to distrust L1, but it may be the first sign of a Redis this replica lost: after any failure the cache
//! checks the subscription itself. It publishes a token of its own on the invalidation channel,
//! on a connection of its own, and waits up to [`ECHO_DEADLINE`] for it to come back through
//! the subscription. If it comes back, every invalidation published before it has come back
//! too (Redis delivers a channel's messages in order), and L1 is kept; if not, the cache
//! degrades and flushes L1 as before. A single slow call (a Redis fork, a long command, a
//! network hiccup) therefore costs one fallback read, not the whole in-process cache.

pub(crate) mod local;
pub mod persisted;
pub(crate) mod shared;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use crate::domain::catalog::{CatalogId, HotelId, ImageId};
use crate::domain::curation::HotelRecord;
use crate::redis_link::{Namespace, Target};
use crate::secret::Secret;
use crate::store::ImageRecord;
use local::Local;
use shared::Shared;

/// One cached record: a hotel's published view or an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CacheKey {
    Hotel(HotelId),
    Image(ImageId),
}

impl CacheKey {
    /// A stripe in `0..stripes`, spread evenly over IDs of both kinds.
    fn stripe(self, stripes: usize) -> usize {
        let (salt, id) = match self {
            CacheKey::Hotel(id) => (0x51_u64, id.get()),
            CacheKey::Image(id) => (0xA7_u64, id.get()),
        };
        let mixed = (id as u64 ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> 32) as usize % stripes
    }

    fn parse(text: &str) -> Option<Self> {
        let (kind, id) = text.split_once(':')?;
        match kind {
            "h" => id.parse().ok().map(CacheKey::Hotel),
            "i" => id.parse().ok().map(CacheKey::Image),
            _ => None,
        }
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheKey::Hotel(id) => write!(f, "h:{id}"),
            CacheKey::Image(id) => write!(f, "i:{id}"),
        }
    }
}

/// The invalidation message: the keys, space-separated.
fn message(keys: &[CacheKey]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ttl` plus up to 10%, so that entries filled together do not expire together.
fn jittered(ttl: Duration) -> Duration {
    ttl + ttl.mul_f64(rand::random::<f64>() * 0.1)
}

/// Redis could not be reached (or did not answer in time).
#[derive(Debug, thiserror::Error)]
#[error("cache invalidation failed: {0}")]
pub struct CacheError(String);

/// A kind of record the cache holds.
pub(crate) trait Record:
    Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    type Id: Copy + Eq + Hash + fmt::Debug + Send + Sync + 'static;
    fn key(id: Self::Id) -> CacheKey;
    fn tier(local: &Local) -> &local::Tier<Self>;
}

/// How the cache is set up.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// L1 entries per kind; 0 turns L1 off.
    pub local_entries: u64,
    /// Time to live of entries in both levels (plus up to 10% jitter).
    pub ttl: Duration,
    /// Redis URL (it may carry a password; one server or a cluster); `None` is the embedded
    /// default (L1 only).
    pub redis_url: Option<Secret>,
    /// Prefix of every key and channel (the catalog's identity follows it).
    pub redis_prefix: String,
    /// Budget of one Redis call.
    pub redis_timeout: Duration,
    /// How often a degraded cache retries Redis.
    pub retry_interval: Duration,
}

/// Running totals, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheFigures {
    pub local_hits: u64,
    pub local_misses: u64,
    pub shared_hits: u64,
    pub shared_misses: u64,
    pub redis_errors: u64,
    /// Times the cache became degraded (the breaker opened).
    pub degradations: u64,
    /// Whether the cache is degraded now (the breaker is open).
    pub degraded: bool,
}

#[derive(Default)]
struct Counters {
    local_hits: AtomicU64,
    local_misses: AtomicU64,
    shared_hits: AtomicU64,
    shared_misses: AtomicU64,
    redis_errors: AtomicU64,
    degradations: AtomicU64,
}

/// Records read from the database, made shareable with the cache.
fn shared_records<K: Eq + Hash, R>(records: HashMap<K, R>) -> HashMap<K, Arc<R>> {
    records.into_iter().map(|(k, r)| (k, Arc::new(r))).collect()
}

fn add(counter: &AtomicU64, n: usize) {
    if n > 0 {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Something to await between a batch's database read and its fills (tests of the
/// stale-fill guard pause a reader there).
pub type FillPause = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Whether the state missed while degraded has been repaired (see the module doc). It gets
/// the episode (the count of degradations so far), so that it can note where it started.
pub type RecoveryCheck = Arc<dyn Fn(u64) -> BoxFuture<'static, bool> + Send + Sync>;

/// The cache. Clones share everything.
#[derive(Clone)]
pub struct Cache(Arc<Inner>);

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("local", &self.0.local.enabled())
            .field("shared", &self.0.shared.is_some())
            .field("degraded", &self.degraded())
            .finish()
    }
}

struct Inner {
    local: Local,
    shared: Option<Shared>,
    /// The breaker: while set, neither level is read or filled.
    degraded: AtomicBool,
    /// Whether the invalidation subscription is up (always true without Redis).
    subscribed: AtomicBool,
    counters: Counters,
    retry_interval: Duration,
    fill_pause: Mutex<Option<FillPause>>,
    recovery_check: Mutex<Option<RecoveryCheck>>,
    /// Keys whose invalidation could not reach Redis, sent again before the cache is used
    /// again (the outbox relay's replay covers the rest, and other replicas' changes).
    pending: Mutex<BTreeSet<CacheKey>>,
    /// When the recent failed Redis calls happened (the breaker's window).
    failures: Mutex<VecDeque<std::time::Instant>>,
    /// Check tokens that came back through the subscription, to the checks waiting for them.
    echoes: broadcast::Sender<String>,
    /// Whether a subscription check is running (one at a time).
    checking: AtomicBool,
    /// Names this cache's check tokens (several replicas share the channel).
    echo_tag: u64,
    /// Numbers this cache's check tokens.
    echo_count: AtomicU64,
}

/// Most keys kept for [`Inner::pending`]; beyond it the relay's replay alone repairs Redis.
const MAX_PENDING: usize = 100_000;

/// Failed Redis calls within [`BREAKER_WINDOW`] that open the breaker (degrade the cache).
pub const BREAKER_FAILURES: usize = 5;
/// The window in which [`BREAKER_FAILURES`] failures open the breaker.
pub const BREAKER_WINDOW: Duration = Duration::from_secs(10);
/// How long a check of the subscription waits for its own token to come back through it.
pub const ECHO_DEADLINE: Duration = Duration::from_secs(1);
/// What starts a subscription check's token on the invalidation channel (never a cache key).
const ECHO_PREFIX: &str = "echo:";

impl Cache {
    /// Builds the cache; with Redis, starts the subscriber and the prober (they stop when the
    /// last clone of the cache is dropped). Redis being down is not an error: the cache
    /// starts degraded and recovers when Redis comes.
    pub fn start(settings: &CacheSettings, catalog: CatalogId) -> anyhow::Result<Self> {
        let shared = match &settings.redis_url {
            Some(url) => Some(Shared::new(
                Target::parse(url.expose())?,
                Namespace::new(&settings.redis_prefix, catalog),
                settings.ttl,
                settings.redis_timeout,
            )?),
            None => None,
        };
        let with_redis = shared.is_some();
        let cache = Self(Arc::new(Inner {
            local: Local::new(settings.local_entries, settings.ttl),
            shared,
            degraded: AtomicBool::new(with_redis),
            subscribed: AtomicBool::new(!with_redis),
            counters: Counters::default(),
            retry_interval: settings.retry_interval,
            fill_pause: Mutex::new(None),
            recovery_check: Mutex::new(None),
            pending: Mutex::new(BTreeSet::new()),
            failures: Mutex::new(VecDeque::new()),
            echoes: broadcast::channel(64).0,
            checking: AtomicBool::new(false),
            echo_tag: rand::random(),
            echo_count: AtomicU64::new(0),
        }));
        if with_redis {
            tokio::spawn(subscribe(Arc::downgrade(&cache.0)));
            tokio::spawn(probe(Arc::downgrade(&cache.0)));
        }
        Ok(cache)
    }

    /// The embedded default with `local_entries` per kind, for tools and tests.
    pub fn in_process(local_entries: u64, ttl: Duration) -> Self {
        Self(Arc::new(Inner {
            local: Local::new(local_entries, ttl),
            shared: None,
            degraded: AtomicBool::new(false),
            subscribed: AtomicBool::new(true),
            counters: Counters::default(),
            retry_interval: Duration::from_secs(1),
            fill_pause: Mutex::new(None),
            recovery_check: Mutex::new(None),
            pending: Mutex::new(BTreeSet::new()),
            failures: Mutex::new(VecDeque::new()),
            echoes: broadcast::channel(1).0,
            checking: AtomicBool::new(false),
            echo_tag: 0,
            echo_count: AtomicU64::new(0),
        }))
    }

    /// Hotels by ID through the cache; `load` reads the ones no level has. The records are
    /// shared with the cache (read-only).
    pub async fn hotels<E, F>(
        &self,
        ids: &[HotelId],
        load: impl FnOnce(Vec<HotelId>) -> F,
    ) -> Result<HashMap<HotelId, Arc<HotelRecord>>, E>
    where
        F: Future<Output = Result<HashMap<HotelId, HotelRecord>, E>>,
    {
        self.through(ids, load).await
    }

    /// Images by ID through the cache; `load` reads the ones no level has.
    pub async fn images<E, F>(
        &self,
        ids: &[ImageId],
        load: impl FnOnce(Vec<ImageId>) -> F,
    ) -> Result<HashMap<ImageId, Arc<ImageRecord>>, E>
    where
        F: Future<Output = Result<HashMap<ImageId, ImageRecord>, E>>,
    {
        self.through(ids, load).await
    }

    async fn through<R: Record, E, F>(
        &self,
        ids: &[R::Id],
        load: impl FnOnce(Vec<R::Id>) -> F,
    ) -> Result<HashMap<R::Id, Arc<R>>, E>
    where
        F: Future<Output = Result<HashMap<R::Id, R>, E>>,
    {
        let inner = &self.0;
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        if !self.usable() {
            return Ok(shared_records(load(ids.to_vec()).await?));
        }
        let mut found = HashMap::with_capacity(ids.len());
        // L1, noting each missing key's generation before looking further. (Callers pass
        // distinct IDs: the loaders deduplicate.)
        let mut missing: Vec<(R::Id, u64)> = Vec::new();
        for &id in ids {
            let generation = inner.local.generation(R::key(id));
            match inner.local.get::<R>(id) {
                Some(entry) => {
                    if let Some(record) = entry {
                        found.insert(id, record);
                    }
                }
                None => missing.push((id, generation)),
            }
        }
        if inner.local.enabled() {
            add(&inner.counters.local_hits, ids.len() - missing.len());
            add(&inner.counters.local_misses, missing.len());
        }
        if missing.is_empty() {
            return Ok(found);
        }

        // L2, then the database for what neither level has.
        let mut to_load: Vec<(R::Id, u64, Option<String>)> = Vec::with_capacity(missing.len());
        match self.shared_get::<R>(&missing).await {
            Some(results) => {
                for ((id, generation), result) in missing.into_iter().zip(results) {
                    match result.entry {
                        Some(entry) => {
                            let entry = entry.map(Arc::new);
                            inner.local.fill(id, entry.clone(), generation);
                            if let Some(record) = entry {
                                found.insert(id, record);
                            }
                        }
                        None => to_load.push((id, generation, Some(result.generation))),
                    }
                }
            }
            None => to_load.extend(missing.into_iter().map(|(id, g)| (id, g, None))),
        }
        if to_load.is_empty() {
            return Ok(found);
        }
        let loaded = shared_records(load(to_load.iter().map(|(id, _, _)| *id).collect()).await?);

        self.pause_before_fill().await;
        if self.usable() {
            self.shared_fill(&to_load, &loaded).await;
            for (id, generation, _) in &to_load {
                inner.local.fill(*id, loaded.get(id).cloned(), *generation);
            }
        }
        found.extend(loaded);
        Ok(found)
    }

    /// The L2 entries of `missing`, or `None` when L2 is off or failed.
    async fn shared_get<R: Record>(
        &self,
        missing: &[(R::Id, u64)],
    ) -> Option<Vec<shared::Found<R>>> {
        let shared = self.0.shared.as_ref()?;
        let ids: Vec<R::Id> = missing.iter().map(|(id, _)| *id).collect();
        match shared.get::<R>(&ids).await {
            Ok(results) => {
                let hits = results.iter().filter(|r| r.entry.is_some()).count();
                add(&self.0.counters.shared_hits, hits);
                add(&self.0.counters.shared_misses, results.len() - hits);
                Some(results)
            }
            Err(error) => {
                self.failed(&error);
                None
            }
        }
    }

    async fn shared_fill<R: Record>(
        &self,
        to_load: &[(R::Id, u64, Option<String>)],
        loaded: &HashMap<R::Id, Arc<R>>,
    ) {
        let Some(shared) = &self.0.shared else {
            return;
        };
        let entries: Vec<(R::Id, Option<&R>, String)> = to_load
            .iter()
            .filter_map(|(id, _, generation)| {
                generation
                    .as_ref()
                    .map(|g| (*id, loaded.get(id).map(|r| &**r), g.clone()))
            })
            .collect();
        if let Err(error) = shared.fill::<R>(&entries).await {
            self.failed(&error);
        }
    }

    /// Drops `keys` everywhere, after their change committed: this replica's L1 at once,
    /// then Redis and (through it) every other replica. Tried even while degraded; a failure
    /// is left to the outbox relay's replay.
    pub async fn invalidate(&self, keys: &[CacheKey]) {
        if keys.is_empty() {
            return;
        }
        self.0.local.invalidate(keys);
        if let Some(shared) = &self.0.shared
            && let Err(error) = shared.invalidate(keys).await
        {
            self.invalidation_failed(&error);
            let mut pending = self
                .0
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if pending.len() + keys.len() <= MAX_PENDING {
                pending.extend(keys.iter().copied());
            }
        }
    }

    /// Drops `keys` everywhere again, for the outbox relay's replay: like [`Cache::invalidate`],
    /// but a failure is returned (the relay keeps the events and replays them later) instead
    /// of being remembered here.
    pub async fn replay(&self, keys: &[CacheKey]) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.0.local.invalidate(keys);
        if let Some(shared) = &self.0.shared
            && let Err(error) = shared.invalidate(keys).await
        {
            self.invalidation_failed(&error);
            return Err(CacheError(error.to_string()));
        }
        Ok(())
    }

    /// Whether reads may use the cache (the breaker is closed).
    fn usable(&self) -> bool {
        !self.0.degraded.load(Ordering::SeqCst)
    }

    /// Whether the cache is degraded (Redis unreachable, or not yet known to be repaired).
    pub fn degraded(&self) -> bool {
        !self.usable()
    }

    /// Waits up to `patience` for a cache that starts degraded (Redis not yet reached) to
    /// come up; returns whether it did. A replica that starts while Redis is down serves from
    /// the database meanwhile, so this only spares a cold start.
    pub async fn settle(&self, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        while self.degraded() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Whether a shared level (Redis) is configured.
    pub fn is_shared(&self) -> bool {
        self.0.shared.is_some()
    }

    /// An invalidation did not reach Redis: Redis may still hold what the change made stale,
    /// and this replica would read it back into L1. Degrade at once (as any outage does) until
    /// the keys have been sent again.
    fn invalidation_failed(&self, error: &shared::SharedError) {
        self.0.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
        self.0.degrade(error);
    }

    /// A read or a fill failed: nothing stale can come of it (the read falls back to the
    /// database, the fill is skipped). The breaker opens past [`BREAKER_FAILURES`] in the
    /// window; before that, the subscription is checked (see the module doc).
    fn failed(&self, error: &shared::SharedError) {
        self.0.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
        if self.degraded() {
            return;
        }
        if self.0.breaker_trips(std::time::Instant::now()) {
            self.0.degrade(&format!(
                "{BREAKER_FAILURES} Redis calls failed within {BREAKER_WINDOW:?}, the last: {error}"
            ));
            return;
        }
        if self.0.checking.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = self.0.clone();
        tokio::spawn(async move {
            let answers = inner.subscription_answers().await;
            inner.checking.store(false, Ordering::SeqCst);
            if !answers {
                inner.degrade(&"the invalidation subscription did not answer");
            }
        });
    }

    pub fn figures(&self) -> CacheFigures {
        let c = &self.0.counters;
        CacheFigures {
            local_hits: c.local_hits.load(Ordering::Relaxed),
            local_misses: c.local_misses.load(Ordering::Relaxed),
            shared_hits: c.shared_hits.load(Ordering::Relaxed),
            shared_misses: c.shared_misses.load(Ordering::Relaxed),
            redis_errors: c.redis_errors.load(Ordering::Relaxed),
            degradations: c.degradations.load(Ordering::Relaxed),
            degraded: self.degraded(),
        }
    }

    /// Installs (or removes) a pause between a batch's database read and its fills.
    pub fn set_fill_pause(&self, pause: Option<FillPause>) {
        *self
            .0
            .fill_pause
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = pause;
    }

    /// Installs the check that must pass before a degraded cache is used again.
    pub fn set_recovery_check(&self, check: RecoveryCheck) {
        *self
            .0
            .recovery_check
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(check);
    }

    async fn pause_before_fill(&self) {
        let pause = self
            .0
            .fill_pause
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(pause) = pause {
            pause().await;
        }
    }
}

impl Inner {
    /// Notes a failed call at `now`; true when that makes [`BREAKER_FAILURES`] in the window.
    fn breaker_trips(&self, now: std::time::Instant) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.push_back(now);
        while failures
            .front()
            .is_some_and(|at| now.duration_since(*at) > BREAKER_WINDOW)
        {
            failures.pop_front();
        }
        failures.len() >= BREAKER_FAILURES
    }

    /// Whether the subscription delivers: a token of this cache, published on a connection of
    /// its own (not behind a slow call), comes back through it within [`ECHO_DEADLINE`]. On a
    /// cluster every master publishes the token and every copy must come back: a node forwards
    /// what it publishes in order, but nodes do not wait for each other.
    async fn subscription_answers(&self) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        if !self.subscribed.load(Ordering::SeqCst) {
            return false;
        }
        let token = format!(
            "{ECHO_PREFIX}{:016x}:{}",
            self.echo_tag,
            self.echo_count.fetch_add(1, Ordering::Relaxed)
        );
        let mut echoes = self.echoes.subscribe();
        let deadline = tokio::time::Instant::now() + ECHO_DEADLINE;
        let Ok(mut copies) = shared.publish_alone(&token, ECHO_DEADLINE).await else {
            return false;
        };
        loop {
            if copies == 0 {
                return true;
            }
            match tokio::time::timeout_at(deadline, echoes.recv()).await {
                Ok(Ok(echo)) if echo == token => copies -= 1,
                Ok(Ok(_) | Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return false,
            }
        }
    }

    fn degrade(&self, reason: &dyn fmt::Display) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        if !self.degraded.swap(true, Ordering::SeqCst) {
            self.counters.degradations.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %reason, "cache degraded: serving from the database");
        }
        // Invalidations may be missed from now on: nothing in L1 can be trusted.
        self.local.flush();
    }

    /// Leaves the degraded state if Redis answers, the subscription is up and the recovery
    /// check passes.
    async fn try_recover(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        if !self.subscribed.load(Ordering::SeqCst) || shared.ping().await.is_err() {
            return;
        }
        let pending: Vec<CacheKey> = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        if !pending.is_empty() {
            if shared.invalidate(&pending).await.is_err() {
                return;
            }
            let mut left = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for key in &pending {
                left.remove(key);
            }
        }
        let check = self
            .recovery_check
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let episode = self.counters.degradations.load(Ordering::SeqCst);
        if let Some(check) = check
            && !check(episode).await
        {
            return;
        }
        // Whatever L1 took in while degraded was not filled (fills are off): flush anyway,
        // in case a fill raced the degradation.
        self.local.flush();
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        if self.degraded.swap(false, Ordering::SeqCst) {
            tracing::info!("cache recovered");
        }
    }
}

/// Retries Redis while the cache is degraded.
async fn probe(cache: std::sync::Weak<Inner>) {
    loop {
        let interval = match cache.upgrade() {
            Some(inner) => {
                if inner.degraded.load(Ordering::SeqCst) {
                    inner.try_recover().await;
                }
                inner.retry_interval
            }
            None => return,
        };
        tokio::time::sleep(interval).await;
    }
}

/// Keeps the invalidation subscription up and applies what arrives to L1. On a cluster it
/// listens on one seed node (every node hears every `PUBLISH`), the next one after a failure.
async fn subscribe(cache: std::sync::Weak<Inner>) {
    for attempt in 0_usize.. {
        let Some(inner) = cache.upgrade() else {
            return;
        };
        let Some(shared) = &inner.shared else {
            return;
        };
        let nodes = shared.subscription_nodes();
        let node = &nodes[attempt % nodes.len()];
        let connect = async {
            let mut pubsub = node.get_async_pubsub().await?;
            pubsub.subscribe(shared.channel()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = match tokio::time::timeout(shared.timeout() * 4, connect).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(error)) => {
                inner.degrade(&error);
                let wait = inner.retry_interval;
                drop(inner);
                tokio::time::sleep(wait).await;
                continue;
            }
            Err(_) => {
                inner.degrade(&"subscribing timed out");
                let wait = inner.retry_interval;
                drop(inner);
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        inner.subscribed.store(true, Ordering::SeqCst);
        if inner.degraded.load(Ordering::SeqCst) {
            inner.try_recover().await;
        }
        let wait = inner.retry_interval;
        drop(inner);

        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let Some(inner) = cache.upgrade() else {
                return;
            };
            let text = String::from_utf8_lossy(message.get_payload_bytes());
            if text.starts_with(ECHO_PREFIX) {
                // A subscription check's token (nobody waiting is fine).
                let _ = inner.echoes.send(text.into_owned());
                continue;
            }
            let keys: Vec<CacheKey> = text.split(' ').filter_map(CacheKey::parse).collect();
            inner.local.invalidate(&keys);
        }
        // The connection is gone: invalidations may be missed until it is back.
        let Some(inner) = cache.upgrade() else {
            return;
        };
        inner.subscribed.store(false, Ordering::SeqCst);
        inner.degrade(&"invalidation subscription lost");
        drop(inner);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_what_they_print() {
        let keys = [
            CacheKey::Hotel(HotelId::new(12).expect("id")),
            CacheKey::Image(ImageId::new(7).expect("id")),
        ];
        let text = message(&keys);
        assert_eq!(text, "h:12 i:7");
        let parsed: Vec<CacheKey> = text.split(' ').filter_map(CacheKey::parse).collect();
        assert_eq!(parsed, keys);
        assert_eq!(CacheKey::parse("x:1"), None);
        assert_eq!(CacheKey::parse("h:0"), None);
    }

    #[test]
    fn the_breaker_opens_on_enough_failures_within_its_window_only() {
        let cache = Cache::in_process(10, Duration::from_secs(1));
        let start = std::time::Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let window = BREAKER_WINDOW.as_millis() as u64;
        // Failures spread wider than the window never open it.
        for n in 0..3 * BREAKER_FAILURES as u64 {
            assert!(!cache.0.breaker_trips(at(n * window / 3)), "failure {n}");
        }
        cache
            .0
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        // The same number close together does, at the last one.
        for n in 1..BREAKER_FAILURES as u64 {
            assert!(!cache.0.breaker_trips(at(n)), "failure {n}");
        }
        assert!(cache.0.breaker_trips(at(BREAKER_FAILURES as u64)));
    }

    #[test]
    fn stripes_spread_neighbouring_ids() {
        let stripes: std::collections::HashSet<usize> = (1..=1000)
            .map(|n| CacheKey::Hotel(HotelId::new(n).expect("id")).stripe(4096))
            .collect();
        assert!(stripes.len() > 800, "{} stripes", stripes.len());
    }
}
