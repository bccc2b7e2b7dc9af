//! The measured quality score of an image: computed from its pixels (resolution, sharpness,
//! exposure; see the service's `domain::measure`) when its bytes are measured, beside
//! `quality_score`, which stays the tagging model's (or a partner's) score. A model's score
//! wins; the measured one counts where there is none. Uploads are measured at once; existing
//! rows have none until they are measured (NULL: curation counts them as before).
//!
//! `perceptual_hash` (first migration) gets the 64-bit perceptual hash measured the same way.

use sea_orm_migration::{async_trait, prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Image {
    Table,
    /// In 0..1, from the image's own statistics; NULL until measured.
    MeasuredQuality,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Image::Table)
                    .add_column(double_null(Image::MeasuredQuality))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Image::Table)
                    .drop_column(Image::MeasuredQuality)
                    .to_owned(),
            )
            .await
    }
}
