//! The catalog: partners, hotels (with their published curation), images and their sources,
//! legacy IDs, links, tags, main-image overrides, gallery pins, the outbox and the audit log.
//!
//! Enumerations are short strings (see the service's `domain::catalog`), timestamps are UTC.
//! Every index below serves a read path named in its comment.

use sea_orm_migration::{async_trait, prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Partner {
    Table,
    Id,
    Name,
    Kind,
    UrlRewrites,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Hotel {
    Table,
    Id,
    Version,
    MainImageId,
    MainImageOrigin,
    MainImageChosenBy,
    MainImageChosenAt,
    ImageCount,
    Gallery,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Image {
    Table,
    Id,
    UrlKey,
    CanonicalUrl,
    StorageKey,
    Width,
    Height,
    Caption,
    Category,
    QualityScore,
    ContentSha256,
    PerceptualHash,
    Status,
    StatusReason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ImageSource {
    Table,
    Id,
    ImageId,
    PartnerId,
    SourceUrl,
    PartnerImageRef,
    Status,
    FirstSeenAt,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum Delivery {
    Table,
    HotelId,
    ImageId,
    PartnerId,
    FirstSeenAt,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum LegacyImageId {
    Table,
    LegacyId,
    ImageId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum HotelImage {
    Table,
    HotelId,
    ImageId,
    Status,
    StatusReason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ImageTag {
    Table,
    ImageId,
    Origin,
    Category,
    Confidence,
}

#[derive(DeriveIden)]
enum MainImageOverride {
    Table,
    HotelId,
    ImageId,
    Origin,
    ChosenBy,
    ChosenAt,
}

#[derive(DeriveIden)]
enum GalleryPin {
    Table,
    HotelId,
    Position,
    ImageId,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Seq,
    Id,
    Aggregatetype,
    Aggregateid,
    Type,
    Payload,
    CreatedAt,
    PublishedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    CreatedAt,
    Actor,
    Operation,
    EntityIds,
    Before,
    After,
    RequestId,
}

/// Short enumeration text (`ACTIVE`, `HOTEL_CHAIN`, ...).
fn code<T: IntoIden>(col: T) -> ColumnDef {
    string_len(col, 32)
}

fn created_updated<T: IntoIden>(
    mut table: TableCreateStatement,
    created: T,
    updated: T,
) -> TableCreateStatement {
    table
        .col(timestamp_with_time_zone(created))
        .col(timestamp_with_time_zone(updated));
    table
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(created_updated(
                Table::create()
                    .table(Partner::Table)
                    .col(big_integer(Partner::Id).primary_key())
                    .col(string_len(Partner::Name, 200))
                    .col(code(Partner::Kind))
                    .col(text(Partner::UrlRewrites))
                    .to_owned(),
                Partner::CreatedAt,
                Partner::UpdatedAt,
            ))
            .await?;

        manager
            .create_table(created_updated(
                Table::create()
                    .table(Hotel::Table)
                    .col(big_integer(Hotel::Id).primary_key())
                    .col(big_integer(Hotel::Version).default(0))
                    .col(big_integer_null(Hotel::MainImageId))
                    .col(string_len_null(Hotel::MainImageOrigin, 32))
                    .col(string_len_null(Hotel::MainImageChosenBy, 200))
                    .col(timestamp_with_time_zone_null(Hotel::MainImageChosenAt))
                    .col(integer(Hotel::ImageCount).default(0))
                    // The published gallery, comma-separated image IDs in order: one read gives
                    // main image, gallery and version of the same commit.
                    .col(text(Hotel::Gallery))
                    .to_owned(),
                Hotel::CreatedAt,
                Hotel::UpdatedAt,
            ))
            .await?;

        manager
            .create_table(created_updated(
                Table::create()
                    .table(Image::Table)
                    .col(big_pk_auto(Image::Id))
                    // Unified ID: one URL key, one image (enforced here, not in code).
                    .col(string_len_uniq(Image::UrlKey, 64))
                    .col(text(Image::CanonicalUrl))
                    .col(string_len(Image::StorageKey, 255))
                    .col(integer_null(Image::Width))
                    .col(integer_null(Image::Height))
                    .col(string_len_null(Image::Caption, 1000))
                    .col(code(Image::Category))
                    .col(double_null(Image::QualityScore))
                    .col(string_len_null(Image::ContentSha256, 64))
                    .col(big_integer_null(Image::PerceptualHash))
                    .col(code(Image::Status))
                    .col(string_len_null(Image::StatusReason, 1000))
                    .to_owned(),
                Image::CreatedAt,
                Image::UpdatedAt,
            ))
            .await?;
        // Uploads look their bytes up by content hash.
        manager
            .create_index(
                Index::create()
                    .name("idx_image_content_sha256")
                    .table(Image::Table)
                    .col(Image::ContentSha256)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ImageSource::Table)
                    .col(big_pk_auto(ImageSource::Id))
                    .col(big_integer(ImageSource::ImageId))
                    .col(big_integer(ImageSource::PartnerId))
                    .col(text(ImageSource::SourceUrl))
                    .col(string_len_null(ImageSource::PartnerImageRef, 255))
                    .col(code(ImageSource::Status))
                    .col(timestamp_with_time_zone(ImageSource::FirstSeenAt))
                    .col(timestamp_with_time_zone(ImageSource::LastSeenAt))
                    .to_owned(),
            )
            .await?;
        // `Image.sources` by image; one source per partner and image.
        manager
            .create_index(
                Index::create()
                    .name("uq_image_source_image_partner")
                    .table(ImageSource::Table)
                    .col(ImageSource::ImageId)
                    .col(ImageSource::PartnerId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Snapshot imports walk one partner's sources.
        manager
            .create_index(
                Index::create()
                    .name("idx_image_source_partner")
                    .table(ImageSource::Table)
                    .col(ImageSource::PartnerId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Delivery::Table)
                    .col(big_integer(Delivery::HotelId))
                    .col(big_integer(Delivery::ImageId))
                    .col(big_integer(Delivery::PartnerId))
                    .col(timestamp_with_time_zone(Delivery::FirstSeenAt))
                    .col(timestamp_with_time_zone(Delivery::LastSeenAt))
                    .primary_key(
                        Index::create()
                            .col(Delivery::HotelId)
                            .col(Delivery::ImageId)
                            .col(Delivery::PartnerId),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LegacyImageId::Table)
                    .col(string_len(LegacyImageId::LegacyId, 255).primary_key())
                    .col(big_integer(LegacyImageId::ImageId))
                    .col(timestamp_with_time_zone(LegacyImageId::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // `Image.legacyIds` by image.
        manager
            .create_index(
                Index::create()
                    .name("idx_legacy_image_id_image")
                    .table(LegacyImageId::Table)
                    .col(LegacyImageId::ImageId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(created_updated(
                Table::create()
                    .table(HotelImage::Table)
                    .col(big_integer(HotelImage::HotelId))
                    .col(big_integer(HotelImage::ImageId))
                    .col(code(HotelImage::Status))
                    .col(string_len_null(HotelImage::StatusReason, 1000))
                    .primary_key(
                        Index::create()
                            .col(HotelImage::HotelId)
                            .col(HotelImage::ImageId),
                    )
                    .to_owned(),
                HotelImage::CreatedAt,
                HotelImage::UpdatedAt,
            ))
            .await?;
        // `Image.hotels` and deactivation everywhere walk the links of one image.
        manager
            .create_index(
                Index::create()
                    .name("idx_hotel_image_image")
                    .table(HotelImage::Table)
                    .col(HotelImage::ImageId)
                    .col(HotelImage::HotelId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ImageTag::Table)
                    .col(big_integer(ImageTag::ImageId))
                    .col(code(ImageTag::Origin))
                    .col(code(ImageTag::Category))
                    .col(double(ImageTag::Confidence))
                    .primary_key(
                        Index::create()
                            .col(ImageTag::ImageId)
                            .col(ImageTag::Origin)
                            .col(ImageTag::Category),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MainImageOverride::Table)
                    .col(big_integer(MainImageOverride::HotelId).primary_key())
                    .col(big_integer(MainImageOverride::ImageId))
                    .col(code(MainImageOverride::Origin))
                    .col(string_len(MainImageOverride::ChosenBy, 200))
                    .col(timestamp_with_time_zone(MainImageOverride::ChosenAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(GalleryPin::Table)
                    .col(big_integer(GalleryPin::HotelId))
                    .col(integer(GalleryPin::Position))
                    .col(big_integer(GalleryPin::ImageId))
                    .primary_key(
                        Index::create()
                            .col(GalleryPin::HotelId)
                            .col(GalleryPin::Position),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .col(big_pk_auto(Outbox::Seq))
                    .col(string_len_uniq(Outbox::Id, 36))
                    .col(string_len(Outbox::Aggregatetype, 64))
                    .col(string_len(Outbox::Aggregateid, 64))
                    .col(string_len(Outbox::Type, 64))
                    .col(text(Outbox::Payload))
                    .col(timestamp_with_time_zone(Outbox::CreatedAt))
                    .col(timestamp_with_time_zone_null(Outbox::PublishedAt))
                    .to_owned(),
            )
            .await?;
        // The relay reads the oldest unpublished events.
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_published_seq")
                    .table(Outbox::Table)
                    .col(Outbox::PublishedAt)
                    .col(Outbox::Seq)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(big_pk_auto(AuditLog::Id))
                    .col(timestamp_with_time_zone(AuditLog::CreatedAt))
                    .col(string_len(AuditLog::Actor, 200))
                    .col(string_len(AuditLog::Operation, 64))
                    .col(text(AuditLog::EntityIds))
                    .col(text_null(AuditLog::Before))
                    .col(text_null(AuditLog::After))
                    .col(string_len_null(AuditLog::RequestId, 64))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditLog::Table.into_iden(),
            Outbox::Table.into_iden(),
            GalleryPin::Table.into_iden(),
            MainImageOverride::Table.into_iden(),
            ImageTag::Table.into_iden(),
            HotelImage::Table.into_iden(),
            LegacyImageId::Table.into_iden(),
            Delivery::Table.into_iden(),
            ImageSource::Table.into_iden(),
            Image::Table.into_iden(),
            Hotel::Table.into_iden(),
            Partner::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
