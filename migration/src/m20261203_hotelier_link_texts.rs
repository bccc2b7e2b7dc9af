//! Captions and alt text of a hotel's link, and who hid a link (issue 19 item 4, issue 21
//! item 5).
//!
//! Until now a caption belonged to the image, and an image is shared: the first hotelier who
//! uploaded some bytes wrote the caption every other hotel showing the same bytes displayed.
//! From here on a hotelier's caption and alt text belong to the link (`hotel_image`), and the
//! image's own caption and alt text are the partners' and the admins'.
//!
//! - `hotel_image.caption`, `hotel_image.alt_text`: the hotel's texts for the image; in that
//!   hotel's gallery they come before the image's own.
//! - `hotel_image.status_set_by`: who set the link's status last, `HOTELIER` (hidden by the
//!   hotel) or `ADMIN` (null for links written before: an admin's); a hotelier may show again
//!   only what a hotelier hid.
//! - `image.alt_text`: the image's own alt text (admins).
//! - `hotel.link_texts`: the published texts of the hotel's links (JSON), beside the published
//!   gallery, so that one read of the hotel row serves them.
//!
//! Data: the caption of every uploaded image (canonical URL `upload:...`) moves to the link of
//! the hotel that uploaded it first (the caption was that hotelier's) and leaves the image.
//! Hotels publish their link texts at their next curation: run `recompute` once after this
//! migration.

use sea_orm_migration::sea_orm::{ConnectionTrait, TransactionTrait};
use sea_orm_migration::{async_trait, prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum HotelImage {
    Table,
    HotelId,
    ImageId,
    Caption,
    AltText,
    StatusSetBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Image {
    Table,
    Id,
    CanonicalUrl,
    Caption,
    AltText,
}

#[derive(DeriveIden)]
enum Hotel {
    Table,
    LinkTexts,
}

/// One column added per statement: SQLite alters one thing at a time.
fn add(table: impl IntoIden, column: ColumnDef) -> TableAlterStatement {
    Table::alter().table(table).add_column(column).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for alter in [
            add(
                HotelImage::Table,
                string_len_null(HotelImage::Caption, 1000),
            ),
            add(
                HotelImage::Table,
                string_len_null(HotelImage::AltText, 1000),
            ),
            add(
                HotelImage::Table,
                string_len_null(HotelImage::StatusSetBy, 16),
            ),
            add(Image::Table, string_len_null(Image::AltText, 1000)),
            add(Hotel::Table, text_null(Hotel::LinkTexts)),
        ] {
            manager.alter_table(alter).await?;
        }
        move_upload_captions(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, column) in [
            (
                HotelImage::Table.into_iden(),
                HotelImage::Caption.into_iden(),
            ),
            (
                HotelImage::Table.into_iden(),
                HotelImage::AltText.into_iden(),
            ),
            (
                HotelImage::Table.into_iden(),
                HotelImage::StatusSetBy.into_iden(),
            ),
            (Image::Table.into_iden(), Image::AltText.into_iden()),
            (Hotel::Table.into_iden(), Hotel::LinkTexts.into_iden()),
        ] {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Moves each uploaded image's caption to its first uploader's link (see the module doc).
async fn move_upload_captions(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let txn = db.begin().await?;
    let uploads = txn
        .query_all(
            &Query::select()
                .columns([Image::Id, Image::Caption])
                .from(Image::Table)
                .and_where(Expr::col(Image::CanonicalUrl).like("upload:%"))
                .and_where(Expr::col(Image::Caption).is_not_null())
                .to_owned(),
        )
        .await?;
    for row in uploads {
        let image: i64 = row.try_get_by_index(0)?;
        let caption: String = row.try_get_by_index(1)?;
        let first = txn
            .query_one(
                &Query::select()
                    .column(HotelImage::HotelId)
                    .from(HotelImage::Table)
                    .and_where(Expr::col(HotelImage::ImageId).eq(image))
                    .order_by(HotelImage::CreatedAt, Order::Asc)
                    .order_by(HotelImage::HotelId, Order::Asc)
                    .limit(1)
                    .to_owned(),
            )
            .await?;
        if let Some(first) = first {
            let hotel: i64 = first.try_get_by_index(0)?;
            txn.execute(
                &Query::update()
                    .table(HotelImage::Table)
                    .value(HotelImage::Caption, caption)
                    .and_where(Expr::col(HotelImage::HotelId).eq(hotel))
                    .and_where(Expr::col(HotelImage::ImageId).eq(image))
                    .to_owned(),
            )
            .await?;
        }
        txn.execute(
            &Query::update()
                .table(Image::Table)
                .value(Image::Caption, Option::<String>::None)
                .and_where(Expr::col(Image::Id).eq(image))
                .to_owned(),
        )
        .await?;
    }
    txn.commit().await
}
