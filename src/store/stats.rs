//! The catalog's business figures, each one cheap statement: hotels by main-image origin
//! (a `GROUP BY` over `hotel`), images by status (over `image`), images without any tag (an
//! anti-join on `image_tag`'s primary key), and the import batches of the last week (their
//! audit rows, by `idx_audit_log_operation_id`).

use chrono::{DateTime, Utc};
use entity::{audit_log, hotel, image, image_tag};
use sea_orm::sea_query::{Expr, ExprTrait as _, Query};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};

use super::{Store, StoreResult};

/// The audit operation of an import batch (see the service's ingestion).
const IMPORT_OPERATION: &str = "importImages";

/// The figures as stored (texts not yet parsed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawFigures {
    /// Hotels by main-image origin (`None`: no main image).
    pub hotels_by_origin: Vec<(Option<String>, i64)>,
    pub images_by_status: Vec<(String, i64)>,
    /// Images without any tag, model or manual.
    pub untagged_images: u64,
    /// Import batches since the given time: when, `entity_ids` (the partner) and `after`
    /// (the count per outcome), as JSON texts.
    pub imports: Vec<(DateTime<Utc>, String, Option<String>)>,
}

impl Store {
    /// The figures; import batches since `imports_since`.
    pub async fn catalog_figures(&self, imports_since: DateTime<Utc>) -> StoreResult<RawFigures> {
        let hotels_by_origin = hotel::Entity::find()
            .select_only()
            .column(hotel::Column::MainImageOrigin)
            .column_as(hotel::Column::Id.count(), "n")
            .group_by(hotel::Column::MainImageOrigin)
            .into_tuple()
            .all(&self.db)
            .await?;
        let images_by_status = image::Entity::find()
            .select_only()
            .column(image::Column::Status)
            .column_as(image::Column::Id.count(), "n")
            .group_by(image::Column::Status)
            .into_tuple()
            .all(&self.db)
            .await?;
        let tagged = Query::select()
            .expr(Expr::val(1))
            .from(image_tag::Entity)
            .and_where(
                Expr::col((image_tag::Entity, image_tag::Column::ImageId))
                    .equals((image::Entity, image::Column::Id)),
            )
            .to_owned();
        let untagged_images = image::Entity::find()
            .filter(Expr::exists(tagged).not())
            .count(&self.db)
            .await?;
        let imports = audit_log::Entity::find()
            .select_only()
            .column(audit_log::Column::CreatedAt)
            .column(audit_log::Column::EntityIds)
            .column(audit_log::Column::After)
            .filter(audit_log::Column::Operation.eq(IMPORT_OPERATION))
            .filter(audit_log::Column::CreatedAt.gte(imports_since))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(RawFigures {
            hotels_by_origin,
            images_by_status,
            untagged_images,
            imports,
        })
    }
}
