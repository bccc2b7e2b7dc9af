//! The catalog's identity: a table of exactly one row holding a random 128-bit ID, drawn by the
//! database when the schema is created. Everything the service keeps in a shared Redis (cache
//! entries, generations, the invalidation channel, the event stream) is named after it, so two
//! catalogs sharing a Redis and a `REDIS_PREFIX` (staging and production, two regions) cannot
//! read each other's records, and a database dropped and created again gets a new identity
//! and so never reads what the old one left in a warm Redis.
//!
//! The ID comes from the engine's own random source, so that the migration needs nothing but
//! SQL: `gen_random_uuid()` on PostgreSQL (13 or later), `UUID()` on MySQL/MariaDB, 16 bytes of
//! `randomblob` on SQLite. The service reads it as a UUID, with or without dashes.

use sea_orm_migration::{async_trait, prelude::*, schema::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CatalogIdentity {
    Table,
    /// Always 1: the one row.
    Id,
    /// The catalog's ID (a UUID as text).
    Catalog,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CatalogIdentity::Table)
                    .col(integer(CatalogIdentity::Id).primary_key())
                    .col(string_len(CatalogIdentity::Catalog, 36))
                    .to_owned(),
            )
            .await?;
        let random = match manager.get_database_backend() {
            DatabaseBackend::Postgres => "gen_random_uuid()::text",
            DatabaseBackend::MySql => "UUID()",
            _ => "lower(hex(randomblob(16)))",
        };
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "INSERT INTO catalog_identity (id, catalog) VALUES (1, {random})"
            ))
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CatalogIdentity::Table).to_owned())
            .await
    }
}
