//! A purge request for the CDN, written with its change and sent (and retried) after commit.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "cdn_purge")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The JSON body for the purge endpoint: `{"urls": [...], "surrogateKeys": [...]}`.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub created_at: DateTimeUtc,
    pub attempts: i32,
    /// Due from then on (also moved ahead by the replica that is sending it: its claim).
    pub next_attempt_at: DateTimeUtc,
    /// When the CDN accepted it; null until then.
    pub sent_at: Option<DateTimeUtc>,
    pub last_error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
