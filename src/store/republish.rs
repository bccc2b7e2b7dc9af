//! Where a `republish` run is: its row, moved forward with each batch's snapshot events.

use chrono::{DateTime, Utc};
use entity::republish_run;
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use super::WriteTxn;
use super::{StoreResult, hotel_id};
use crate::domain::catalog::HotelId;

/// A run of `republish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: i64,
    /// The last hotel whose snapshot committed.
    pub after: Option<HotelId>,
    /// Snapshots written so far.
    pub hotels: i64,
}

/// The unfinished run, if any (the newest).
pub async fn unfinished(db: &impl ConnectionTrait) -> StoreResult<Option<Run>> {
    let row = republish_run::Entity::find()
        .filter(republish_run::Column::FinishedAt.is_null())
        .order_by_desc(republish_run::Column::Id)
        .one(db)
        .await?;
    row.map(|row| {
        Ok(Run {
            id: row.id,
            after: row.last_hotel_id.map(hotel_id).transpose()?,
            hotels: row.hotels,
        })
    })
    .transpose()
}

/// Starts a run (an unfinished one left behind counts as finished: it is abandoned).
pub async fn start(db: &impl ConnectionTrait, now: DateTime<Utc>) -> StoreResult<Run> {
    finish_all(db, now).await?;
    let inserted = republish_run::Entity::insert(republish_run::ActiveModel {
        id: NotSet,
        started_at: Set(now),
        last_hotel_id: Set(None),
        hotels: Set(0),
        finished_at: Set(None),
    })
    .exec(db)
    .await?;
    Ok(Run {
        id: inserted.last_insert_id,
        after: None,
        hotels: 0,
    })
}

/// Records a batch: its last hotel and how many snapshots it wrote.
pub async fn advance(txn: &WriteTxn, run: i64, last: HotelId, hotels: u64) -> StoreResult<()> {
    republish_run::Entity::update_many()
        .col_expr(republish_run::Column::LastHotelId, Expr::value(last.get()))
        .col_expr(
            republish_run::Column::Hotels,
            Expr::col(republish_run::Column::Hotels).add(hotels as i64),
        )
        .filter(republish_run::Column::Id.eq(run))
        .exec(txn)
        .await?;
    Ok(())
}

/// Marks `run` finished.
pub async fn finish(db: &impl ConnectionTrait, run: i64, now: DateTime<Utc>) -> StoreResult<()> {
    republish_run::Entity::update_many()
        .col_expr(republish_run::Column::FinishedAt, Expr::value(now))
        .filter(republish_run::Column::Id.eq(run))
        .exec(db)
        .await?;
    Ok(())
}

/// Marks every unfinished run finished.
pub async fn finish_all(db: &impl ConnectionTrait, now: DateTime<Utc>) -> StoreResult<()> {
    republish_run::Entity::update_many()
        .col_expr(republish_run::Column::FinishedAt, Expr::value(now))
        .filter(republish_run::Column::FinishedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}
