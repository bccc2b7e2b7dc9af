//! Events written in the transaction of their change, in the layout of Debezium's outbox event router.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// Publication order.
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// Event ID (UUID).
    #[sea_orm(unique)]
    pub id: String,
    pub aggregatetype: String,
    pub aggregateid: String,
    #[sea_orm(column_name = "type")]
    pub event_type: String,
    /// Versioned JSON document (see `schema/events/`).
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub created_at: DateTimeUtc,
    pub published_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
