//! A tombstone: a URL key or content hash of a purged picture, refused at import and upload.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "purged_key")]
pub struct Model {
    /// 64 hexadecimal characters.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// `URL_KEY` or `CONTENT_SHA256`.
    pub kind: String,
    pub image_id: i64,
    pub reason: Option<String>,
    pub purged_by: String,
    pub purged_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
