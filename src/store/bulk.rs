//! Multi-row inserts, chunked so that no statement exceeds the engines' bind-parameter limits
//! (SQLite 32,766; PostgreSQL and MySQL 65,535).

use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Iterable};

use super::StoreResult;

/// Bind parameters per statement: under every engine's limit.
const MAX_BINDS: usize = 30_000;

/// Rows per statement for narrow tables (a few columns).
pub const ROWS_PER_STATEMENT: usize = 1_000;

/// Inserts `rows` in as few statements as the bind limit allows.
pub async fn insert_chunked<C, A>(conn: &C, rows: Vec<A>) -> StoreResult<()>
where
    C: ConnectionTrait,
    A: ActiveModelTrait + Send,
{
    let columns = <A::Entity as EntityTrait>::Column::iter().count().max(1);
    let per_statement = (MAX_BINDS / columns).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(per_statement).collect();
        A::Entity::insert_many(chunk)
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
