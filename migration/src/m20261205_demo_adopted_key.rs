//! Adopting bytes that are already stored (issue 16 item 10): an import line may name an
//! object of the object store (`storage_key`) that holds the image's bytes, as a catalog
//! migrated from an older system does. `adopted_key` keeps that key: processing reads and
//! measures the object instead of fetching the URL, and the image is served from it. Existing
//! rows have none (NULL: their URL is fetched).

use sea_orm_migration::{async_trait, prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Image {
    Table,
    /// The stored object an import named; NULL: fetch the URL.
    AdoptedKey,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Image::Table)
                    .add_column(string_len_null(Image::AdoptedKey, 255))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Image::Table)
                    .drop_column(Image::AdoptedKey)
                    .to_owned(),
            )
            .await
    }
}
