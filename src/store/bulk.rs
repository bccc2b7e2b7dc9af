//! Multi-row writes whose statement text never depends on the number of rows: the rows travel
//! as one JSON parameter that the statement turns back into rows (PostgreSQL
//! `json_to_recordset`, MySQL/MariaDB `JSON_TABLE`, SQLite `jsonb_each`).
//!
//! A multi-row `VALUES` list is a new statement text for every row count, which PostgreSQL and
//! MariaDB parse and plan again and which costs a bind parameter per value; a statement here is
//! prepared once per connection and takes one parameter per chunk of rows (see BENCHMARKS.md,
//! "Ingestion"). [`in_keys`] does the same for the keys of an `IN` list.

use std::fmt::Write as _;
use std::io::Write as _;

use sea_orm::sea_query::{ArrayType, Expr};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait, IdenStatic, Iterable, SqlErr,
    Statement, Value,
};

use super::{StoreError, StoreResult, WriteTxn};
use crate::domain::catalog::ParseError;

/// Rows per statement: well under a MB of JSON (MariaDB's default packet is 16 MB), a buffer
/// the allocator reuses rather than asks the kernel for again.
const ROWS_PER_STATEMENT: usize = 1_000;

/// What to do with a row whose unique key is taken.
enum OnConflict<C> {
    /// Fail (no unique key can clash).
    Fail,
    /// Skip the row.
    Skip(Vec<C>),
    /// Update these columns of the existing row from the row given.
    Update { key: Vec<C>, columns: Vec<C> },
}

/// Inserts `rows`, which no unique key of the table should refuse: one that does fails the
/// write with [`StoreError::Conflict`] (a concurrent change took the key first; the caller's
/// transaction is run again). On PostgreSQL the rows travel by `COPY` on the transaction's
/// connection, the fastest way in (see [`WriteTxn::copy_in`]).
pub async fn insert_rows<A>(txn: &WriteTxn, rows: Vec<A>) -> StoreResult<()>
where
    A: ActiveModelTrait + Send,
{
    let written = if txn.can_copy() {
        copy(txn, &rows).await
    } else {
        write(txn, &rows, OnConflict::Fail).await.map(drop)
    };
    written.map_err(|error| match &error {
        StoreError::Db(cause)
            if matches!(cause.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) =>
        {
            StoreError::Conflict
        }
        _ => error,
    })
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
    K: IntoIterator<Item = <A::Entity as EntityTrait>::Column>,
{
    write(conn, &rows, OnConflict::Skip(key.into_iter().collect())).await
}

/// Inserts `rows`, or, where a row with the same unique key `key` exists, updates its
/// `update` columns from the row given.
pub async fn upsert<C, A, K, U>(conn: &C, rows: Vec<A>, key: K, update: U) -> StoreResult<()>
where
    C: ConnectionTrait,
    A: ActiveModelTrait + Send,
    K: IntoIterator<Item = <A::Entity as EntityTrait>::Column>,
    U: IntoIterator<Item = <A::Entity as EntityTrait>::Column>,
{
    let conflict = OnConflict::Update {
        key: key.into_iter().collect(),
        columns: update.into_iter().collect(),
    };
    write(conn, &rows, conflict).await?;
    Ok(())
}

/// The JSON type a column's values travel as, from the value's own variant.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Integer,
    Float,
    Text,
    Time,
}

impl Kind {
    fn of(value: &Value) -> Option<Kind> {
        Some(match value {
            Value::TinyInt(_)
            | Value::SmallInt(_)
            | Value::Int(_)
            | Value::BigInt(_)
            | Value::TinyUnsigned(_)
            | Value::SmallUnsigned(_)
            | Value::Unsigned(_)
            | Value::BigUnsigned(_) => Kind::Integer,
            Value::Float(_) | Value::Double(_) => Kind::Float,
            Value::String(_) => Kind::Text,
            Value::ChronoDateTimeUtc(_) => Kind::Time,
            _ => return None,
        })
    }

    /// The column type a JSON field is read as.
    fn sql(self, backend: DbBackend) -> &'static str {
        match (backend, self) {
            (DbBackend::MySql, Kind::Integer) => "BIGINT",
            (DbBackend::MySql, Kind::Float) => "DOUBLE",
            (DbBackend::MySql, Kind::Text) => "LONGTEXT CHARACTER SET utf8mb4",
            (DbBackend::MySql, Kind::Time) => "DATETIME(6)",
            (_, Kind::Integer) => "bigint",
            (_, Kind::Float) => "double precision",
            (_, Kind::Text) => "text",
            (_, Kind::Time) => "timestamptz",
        }
    }
}

/// Writes `rows` (the columns set in the first row) in statements of [`ROWS_PER_STATEMENT`]
/// rows; returns the rows the engine counted as written.
async fn write<C, A>(
    conn: &C,
    rows: &[A],
    conflict: OnConflict<<A::Entity as EntityTrait>::Column>,
) -> StoreResult<u64>
where
    C: ConnectionTrait,
    A: ActiveModelTrait,
{
    let Some(first) = rows.first() else {
        return Ok(0);
    };
    let backend = conn.get_database_backend();
    let columns = columns_of(first)?;
    let sql = insert_sql::<A::Entity>(backend, &columns, &conflict);
    let mut written = 0;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let json = json_rows(backend, &columns, chunk)?;
        let statement = Statement::from_sql_and_values(backend, sql.clone(), [json.into()]);
        written += conn.execute_raw(statement).await?.rows_affected();
    }
    Ok(written)
}

/// The columns set in `row`, with the JSON type of each.
fn columns_of<A: ActiveModelTrait>(
    row: &A,
) -> StoreResult<Vec<(<A::Entity as EntityTrait>::Column, Kind)>> {
    <A::Entity as EntityTrait>::Column::iter()
        .filter_map(|column| {
            let value = row.get(column).into_value()?;
            let kind = Kind::of(&value).ok_or_else(|| ParseError {
                what: "column type of a bulk write",
                value: format!("{value:?}"),
            });
            Some(kind.map(|kind| (column, kind)))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(Into::into)
}

fn quote(backend: DbBackend, name: &str) -> String {
    match backend {
        DbBackend::MySql => format!("`{name}`"),
        _ => format!("\"{name}\""),
    }
}

/// `INSERT INTO t (columns) SELECT columns FROM <the JSON parameter> [conflict rule]`.
fn insert_sql<E: EntityTrait>(
    backend: DbBackend,
    columns: &[(E::Column, Kind)],
    conflict: &OnConflict<E::Column>,
) -> String {
    let table = quote(backend, E::default().table_name());
    let name = |column: &E::Column| quote(backend, column.as_str());
    let names: Vec<String> = columns.iter().map(|(column, _)| name(column)).collect();
    let names = names.join(", ");
    let mut sql = String::new();
    let ignore = matches!(conflict, OnConflict::Skip(_)) && backend == DbBackend::MySql;
    let _ = write!(
        sql,
        "INSERT {}INTO {table} ({names}) ",
        if ignore { "IGNORE " } else { "" }
    );
    match backend {
        DbBackend::Postgres => {
            let types: Vec<String> = columns
                .iter()
                .map(|(column, kind)| format!("{} {}", name(column), kind.sql(backend)))
                .collect();
            let _ = write!(
                sql,
                "SELECT {names} FROM json_to_recordset($1::json) AS r({})",
                types.join(", ")
            );
        }
        DbBackend::MySql => {
            let types: Vec<String> = columns
                .iter()
                .map(|(column, kind)| {
                    format!(
                        "{} {} PATH '$.{}'",
                        name(column),
                        kind.sql(backend),
                        column.as_str()
                    )
                })
                .collect();
            let _ = write!(
                sql,
                "SELECT {names} FROM JSON_TABLE(?, '$[*]' COLUMNS ({})) AS r",
                types.join(", ")
            );
        }
        _ => {
            let fields: Vec<String> = columns
                .iter()
                .map(|(column, _)| format!("value ->> '$.{}'", column.as_str()))
                .collect();
            // `jsonb_each`: each row's object is read as binary JSON, not parsed again for each
            // column. `WHERE true`: SQLite needs it to tell an upsert's `ON CONFLICT` from a
            // join's `ON`.
            let _ = write!(
                sql,
                "SELECT {} FROM jsonb_each(?) WHERE true",
                fields.join(", ")
            );
        }
    }
    let list = |columns: &[E::Column]| columns.iter().map(&name).collect::<Vec<_>>().join(", ");
    match (conflict, backend) {
        (OnConflict::Fail, _) | (OnConflict::Skip(_), DbBackend::MySql) => {}
        (OnConflict::Skip(key), _) => {
            let _ = write!(sql, " ON CONFLICT ({}) DO NOTHING", list(key));
        }
        (OnConflict::Update { columns, .. }, DbBackend::MySql) => {
            let set: Vec<String> = columns
                .iter()
                .map(|c| format!("{0} = VALUES({0})", name(c)))
                .collect();
            let _ = write!(sql, " ON DUPLICATE KEY UPDATE {}", set.join(", "));
        }
        (OnConflict::Update { key, columns }, _) => {
            let set: Vec<String> = columns
                .iter()
                .map(|c| format!("{0} = excluded.{0}", name(c)))
                .collect();
            let _ = write!(
                sql,
                " ON CONFLICT ({}) DO UPDATE SET {}",
                list(key),
                set.join(", ")
            );
        }
    }
    sql
}

/// `rows` as a JSON array of objects keyed by column name; a NULL is left out (every engine
/// reads a missing field as NULL). Times are written as each engine reads them back.
fn json_rows<A: ActiveModelTrait>(
    backend: DbBackend,
    columns: &[(<A::Entity as EntityTrait>::Column, Kind)],
    rows: &[A],
) -> StoreResult<String> {
    let mut out: Vec<u8> = Vec::with_capacity(rows.len() * 48 * columns.len());
    let mut times = TimeText::default();
    out.push(b'[');
    for (n, row) in rows.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.push(b'{');
        let mut first = true;
        for (column, _) in columns {
            let Some(value) = row.get(*column).into_value() else {
                continue;
            };
            let at = out.len();
            if !first {
                out.push(b',');
            }
            write!(out, "\"{}\":", column.as_str()).map_err(json_error)?;
            if json_value(&mut out, backend, value, &mut times).map_err(json_error)? {
                first = false;
            } else {
                out.truncate(at);
            }
        }
        out.push(b'}');
    }
    out.push(b']');
    String::from_utf8(out).map_err(json_error)
}

fn json_error(error: impl std::fmt::Display) -> StoreError {
    ParseError {
        what: "rows of a bulk write",
        value: error.to_string(),
    }
    .into()
}

/// The last time [`json_value`] wrote and its text: the rows of a write mostly share one time
/// (the transaction's), which is formatted once instead of once per field.
#[derive(Default)]
struct TimeText {
    last: Option<(chrono::DateTime<chrono::Utc>, String)>,
}

impl TimeText {
    fn get(&mut self, backend: DbBackend, time: chrono::DateTime<chrono::Utc>) -> &str {
        if self.last.as_ref().is_none_or(|(last, _)| *last != time) {
            // As sqlx binds a time on each engine (UTC; PostgreSQL and MySQL keep microseconds).
            let text = match backend {
                DbBackend::Postgres => time.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
                DbBackend::MySql => time.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
                _ => time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
            };
            self.last = Some((time, text));
        }
        self.last.as_ref().map_or("", |(_, text)| text.as_str())
    }
}

/// Appends `value` as JSON; `Ok(false)` (and nothing appended) for NULL.
fn json_value(
    out: &mut Vec<u8>,
    backend: DbBackend,
    value: Value,
    times: &mut TimeText,
) -> std::io::Result<bool> {
    match value {
        Value::TinyInt(Some(v)) => write!(out, "{v}"),
        Value::SmallInt(Some(v)) => write!(out, "{v}"),
        Value::Int(Some(v)) => write!(out, "{v}"),
        Value::BigInt(Some(v)) => write!(out, "{v}"),
        Value::TinyUnsigned(Some(v)) => write!(out, "{v}"),
        Value::SmallUnsigned(Some(v)) => write!(out, "{v}"),
        Value::Unsigned(Some(v)) => write!(out, "{v}"),
        Value::BigUnsigned(Some(v)) => write!(out, "{v}"),
        Value::Float(Some(v)) => write!(out, "{:?}", finite(f64::from(v))?),
        Value::Double(Some(v)) => write!(out, "{:?}", finite(v)?),
        Value::String(Some(v)) => {
            serde_json::to_writer(&mut *out, &v).map_err(std::io::Error::other)
        }
        Value::ChronoDateTimeUtc(Some(v)) => write!(out, "\"{}\"", times.get(backend, v)),
        _ => return Ok(false),
    }?;
    Ok(true)
}

/// JSON has no NaN or infinity: such a value is an error, never a silent NULL (and `COPY`
/// refuses it the same way). `{:?}` prints the shortest form that reads back exactly.
fn finite(value: f64) -> std::io::Result<f64> {
    if !value.is_finite() {
        return Err(std::io::Error::other(format!(
            "{value} is not a finite number"
        )));
    }
    Ok(value)
}

/// Keys of an `IN` list, as [`in_keys`] passes them.
pub trait Key: serde::Serialize + Clone + Into<Value> {
    /// PostgreSQL's array of the keys.
    const POSTGRES: ArrayType;
    /// The type MySQL reads each element of the JSON array as.
    const MYSQL: &'static str;
}

impl Key for i64 {
    const POSTGRES: ArrayType = ArrayType::BigInt;
    const MYSQL: &'static str = "BIGINT";
}

impl Key for &str {
    const POSTGRES: ArrayType = ArrayType::String;
    const MYSQL: &'static str = "VARCHAR(2048) CHARACTER SET utf8mb4";
}

/// `column IN (<keys>)` with the keys as one parameter: one statement text for any number of
/// keys (so the engine prepares it once) and no bind-parameter limit.
///
/// PostgreSQL gets a typed array (`= ANY($1)`), whose length its planner sees in a custom plan,
/// as it sees an `IN` list's; MySQL and SQLite get a JSON array (`JSON_TABLE`, `json_each`).
pub fn in_keys<K: Key>(backend: DbBackend, column: Expr, keys: &[K]) -> Expr {
    match backend {
        DbBackend::Postgres => {
            let array = keys.iter().cloned().map(Into::into).collect();
            let array = Value::Array(K::POSTGRES, Some(Box::new(array)));
            Expr::cust_with_exprs("$1 = ANY($2)", [column, Expr::val(array)])
        }
        DbBackend::MySql => {
            let sql = format!(
                "? IN (SELECT j.v FROM JSON_TABLE(?, '$[*]' COLUMNS (v {} PATH '$')) AS j)",
                K::MYSQL
            );
            Expr::cust_with_exprs(sql, [column, Expr::val(json_array(keys))])
        }
        _ => Expr::cust_with_exprs(
            "? IN (SELECT value FROM json_each(?))",
            [column, Expr::val(json_array(keys))],
        ),
    }
}

fn json_array<K: Key>(keys: &[K]) -> String {
    serde_json::to_string(keys).unwrap_or_else(|_| "[]".to_owned())
}

/// `n` new IDs of `table` (ascending) from its `id` column's sequence on PostgreSQL, so that
/// its rows can be written with their IDs (by `COPY`) and nothing read back; `None` on the
/// other engines, whose tables number rows as they insert them.
pub async fn draw_ids<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    n: usize,
) -> StoreResult<Option<Vec<i64>>> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(None);
    }
    let count = i64::try_from(n).unwrap_or(i64::MAX);
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2)",
            [table.into(), count.into()],
        ))
        .await?;
    let mut ids = rows
        .iter()
        .map(|row| row.try_get_by_index::<i64>(0))
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort_unstable();
    Ok(Some(ids))
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

/// `COPY`s `rows` (the columns set in the first row; a column left `NotSet`, such as a serial
/// ID, takes its default) in COPY's text format.
async fn copy<A: ActiveModelTrait>(txn: &WriteTxn, rows: &[A]) -> StoreResult<()> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let columns = columns_of(first)?;
    let names: Vec<&str> = columns.iter().map(|(column, _)| column.as_str()).collect();
    let mut text = String::with_capacity(rows.len() * 48 * columns.len());
    let mut times = TimeText::default();
    for row in rows {
        for (n, (column, _)) in columns.iter().enumerate() {
            if n > 0 {
                text.push('\t');
            }
            let value = row.get(*column).into_value();
            // A column set in the first row is set in every row (the rows are built alike).
            let value = value.unwrap_or(Value::Int(None));
            copy_field(&mut text, value, &mut times).map_err(json_error)?;
        }
        text.push('\n');
    }
    let table = sea_orm::EntityName::table_name(&A::Entity::default());
    txn.copy_in(table, &names, text).await?;
    Ok(())
}

/// Appends `value` as one field of COPY's text format: `\N` for NULL, backslash escapes for
/// the delimiters; the types and checks of [`json_value`].
fn copy_field(out: &mut String, value: Value, times: &mut TimeText) -> std::io::Result<()> {
    let written = match value {
        Value::TinyInt(Some(v)) => write!(out, "{v}"),
        Value::SmallInt(Some(v)) => write!(out, "{v}"),
        Value::Int(Some(v)) => write!(out, "{v}"),
        Value::BigInt(Some(v)) => write!(out, "{v}"),
        Value::TinyUnsigned(Some(v)) => write!(out, "{v}"),
        Value::SmallUnsigned(Some(v)) => write!(out, "{v}"),
        Value::Unsigned(Some(v)) => write!(out, "{v}"),
        Value::BigUnsigned(Some(v)) => write!(out, "{v}"),
        Value::Float(Some(v)) => write!(out, "{:?}", finite(f64::from(v))?),
        Value::Double(Some(v)) => write!(out, "{:?}", finite(v)?),
        Value::ChronoDateTimeUtc(Some(v)) => {
            out.push_str(times.get(DbBackend::Postgres, v));
            Ok(())
        }
        Value::String(Some(v)) => {
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
            Ok(())
        }
        other if Kind::of(&other).is_some() => {
            out.push_str("\\N");
            Ok(())
        }
        other => return Err(std::io::Error::other(format!("{other:?} cannot be copied"))),
    };
    written.map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use entity::{hotel_image, image_tag};
    use sea_orm::ActiveValue::Set;
    use serde_json::json;

    use super::*;

    #[test]
    fn rows_travel_as_objects_without_their_nulls_and_with_their_texts_escaped() {
        let at = Utc.with_ymd_and_hms(2026, 12, 2, 1, 2, 3).unwrap();
        let row = hotel_image::ActiveModel {
            hotel_id: Set(1),
            image_id: Set(2),
            status: Set("say \"hi\" \\ 日本".to_owned()),
            status_reason: Set(None),
            caption: Set(None),
            alt_text: Set(None),
            status_set_by: Set(None),
            created_at: Set(at),
            updated_at: Set(at),
        };
        let columns = columns_of(&row).unwrap();
        let json = json_rows(DbBackend::Postgres, &columns, std::slice::from_ref(&row)).unwrap();
        let time = "2026-12-02 01:02:03.000000+00";
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            json!([{ "hotel_id": 1, "image_id": 2, "status": "say \"hi\" \\ 日本",
                     "created_at": time, "updated_at": time }])
        );
        let sqlite = json_rows(DbBackend::Sqlite, &columns, &[row]).unwrap();
        assert!(sqlite.contains("\"created_at\":\"2026-12-02T01:02:03+00:00\""));
    }

    #[test]
    fn a_number_json_cannot_carry_is_an_error_not_a_null() {
        let row = image_tag::ActiveModel {
            image_id: Set(1),
            origin: Set("MODEL".to_owned()),
            category: Set("POOL".to_owned()),
            confidence: Set(f64::NAN),
        };
        let columns = columns_of(&row).unwrap();
        assert!(json_rows(DbBackend::MySql, &columns, &[row]).is_err());
    }
}
