//! L2: Redis, shared by every replica, and the invalidation channel that reaches every
//! replica's L1.
//!
//! One batch of lookups is one `MGET` (the entries and their stripe generations together);
//! one batch of fills is one script call that stores each entry only if its generation is
//! still the one the reader saw; one invalidation is one script call that bumps the
//! generations, deletes the entries and publishes the keys. Every call has a timeout: a
//! caller gets an error quickly rather than a stall, and the cache stops using Redis.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

use super::{CacheKey, Record};

/// Stripes of the L2 generations (keys `{prefix}:gen:{n}`, without TTL).
const STRIPES: usize = 16_384;
/// Most keys per invalidation script call.
const INVALIDATION_CHUNK: usize = 1_000;

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

/// Bumps the generations, deletes the entries, then tells every replica.
/// KEYS: entry, generation, ...; ARGV: channel, message.
const INVALIDATE: &str = r"
for i = 1, #KEYS, 2 do
  redis.call('INCR', KEYS[i + 1])
  redis.call('DEL', KEYS[i])
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
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
    client: Client,
    connection: ConnectionManager,
    prefix: String,
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
        url: &str,
        prefix: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> SharedResult<Self> {
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            client,
            connection,
            prefix: prefix.to_owned(),
            channel: format!("{prefix}:invalidate"),
            ttl,
            timeout,
            fill: Script::new(FILL),
            invalidate: Script::new(INVALIDATE),
        })
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn entry_key(&self, key: CacheKey) -> String {
        format!("{}:{}", self.prefix, key)
    }

    fn generation_key(&self, key: CacheKey) -> String {
        format!("{}:gen:{}", self.prefix, key.stripe(STRIPES))
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

    /// Stores the entries whose generation did not move since the read (one script call).
    pub(crate) async fn fill<R: Record>(
        &self,
        entries: &[(R::Id, Option<&R>, String)],
    ) -> SharedResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut invocation = self.fill.prepare_invoke();
        for (id, entry, generation) in entries {
            let Ok(value) = serde_json::to_vec(entry) else {
                continue; // not cached; the next reader loads it again
            };
            invocation
                .key(self.entry_key(R::key(*id)))
                .key(self.generation_key(R::key(*id)))
                .arg(super::jittered(self.ttl).as_millis() as u64)
                .arg(generation.as_str())
                .arg(value);
        }
        let mut connection = self.connection.clone();
        let _: i64 = self
            .bounded(invocation.invoke_async(&mut connection))
            .await?;
        Ok(())
    }

    /// Bumps the generations of `keys`, deletes them and publishes them to every replica.
    pub(crate) async fn invalidate(&self, keys: &[CacheKey]) -> SharedResult<()> {
        for chunk in keys.chunks(INVALIDATION_CHUNK) {
            let mut invocation = self.invalidate.prepare_invoke();
            for key in chunk {
                invocation
                    .key(self.entry_key(*key))
                    .key(self.generation_key(*key));
            }
            invocation
                .arg(self.channel.as_str())
                .arg(super::message(chunk));
            let mut connection = self.connection.clone();
            let _: i64 = self
                .bounded(invocation.invoke_async(&mut connection))
                .await?;
        }
        Ok(())
    }

    /// Publishes `message` on the invalidation channel over a new connection of its own, so
    /// that it does not queue behind a slow call of the shared one; all within `timeout`.
    pub(crate) async fn publish_alone(&self, message: &str, timeout: Duration) -> SharedResult<()> {
        let publish = async {
            let mut connection = self.client.get_multiplexed_async_connection().await?;
            redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(message)
                .query_async::<i64>(&mut connection)
                .await
        };
        match tokio::time::timeout(timeout, publish).await {
            Ok(result) => Ok(result.map(|_| ())?),
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
