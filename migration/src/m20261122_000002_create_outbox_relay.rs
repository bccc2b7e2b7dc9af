//! The outbox relay's lock: a table of exactly one row that the relay replica publishing a
//! batch holds locked for the length of its transaction, so that only one replica publishes at
//! a time (see the service's `service::relay`).
//!
//! The relay takes the lock with an `UPDATE` of that row rather than `SELECT ... FOR UPDATE`:
//! on PostgreSQL and MySQL/MariaDB an update holds the row lock until commit just the same, and
//! on SQLite (which has no `FOR UPDATE`) a write as the first statement takes the database's
//! write lock at once, so one statement serves all three engines. `turns` grows with every
//! batch, so that the update always changes the row (MySQL reports unchanged rows as not
//! affected) and a missing row is noticed.
//!
//! No index is added: the relay's reads (the oldest unpublished events, the age of the oldest
//! one) are served by `idx_outbox_published_seq` of the first migration.

use sea_orm_migration::{async_trait, prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OutboxRelay {
    Table,
    /// Always 1: the one row.
    Id,
    /// Batches published so far, by any replica.
    Turns,
    /// Who took the lock last (host and process), for operators.
    Holder,
    /// When the lock was taken last.
    LockedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OutboxRelay::Table)
                    .col(integer(OutboxRelay::Id).primary_key())
                    .col(big_integer(OutboxRelay::Turns).default(0))
                    .col(string_len_null(OutboxRelay::Holder, 200))
                    .col(timestamp_with_time_zone_null(OutboxRelay::LockedAt))
                    .to_owned(),
            )
            .await?;
        let mut row = Query::insert();
        row.into_table(OutboxRelay::Table)
            .columns([OutboxRelay::Id, OutboxRelay::Turns])
            .values([1.into(), 0.into()])
            .map_err(|e| DbErr::Migration(e.to_string()))?;
        manager.exec_stmt(row).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OutboxRelay::Table).to_owned())
            .await
    }
}
