//! Images a hotelier or an admin pinned to lead the gallery, in order.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "gallery_pin")]
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
