//! Automatic persisted queries (Apollo's APQ protocol): query texts by their SHA-256, so that
//! clients can send the hash instead of the document.
//!
//! A text is kept in process (moka) and, with Redis, under `{prefix}:apq:{hash}` with a TTL,
//! so that a query registered on one replica is known to every replica. Entries are
//! content-addressed (a hash names one text forever), so nothing is ever invalidated. Redis
//! failures are not errors: an unknown hash makes the client send the full query again.
//!
//! Anyone may register, so what registrations may hold is bounded in bytes, not entries: in
//! process by a weighed cache ([`ApqBudget::local_bytes`]); in Redis by a counter of the bytes
//! registered per TTL window (`{prefix}:apq-bytes:{window}`), checked and raised in the same
//! script that stores the text. A text lives one TTL, so at any moment only the texts of the
//! current and the previous window are alive: at most twice [`ApqBudget::shared_bytes`].
//! Past the budget a text is kept in process only. (The HTTP layer registers a text only
//! once its request passed the limits and validation.)

use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Stores a text unless the window's byte budget is spent; 1 when the text is stored (or was
/// already), 0 when refused.
/// KEYS[1]: the text's key; KEYS[2]: the bytes registered in this window.
/// ARGV[1]: the text; ARGV[2]: its TTL in seconds; ARGV[3]: the window's budget in bytes.
const REGISTER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
local size = string.len(ARGV[1])
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if used + size > tonumber(ARGV[3]) then return 0 end
redis.call('INCRBY', KEYS[2], size)
redis.call('EXPIRE', KEYS[2], 2 * tonumber(ARGV[2]))
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
";

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
    connection: ConnectionManager,
    prefix: String,
    ttl: Duration,
    timeout: Duration,
    budget: u64,
    register: Arc<Script>,
}

impl PersistedQueries {
    /// Texts kept `ttl`; in Redis too when `redis_url` is set (not connected until used).
    pub fn new(
        redis_url: Option<&str>,
        prefix: &str,
        ttl: Duration,
        timeout: Duration,
        budget: ApqBudget,
    ) -> anyhow::Result<Self> {
        let shared = match redis_url {
            Some(url) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1);
                let client = redis::Client::open(url)?;
                Some(Shared {
                    connection: ConnectionManager::new_lazy_with_config(client, config)?,
                    prefix: prefix.to_owned(),
                    ttl,
                    timeout,
                    budget: budget.shared_bytes,
                    register: Arc::new(Script::new(REGISTER)),
                })
            }
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
        let mut connection = shared.connection.clone();
        let ttl = shared.ttl.as_secs().max(1);
        let window = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |now| now.as_secs() / ttl);
        let mut invocation = shared.register.prepare_invoke();
        invocation
            .key(format!("{}:apq:{hash}", shared.prefix))
            .key(format!("{}:apq-bytes:{window}", shared.prefix))
            .arg(text)
            .arg(ttl)
            .arg(shared.budget);
        let call = invocation.invoke_async::<i64>(&mut connection);
        match tokio::time::timeout(shared.timeout, call).await {
            Ok(Ok(1)) => {}
            Ok(Ok(_)) => tracing::debug!("persisted query not shared: the Redis budget is spent"),
            Ok(Err(error)) => tracing::warn!(error = %error, "persisted query not shared"),
            Err(_) => tracing::warn!("persisted query not shared: Redis timed out"),
        }
    }
}
