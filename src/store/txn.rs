//! The write transaction every change runs on ([`WriteTxn`]).
//!
//! On SQLite and MySQL/MariaDB it is SeaORM's transaction. On PostgreSQL it is sqlx's, behind
//! SeaORM's [`ConnectionTrait`], so that the bulk writes of [`super::bulk`] can also `COPY` on
//! the transaction's own connection: SeaORM's transaction keeps its connection to itself, and
//! `COPY` straight into the tables writes an import's rows about twice as fast as `INSERT`
//! (see BENCHMARKS.md, "Ingestion"). The statements run as SeaORM runs them (the same SQL, the
//! same bound values, the same errors), and are counted the same.
//!
//! Dropped without [`WriteTxn::commit`], either kind rolls back, as SeaORM's does.

use std::fmt::Write as _;

use sea_orm::sqlx::{self, AssertSqlSafe, Postgres};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement, Value, Values,
};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Mutex;

use super::StatementCounter;

/// A write transaction (see the module doc).
pub struct WriteTxn(Inner);

enum Inner {
    SeaOrm(DatabaseTransaction),
    Postgres {
        /// Locked per statement: a transaction runs one statement at a time.
        txn: Mutex<sqlx::Transaction<'static, Postgres>>,
        counter: Option<StatementCounter>,
    },
}

impl std::fmt::Debug for WriteTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Inner::SeaOrm(_) => "WriteTxn(SeaORM)",
            Inner::Postgres { .. } => "WriteTxn(PostgreSQL)",
        })
    }
}

impl WriteTxn {
    pub(super) fn sea_orm(txn: DatabaseTransaction) -> Self {
        Self(Inner::SeaOrm(txn))
    }

    /// Begins a PostgreSQL transaction on a connection of `pool` with `begin` (`BEGIN`, or
    /// `BEGIN ISOLATION LEVEL ...`).
    pub(super) async fn postgres(
        pool: &sqlx::PgPool,
        begin: String,
        counter: Option<StatementCounter>,
    ) -> Result<Self, DbErr> {
        count(&counter);
        let txn = pool
            .begin_with(AssertSqlSafe(begin))
            .await
            .map_err(|e| DbErr::Conn(RuntimeErr::SqlxError(e.into())))?;
        Ok(Self(Inner::Postgres {
            txn: Mutex::new(txn),
            counter,
        }))
    }

    pub async fn commit(self) -> Result<(), DbErr> {
        match self.0 {
            Inner::SeaOrm(txn) => txn.commit().await,
            Inner::Postgres { txn, counter } => {
                count(&counter);
                txn.into_inner().commit().await.map_err(exec_error)
            }
        }
    }

    /// Whether [`WriteTxn::copy_in`] can run (PostgreSQL).
    pub fn can_copy(&self) -> bool {
        matches!(self.0, Inner::Postgres { .. })
    }

    /// `COPY table (columns) FROM STDIN` of `text` (COPY's text format) on the transaction's
    /// connection; returns the rows copied. PostgreSQL only ([`WriteTxn::can_copy`]).
    pub async fn copy_in(&self, table: &str, columns: &[&str], text: String) -> Result<u64, DbErr> {
        let Inner::Postgres { txn, counter } = &self.0 else {
            return Err(DbErr::Custom("COPY needs PostgreSQL".to_owned()));
        };
        count(counter);
        let mut statement = format!("COPY \"{table}\" (");
        for (n, column) in columns.iter().enumerate() {
            let _ = write!(statement, "{}\"{column}\"", if n > 0 { ", " } else { "" });
        }
        statement.push_str(") FROM STDIN");
        let mut txn = txn.lock().await;
        let copied = async {
            let mut copy = txn.copy_in_raw(&statement).await?;
            if let Err(error) = copy.send(text.into_bytes()).await {
                // The server's own error, if it sent one, tells more than the broken send.
                return Err(copy
                    .abort("the rows could not be sent")
                    .await
                    .err()
                    .unwrap_or(error));
            }
            copy.finish().await
        };
        copied.await.map_err(exec_error)
    }
}

fn count(counter: &Option<StatementCounter>) {
    if let Some(counter) = counter {
        counter.add();
    }
}

fn exec_error(error: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(error.into()))
}

fn query_error(error: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(error.into()))
}

/// `statement` as sqlx runs it, as SeaORM's PostgreSQL driver builds it.
fn query(statement: &Statement) -> sqlx::query::Query<'_, Postgres, SqlxValues> {
    let values: Values = statement
        .values
        .clone()
        .unwrap_or(Values(Vec::<Value>::new()));
    sqlx::query_with(AssertSqlSafe(statement.sql.as_str()), SqlxValues(values))
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTxn {
    fn get_database_backend(&self) -> DbBackend {
        match &self.0 {
            Inner::SeaOrm(txn) => txn.get_database_backend(),
            Inner::Postgres { .. } => DbBackend::Postgres,
        }
    }

    async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        match &self.0 {
            Inner::SeaOrm(txn) => txn.execute_raw(statement).await,
            Inner::Postgres { txn, counter } => {
                count(counter);
                let mut txn = txn.lock().await;
                let done = query(&statement).execute(&mut **txn).await;
                done.map(Into::into).map_err(exec_error)
            }
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match &self.0 {
            Inner::SeaOrm(txn) => txn.execute_unprepared(sql).await,
            Inner::Postgres { txn, counter } => {
                count(counter);
                let mut txn = txn.lock().await;
                let done = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .execute(&mut **txn)
                    .await;
                done.map(Into::into).map_err(exec_error)
            }
        }
    }

    async fn query_one_raw(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        match &self.0 {
            Inner::SeaOrm(txn) => txn.query_one_raw(statement).await,
            Inner::Postgres { txn, counter } => {
                count(counter);
                let mut txn = txn.lock().await;
                let row = query(&statement).fetch_optional(&mut **txn).await;
                row.map(|row| row.map(Into::into)).map_err(query_error)
            }
        }
    }

    async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match &self.0 {
            Inner::SeaOrm(txn) => txn.query_all_raw(statement).await,
            Inner::Postgres { txn, counter } => {
                count(counter);
                let mut txn = txn.lock().await;
                let rows = query(&statement).fetch_all(&mut **txn).await;
                rows.map(|rows| rows.into_iter().map(Into::into).collect())
                    .map_err(query_error)
            }
        }
    }
}
