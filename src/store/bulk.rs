//! Multi-row inserts, chunked so that no statement exceeds the engines' bind-parameter limits
//! (SQLite 32,766; PostgreSQL and MySQL 65,535).

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait, Iterable, QueryTrait, Statement,
};

use super::StoreResult;

/// Bind parameters per statement: under every engine's limit.
const MAX_BINDS: usize = 30_000;

/// Rows per statement for narrow tables (a few columns).
pub const ROWS_PER_STATEMENT: usize = 1_000;

/// Rows of `A` that fit in one statement.
fn rows_per_statement<A: ActiveModelTrait>() -> usize {
    let columns = <A::Entity as EntityTrait>::Column::iter().count().max(1);
    (MAX_BINDS / columns).max(1)
}

/// Splits `rows` into statement-sized chunks.
fn chunks<A: ActiveModelTrait>(rows: Vec<A>) -> impl Iterator<Item = Vec<A>> {
    let per_statement = rows_per_statement::<A>();
    let mut rows = rows.into_iter().peekable();
    std::iter::from_fn(move || {
        rows.peek()?;
        Some(rows.by_ref().take(per_statement).collect())
    })
}

/// Inserts `rows` in as few statements as the bind limit allows.
pub async fn insert_chunked<C, A>(conn: &C, rows: Vec<A>) -> StoreResult<()>
where
    C: ConnectionTrait,
    A: ActiveModelTrait + Send,
{
    for chunk in chunks(rows) {
        A::Entity::insert_many(chunk)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Inserts the rows of `rows` whose unique key `key` is not taken yet, skips the others, and
/// returns how many were inserted. A row another transaction is inserting concurrently waits
/// for that transaction and is then skipped, so the count tells whether someone else won.
///
/// PostgreSQL and SQLite: `ON CONFLICT (key) DO NOTHING`. MySQL: `INSERT IGNORE`, because its
/// `ON DUPLICATE KEY UPDATE k = k` counts a skipped row as affected under the `FOUND_ROWS`
/// client flag that sqlx sets, which would hide a lost race. The rows are validated before
/// they get here, so `IGNORE` has nothing but duplicates to ignore.
pub async fn insert_new<C, A, K>(conn: &C, rows: Vec<A>, key: K) -> StoreResult<u64>
where
    C: ConnectionTrait,
    A: ActiveModelTrait + Send,
    K: IntoIterator<Item = <A::Entity as EntityTrait>::Column> + Clone,
{
    let backend = conn.get_database_backend();
    let mut inserted = 0;
    for chunk in chunks(rows) {
        let insert = A::Entity::insert_many(chunk);
        inserted += if backend == DbBackend::MySql {
            let statement = backend.build(&insert.into_query());
            let sql = statement.sql.replacen("INSERT ", "INSERT IGNORE ", 1);
            conn.execute_raw(Statement { sql, ..statement })
                .await?
                .rows_affected()
        } else {
            insert
                .on_conflict(OnConflict::columns(key.clone()).do_nothing().to_owned())
                .exec_without_returning(conn)
                .await?
        };
    }
    Ok(inserted)
}

/// Inserts `rows`, or, where a row with the same unique key `key` exists, updates its
/// `update` columns from the row given (one multi-row statement per chunk on every engine).
pub async fn upsert<C, A, K, U>(conn: &C, rows: Vec<A>, key: K, update: U) -> StoreResult<()>
where
    C: ConnectionTrait,
    A: ActiveModelTrait + Send,
    K: IntoIterator<Item = <A::Entity as EntityTrait>::Column> + Clone,
    U: IntoIterator<Item = <A::Entity as EntityTrait>::Column> + Clone,
{
    for chunk in chunks(rows) {
        A::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::columns(key.clone())
                    .update_columns(update.clone())
                    .to_owned(),
            )
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// After rows were inserted with explicit IDs, moves PostgreSQL's sequences past them (MySQL
/// and SQLite do this by themselves).
pub async fn sync_sequences<C: ConnectionTrait>(conn: &C) -> StoreResult<()> {
    if conn.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    conn.execute_unprepared(
        "SELECT setval(pg_get_serial_sequence('image', 'id'), COALESCE((SELECT MAX(id) FROM image), 0) + 1, false)",
    )
    .await?;
    Ok(())
}
