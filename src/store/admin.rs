//! The reads of the admin tool: the audit log (newest first, by hotel, image, actor, action
//! and time), hotels without a main image, and the reasons images were deactivated.
//!
//! Pages are keysets (the rows after a cursor's ID, one more than asked to tell whether there
//! is a next page), each served by an index of `m20261203_idem_admin_indexes`: by hotel or
//! image through `audit_subject`'s primary key, by actor or action through
//! (`actor`, `id`) / (`operation`, `id`), hotels without a main image through
//! (`main_image_id`, `id`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{audit_log, audit_subject, hotel, image};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

use super::journal::{HOTEL_SUBJECT, IMAGE_SUBJECT};
use super::{Store, StoreResult, Window, hotel_id, image_id};
use crate::domain::catalog::{HotelId, ImageId, ProcessingState};

/// Which audit rows to list (every given condition holds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Rows that name this hotel.
    pub hotel: Option<HotelId>,
    /// Rows that name this image.
    pub image: Option<ImageId>,
    pub actor: Option<String>,
    /// The operation (`setMainImage`, `deactivateImage`, ...).
    pub action: Option<String>,
    /// Written at or after.
    pub from: Option<DateTime<Utc>>,
    /// Written before.
    pub to: Option<DateTime<Utc>>,
}

/// One row of the audit log. `entity_ids`, `before` and `after` are JSON texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub request_id: Option<String>,
    pub entity_ids: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Store {
    /// Audit rows matching `filter`, newest first (by ID), those before `window.after`.
    pub async fn audit_log(
        &self,
        filter: &AuditFilter,
        window: Window,
    ) -> StoreResult<Vec<AuditRecord>> {
        let mut query = audit_log::Entity::find();
        for (kind, id) in [
            (HOTEL_SUBJECT, filter.hotel.map(HotelId::get)),
            (IMAGE_SUBJECT, filter.image.map(ImageId::get)),
        ] {
            if let Some(id) = id {
                let named = Query::select()
                    .column(audit_subject::Column::AuditId)
                    .from(audit_subject::Entity)
                    .and_where(audit_subject::Column::Kind.eq(kind))
                    .and_where(audit_subject::Column::EntityId.eq(id))
                    .to_owned();
                query = query.filter(audit_log::Column::Id.in_subquery(named));
            }
        }
        if let Some(actor) = &filter.actor {
            query = query.filter(audit_log::Column::Actor.eq(actor.as_str()));
        }
        if let Some(action) = &filter.action {
            query = query.filter(audit_log::Column::Operation.eq(action.as_str()));
        }
        if let Some(from) = filter.from {
            query = query.filter(audit_log::Column::CreatedAt.gte(from));
        }
        if let Some(to) = filter.to {
            query = query.filter(audit_log::Column::CreatedAt.lt(to));
        }
        if let Some(after) = window.after {
            query = query.filter(audit_log::Column::Id.lt(after));
        }
        let rows = query
            .order_by_desc(audit_log::Column::Id)
            .limit(window.limit)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| AuditRecord {
                id: row.id,
                created_at: row.created_at,
                actor: row.actor,
                action: row.operation,
                request_id: row.request_id,
                entity_ids: row.entity_ids,
                before: row.before,
                after: row.after,
            })
            .collect())
    }

    /// Hotels without a main image, by ID, those after `window.after`.
    pub async fn hotels_without_main_image(&self, window: Window) -> StoreResult<Vec<HotelId>> {
        let mut query = hotel::Entity::find()
            .select_only()
            .column(hotel::Column::Id)
            .filter(hotel::Column::MainImageId.is_null());
        if let Some(after) = window.after {
            query = query.filter(hotel::Column::Id.gt(after));
        }
        let ids: Vec<i64> = query
            .order_by_asc(hotel::Column::Id)
            .limit(window.limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids.into_iter().map(hotel_id).collect::<Result<_, _>>()?)
    }

    /// How many hotels have no main image.
    pub async fn count_hotels_without_main_image(&self) -> StoreResult<u64> {
        Ok(hotel::Entity::find()
            .filter(hotel::Column::MainImageId.is_null())
            .count(&self.db)
            .await?)
    }

    /// The reason given when each of `ids` was deactivated (everywhere), for those that have
    /// one.
    pub async fn status_reasons(&self, ids: &[ImageId]) -> StoreResult<HashMap<ImageId, String>> {
        let rows: Vec<(i64, Option<String>)> = image::Entity::find()
            .select_only()
            .column(image::Column::Id)
            .column(image::Column::StatusReason)
            .filter(image::Column::Id.is_in(ids.iter().map(|id| id.get())))
            .filter(image::Column::StatusReason.is_not_null())
            .into_tuple()
            .all(&self.db)
            .await?;
        rows.into_iter()
            .filter_map(|(id, reason)| reason.map(|reason| (id, reason)))
            .map(|(id, reason)| Ok((image_id(id)?, reason)))
            .collect()
    }

    /// Where each of `ids` is in processing, with its measured values (admin reads).
    pub async fn processing(&self, ids: &[ImageId]) -> StoreResult<HashMap<ImageId, Processing>> {
        let rows = image::Entity::find()
            .filter(image::Column::Id.is_in(ids.iter().map(|id| id.get())))
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok((
                    image_id(row.id)?,
                    Processing {
                        state: row.processing_state.parse()?,
                        reason: row.processing_reason,
                        attempts: row.processing_attempts,
                        last_error: row.processing_error,
                        next_attempt_at: row.next_attempt_at,
                        fetched_at: row.fetched_at,
                        measured_quality: row.measured_quality,
                        model_quality: row.quality_score,
                        content_sha256: row.content_sha256,
                        perceptual_hash: row.perceptual_hash.map(|h| format!("{:016x}", h as u64)),
                    },
                ))
            })
            .collect()
    }
}

/// An image's processing state and measured values (admins).
#[derive(Debug, Clone, PartialEq)]
pub struct Processing {
    pub state: ProcessingState,
    /// The stable reason code of the last failure.
    pub reason: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// When a PENDING image is due (or its lease ends).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub fetched_at: Option<DateTime<Utc>>,
    /// The score measured from the pixels.
    pub measured_quality: Option<f64>,
    /// The tagging model's (or a partner's) score, which wins over the measured one.
    pub model_quality: Option<f64>,
    pub content_sha256: Option<String>,
    /// The 64-bit perceptual hash as 16 hex digits.
    pub perceptual_hash: Option<String>,
}
