//! Integration tests: the real application on port 0 against a real database, spoken to over
//! HTTP. The backend is SQLite unless `TEST_DATABASE_URL` names a PostgreSQL or MySQL server,
//! on which each test creates its own database.

mod admin;
mod adopt;
mod authz;
mod cache;
mod curation;
mod events;
mod faults;
mod federation;
mod fetch;
mod fuzz;
mod helpers;
mod hotelier;
mod http;
mod idempotency;
mod ingest;
mod isolation;
mod kernel;
mod media;
mod merge;
mod mutations;
mod observability;
mod operations;
mod ops;
mod persisted;
mod plans;
mod processing;
mod protection;
mod proxy;
mod purge;
mod read_api;
mod republish;
mod router_cache;
mod search;
mod security;
mod security_urls;
mod seed;
mod shutdown;
mod upload;
mod warmup;
