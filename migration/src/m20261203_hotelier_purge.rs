//! Takedowns (issue 21 item 6): the tombstones of purged pictures, and the CDN purges still to
//! be sent.
//!
//! - `purged_key`: one row per key that names a purged picture: the URL keys it was known by
//!   (its own, and the plain canonical URL of every partner's spelling) and the SHA-256 of its
//!   bytes. An import item or upload whose URL key or content hash is here is refused
//!   (`REJECTED`, reason `PURGED`). Kept forever: a takedown does not expire.
//! - `cdn_purge`: the purge requests for the CDN, written in the purge's transaction and sent
//!   after the commit by a worker that retries (with backoff) until the CDN accepts them, so a
//!   CDN that is down loses none. `next_attempt_at` doubles as the claim of the replica
//!   sending it; `sent_at` is set once the CDN accepted it.

use sea_orm_migration::{async_trait, prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PurgedKey {
    Table,
    /// A URL key or a content hash: 64 hexadecimal characters.
    Key,
    /// `URL_KEY` or `CONTENT_SHA256`.
    Kind,
    ImageId,
    Reason,
    PurgedBy,
    PurgedAt,
}

#[derive(DeriveIden)]
enum CdnPurge {
    Table,
    Id,
    /// JSON `{"urls": [...], "surrogateKeys": [...]}`: the body sent to `CDN_PURGE_URL`.
    Payload,
    CreatedAt,
    Attempts,
    NextAttemptAt,
    SentAt,
    LastError,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PurgedKey::Table)
                    .col(string_len(PurgedKey::Key, 64).primary_key())
                    .col(string_len(PurgedKey::Kind, 16))
                    .col(big_integer(PurgedKey::ImageId))
                    .col(string_len_null(PurgedKey::Reason, 1000))
                    .col(string_len(PurgedKey::PurgedBy, 200))
                    .col(timestamp_with_time_zone(PurgedKey::PurgedAt))
                    .to_owned(),
            )
            .await?;
        // A purged image's tombstones (purging it again, `activateImage` refusing it).
        manager
            .create_index(
                Index::create()
                    .name("idx_purged_key_image")
                    .table(PurgedKey::Table)
                    .col(PurgedKey::ImageId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CdnPurge::Table)
                    .col(big_pk_auto(CdnPurge::Id))
                    .col(text(CdnPurge::Payload))
                    .col(timestamp_with_time_zone(CdnPurge::CreatedAt))
                    .col(integer(CdnPurge::Attempts).default(0))
                    .col(timestamp_with_time_zone(CdnPurge::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(CdnPurge::SentAt))
                    .col(string_len_null(CdnPurge::LastError, 1000))
                    .to_owned(),
            )
            .await?;
        // The worker reads the unsent requests that are due.
        manager
            .create_index(
                Index::create()
                    .name("idx_cdn_purge_due")
                    .table(CdnPurge::Table)
                    .col(CdnPurge::SentAt)
                    .col(CdnPurge::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CdnPurge::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(PurgedKey::Table).to_owned())
            .await
    }
}
