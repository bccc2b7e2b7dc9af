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

/// PostgreSQL's `COPY ... FROM STDIN` of `rows` (text format) on `conn`: several times faster
/// than multi-row inserts for the bulk loads of the `seed` command. The columns are those set
/// in the first row (a column left `NotSet`, such as a serial ID, takes its default).
pub async fn copy_in<A: ActiveModelTrait>(
    conn: &mut sea_orm::sqlx::PgConnection,
    rows: &[A],
) -> StoreResult<()> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let columns: Vec<_> = <A::Entity as EntityTrait>::Column::iter()
        .filter(|column| !first.get(*column).is_not_set())
        .collect();
    let names: Vec<String> = columns
        .iter()
        .map(|column| format!("\"{}\"", sea_orm::IdenStatic::as_str(column)))
        .collect();
    let table = sea_orm::EntityName::table_name(&A::Entity::default());
    let mut text = String::with_capacity(rows.len() * 64 * columns.len().max(1));
    for row in rows {
        for (n, column) in columns.iter().enumerate() {
            if n > 0 {
                text.push('\t');
            }
            copy_field(&mut text, row.get(*column).into_value());
        }
        text.push('\n');
    }
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY \"{table}\" ({}) FROM STDIN",
            names.join(", ")
        ))
        .await
        .map_err(copy_error)?;
    if let Err(error) = copy.send(text.into_bytes()).await {
        copy.abort("seed").await.ok();
        return Err(copy_error(error));
    }
    copy.finish().await.map_err(copy_error)?;
    Ok(())
}

fn copy_error(error: sea_orm::sqlx::Error) -> super::StoreError {
    sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(error))).into()
}

/// One field of COPY's text format: `\N` for NULL, backslash escapes for the delimiters.
fn copy_field(out: &mut String, value: Option<sea_orm::Value>) {
    use sea_orm::Value;
    use std::fmt::Write as _;
    let null = |out: &mut String| out.push_str("\\N");
    match value {
        Some(Value::BigInt(Some(v))) => write!(out, "{v}").unwrap_or(()),
        Some(Value::Int(Some(v))) => write!(out, "{v}").unwrap_or(()),
        Some(Value::SmallInt(Some(v))) => write!(out, "{v}").unwrap_or(()),
        Some(Value::Double(Some(v))) => write!(out, "{v:?}").unwrap_or(()),
        Some(Value::Float(Some(v))) => write!(out, "{v:?}").unwrap_or(()),
        Some(Value::Bool(Some(v))) => out.push_str(if v { "t" } else { "f" }),
        // Microseconds, truncated, as sqlx binds them.
        Some(Value::ChronoDateTimeUtc(Some(v))) => {
            write!(out, "{}", v.format("%Y-%m-%d %H:%M:%S%.6f+00")).unwrap_or(())
        }
        Some(Value::String(Some(v))) => {
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
        _ => null(out),
    }
}
