//! What every change appends in its own transaction: one audit row (who did what, with the
//! request's ID, before and after), its outbox events (DESIGN section 7), and the count of the
//! request's idempotency key when it has one ([`super::idempotency`]). A change that commits
//! has all of them; one that rolls back has none.

use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

use entity::{audit_log, audit_subject, outbox};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::EntityTrait;

use super::StoreResult;
use super::WriteTxn;
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

/// Appends the audit row, and one `audit_subject` row per hotel and image it names (the
/// index of the audit log by hotel and by image).
pub async fn append_audit(
    txn: &WriteTxn,
    entry: AuditEntry,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let subjects = subjects(&entry.entity_ids);
    let inserted = audit_log::Entity::insert(audit_log::ActiveModel {
        id: NotSet,
        created_at: Set(now),
        actor: Set(entry.actor),
        operation: Set(entry.operation.to_owned()),
        entity_ids: Set(entry.entity_ids.to_string()),
        before: Set(entry.before.map(|v| v.to_string())),
        after: Set(entry.after.map(|v| v.to_string())),
        request_id: Set(entry.request_id),
    })
    .exec(txn)
    .await?;
    let rows: Vec<_> = subjects
        .into_iter()
        .map(|(kind, entity_id)| audit_subject::ActiveModel {
            kind: Set(kind.to_owned()),
            entity_id: Set(entity_id),
            audit_id: Set(inserted.last_insert_id),
        })
        .collect();
    if !rows.is_empty() {
        super::bulk::insert_rows(txn, rows).await?;
    }
    Ok(())
}

/// The keys of an audit row's `entity_ids` that name hotels and images (a string ID, or a
/// list of them), and the kind each names.
const SUBJECT_KEYS: [(&str, &str); 4] = [
    ("hotelId", HOTEL_SUBJECT),
    ("hotelIds", HOTEL_SUBJECT),
    ("imageId", IMAGE_SUBJECT),
    ("imageIds", IMAGE_SUBJECT),
];
/// `audit_subject.kind` of a hotel.
pub const HOTEL_SUBJECT: &str = "hotel";
/// `audit_subject.kind` of an image.
pub const IMAGE_SUBJECT: &str = "image";

/// The hotels and images `entity_ids` names.
fn subjects(entity_ids: &serde_json::Value) -> BTreeSet<(&'static str, i64)> {
    let mut found = BTreeSet::new();
    for (key, kind) in SUBJECT_KEYS {
        let values: Vec<&serde_json::Value> = match &entity_ids[key] {
            serde_json::Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for value in values {
            if let Some(id) = value.as_str().and_then(|id| id.parse().ok()) {
                found.insert((kind, id));
            }
        }
    }
    found
}

pub async fn append_events(
    txn: &WriteTxn,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_audit_row_names_the_hotels_and_images_of_its_entity_ids() {
        let cases = [
            (
                json!({ "hotelId": "4", "imageId": "12" }),
                vec![("hotel", 4), ("image", 12)],
            ),
            (
                json!({ "imageId": "7", "hotelIds": ["1", "2"] }),
                vec![("hotel", 1), ("hotel", 2), ("image", 7)],
            ),
            (
                json!({ "imageId": "7", "hotelIds": null }),
                vec![("image", 7)],
            ),
            (
                json!({ "imageIds": ["3", "3", "5"] }),
                vec![("image", 3), ("image", 5)],
            ),
            (json!({ "partnerId": "2" }), vec![]),
            (json!({ "hotels": 10 }), vec![]),
        ];
        for (entity_ids, expected) in cases {
            let found: Vec<_> = subjects(&entity_ids).into_iter().collect();
            assert_eq!(found, expected, "{entity_ids}");
        }
    }
}
