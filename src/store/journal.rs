//! What every change appends in its own transaction: one audit row (who did what, with the
//! request's ID, before and after), its outbox events (DESIGN section 7), and the count of the
//! request's idempotency key when it has one ([`super::idempotency`]). A change that commits
//! has all of them; one that rolls back has none.

use chrono::{DateTime, Utc};
use entity::{audit_log, outbox};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{DatabaseTransaction, EntityTrait};

use super::StoreResult;
use super::idempotency::Claim;

/// One row of the audit log.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: String,
    pub operation: &'static str,
    pub entity_ids: serde_json::Value,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub request_id: Option<String>,
    /// The idempotency key the change commits under (the request's `Idempotency-Key`).
    pub idempotency: Option<Claim>,
}

impl AuditEntry {
    /// The state before the change, as the audit log shows it.
    pub fn with_before(mut self, before: serde_json::Value) -> Self {
        self.before = Some(before);
        self
    }

    /// The state after the change, as the audit log shows it.
    pub fn with_after(mut self, after: serde_json::Value) -> Self {
        self.after = Some(after);
        self
    }
}

/// One event for the outbox (DESIGN section 7).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub event_type: &'static str,
    pub payload: serde_json::Value,
}

pub async fn append_audit(
    txn: &DatabaseTransaction,
    entry: AuditEntry,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    audit_log::Entity::insert(audit_log::ActiveModel {
        id: NotSet,
        created_at: Set(now),
        actor: Set(entry.actor),
        operation: Set(entry.operation.to_owned()),
        entity_ids: Set(entry.entity_ids.to_string()),
        before: Set(entry.before.map(|v| v.to_string())),
        after: Set(entry.after.map(|v| v.to_string())),
        request_id: Set(entry.request_id),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

pub async fn append_events(
    txn: &DatabaseTransaction,
    events: Vec<OutboxEvent>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let rows: Vec<_> = events
        .into_iter()
        .map(|event| outbox::ActiveModel {
            seq: NotSet,
            // Time-ordered (v7): a batch's events go to the end of the unique index on `id`
            // instead of to random pages of it.
            id: Set(uuid::Uuid::now_v7().to_string()),
            aggregatetype: Set(event.aggregate_type.to_owned()),
            aggregateid: Set(event.aggregate_id),
            event_type: Set(event.event_type.to_owned()),
            payload: Set(event.payload.to_string()),
            created_at: Set(now),
            published_at: Set(None),
        })
        .collect();
    super::bulk::insert_rows(txn, rows).await
}
