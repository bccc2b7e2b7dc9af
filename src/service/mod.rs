//! Use cases of the images subgraph, and who may run them.
//!
//! The GraphQL layer talks to this layer only; this layer talks to the store and the cache.
//! Reads are batched: every method takes a set of keys, so that a request-scoped loader above
//! turns N lookups into one call here.
//!
//! # Layout
//! - [`auth`]: the [`Actor`](auth::Actor) behind a request and what it may see or do.
//! - [`catalog`]: the read use cases.
//! - [`write`]: the write kernel every change goes through: the caller, user errors, the
//!   transaction with retries, curation, audit and outbox events, and what a commit makes
//!   stale.
//! - [`idempotency`]: idempotency keys of mutation requests: a retry gets the first answer.
//! - [`curation`]: curating hotels on demand: recomputing every hotel after a rule change.
//! - [`manage`]: the management use cases (mutations).
//! - [`upload`]: hotelier uploads into the object store.
//! - [`ingest`]: partners, partner imports (unified IDs, legacy IDs) and snapshot retirement.
//! - [`events`]: the outbox events those changes emit.
//! - [`freshness`]: after a commit, the cache invalidation and the relay's wake-up; the
//!   relay's replay of invalidations that Redis missed.
//! - [`stats`]: the catalog's business figures, for admins and as Prometheus gauges.
//! - [`relay`]: the built-in outbox relay publishing those events to the event stream.
//! - [`router_cache`]: the router's response cache, invalidated for every published change.

pub mod auth;
pub mod catalog;
pub mod curation;
pub mod events;
pub mod freshness;
pub mod idempotency;
pub mod ingest;
pub mod manage;
pub mod process;
pub mod purge;
pub mod relay;
pub mod republish;
pub mod retention;
pub mod router_cache;
pub mod stats;
pub mod upload;
pub mod write;

use crate::store::StoreError;

/// A failed read or curation run. `Forbidden` is expected; `Unexpected` carries the cause for
/// the log and is shown to clients as a generic error. (Changes fail with their use case's own
/// error: see [`write::Failure`].)
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("not allowed for this caller")]
    Forbidden,
    #[error("unexpected failure")]
    Unexpected(#[from] StoreError),
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;
