//! An image ID retired into another one because both held the same bytes: lookups by it (and
//! by its URL key) answer the survivor.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "merged_image")]
pub struct Model {
    /// The retired image ID.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    /// The live image it answers as.
    pub survivor_id: i64,
    /// The retired image's URL key (hex SHA-256 of its canonical URL).
    #[sea_orm(unique)]
    pub url_key: String,
    pub merged_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
