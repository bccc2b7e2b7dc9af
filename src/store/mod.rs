//! Persistence: batched reads and transactional writes over SeaORM.
//!
//! Every read takes a set of keys and costs one statement, whatever the number of keys, so
//! that the GraphQL loaders above it turn N lookups into one query per table. Rows leave this
//! layer as records with parsed domain types, never as SeaORM models.
//!
//! # Layout
//! - [`admin`]: the admin tool's reads: the audit log, hotels without a main image, reasons
//!   of deactivation.
//! - [`connect`]: opening the pool with service-friendly settings, a statement counter and
//!   the pool's figures.
//! - [`read`]: the batched reads of the read API.
//! - [`curation`]: what curation reads of a set of hotels, and the published views it writes.
//! - [`rows`]: the one place new catalog rows (images, links, sources, deliveries, tags) are
//!   built, for imports, uploads and seeding.
//! - [`manage`]: the writes of the management use cases and of uploads.
//! - [`merge`]: images merged by their bytes: the younger ID retired into the older one, and
//!   the lookups that keep retired IDs and URL keys resolving.
//! - [`journal`]: what every change appends in its transaction: its audit row and its outbox
//!   events.
//! - [`idempotency`]: idempotency keys of mutation requests: holds, changes counted under
//!   them, kept answers.
//! - [`objects`]: the object store behind uploads.
//! - [`bulk`]: multi-row writes (the rows as one JSON parameter) and key lists as one
//!   parameter, for seeding, imports and curation.
//! - [`ingest`]: partners, the reads and writes of an import batch, snapshot retirement.
//! - [`outbox`]: the outbox: events appended by changes; the relay's lock, unpublished events,
//!   marks, lag.
//! - [`stats`]: the catalog's business figures (`catalogStats`, the `catalog_*` gauges).
//! - [`stream`]: where relayed events go: the Redis stream, or the in-process bus.
//! - [`identity`]: the catalog's identity, which names everything kept in Redis.

pub mod admin;
pub mod bulk;
pub mod connect;
pub mod curation;
pub mod idempotency;
pub mod identity;
pub mod ingest;
pub mod journal;
pub mod manage;
pub mod merge;
pub mod objects;
pub mod outbox;
pub mod processing;
pub mod purge;
pub mod read;
pub mod republish;
pub mod rows;
pub mod search;
pub mod stats;
pub mod stream;
pub mod txn;

use chrono::{DateTime, Utc};
use sea_orm::{
    DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr, IsolationLevel,
    SqliteTransactionMode, TransactionOptions, TransactionTrait as _,
};

use crate::domain::catalog::{
    Category, HotelId, ImageId, ParseError, PartnerId, PartnerKind, Status,
};

pub use connect::{PoolFigures, StatementCounter, connect, pool_figures};
pub use txn::WriteTxn;

/// A persistence failure. The variants carry causes for the log; the client sees a generic text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Db(#[from] DbErr),
    /// A stored value no longer parses (a bug or a manual edit of the data).
    #[error("corrupt stored value")]
    Corrupt(#[from] ParseError),
    /// The object store failed (uploads).
    #[error("object store error: {0}")]
    Objects(String),
    /// A concurrent transaction created rows this one meant to create (an import of the same
    /// URL or legacy ID): the whole transaction must be rolled back and may be retried.
    #[error("a concurrent change got in the way")]
    Conflict,
    /// The idempotency key the change was to commit under was taken over by a later attempt
    /// of the same request (this one's hold ran out): the change must not commit.
    #[error("the idempotency key was taken over by a later attempt")]
    KeyTakenOver,
}

impl StoreError {
    /// Whether running the same transaction again may succeed: a [`StoreError::Conflict`], a
    /// deadlock or serialization failure, a lock wait timeout, or a busy SQLite database.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Conflict => true,
            StoreError::Db(error) => is_transient_db(error),
            StoreError::Corrupt(_) | StoreError::Objects(_) | StoreError::KeyTakenOver => false,
        }
    }
}

fn is_transient_db(error: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::mysql::MySqlDatabaseError;
    let (DbErr::Exec(RuntimeErr::SqlxError(cause)) | DbErr::Query(RuntimeErr::SqlxError(cause))) =
        error
    else {
        return false;
    };
    let sea_orm::sqlx::Error::Database(database) = cause.as_ref() else {
        return false;
    };
    if let Some(mysql) = database.try_downcast_ref::<MySqlDatabaseError>() {
        // 1213 deadlock, 1205 lock wait timeout.
        return matches!(mysql.number(), 1205 | 1213);
    }
    // PostgreSQL: serialization failure, deadlock. SQLite: BUSY, BUSY_RECOVERY,
    // BUSY_SNAPSHOT, LOCKED, LOCKED_SHAREDCACHE.
    matches!(
        database.code().as_deref(),
        Some("40001" | "40P01" | "5" | "261" | "517" | "6" | "262")
    )
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The handle on the database every layer above uses.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// Counts the statements of PostgreSQL write transactions, which SeaORM's own counting
    /// does not see (see [`txn`]).
    statements: Option<StatementCounter>,
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            statements: None,
        }
    }

    /// The same store, counting its write transactions' statements in `statements` (the
    /// counter [`connect`] returned with the connection).
    pub fn counting(mut self, statements: StatementCounter) -> Self {
        self.statements = Some(statements);
        self
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Begins a transaction that writes. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), waiting for it up to the busy timeout: a deferred transaction that read
    /// first would fail at its first write whenever another connection wrote since its read
    /// (`SQLITE_BUSY`, which the busy timeout does not cover). Other engines ignore the mode.
    /// On PostgreSQL the transaction can also `COPY` (see [`txn`]).
    pub async fn begin_write(&self) -> StoreResult<WriteTxn> {
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            let pool = self.db.get_postgres_connection_pool();
            let txn = WriteTxn::postgres(pool, "BEGIN".to_owned(), self.statements.clone());
            return Ok(txn.await?);
        }
        Ok(WriteTxn::sea_orm(begin_write(&self.db, None).await?))
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> StoreResult<()> {
        Ok(self.db.ping().await?)
    }
}

/// [`Store::begin_write`] on any connection, at `isolation` (the engine's default when
/// `None`; SQLite ignores it).
pub async fn begin_write(
    db: &DatabaseConnection,
    isolation: Option<IsolationLevel>,
) -> Result<DatabaseTransaction, DbErr> {
    let sqlite = db.get_database_backend() == DatabaseBackend::Sqlite;
    db.begin_with_options(TransactionOptions {
        isolation_level: isolation.filter(|_| !sqlite),
        access_mode: None,
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
    })
    .await
}

/// One image with the fields the read API serves.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageRecord {
    pub id: ImageId,
    pub canonical_url: String,
    pub storage_key: String,
    pub width: Option<i32>,
    pub height: Option<i32>,
    /// The image's own caption (partners, admins); a hotel's link may have its own.
    pub caption: Option<String>,
    /// The image's own alt text (admins).
    #[serde(default)]
    pub alt_text: Option<String>,
    pub category: Category,
    pub quality_score: Option<f64>,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One partner's delivery of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    pub partner_id: PartnerId,
    pub source_url: String,
    pub partner_image_ref: Option<String>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartnerRecord {
    pub id: PartnerId,
    pub name: String,
    pub kind: PartnerKind,
}

/// Which of a hotel's linked images to list. `status` is the status for that hotel: ACTIVE
/// when both the link and the image are active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LinkFilter {
    pub status: Option<Status>,
    pub category: Option<Category>,
}

/// A window of a list ordered by ID: the items after `after`, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub after: Option<i64>,
    pub limit: u64,
}

fn hotel_id(raw: i64) -> Result<HotelId, ParseError> {
    HotelId::new(raw).ok_or_else(|| corrupt("hotel ID", raw))
}

fn image_id(raw: i64) -> Result<ImageId, ParseError> {
    ImageId::new(raw).ok_or_else(|| corrupt("image ID", raw))
}

fn partner_id(raw: i64) -> Result<PartnerId, ParseError> {
    PartnerId::new(raw).ok_or_else(|| corrupt("partner ID", raw))
}

fn corrupt(what: &'static str, raw: impl ToString) -> ParseError {
    ParseError {
        what,
        value: raw.to_string(),
    }
}
