//! L2: Redis (one server or a cluster), shared by every replica, and the invalidation channel
//! that reaches every replica's L1.
//!
//! One batch of lookups is one `MGET` (the entries and their stripe generations together; a
//! cluster client splits it into one `MGET` per slot, that is per stripe, sent together); one batch of fills is one script call that stores each
//! entry only if its generation is still the one the reader saw; one invalidation is one
//! script call that bumps the generations, deletes the entries and publishes the keys. On a
//! cluster a script's keys must share a slot, so there the fills and invalidations of a batch
//! are one script call per stripe (an entry and its stripe's generation share a hash tag; see
//! [`crate::redis_link`]), sent together. Every call has a timeout: a caller gets an error
//! quickly rather than a stall, and the cache stops using Redis.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::{Client, Script};

use super::{CacheKey, Record};
use crate::redis_link::{Connection, Namespace, STRIPES, Target};

/// Most keys per fill or invalidation script call on one server, and per invalidation message.
const SCRIPT_CHUNK: usize = 1_000;

/// Stores each entry whose stripe generation still has the value the reader saw.
/// KEYS: entry, generation, entry, generation, ...; ARGV: ttl ms, expected generation
/// ("" when it had none), value, for each entry.
const FILL: &str = r"
local stored = 0
for i = 1, #KEYS, 2 do
  local j = (i - 1) / 2 * 3
  local generation = redis.call('GET', KEYS[i + 1]) or ''
  if generation == ARGV[j + 2] then
    redis.call('SET', KEYS[i], ARGV[j + 3], 'PX', ARGV[j + 1])
    stored = stored + 1
  end
end
return stored
";

/// Bumps the generations, deletes the entries, then tells every replica (unless the channel
/// is empty: on a cluster the caller publishes, see [`Shared::invalidate`]).
/// KEYS: entry, generation, ...; ARGV: channel, message.
const INVALIDATE: &str = r"
for i = 1, #KEYS, 2 do
  redis.call('INCR', KEYS[i + 1])
  redis.call('DEL', KEYS[i])
end
if ARGV[1] ~= '' then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return 1
";

#[derive(Debug, thiserror::Error)]
pub(crate) enum SharedError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    Timeout,
}

pub(crate) type SharedResult<T> = Result<T, SharedError>;

/// What a batch read found for one key.
pub(crate) struct Found<R> {
    /// `Some(entry)` on a hit (the entry may say "does not exist").
    pub entry: Option<Option<R>>,
    /// The stripe generation to hand back to [`Shared::fill`].
    pub generation: String,
}

pub(crate) struct Shared {
    target: Target,
    connection: Connection,
    names: Namespace,
    channel: String,
    ttl: Duration,
    timeout: Duration,
    fill: Script,
    invalidate: Script,
}

impl Shared {
    /// Does not connect: the first call does (so a Redis that is down at start-up only makes
    /// the cache degraded, not the service).
    pub(crate) fn new(
        target: Target,
        names: Namespace,
        ttl: Duration,
        timeout: Duration,
    ) -> SharedResult<Self> {
        let connection = target.connect_lazily(timeout, 1)?;
        Ok(Self {
            target,
            connection,
            channel: names.invalidation_channel(),
            names,
            ttl,
            timeout,
            fill: Script::new(FILL),
            invalidate: Script::new(INVALIDATE),
        })
    }

    /// The nodes the invalidation subscription may listen on.
    pub(crate) fn subscription_nodes(&self) -> Vec<Client> {
        self.target.subscription_nodes()
    }

    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn entry_key(&self, key: CacheKey) -> String {
        self.names
            .cache_entry(key.stripe(STRIPES), &key.to_string())
    }

    fn generation_key(&self, key: CacheKey) -> String {
        self.names.generation(key.stripe(STRIPES))
    }

    /// The script calls a batch takes: one for up to [`SCRIPT_CHUNK`] keys on one server;
    /// one per stripe on a cluster (a script's keys must share a slot there).
    fn script_groups<T>(&self, items: Vec<T>, key: impl Fn(&T) -> CacheKey) -> Vec<Vec<T>> {
        if !self.target.is_cluster() {
            let mut groups = Vec::new();
            let mut items = items.into_iter().peekable();
            while items.peek().is_some() {
                groups.push(items.by_ref().take(SCRIPT_CHUNK).collect());
            }
            return groups;
        }
        let mut by_stripe: BTreeMap<usize, Vec<T>> = BTreeMap::new();
        for item in items {
            by_stripe
                .entry(key(&item).stripe(STRIPES))
                .or_default()
                .push(item);
        }
        by_stripe.into_values().collect()
    }

    /// Runs the script calls of one batch together, within one timeout.
    async fn invoke_all(&self, calls: Vec<redis::ScriptInvocation<'_>>) -> SharedResult<()> {
        let all = futures::future::try_join_all(calls.iter().map(|invocation| {
            let mut connection = self.connection.clone();
            async move { invocation.invoke_async::<i64>(&mut connection).await }
        }));
        self.bounded(all).await.map(|_| ())
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> SharedResult<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(SharedError::Timeout),
        }
    }

    /// One `MGET` for the entries of `ids` and their generations.
    pub(crate) async fn get<R: Record>(&self, ids: &[R::Id]) -> SharedResult<Vec<Found<R>>> {
        let mut command = redis::cmd("MGET");
        for id in ids {
            command.arg(self.entry_key(R::key(*id)));
        }
        for id in ids {
            command.arg(self.generation_key(R::key(*id)));
        }
        let mut connection = self.connection.clone();
        let values: Vec<Option<Vec<u8>>> =
            self.bounded(command.query_async(&mut connection)).await?;
        let (entries, generations) = values.split_at(ids.len().min(values.len()));
        Ok(entries
            .iter()
            .zip(generations)
            .map(|(entry, generation)| Found {
                // An entry this version cannot read is a miss (it is overwritten by the fill).
                entry: entry
                    .as_deref()
                    .and_then(|bytes| serde_json::from_slice::<Option<R>>(bytes).ok()),
                generation: generation
                    .as_deref()
                    .map(|g| String::from_utf8_lossy(g).into_owned())
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// Stores the entries whose generation did not move since the read (one script call, one
    /// per stripe on a cluster).
    pub(crate) async fn fill<R: Record>(
        &self,
        entries: &[(R::Id, Option<&R>, String)],
    ) -> SharedResult<()> {
        let values: Vec<(CacheKey, Vec<u8>, &str)> = entries
            .iter()
            .filter_map(|(id, entry, generation)| {
                // An entry that does not serialize is not cached; the next reader loads it again.
                let value = serde_json::to_vec(entry).ok()?;
                Some((R::key(*id), value, generation.as_str()))
            })
            .collect();
        let calls = self
            .script_groups(values, |(key, _, _)| *key)
            .into_iter()
            .map(|group| {
                let mut invocation = self.fill.prepare_invoke();
                for (key, value, generation) in group {
                    invocation
                        .key(self.entry_key(key))
                        .key(self.generation_key(key))
                        .arg(super::jittered(self.ttl).as_millis() as u64)
                        .arg(generation)
                        .arg(value);
                }
                invocation
            })
            .collect();
        self.invoke_all(calls).await
    }

    /// Bumps the generations of `keys`, deletes them and publishes them to every replica.
    ///
    /// On one server the script publishes, and Redis hands the message to every subscriber
    /// before it answers: when this returns, every replica has it on the wire, so a change is
    /// seen in the very next request anywhere. On a cluster a `PUBLISH` on one node reaches
    /// the subscribers of the others later, over the cluster bus, and could lose that race
    /// against the writer's answer; so there the keys are published afterwards from every
    /// node, replicas included (one round trip), each of which hands them to its own subscribers before
    /// answering, wherever a replica listens.
    pub(crate) async fn invalidate(&self, keys: &[CacheKey]) -> SharedResult<()> {
        let cluster = self.target.is_cluster();
        let channel = if cluster { "" } else { self.channel.as_str() };
        let calls = self
            .script_groups(keys.to_vec(), |key| *key)
            .into_iter()
            .map(|group| {
                let mut invocation = self.invalidate.prepare_invoke();
                for key in &group {
                    invocation
                        .key(self.entry_key(*key))
                        .key(self.generation_key(*key));
                }
                invocation.arg(channel).arg(super::message(&group));
                invocation
            })
            .collect();
        self.invoke_all(calls).await?;
        if cluster {
            for chunk in keys.chunks(SCRIPT_CHUNK) {
                let mut connection = self.connection.clone();
                let message = super::message(chunk);
                self.bounded(connection.publish_from_every_node(&self.channel, &message))
                    .await?;
            }
        }
        Ok(())
    }

    /// Publishes `message` on the invalidation channel over a new connection of its own, so
    /// that it does not queue behind a slow call of the shared one, from every master of a
    /// cluster; all within `timeout`. Returns how many copies a subscriber receives.
    pub(crate) async fn publish_alone(
        &self,
        message: &str,
        timeout: Duration,
    ) -> SharedResult<usize> {
        let publish = async {
            let mut connection = self.target.connect_now(timeout).await?;
            connection
                .publish_from_every_node(&self.channel, message)
                .await
        };
        match tokio::time::timeout(timeout, publish).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(SharedError::Timeout),
        }
    }

    /// Whether Redis answers.
    pub(crate) async fn ping(&self) -> SharedResult<()> {
        let mut connection = self.connection.clone();
        let _: String = self
            .bounded(redis::cmd("PING").query_async(&mut connection))
            .await?;
        Ok(())
    }
}
