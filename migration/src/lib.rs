//! Database migrations of the images subgraph, timestamped, written once and never edited after
//! they land: a change is a new migration. The same migrations run on SQLite, PostgreSQL and
//! MySQL/MariaDB.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_catalog;
mod m20261122_000002_create_outbox_relay;
mod m20261203_idem_admin_indexes;
mod m20261203_idem_idempotency_keys;
mod m20261203_media_measured_quality;
mod m20261203_redis_create_catalog_identity;

pub use m20261203_idem_admin_indexes::fill_audit_subjects;
mod m20261203_hotelier_link_texts;
mod m20261203_hotelier_purge;
mod m20261203_hotelier_republish;
mod m20261204_process_processing_state;
mod m20261204_search_image_search_indexes;
mod m20261205_demo_adopted_key;
mod m20261205_merge_merged_image;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_catalog::Migration),
            Box::new(m20261122_000002_create_outbox_relay::Migration),
            Box::new(m20261203_media_measured_quality::Migration),
            Box::new(m20261203_redis_create_catalog_identity::Migration),
            Box::new(m20261203_idem_idempotency_keys::Migration),
            Box::new(m20261203_idem_admin_indexes::Migration),
            Box::new(m20261203_hotelier_link_texts::Migration),
            Box::new(m20261203_hotelier_purge::Migration),
            Box::new(m20261203_hotelier_republish::Migration),
            Box::new(m20261204_search_image_search_indexes::Migration),
            Box::new(m20261204_process_processing_state::Migration),
            Box::new(m20261205_merge_merged_image::Migration),
            Box::new(m20261205_demo_adopted_key::Migration),
        ]
    }
}
