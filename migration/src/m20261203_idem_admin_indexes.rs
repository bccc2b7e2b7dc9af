//! What the admin tool's reads need (issue 21): the audit log by hotel, image, actor, action
//! and time, newest first; hotels without a main image.
//!
//! - `audit_subject`: the hotels and images each audit row names (its `entity_ids`: `hotelId`,
//!   `hotelIds`, `imageId`, `imageIds`), one row each, written with the audit row. Its primary
//!   key (`kind`, `entity_id`, `audit_id`) is the index of "the audit rows of this hotel (or
//!   image), newest first". Rows of the audit log written before this migration are filled
//!   in here, by each engine's JSON functions.
//! - `audit_log`: (`actor`, `id`), (`operation`, `id`) for those filters, newest first;
//!   (`created_at`) for the time range.
//! - `hotel`: (`main_image_id`, `id`): hotels without a main image are a range of it (NULLs
//!   are indexed by all three engines), in ID order.

use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::{async_trait, prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditSubject {
    Table,
    /// `hotel` or `image`.
    Kind,
    /// The hotel's or image's ID.
    EntityId,
    /// The audit row.
    AuditId,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    CreatedAt,
    Actor,
    Operation,
}

#[derive(DeriveIden)]
enum Hotel {
    Table,
    Id,
    MainImageId,
}

/// `(name, table, columns)` of the indexes added.
fn indexes() -> Vec<(&'static str, DynIden, Vec<DynIden>)> {
    vec![
        (
            "idx_audit_log_actor_id",
            AuditLog::Table.into_iden(),
            vec![AuditLog::Actor.into_iden(), AuditLog::Id.into_iden()],
        ),
        (
            "idx_audit_log_operation_id",
            AuditLog::Table.into_iden(),
            vec![AuditLog::Operation.into_iden(), AuditLog::Id.into_iden()],
        ),
        (
            "idx_audit_log_created_at",
            AuditLog::Table.into_iden(),
            vec![AuditLog::CreatedAt.into_iden()],
        ),
        (
            "idx_hotel_main_image_id",
            Hotel::Table.into_iden(),
            vec![Hotel::MainImageId.into_iden(), Hotel::Id.into_iden()],
        ),
    ]
}

/// Fills `audit_subject` from the audit rows already written (those without any: run once, on
/// a table written before `audit_subject` existed).
pub async fn fill_audit_subjects<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    for (key, kind, array) in SUBJECT_KEYS {
        db.execute_unprepared(&backfill(backend, key, kind, array))
            .await?;
    }
    Ok(())
}

/// The keys of `entity_ids` naming hotels and images: `(key, kind, whether a list)`.
const SUBJECT_KEYS: [(&str, &str, bool); 4] = [
    ("hotelId", "hotel", false),
    ("hotelIds", "hotel", true),
    ("imageId", "image", false),
    ("imageIds", "image", true),
];

fn backfill(backend: DatabaseBackend, key: &str, kind: &str, array: bool) -> String {
    let insert = "INSERT INTO audit_subject (kind, entity_id, audit_id)";
    match (backend, array) {
        (DatabaseBackend::Sqlite, false) => format!(
            "{insert} SELECT DISTINCT '{kind}', CAST(json_extract(entity_ids, '$.{key}') AS INTEGER), id \
             FROM audit_log WHERE json_type(entity_ids, '$.{key}') = 'text'"
        ),
        (DatabaseBackend::Sqlite, true) => format!(
            "{insert} SELECT DISTINCT '{kind}', CAST(j.value AS INTEGER), a.id \
             FROM audit_log a, json_each(a.entity_ids, '$.{key}') j \
             WHERE json_type(a.entity_ids, '$.{key}') = 'array' AND j.type = 'text'"
        ),
        (DatabaseBackend::Postgres, false) => format!(
            "{insert} SELECT DISTINCT '{kind}', (entity_ids::jsonb->>'{key}')::bigint, id \
             FROM audit_log WHERE jsonb_typeof(entity_ids::jsonb->'{key}') = 'string'"
        ),
        (DatabaseBackend::Postgres, true) => format!(
            "{insert} SELECT DISTINCT '{kind}', j.value::bigint, a.id \
             FROM audit_log a, jsonb_array_elements_text(a.entity_ids::jsonb->'{key}') j(value) \
             WHERE jsonb_typeof(a.entity_ids::jsonb->'{key}') = 'array' AND j.value IS NOT NULL"
        ),
        (_, false) => format!(
            "{insert} SELECT DISTINCT '{kind}', CAST(JSON_UNQUOTE(JSON_EXTRACT(entity_ids, '$.{key}')) AS SIGNED), id \
             FROM audit_log WHERE JSON_TYPE(JSON_EXTRACT(entity_ids, '$.{key}')) = 'STRING'"
        ),
        (_, true) => format!(
            "{insert} SELECT DISTINCT '{kind}', CAST(j.value AS SIGNED), a.id \
             FROM audit_log a, JSON_TABLE(a.entity_ids, '$.{key}[*]' COLUMNS (value VARCHAR(32) PATH '$')) j \
             WHERE j.value IS NOT NULL"
        ),
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditSubject::Table)
                    .col(string_len(AuditSubject::Kind, 8))
                    .col(big_integer(AuditSubject::EntityId))
                    .col(big_integer(AuditSubject::AuditId))
                    .primary_key(
                        Index::create()
                            .col(AuditSubject::Kind)
                            .col(AuditSubject::EntityId)
                            .col(AuditSubject::AuditId),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, table, columns) in indexes() {
            let mut index = Index::create();
            index.name(name).table(table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        fill_audit_subjects(manager.get_connection()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in indexes() {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        manager
            .drop_table(Table::drop().table(AuditSubject::Table).to_owned())
            .await
    }
}
