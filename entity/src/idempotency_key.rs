//! An idempotency key of a caller: the request it was first used with, whether that request
//! applied changes, and its answer (see the migration `m20261203_idem_idempotency_keys`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_key")]
pub struct Model {
    /// Hex SHA-256 of the caller's identity and the key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Hex SHA-256 of the request the key was first used with.
    pub request_hash: String,
    /// The attempt holding the key.
    pub token: String,
    /// Changes committed under the key.
    pub changes: i32,
    /// The answer kept for retries.
    #[sea_orm(column_type = "Text", nullable)]
    pub response: Option<String>,
    pub locked_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
