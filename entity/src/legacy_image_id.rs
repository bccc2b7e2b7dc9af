//! An ID the old systems used for an image; bound to one image forever.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "legacy_image_id")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub legacy_id: String,
    pub image_id: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
