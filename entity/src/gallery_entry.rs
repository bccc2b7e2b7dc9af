//! The published gallery of a hotel: its curated images in order (position 0 is the main image).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "gallery_entry")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub hotel_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub position: i32,
    pub image_id: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
