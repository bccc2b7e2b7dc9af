//! The catalog's identity, as its database holds it (one row, drawn when the schema was
//! created; see the migration `m20261203_redis_create_catalog_identity`).

use sea_orm::{ActiveValue, DatabaseConnection, DbErr, EntityTrait as _};

use crate::domain::catalog::CatalogId;

/// The identity of the catalog `db` holds. Read once at start: it never changes while the
/// database lives.
pub async fn catalog_id(db: &DatabaseConnection) -> Result<CatalogId, DbErr> {
    let row = entity::catalog_identity::Entity::find_by_id(1)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::Custom("the catalog_identity row is missing".to_owned()))?;
    CatalogId::parse(&row.catalog).ok_or_else(|| {
        DbErr::Custom(format!(
            "catalog_identity holds {:?}, which is not a UUID",
            row.catalog
        ))
    })
}

/// Draws a new identity for the catalog `db` holds and returns it: for a database restored
/// from a backup, whose identity is that of the catalog it was copied from (whose newer state
/// a warm Redis may hold). Replicas read the identity at start: stop them all first.
pub async fn renew_catalog_id(db: &DatabaseConnection) -> Result<CatalogId, DbErr> {
    let fresh = uuid::Uuid::new_v4().simple().to_string();
    entity::catalog_identity::Entity::update(entity::catalog_identity::ActiveModel {
        id: ActiveValue::Unchanged(1),
        catalog: ActiveValue::Set(fresh),
    })
    .exec(db)
    .await?;
    catalog_id(db).await
}
