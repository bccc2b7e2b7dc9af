//! Where a `republish` run is (issue 21 item 7): one row per run, moved forward in the
//! transaction that writes each batch's `HotelSnapshot` events, so a run that stops (killed,
//! a failed database) resumes after the last hotel whose snapshot committed: none is skipped,
//! none written twice by one run.

use sea_orm_migration::{async_trait, prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RepublishRun {
    Table,
    Id,
    StartedAt,
    /// The last hotel whose snapshot committed (null: none yet).
    LastHotelId,
    /// Snapshots written so far.
    Hotels,
    /// Null while the run is unfinished: the next `republish` resumes it.
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RepublishRun::Table)
                    .col(big_pk_auto(RepublishRun::Id))
                    .col(timestamp_with_time_zone(RepublishRun::StartedAt))
                    .col(big_integer_null(RepublishRun::LastHotelId))
                    .col(big_integer(RepublishRun::Hotels).default(0))
                    .col(timestamp_with_time_zone_null(RepublishRun::FinishedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RepublishRun::Table).to_owned())
            .await
    }
}
