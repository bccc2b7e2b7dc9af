//! Where relayed outbox events go: the [`EventSink`] the relay hands each batch to, and its two
//! implementations, the Redis stream of production ([`RedisStream`]) and the in-process bus of
//! the embedded default ([`EventBus`]).
//!
//! A sink takes a whole batch and answers once: the relay marks the batch published only after
//! `Ok`, and publishes it again after an `Err` (at least once). A sink may therefore see an
//! event twice (after a crash, a timeout whose command did reach Redis, a failed commit of the
//! marks); consumers dedupe by the event's `id`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::outbox::RelayedEvent;

/// Why a batch was not published. The relay logs it, backs off and tries again.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
    #[error("the sink did not answer within {0:?}")]
    Timeout(Duration),
    /// Another sink (e.g. one wrapped around these) failed.
    #[error("{0}")]
    Other(String),
}

/// Publishes a batch of events, in order, all of them or report an error.
pub trait EventSink: Send + Sync {
    fn publish<'a>(&'a self, events: &'a [RelayedEvent]) -> BoxFuture<'a, Result<(), SinkError>>;
}

impl<S: EventSink + ?Sized> EventSink for Arc<S> {
    fn publish<'a>(&'a self, events: &'a [RelayedEvent]) -> BoxFuture<'a, Result<(), SinkError>> {
        (**self).publish(events)
    }
}

/// The stream events are appended to: `{prefix}:events`.
pub fn stream_key(prefix: &str) -> String {
    format!("{prefix}:events")
}

/// A Redis stream: each event is one entry (`XADD key MAXLEN ~ n * id .. aggregatetype ..
/// aggregateid .. type .. payload .. seq ..`), the whole batch in one `MULTI`/`EXEC` pipeline,
/// so one round trip, and in the stream entirely or not at all.
#[derive(Clone)]
pub struct RedisStream {
    connection: ConnectionManager,
    key: String,
    max_len: u64,
    timeout: Duration,
}

impl RedisStream {
    /// A sink on `url`'s stream `{prefix}:events`, trimmed to about `max_len` entries. Connects
    /// lazily (start-up does not wait for Redis, nor fail without it) and reconnects by itself;
    /// each batch must be answered within `timeout`.
    pub fn new(
        url: &str,
        prefix: &str,
        max_len: u64,
        timeout: Duration,
    ) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // The relay retries whole batches with its own backoff: one reconnection attempt
            // per call is enough.
            .set_number_of_retries(1);
        Ok(Self {
            connection: ConnectionManager::new_lazy_with_config(client, config)?,
            key: stream_key(prefix),
            max_len,
            timeout,
        })
    }

    /// The `MULTI`/`EXEC` pipeline that appends `events`. A wrapping sink may add its own
    /// commands (e.g. cache invalidations) before [`RedisStream::send`], to keep one round trip.
    pub fn batch(&self, events: &[RelayedEvent]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for event in events {
            pipe.cmd("XADD")
                .arg(&self.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.max_len)
                .arg("*")
                .arg("id")
                .arg(&event.id)
                .arg("aggregatetype")
                .arg(&event.aggregate_type)
                .arg("aggregateid")
                .arg(&event.aggregate_id)
                .arg("type")
                .arg(&event.event_type)
                .arg("payload")
                .arg(&event.payload)
                .arg("seq")
                .arg(event.seq)
                .ignore();
        }
        pipe
    }
}

impl EventSink for RedisStream {
    fn publish<'a>(&'a self, events: &'a [RelayedEvent]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(());
            }
            self.send(self.batch(events)).await
        })
    }
}

impl RedisStream {
    /// Sends `pipe` in one round trip, within the timeout.
    pub async fn send(&self, pipe: redis::Pipeline) -> Result<(), SinkError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut connection)).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(SinkError::Timeout(self.timeout)),
        }
    }
}

/// How many events the in-process bus keeps for a receiver that has not read them yet; a
/// receiver further behind loses the oldest (`RecvError::Lagged`).
pub const BUS_CAPACITY: usize = 4096;

/// The in-process bus of the embedded default: a broadcast channel. Publishing never fails;
/// with nobody subscribed the events go nowhere, as a stream nobody reads.
#[derive(Clone)]
pub struct EventBus {
    sender: tokio::sync::broadcast::Sender<RelayedEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        Self {
            sender: tokio::sync::broadcast::channel(BUS_CAPACITY).0,
        }
    }

    /// Every event published from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RelayedEvent> {
        self.sender.subscribe()
    }
}

impl EventSink for EventBus {
    fn publish<'a>(&'a self, events: &'a [RelayedEvent]) -> BoxFuture<'a, Result<(), SinkError>> {
        for event in events {
            // An error only says that nobody is subscribed.
            let _ = self.sender.send(event.clone());
        }
        Box::pin(std::future::ready(Ok(())))
    }
}
