//! images-subgraph: the one place where a hotel metasearch's images live and are served.
//!
//! It keeps every image partners and hoteliers send under one unified ID, curates a gallery
//! and a main image per hotel, and serves them as an Apollo Federation v2 subgraph.
//!
//! # Layout
//! Arrows point one way: `http → graphql → service → store/cache → entity`; `domain` depends
//! on nothing.
//! - [`domain`]: pure rules (IDs and categories, curation, URLs).
//! - [`store`]: persistence over SeaORM, batched reads and transactional writes.
//! - [`cache`]: the read cache of hotels and images (in process, and Redis), its invalidation.
//! - [`service`]: use cases and authorization.
//! - [`graphql`]: the schema, loaders, federation entities, error mapping.
//! - [`http`]: axum routes, GraphQL over HTTP, health.
//! - [`app`], [`config`], [`cli`], [`seed`]: the process: start-up, settings, commands, data.
//! - [`fetch`]: the HTTP client for untrusted partner URLs (public addresses only, limits);
//!   a store-level adapter like the object store, used by processing.
//! - [`import`]: the bulk `import` command: partner feed files streamed through ingestion.
//! - [`warmup`]: the `warmup` command: the CDN URLs of hotels' images requested ahead of traffic.
//! - [`telemetry`]: log output and the metrics served at `/metrics`; any layer may record.
//! - [`secret`]: settings that must never be printed; any layer may hold one.
//! - [`redis_link`]: reaching Redis (one server or a cluster) and naming what is kept there;
//!   any layer may use it.

pub mod app;
pub mod cache;
pub mod cli;
pub mod config;
pub mod domain;
pub mod fetch;
pub mod graphql;
pub mod http;
pub mod import;
pub mod redis_link;
pub mod secret;
pub mod seed;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod warmup;
