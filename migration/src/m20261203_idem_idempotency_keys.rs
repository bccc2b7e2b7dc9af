//! Idempotency keys of mutation requests (the `Idempotency-Key` header): a retried request
//! whose first attempt was applied gets the first answer back instead of being applied again.
//!
//! One row per (caller, key), kept until `expires_at`. A request claims its key with its own
//! row before it runs (`token` names that attempt); each change it commits bumps `changes` in
//! the change's own transaction, with the audit row, and only while `token` is still its own;
//! once it has answered, the answer is kept in `response`.
//!
//! `response` holds a whole GraphQL answer, which may pass the 64 KiB of MySQL's `TEXT`: it is
//! a `MEDIUMTEXT` there (16 MiB), a `TEXT` elsewhere.

use sea_orm_migration::{async_trait, prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IdempotencyKey {
    Table,
    /// Hex SHA-256 of the caller's identity and the key: one caller never meets another's key.
    Id,
    /// Hex SHA-256 of the request (operations and variables): the same key with another
    /// request is refused.
    RequestHash,
    /// The attempt that holds the key (a UUID); a change commits under the key only while it
    /// is still its holder's.
    Token,
    /// Changes committed under the key (0: nothing was applied).
    Changes,
    /// The answer to keep for retries; null while the first attempt runs, or when its answer
    /// could not be kept.
    Response,
    /// Until when the holder's attempt may still be running (null once it answered).
    LockedUntil,
    CreatedAt,
    /// After this the key is forgotten (deleted in small batches, or taken anew).
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut response = ColumnDef::new(IdempotencyKey::Response);
        if manager.get_database_backend() == sea_orm::DatabaseBackend::MySql {
            response.custom(Alias::new("MEDIUMTEXT"));
        } else {
            response.text();
        }
        response.null();
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKey::Table)
                    .col(string_len(IdempotencyKey::Id, 64).primary_key())
                    .col(string_len(IdempotencyKey::RequestHash, 64))
                    .col(string_len(IdempotencyKey::Token, 36))
                    .col(integer(IdempotencyKey::Changes).default(0))
                    .col(response)
                    .col(timestamp_with_time_zone_null(IdempotencyKey::LockedUntil))
                    .col(timestamp_with_time_zone(IdempotencyKey::CreatedAt))
                    .col(timestamp_with_time_zone(IdempotencyKey::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        // Expired keys are found and deleted in small batches.
        manager
            .create_index(
                Index::create()
                    .name("idx_idempotency_key_expires_at")
                    .table(IdempotencyKey::Table)
                    .col(IdempotencyKey::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IdempotencyKey::Table).to_owned())
            .await
    }
}
