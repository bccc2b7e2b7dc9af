//! What `searchImages` (issue 21, admin tool) needs: the images matching a filter, newest
//! (highest ID) first, a page at a time. Each equality filter is an index ending in the image
//! ID, so a page is the first rows of one index range, read backwards from the cursor:
//!
//! - `image` (`status`, `id`): by status.
//! - `image` (`category`, `id`): by category, and the unclassified backlog (category `OTHER`
//!   without a tag row, checked on `image_tag`'s primary key).
//! - `image_source` (`partner_id`, `image_id`): the images a partner delivered. It replaces
//!   `idx_image_source_partner` (`partner_id` alone), whose reads (a snapshot import walking
//!   one partner's sources) it serves as well.
//!
//! By hotel needs nothing new: `hotel_image`'s primary key is (`hotel_id`, `image_id`).

use sea_orm_migration::{async_trait, prelude::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Image {
    Table,
    Id,
    Status,
    Category,
}

#[derive(DeriveIden)]
enum ImageSource {
    Table,
    PartnerId,
    ImageId,
}

/// `(name, table, columns)` of the indexes added.
fn indexes() -> Vec<(&'static str, DynIden, Vec<DynIden>)> {
    vec![
        (
            "idx_image_status_id",
            Image::Table.into_iden(),
            vec![Image::Status.into_iden(), Image::Id.into_iden()],
        ),
        (
            "idx_image_category_id",
            Image::Table.into_iden(),
            vec![Image::Category.into_iden(), Image::Id.into_iden()],
        ),
        (
            "idx_image_source_partner_image",
            ImageSource::Table.into_iden(),
            vec![
                ImageSource::PartnerId.into_iden(),
                ImageSource::ImageId.into_iden(),
            ],
        ),
    ]
}

/// The index the partner one replaces.
const OLD_PARTNER_INDEX: &str = "idx_image_source_partner";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, columns) in indexes() {
            let mut index = Index::create();
            index.name(name).table(table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name(OLD_PARTNER_INDEX)
                    .table(ImageSource::Table)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(OLD_PARTNER_INDEX)
                    .table(ImageSource::Table)
                    .col(ImageSource::PartnerId)
                    .to_owned(),
            )
            .await?;
        for (name, table, _) in indexes() {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
