//! Opening the database pool with settings fit for a service, counting its statements, reading
//! its figures for the metrics, and migrating under a database lock.
//!
//! # Failing fast when the database stops answering
//! A database that black-holes (packets dropped, nothing refused) must cost a request a short,
//! known time, not the whole request timeout:
//! - a request waits at most [`ACQUIRE_TIMEOUT`] for a pooled connection, or for a new one to
//!   open (PostgreSQL, MySQL/MariaDB; a SQLite file cannot black-hole, and its writers queue
//!   for the write lock in the pool, so it keeps [`SQLITE_ACQUIRE_TIMEOUT`]);
//! - a statement runs at most the statement timeout, enforced by the server (PostgreSQL
//!   `statement_timeout`, MariaDB `max_statement_time`, MySQL `max_execution_time` for reads);
//! - a pooled connection idle for [`PING_IF_IDLE_FOR`] or longer is pinged before it is handed
//!   out, so connections that died while idle (a database restart, a failover, a proxy that
//!   dropped them) are replaced instead of failing one request each. Busy connections are not
//!   pinged: a connection that failed a statement is tested when it comes back to the pool.
//!
//! # Migrating next to other replicas
//! Replicas started together on an empty database would each run the migrations and break
//! one another. [`migrate`] holds a database lock while it migrates: a PostgreSQL advisory
//! lock or a MySQL/MariaDB named lock (`GET_LOCK`), on a connection of its own, or on SQLite
//! the database's write lock (the migrations run in a `BEGIN IMMEDIATE` transaction). The
//! others wait for it, then find nothing left to do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use migration::{Migrator, MigratorTrait as _};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait as _, Database, DatabaseBackend, DatabaseConnection,
    DatabaseConnectionType, DbErr, Statement, Value,
};

/// How long a request waits for a connection of the pool (or for a new one to open) on
/// PostgreSQL and MySQL/MariaDB: well under the request timeout (10 s by default), so that a
/// database that stopped answering makes requests fail in this time, not time out.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// The same on SQLite, where connections wait in the pool while another one writes.
pub const SQLITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// A pooled connection idle at least this long is pinged before use. Connections in steady use
/// skip the round trip; after an outage, each dead one is found by a ping, not by a request.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);
/// How long a process waits for another one's migration before it gives up.
pub const MIGRATION_WAIT: Duration = Duration::from_secs(600);
/// How often a process waiting for the migration lock asks again.
const MIGRATION_POLL: Duration = Duration::from_millis(200);
/// The PostgreSQL advisory lock of migrations (advisory locks are per database): "isg_migr".
const PG_MIGRATION_LOCK: i64 = 0x6973_675f_6d69_6772;

/// Number of SQL statements the pool has executed: exported as a metric, and what the tests
/// use to prove that a request costs one statement per table.
#[derive(Debug, Clone, Default)]
pub struct StatementCounter(Arc<AtomicU64>);

impl StatementCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one statement run outside SeaORM (the PostgreSQL write transaction's).
    pub fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Connects to `url` (sqlite:, postgres:, mysql:) with a pool of `max_connections`.
///
/// Statement logging is off (it would log every query) and only connections idle for a while
/// are pinged at checkout (see the module doc). SQLite runs in WAL mode with a busy timeout so
/// that readers never block the writer. A zero `statement_timeout` means none (batch commands).
pub async fn connect(
    url: &str,
    max_connections: u32,
    statement_timeout: Duration,
) -> Result<(DatabaseConnection, StatementCounter), DbErr> {
    let sqlite = url.starts_with("sqlite");
    let acquire = if sqlite {
        SQLITE_ACQUIRE_TIMEOUT
    } else {
        ACQUIRE_TIMEOUT
    };
    let mut options = base_options(url);
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(acquire)
        .acquire_timeout(acquire)
        .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR);
    if !sqlite {
        // PostgreSQL (through its `statement_timeout` option, 0 = none).
        options.statement_timeout(statement_timeout);
    }
    if !statement_timeout.is_zero() {
        options.map_sqlx_mysql_pool_opts(move |pool| {
            pool.after_connect(move |connection: &mut sea_orm::sqlx::MySqlConnection, _| {
                Box::pin(mysql_statement_timeout(connection, statement_timeout))
            })
        });
    }
    let mut db = if sqlite {
        connect_sqlite(options).await?
    } else {
        Database::connect(options).await?
    };
    let counter = StatementCounter::default();
    let count = counter.0.clone();
    db.set_metric_callback(move |_| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    Ok((db, counter))
}

/// SQLite: the first connection switches the file to WAL, and that switch can fail at once
/// with "database is locked" (without waiting out the busy timeout) while another process
/// holds the write lock, e.g. a replica started at the same moment that is migrating. Retried
/// for as long as the busy timeout would have waited.
async fn connect_sqlite(options: ConnectOptions) -> Result<DatabaseConnection, DbErr> {
    let deadline = tokio::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    loop {
        match Database::connect(options.clone()).await {
            Err(error)
                if error.to_string().contains("database is locked")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            connected => return connected,
        }
    }
}

/// How long a SQLite connection waits for another's write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What every pool of this service has: no statement logging, and SQLite's file settings.
fn base_options(url: &str) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .test_before_acquire(false)
        .map_sqlx_sqlite_opts(|o| {
            o.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
        });
    options
}

/// Bounds the statements of a new MySQL/MariaDB connection: MariaDB's `max_statement_time`
/// (seconds, every statement), else MySQL's `max_execution_time` (milliseconds, reads only).
async fn mysql_statement_timeout(
    connection: &mut sea_orm::sqlx::MySqlConnection,
    timeout: Duration,
) -> Result<(), sea_orm::sqlx::Error> {
    use sea_orm::sqlx::{AssertSqlSafe, Executor as _, raw_sql};
    // Numbers formatted here, not user input.
    let mariadb = format!(
        "SET SESSION max_statement_time = {:.3}",
        timeout.as_secs_f64()
    );
    if connection
        .execute(raw_sql(AssertSqlSafe(mariadb)))
        .await
        .is_err()
    {
        let mysql = format!("SET SESSION max_execution_time = {}", timeout.as_millis());
        connection.execute(raw_sql(AssertSqlSafe(mysql))).await?;
    }
    Ok(())
}

/// Applies the pending migrations of `db` (reached at `url`) under the database's migration
/// lock, waiting up to [`MIGRATION_WAIT`] while another process holds it (see the module doc).
pub async fn migrate(db: &DatabaseConnection, url: &str) -> Result<(), DbErr> {
    match db.get_database_backend() {
        DatabaseBackend::Sqlite => migrate_sqlite(db).await,
        backend => migrate_with_session_lock(url, backend).await,
    }
}

/// SQLite: the migrations run in one `BEGIN IMMEDIATE` transaction, which holds the write
/// lock from its start (SQLite's DDL is transactional). A process that finds the lock taken
/// waits the busy timeout, then tries again until [`MIGRATION_WAIT`].
async fn migrate_sqlite(db: &DatabaseConnection) -> Result<(), DbErr> {
    let deadline = tokio::time::Instant::now() + MIGRATION_WAIT;
    let txn = loop {
        let error = match super::begin_write(db, None).await {
            Ok(txn) => break txn,
            Err(error) => super::StoreError::from(error),
        };
        if !error.is_transient() || tokio::time::Instant::now() >= deadline {
            return Err(match error {
                super::StoreError::Db(error) => error,
                other => DbErr::Custom(other.to_string()),
            });
        }
        tracing::info!("waiting for another process's migration");
        tokio::time::sleep(MIGRATION_POLL).await;
    };
    Migrator::up(&txn, None).await?;
    txn.commit().await
}

/// PostgreSQL and MySQL/MariaDB: a lock held by a session, so the migrations run on a pool of
/// exactly one connection that takes the lock, migrates and lets it go. No statement timeout
/// there: a migration may take long, and so may the wait.
async fn migrate_with_session_lock(url: &str, backend: DatabaseBackend) -> Result<(), DbErr> {
    let mut options = base_options(url);
    options
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(MIGRATION_WAIT);
    let session = Database::connect(options).await?;
    let migrated = async {
        take_migration_lock(&session, backend).await?;
        let applied = Migrator::up(&session, None).await;
        // Closing the session would release the lock too; say it, so that waiters go on now.
        let released = session.execute_raw(unlock_statement(backend)).await;
        applied.and(released.map(|_| ()))
    }
    .await;
    session.close().await?;
    migrated
}

/// Waits until this session holds the migration lock.
async fn take_migration_lock(
    session: &DatabaseConnection,
    backend: DatabaseBackend,
) -> Result<(), DbErr> {
    let deadline = tokio::time::Instant::now() + MIGRATION_WAIT;
    let mut told = false;
    loop {
        let row = session
            .query_one_raw(try_lock_statement(backend))
            .await?
            .ok_or_else(|| DbErr::Custom("the migration lock query returned nothing".into()))?;
        let taken = match backend {
            DatabaseBackend::Postgres => row.try_get_by_index::<bool>(0)?,
            _ => row.try_get_by_index::<Option<i64>>(0)? == Some(1),
        };
        if taken {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DbErr::Custom(format!(
                "another process held the migration lock for more than {MIGRATION_WAIT:?}"
            )));
        }
        if !told {
            tracing::info!("waiting for another process's migration");
            told = true;
        }
        tokio::time::sleep(MIGRATION_POLL).await;
    }
}

/// The MySQL/MariaDB lock name: named locks are server-wide, so it names the database.
const MYSQL_LOCK_NAME: &str = "LEFT(CONCAT('isg_migrate:', DATABASE()), 64)";

fn try_lock_statement(backend: DatabaseBackend) -> Statement {
    match backend {
        DatabaseBackend::Postgres => Statement::from_sql_and_values(
            backend,
            "SELECT pg_try_advisory_lock($1)",
            [Value::from(PG_MIGRATION_LOCK)],
        ),
        _ => Statement::from_string(
            backend,
            format!("SELECT CAST(GET_LOCK({MYSQL_LOCK_NAME}, 0) AS SIGNED)"),
        ),
    }
}

fn unlock_statement(backend: DatabaseBackend) -> Statement {
    match backend {
        DatabaseBackend::Postgres => Statement::from_sql_and_values(
            backend,
            "SELECT pg_advisory_unlock($1)",
            [Value::from(PG_MIGRATION_LOCK)],
        ),
        _ => Statement::from_string(backend, format!("DO RELEASE_LOCK({MYSQL_LOCK_NAME})")),
    }
}

/// How busy the pool is right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolFigures {
    /// Connections open, idle or in use.
    pub open: u32,
    /// Open connections waiting in the pool.
    pub idle: usize,
    /// The most connections the pool opens (`DATABASE_MAX_CONNECTIONS`).
    pub max: u32,
}

/// The pool's figures; `None` for a connection that is not a SQLx pool.
pub fn pool_figures(db: &DatabaseConnection) -> Option<PoolFigures> {
    // Each `get_*_connection_pool` panics for another engine: match the engine first.
    macro_rules! figures {
        ($pool:expr) => {{
            let pool = $pool;
            PoolFigures {
                open: pool.size(),
                idle: pool.num_idle(),
                max: pool.options().get_max_connections(),
            }
        }};
    }
    Some(match &db.inner {
        DatabaseConnectionType::SqlxPostgresPoolConnection(_) => {
            figures!(db.get_postgres_connection_pool())
        }
        DatabaseConnectionType::SqlxMySqlPoolConnection(_) => {
            figures!(db.get_mysql_connection_pool())
        }
        DatabaseConnectionType::SqlxSqlitePoolConnection(_) => {
            figures!(db.get_sqlite_connection_pool())
        }
        _ => return None,
    })
}
