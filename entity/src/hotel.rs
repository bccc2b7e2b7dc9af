//! A hotel known to this subgraph, with its published curation (main image, counts, version).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "hotel")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    /// Grows by one with every change of the gallery or the main image.
    pub version: i64,
    /// The published main image (null when no image is eligible).
    pub main_image_id: Option<i64>,
    /// `COMPUTED`, `HOTELIER` or `ADMIN`; null when there is no main image.
    pub main_image_origin: Option<String>,
    pub main_image_chosen_by: Option<String>,
    pub main_image_chosen_at: Option<DateTimeUtc>,
    /// Linked images whose link and image are both active.
    pub image_count: i32,
    /// The published gallery: image IDs in order, comma-separated, main image first. Kept in
    /// the hotel row so that one read gives a consistent published view (main image, gallery
    /// and version of the same commit).
    #[sea_orm(column_type = "Text")]
    pub gallery: String,
    /// The published texts (caption, alt text) of the hotel's links, as JSON; null: none.
    #[sea_orm(column_type = "Text", nullable)]
    pub link_texts: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
