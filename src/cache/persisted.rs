//! Automatic persisted queries (Apollo's APQ protocol): query texts by their SHA-256, so that
//! clients can send the hash instead of the document.
//!
//! A text is kept in process (moka) and, with Redis, under `{prefix}:apq:{hash}` with a TTL,
//! so that a query registered on one replica is known to every replica. Entries are
//! content-addressed (a hash names one text forever), so nothing is ever invalidated. Redis
//! failures are not errors: an unknown hash makes the client send the full query again.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Query texts kept in process.
const LOCAL_ENTRIES: u64 = 10_000;

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
}

impl PersistedQueries {
    /// Texts kept `ttl`; in Redis too when `redis_url` is set (not connected until used).
    pub fn new(
        redis_url: Option<&str>,
        prefix: &str,
        ttl: Duration,
        timeout: Duration,
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
                })
            }
            None => None,
        };
        Ok(Self {
            local: moka::sync::Cache::builder()
                .max_capacity(LOCAL_ENTRIES)
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

    /// Registers `text` under `hash` (the caller has checked that it is the text's hash).
    pub async fn put(&self, hash: &str, text: &str) {
        self.local.insert(hash.to_owned(), Arc::from(text));
        let Some(shared) = &self.shared else {
            return;
        };
        let mut connection = shared.connection.clone();
        let key = format!("{}:apq:{hash}", shared.prefix);
        let mut command = redis::cmd("SET");
        command
            .arg(&key)
            .arg(text)
            .arg("EX")
            .arg(shared.ttl.as_secs().max(1));
        let call = command.query_async::<()>(&mut connection);
        match tokio::time::timeout(shared.timeout, call).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(error = %error, "persisted query not shared"),
            Err(_) => tracing::warn!("persisted query not shared: Redis timed out"),
        }
    }
}
