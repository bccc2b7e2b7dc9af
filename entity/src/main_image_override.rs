//! A main image chosen by a hotelier or an admin; it wins while the image stays eligible.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "main_image_override")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub hotel_id: i64,
    pub image_id: i64,
    /// `HOTELIER` or `ADMIN`.
    pub origin: String,
    pub chosen_by: String,
    pub chosen_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
