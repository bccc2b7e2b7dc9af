//! Opening the database pool with settings fit for a service, counting its statements, and
//! reading its figures for the metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DatabaseConnectionType, DbErr};

/// Number of SQL statements the pool has executed: exported as a metric, and what the tests
/// use to prove that a request costs one statement per table.
#[derive(Debug, Clone, Default)]
pub struct StatementCounter(Arc<AtomicU64>);

impl StatementCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Connects to `url` (sqlite:, postgres:, mysql:) with a pool of `max_connections`.
///
/// Statement logging is off (it would log every query) and connections are not pinged on
/// every checkout (one extra round trip per query). SQLite runs in WAL mode with a busy
/// timeout so that readers never block the writer.
pub async fn connect(
    url: &str,
    max_connections: u32,
    statement_timeout: Duration,
) -> Result<(DatabaseConnection, StatementCounter), DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .test_before_acquire(false)
        .map_sqlx_sqlite_opts(|o| {
            o.create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
        });
    if !url.starts_with("sqlite") {
        options.statement_timeout(statement_timeout);
    }
    let mut db = Database::connect(options).await?;
    let counter = StatementCounter::default();
    let count = counter.0.clone();
    db.set_metric_callback(move |_| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    Ok((db, counter))
}

/// How busy the pool is right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolFigures {
    /// Connections open, idle or in use.
    pub open: u32,
    /// Open connections waiting in the pool.
    pub idle: usize,
}

/// The pool's figures; `None` for a connection that is not a SQLx pool.
pub fn pool_figures(db: &DatabaseConnection) -> Option<PoolFigures> {
    // Each `get_*_connection_pool` panics for another engine: match the engine first.
    let (open, idle) = match &db.inner {
        DatabaseConnectionType::SqlxPostgresPoolConnection(_) => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        DatabaseConnectionType::SqlxMySqlPoolConnection(_) => {
            let pool = db.get_mysql_connection_pool();
            (pool.size(), pool.num_idle())
        }
        DatabaseConnectionType::SqlxSqlitePoolConnection(_) => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => return None,
    };
    Some(PoolFigures { open, idle })
}
