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
    /// The hotel's caption of the image: in the hotel's gallery it comes before the image's own.
    pub caption: Option<String>,
    /// The hotel's alt text of the image, likewise.
    pub alt_text: Option<String>,
    /// Who set `status` last: `HOTELIER` (hidden by the hotel) or `ADMIN`; null: an admin.
    pub status_set_by: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
