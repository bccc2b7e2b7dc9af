//! Automatic persisted queries (Apollo's APQ protocol): query texts by their SHA-256, so that
//! clients can send the hash instead of the document.
//!
//! A text is kept in process (moka) and, with Redis, under `{prefix}:apq:{hash}` with a TTL,
//! so that a query registered on one replica is known to every replica. Entries are
//! content-addressed (a hash names one text forever), so nothing is ever invalidated. Redis
//! failures are not errors: an unknown hash makes the client send the full query again.
//!
//! These names carry no catalog identity, unlike the cache's: a query text is not catalog
//! data (each request is validated against the schema of the replica that runs it), so
//! catalogs sharing a prefix may share the texts too.
//!
//! Anyone may register, so what registrations may hold is bounded in bytes, not entries: in
//! process by a weighed cache ([`ApqBudget::local_bytes`]); in Redis by a counter of the bytes
//! registered per TTL window (`{prefix}:apq-bytes:{window}`), raised (`INCRBY`) before the
//! text is stored and lowered again when that passed the budget. A text lives one TTL, so at
//! any moment only the texts of the current and the previous window are alive: at most twice
//! [`ApqBudget::shared_bytes`]. Past the budget a text is kept in process only. (The HTTP
//! layer registers a text only once its request passed the limits and validation.)
//!
//! Every command names one key, so the texts spread over every shard of a Redis Cluster (a
//! script taking the text and the counter would need them in one slot, and so every text
//! in the counter's). Registrations are rare (once per client and query), so the few round
//! trips cost nothing that matters; two replicas registering one text at once both count it,
//! which only errs on the safe side.

use std::sync::Arc;
use std::time::Duration;

use crate::redis_link::{Connection, Target};

/// How many bytes of query texts may be kept.
#[derive(Debug, Clone, Copy)]
pub struct ApqBudget {
    /// In this process.
    pub local_bytes: u64,
    /// Registered in Redis per TTL window, by all replicas together.
    pub shared_bytes: u64,
}

#[derive(Clone)]
pub struct PersistedQueries {
    local: moka::sync::Cache<String, Arc<str>>,
    shared: Option<Shared>,
}

#[derive(Clone)]
struct Shared {
    connection: Connection,
    prefix: String,
    ttl: Duration,
    timeout: Duration,
    budget: u64,
}

impl PersistedQueries {
    /// Texts kept `ttl`; in Redis too when `redis` is set (not connected until used).
    pub fn new(
        redis: Option<&Target>,
        prefix: &str,
        ttl: Duration,
        timeout: Duration,
        budget: ApqBudget,
    ) -> anyhow::Result<Self> {
        let shared = match redis {
            Some(target) => Some(Shared {
                connection: target.connect_lazily(timeout, 1)?,
                prefix: prefix.to_owned(),
                ttl,
                timeout,
                budget: budget.shared_bytes,
            }),
            None => None,
        };
        Ok(Self {
            local: moka::sync::Cache::builder()
                .max_capacity(budget.local_bytes)
                .weigher(|hash: &String, text: &Arc<str>| {
                    u32::try_from(hash.len() + text.len()).unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build(),
            shared,
        })
    }

    /// The text registered under `hash` (lower-case hex SHA-256), if any replica knows it.
    pub async fn get(&self, hash: &str) -> Option<Arc<str>> {
        if let Some(text) = self.local.get(hash) {
            return Some(text);
        }
        let shared = self.shared.as_ref()?;
        let mut connection = shared.connection.clone();
        let key = format!("{}:apq:{hash}", shared.prefix);
        let mut command = redis::cmd("GET");
        command.arg(&key);
        let call = command.query_async::<Option<String>>(&mut connection);
        let text: Arc<str> = match tokio::time::timeout(shared.timeout, call).await {
            Ok(Ok(Some(text))) => text.into(),
            Ok(Ok(None)) => return None,
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "persisted query lookup failed");
                return None;
            }
            Err(_) => {
                tracing::warn!("persisted query lookup timed out");
                return None;
            }
        };
        self.local.insert(hash.to_owned(), text.clone());
        Some(text)
    }

    /// Registers `text` under `hash` (the caller has checked that it is the text's hash, and
    /// that the text passed the limits and validation).
    pub async fn put(&self, hash: &str, text: &str) {
        self.local.insert(hash.to_owned(), Arc::from(text));
        // Registrations are rare (once per client and query): evicting now keeps the cache
        // within its budget at every moment rather than at the next maintenance.
        self.local.run_pending_tasks();
        let Some(shared) = &self.shared else {
            return;
        };
        match tokio::time::timeout(shared.timeout, shared.register(hash, text)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                tracing::debug!("persisted query not shared: the Redis budget is spent");
            }
            Ok(Err(error)) => tracing::warn!(error = %error, "persisted query not shared"),
            Err(_) => tracing::warn!("persisted query not shared: Redis timed out"),
        }
    }
}

impl Shared {
    /// Stores `text` under `hash` unless this window's byte budget is spent; true when it is
    /// stored (or was already).
    async fn register(&self, hash: &str, text: &str) -> redis::RedisResult<bool> {
        let mut connection = self.connection.clone();
        let key = format!("{}:apq:{hash}", self.prefix);
        let known: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut connection)
            .await?;
        if known {
            return Ok(true);
        }
        let ttl = self.ttl.as_secs().max(1);
        let window = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |now| now.as_secs() / ttl);
        let counter = format!("{}:apq-bytes:{window}", self.prefix);
        let size = text.len() as u64;
        let (used,): (u64,) = redis::pipe()
            .cmd("INCRBY")
            .arg(&counter)
            .arg(size)
            .cmd("EXPIRE")
            .arg(&counter)
            .arg(2 * ttl)
            .ignore()
            .query_async(&mut connection)
            .await?;
        if used > self.budget {
            let _: i64 = redis::cmd("DECRBY")
                .arg(&counter)
                .arg(size)
                .query_async(&mut connection)
                .await?;
            return Ok(false);
        }
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(text)
            .arg("EX")
            .arg(ttl)
            .query_async(&mut connection)
            .await?;
        Ok(true)
    }
}
