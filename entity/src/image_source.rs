//! One partner's delivery of an image: its raw URL and reference, first and last seen.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "image_source")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub image_id: i64,
    pub partner_id: i64,
    #[sea_orm(column_type = "Text")]
    pub source_url: String,
    pub partner_image_ref: Option<String>,
    /// `ACTIVE`, or `RETIRED` once a snapshot import no longer contains it.
    pub status: String,
    pub first_seen_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
