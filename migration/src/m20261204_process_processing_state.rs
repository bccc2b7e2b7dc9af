//! The processing state of an image (issue 16 item 1): the service fetches, measures and stores
//! every partner image itself, and only READY images are curated. The image rows are the queue:
//! one row per picture already, so a job table would repeat the key and need a join for every
//! curation read; the columns below are all a worker needs.
//!
//! - `processing_state`: `PENDING` (registered, bytes not yet fetched), `READY` (bytes stored and
//!   measured), `FAILED` (given up on, with `processing_reason`).
//! - `processing_reason`: the stable reason code of the last failure (`HTTP_STATUS`, `TIMEOUT`,
//!   `NOT_AN_IMAGE`, ...); NULL when READY.
//! - `processing_attempts`: fetches tried so far.
//! - `processing_error`: the last failure, in words (for admins).
//! - `next_attempt_at`: when a PENDING image is due. It doubles as the **lease**: a worker that
//!   claims an image moves it to the end of its lease, so the job of a worker that died is due
//!   again when the lease ends, and "claim due PENDING jobs" is one range scan of
//!   `idx_image_processing_due` (state, next attempt).
//! - `lease_owner`: the worker holding the lease; a worker whose lease ran out (and was taken
//!   over) finds another owner there and drops its result.
//! - `fetched_at`: when the bytes were last fetched (or uploaded).
//!
//! Existing rows: an image with declared width and height becomes READY, so a live catalog does
//! not go dark on the day this lands (its declared values stay until it is processed again);
//! the others become PENDING, due at once, and are processed by the workers.

use sea_orm_migration::{async_trait, prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Image {
    Table,
    Width,
    Height,
    CreatedAt,
    ProcessingState,
    ProcessingReason,
    ProcessingAttempts,
    ProcessingError,
    NextAttemptAt,
    LeaseOwner,
    FetchedAt,
}

const DUE_INDEX: &str = "idx_image_processing_due";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        let columns = [
            string_len(Image::ProcessingState, 16)
                .default("READY")
                .to_owned(),
            string_len_null(Image::ProcessingReason, 32),
            integer(Image::ProcessingAttempts).default(0).to_owned(),
            string_len_null(Image::ProcessingError, 1000),
            timestamp_with_time_zone_null(Image::NextAttemptAt),
            string_len_null(Image::LeaseOwner, 64),
            timestamp_with_time_zone_null(Image::FetchedAt),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Image::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        let pending = Query::update()
            .table(Image::Table)
            .value(Image::ProcessingState, "PENDING")
            .value(Image::NextAttemptAt, Expr::col(Image::CreatedAt))
            .cond_where(
                Cond::any()
                    .add(Expr::col(Image::Width).is_null())
                    .add(Expr::col(Image::Height).is_null()),
            )
            .to_owned();
        manager.exec_stmt(pending).await?;
        manager
            .create_index(
                Index::create()
                    .name(DUE_INDEX)
                    .table(Image::Table)
                    .col(Image::ProcessingState)
                    .col(Image::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(DUE_INDEX).table(Image::Table).to_owned())
            .await?;
        for column in [
            Image::FetchedAt,
            Image::LeaseOwner,
            Image::NextAttemptAt,
            Image::ProcessingError,
            Image::ProcessingAttempts,
            Image::ProcessingReason,
            Image::ProcessingState,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Image::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
