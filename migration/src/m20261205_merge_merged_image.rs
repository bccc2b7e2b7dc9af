//! Images merged by their bytes (issue 16 item 6): when processing finds that an image's
//! measured SHA-256 equals that of another live image, the younger ID is retired into the
//! older one (the survivor). Its row leaves `image` (so nothing that reads images, links or
//! the queue ever sees it again), and one row here keeps the retired ID resolving:
//!
//! - `id`: the retired image ID (never reused: IDs only grow).
//! - `survivor_id`: the image it answers as. Always a live image: when a survivor is itself
//!   retired later, the rows naming it are moved on to the new survivor, so one lookup is
//!   enough.
//! - `url_key`: the retired image's URL key, so that a partner delivering that URL again finds
//!   the survivor instead of creating the picture anew (and `imageBySourceUrl` answers it).
//! - `merged_at`: when it was merged.

use sea_orm_migration::{async_trait, prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MergedImage {
    Table,
    Id,
    SurvivorId,
    UrlKey,
    MergedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MergedImage::Table)
                    .col(big_integer(MergedImage::Id).primary_key())
                    .col(big_integer(MergedImage::SurvivorId))
                    .col(string_len_uniq(MergedImage::UrlKey, 64))
                    .col(timestamp_with_time_zone(MergedImage::MergedAt))
                    .to_owned(),
            )
            .await?;
        // Moving the rows of a survivor that is retired in turn.
        manager
            .create_index(
                Index::create()
                    .name("idx_merged_image_survivor")
                    .table(MergedImage::Table)
                    .col(MergedImage::SurvivorId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MergedImage::Table).to_owned())
            .await
    }
}
