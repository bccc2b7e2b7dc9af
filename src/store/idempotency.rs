//! The rows of idempotency keys (see the service's `service::idempotency` for the rules).
//!
//! Every write here is one statement that says in its `WHERE` clause which state it expects,
//! so that two replicas racing on one key never both win: the insert of a new key (the primary
//! key decides), taking over an expired or abandoned key, counting a change of the holder (in
//! the change's own transaction) and keeping the holder's answer (both only while `token` is
//! still the holder's).

use chrono::{DateTime, Utc};
use entity::idempotency_key::{self, Column};
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, SqlErr,
};

use super::StoreResult;

/// The hold of one attempt on a key: what its changes commit under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The row: hex SHA-256 of the caller's identity and the key.
    pub id: String,
    /// This attempt (a UUID).
    pub token: String,
}

/// A key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub request_hash: String,
    pub changes: i32,
    pub response: Option<String>,
    pub locked_until: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
}

/// What a new hold writes.
#[derive(Debug, Clone)]
pub struct Hold<'a> {
    pub claim: &'a Claim,
    pub request_hash: &'a str,
    pub now: DateTime<Utc>,
    pub locked_until: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Inserts a new key held by `hold`; false when the key exists already.
pub async fn insert<C: ConnectionTrait>(db: &C, hold: &Hold<'_>) -> StoreResult<bool> {
    let inserted = idempotency_key::Entity::insert(idempotency_key::ActiveModel {
        id: Set(hold.claim.id.clone()),
        request_hash: Set(hold.request_hash.to_owned()),
        token: Set(hold.claim.token.clone()),
        changes: Set(0),
        response: Set(None),
        locked_until: Set(Some(hold.locked_until)),
        created_at: Set(hold.now),
        expires_at: Set(hold.expires_at),
    })
    .exec_without_returning(db)
    .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(error) if is_duplicate(&error) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

fn is_duplicate(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

pub async fn find<C: ConnectionTrait>(db: &C, id: &str) -> StoreResult<Option<KeyRecord>> {
    let row = idempotency_key::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?;
    Ok(row.map(|row| KeyRecord {
        request_hash: row.request_hash,
        changes: row.changes,
        response: row.response,
        locked_until: row.locked_until,
        expires_at: row.expires_at,
    }))
}

/// Takes a key over for `hold`, as a new key, when it expired or when its holder applied
/// nothing and its hold ran out (the attempt died or gave up); false when another attempt got
/// there first or the key is not free.
pub async fn take_over<C: ConnectionTrait>(db: &C, hold: &Hold<'_>) -> StoreResult<bool> {
    let free = Condition::any().add(Column::ExpiresAt.lte(hold.now)).add(
        Condition::all()
            .add(Column::Changes.eq(0))
            .add(Column::LockedUntil.lte(hold.now)),
    );
    let updated = idempotency_key::Entity::update_many()
        .col_expr(Column::RequestHash, Expr::value(hold.request_hash))
        .col_expr(Column::Token, Expr::value(hold.claim.token.clone()))
        .col_expr(Column::Changes, Expr::value(0))
        .col_expr(Column::Response, Expr::value(Option::<String>::None))
        .col_expr(Column::LockedUntil, Expr::value(hold.locked_until))
        .col_expr(Column::CreatedAt, Expr::value(hold.now))
        .col_expr(Column::ExpiresAt, Expr::value(hold.expires_at))
        .filter(Column::Id.eq(hold.claim.id.as_str()))
        .filter(free)
        .exec(db)
        .await?;
    Ok(updated.rows_affected > 0)
}

/// Counts one change committed under `claim`, on the change's transaction; false when the key
/// is no longer the claim's (taken over after its hold ran out): the change must not commit.
pub async fn count_change<C: ConnectionTrait>(txn: &C, claim: &Claim) -> StoreResult<bool> {
    let updated = idempotency_key::Entity::update_many()
        .col_expr(Column::Changes, Expr::col(Column::Changes).add(1))
        .filter(Column::Id.eq(claim.id.as_str()))
        .filter(Column::Token.eq(claim.token.as_str()))
        .exec(txn)
        .await?;
    Ok(updated.rows_affected > 0)
}

/// Changes committed under `claim` so far (0 when the key is no longer the claim's).
pub async fn changes<C: ConnectionTrait>(db: &C, claim: &Claim) -> StoreResult<i32> {
    let row = idempotency_key::Entity::find_by_id(claim.id.clone())
        .filter(Column::Token.eq(claim.token.as_str()))
        .one(db)
        .await?;
    Ok(row.map_or(0, |row| row.changes))
}

/// Keeps `response` as the key's answer and ends the hold.
pub async fn keep_response<C: ConnectionTrait>(
    db: &C,
    claim: &Claim,
    response: &str,
) -> StoreResult<()> {
    idempotency_key::Entity::update_many()
        .col_expr(Column::Response, Expr::value(response))
        .col_expr(
            Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(Column::Id.eq(claim.id.as_str()))
        .filter(Column::Token.eq(claim.token.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Ends the hold without an answer: a key under which nothing was applied is deleted (a retry
/// runs afresh); one under which something was applied stays, without an answer.
pub async fn release<C: ConnectionTrait>(db: &C, claim: &Claim) -> StoreResult<()> {
    idempotency_key::Entity::delete_many()
        .filter(Column::Id.eq(claim.id.as_str()))
        .filter(Column::Token.eq(claim.token.as_str()))
        .filter(Column::Changes.eq(0))
        .exec(db)
        .await?;
    idempotency_key::Entity::update_many()
        .col_expr(
            Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(Column::Id.eq(claim.id.as_str()))
        .filter(Column::Token.eq(claim.token.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes at most `limit` keys that expired before `now` (the oldest first; a range of
/// `idx_idempotency_key_expires_at`); returns how many.
pub async fn delete_expired<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> StoreResult<u64> {
    let ids: Vec<String> = idempotency_key::Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::ExpiresAt.lte(now))
        .order_by_asc(Column::ExpiresAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let deleted = idempotency_key::Entity::delete_many()
        .filter(Column::Id.is_in(ids))
        .filter(Column::ExpiresAt.lte(now))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}
