//! SeaORM entities of the images subgraph, one module per table.
//!
//! Plain data only: no GraphQL, no rules. Enumerations are stored as their stable text form
//! (see the service's `domain::catalog`) so that one schema runs on SQLite, PostgreSQL and
//! MySQL/MariaDB without engine-specific enum types.

pub mod audit_log;
pub mod audit_subject;
pub mod catalog_identity;
pub mod cdn_purge;
pub mod delivery;
pub mod gallery_pin;
pub mod hotel;
pub mod hotel_image;
pub mod idempotency_key;
pub mod image;
pub mod image_source;
pub mod image_tag;
pub mod legacy_image_id;
pub mod main_image_override;
pub mod merged_image;
pub mod outbox;
pub mod outbox_relay;
pub mod partner;
pub mod purged_key;
pub mod republish_run;
