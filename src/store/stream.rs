//! Where relayed outbox events go: the [`EventSink`] the relay hands each batch to, and its two
//! implementations, the Redis stream of production ([`RedisStream`]) and the in-process bus of
//! the embedded default ([`EventBus`]).
//!
//! A sink takes a whole batch and answers once: the relay marks the batch published only after
//! `Ok`, and publishes it again after an `Err` (at least once). A sink may therefore see an
//! event twice (after a crash, a timeout whose command did reach Redis, a failed commit of the
//! marks); consumers dedupe by the event's `id`.
//!
//! # A stream that lost events
//! An acknowledged `XADD` is only as durable as Redis: restarted without persistence (or from
//! an older RDB snapshot, or failed over to a replica that lagged), Redis has lost the end of
//! the stream while the outbox has those events marked published. So every batch is published
//! as a numbered *round*: the relay's count of published batches (`outbox_relay.turns`, which
//! commits with the marks) plus one, and Redis keeps, atomically with the entries, the number
//! of the last round it took (`{prefix}:{catalog}:events:round`, beside the stream
//! `{prefix}:{catalog}:events`; both carry the hash tag `{catalog}`, so that the script that
//! takes them both runs on a Redis Cluster, see [`crate::redis_link`]). A batch is appended only if Redis
//! still holds every round the outbox counts as published; otherwise nothing is appended and
//! the sink answers [`SinkError::StreamLost`] with the last entry the stream still holds, and
//! the relay takes back (unmarks) what was published after it and publishes it again.
//! [`EventSink::holds`] asks the same question without a batch, so that an idle relay finds a
//! Redis restarted empty without waiting for the next change.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use redis::Script;

use super::outbox::RelayedEvent;
use crate::redis_link::{Connection, Namespace, Target};

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
    /// The stream no longer holds every round the outbox counts as published (Redis lost
    /// data); the batch was not appended. `last_held`: the `seq` of the stream's last entry,
    /// `None` when the stream is empty.
    #[error("the event stream lost events (its last entry is seq {last_held:?})")]
    StreamLost { last_held: Option<i64> },
}

/// Publishes a batch of events, in order, all of them or report an error.
pub trait EventSink: Send + Sync {
    /// Publishes `events` as round `round` (the number of batches published before it, plus
    /// one; see the module doc). `events` may be empty: the round then only checks the stream.
    fn publish<'a>(
        &'a self,
        events: &'a [RelayedEvent],
        round: i64,
    ) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Whether the sink still holds every round up to `published` (the rounds the outbox
    /// counts as published). A sink that cannot lose what it took says yes.
    fn holds(&self, _published: i64) -> BoxFuture<'_, Result<bool, SinkError>> {
        Box::pin(std::future::ready(Ok(true)))
    }

    /// Called once the outbox took back what the sink lost (in a committed round `round`): the
    /// sink counts as holding every round up to `round` from now on.
    fn resynced(&self, _round: i64) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

impl<S: EventSink + ?Sized> EventSink for Arc<S> {
    fn publish<'a>(
        &'a self,
        events: &'a [RelayedEvent],
        round: i64,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        (**self).publish(events, round)
    }

    fn holds(&self, published: i64) -> BoxFuture<'_, Result<bool, SinkError>> {
        (**self).holds(published)
    }

    fn resynced(&self, round: i64) -> BoxFuture<'_, Result<(), SinkError>> {
        (**self).resynced(round)
    }
}

/// Appends a round's entries if the stream holds every earlier round; else appends nothing
/// and answers the `seq` of the stream's last entry.
/// KEYS: stream, round key. ARGV: rounds published before this one, this round, the
/// stream's MAXLEN, then id, aggregatetype, aggregateid, type, payload, seq of each event.
const PUBLISH: &str = r"
local raw = redis.call('GET', KEYS[2])
local held = raw and tonumber(raw) or nil
local published = tonumber(ARGV[1])
if (held == nil and published > 0) or (held ~= nil and held < published) then
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #last > 0 then
    local fields = last[1][2]
    for i = 1, #fields, 2 do
      if fields[i] == 'seq' then
        return {'lost', fields[i + 1]}
      end
    end
  end
  return {'lost'}
end
for i = 4, #ARGV, 6 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*',
    'id', ARGV[i], 'aggregatetype', ARGV[i + 1], 'aggregateid', ARGV[i + 2],
    'type', ARGV[i + 3], 'payload', ARGV[i + 4], 'seq', ARGV[i + 5])
end
if held == nil or held < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
end
return {'ok'}
";

/// Raises the round key to ARGV[1] (never lowers it: a later round may have set it already).
const RESYNCED: &str = r"
local held = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if held < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
";

/// A Redis stream: each event is one entry (`XADD key MAXLEN ~ n * id .. aggregatetype ..
/// aggregateid .. type .. payload .. seq ..`), the whole batch in one script call, so one round
/// trip, and in the stream entirely or not at all, together with its round number.
#[derive(Clone)]
pub struct RedisStream {
    connection: Connection,
    key: String,
    round_key: String,
    max_len: u64,
    timeout: Duration,
    publish: Script,
    resynced: Script,
}

impl RedisStream {
    /// A sink on the stream of `names` (`{prefix}:{catalog}:events`), trimmed to about
    /// `max_len` entries. Connects lazily (start-up does not wait for Redis, nor fail without
    /// it) and reconnects by itself; each batch must be answered within `timeout`. The relay
    /// retries whole batches with its own backoff: one reconnection attempt per call is enough.
    pub fn new(
        target: &Target,
        names: &Namespace,
        max_len: u64,
        timeout: Duration,
    ) -> redis::RedisResult<Self> {
        Ok(Self {
            connection: target.connect_lazily(timeout, 1)?,
            key: names.event_stream(),
            round_key: names.event_round(),
            max_len,
            timeout,
            publish: Script::new(PUBLISH),
            resynced: Script::new(RESYNCED),
        })
    }

    /// Runs `call` within the timeout.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, SinkError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(SinkError::Timeout(self.timeout)),
        }
    }
}

impl EventSink for RedisStream {
    fn publish<'a>(
        &'a self,
        events: &'a [RelayedEvent],
        round: i64,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut invocation = self.publish.prepare_invoke();
            invocation
                .key(&self.key)
                .key(&self.round_key)
                .arg(round - 1)
                .arg(round)
                .arg(self.max_len);
            for event in events {
                invocation
                    .arg(&event.id)
                    .arg(&event.aggregate_type)
                    .arg(&event.aggregate_id)
                    .arg(&event.event_type)
                    .arg(&event.payload)
                    .arg(event.seq);
            }
            let mut connection = self.connection.clone();
            let answer: Vec<String> = self
                .bounded(invocation.invoke_async(&mut connection))
                .await?;
            match answer.first().map(String::as_str) {
                Some("ok") => Ok(()),
                Some("lost") => Err(SinkError::StreamLost {
                    last_held: answer.get(1).and_then(|seq| seq.parse().ok()),
                }),
                _ => Err(SinkError::Other(format!(
                    "unexpected answer of the publish script: {answer:?}"
                ))),
            }
        })
    }

    fn holds(&self, published: i64) -> BoxFuture<'_, Result<bool, SinkError>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let held: Option<i64> = self
                .bounded(
                    redis::cmd("GET")
                        .arg(&self.round_key)
                        .query_async(&mut connection),
                )
                .await?;
            Ok(match held {
                Some(held) => held >= published,
                None => published == 0,
            })
        })
    }

    fn resynced(&self, round: i64) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let mut invocation = self.resynced.prepare_invoke();
            invocation.key(&self.round_key).arg(round);
            let mut connection = self.connection.clone();
            let _: i64 = self
                .bounded(invocation.invoke_async(&mut connection))
                .await?;
            Ok(())
        })
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
    fn publish<'a>(
        &'a self,
        events: &'a [RelayedEvent],
        _round: i64,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        for event in events {
            // An error only says that nobody is subscribed.
            let _ = self.sender.send(event.clone());
        }
        Box::pin(std::future::ready(Ok(())))
    }
}
