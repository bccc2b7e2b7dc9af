//! A link: an image shown for a hotel, with its own status (deactivation for one hotel only).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "hotel_image")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub hotel_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub image_id: i64,
    /// `ACTIVE` or `INACTIVE` (for this hotel only).
    pub status: String,
    pub status_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
