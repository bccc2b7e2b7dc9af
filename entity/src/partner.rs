//! A source of images: an OTA, a hotel chain, a content provider, or the hoteliers themselves.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "partner")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    pub name: String,
    /// `OTA`, `HOTEL_CHAIN`, `CONTENT_PROVIDER` or `HOTELIER`.
    pub kind: String,
    /// JSON array of `{ "pattern", "replacement" }` rewrite rules applied to canonical URLs.
    #[sea_orm(column_type = "Text")]
    pub url_rewrites: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
