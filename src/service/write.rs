//! The write kernel: how every change commits. Management, uploads, ingestion and curation
//! runs all go through it, so the rules below hold for each of them in one place.
//!
//! A change is one database transaction ([`Writer::begin`] opens a [`Change`]):
//!
//! 1. The use case checks its caller ([`Caller`]) and its input; an expected failure is a
//!    [`UserError`] and changes nothing (dropping a [`Change`] rolls it back).
//! 2. It writes its rows on [`Change::txn`].
//! 3. [`Change::curate`] curates the hotels it touched, in the same transaction: the pure rules
//!    ([`crate::domain::curation::republish`]) decide each hotel's published view, the store
//!    writes the rows of those that changed. The published view is never behind the data.
//! 4. [`Change::commit`] appends the audit row and the outbox events (the use case's own, plus
//!    `MainImageChanged` / `GalleryChanged` for every curation change), counts the change under
//!    the request's idempotency key when it has one, commits, and then tells [`Freshness`] what
//!    the change made stale: caches drop it, the outbox relay wakes up.
//!
//! A transaction that fails transiently (a deadlock, a serialization failure, SQLite's busy
//! database, a concurrent import of the same URL) is run again whole by [`retrying`]: every use
//! case is written so that running it again from the start is safe.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

use super::auth::{Actor, Refused, Scope};
use super::events;
use super::freshness::Freshness;
use crate::cache::CacheKey;
use crate::domain::catalog::{HotelId, MAX_TEXT_CHARS, Score, text_fits};
use crate::domain::curation::{PublishedChange, Rules, republish};
use crate::store::idempotency::{self, Claim};
use crate::store::journal::{self, AuditEntry, OutboxEvent};
use crate::store::{Store, StoreError, StoreResult, WriteTxn, curation};

/// Hotels curated per statement batch when one change touches many of them.
const CURATION_CHUNK: usize = 500;
/// Runs of one transaction before a transient failure is given up on.
const MAX_ATTEMPTS: u32 = 6;

/// Who asks, and the request it came with (for the audit log).
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: Actor,
    pub request_id: Option<String>,
    /// The request's idempotency key, held by this attempt: every change of the request
    /// commits under it (see [`super::idempotency`]).
    pub idempotency: Option<Claim>,
}

impl Caller {
    /// The service acting on its own behalf: the import command, seeding, recomputation.
    pub fn system(name: &str) -> Self {
        Self {
            actor: Actor {
                subject: Some(name.to_owned()),
                scopes: [Scope::Admin].into(),
                ..Actor::default()
            },
            request_id: None,
            idempotency: None,
        }
    }

    /// Who the audit log names: the token's subject.
    pub fn name(&self) -> String {
        self.actor
            .subject
            .clone()
            .unwrap_or_else(|| "anonymous".to_owned())
    }

    /// `Ok` when `allowed`, else the caller's [`Refused`] (every use case error converts it).
    pub fn require(&self, allowed: bool) -> Result<(), Refused> {
        self.actor.require(allowed)
    }

    /// An audit row of `operation` by this caller (before and after are the use case's).
    pub fn audit(&self, operation: &'static str, entity_ids: serde_json::Value) -> AuditEntry {
        AuditEntry {
            actor: self.name(),
            operation,
            entity_ids,
            before: None,
            after: None,
            request_id: self.request_id.clone(),
            idempotency: self.idempotency.clone(),
        }
    }
}

/// A stable code for an expected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserErrorCode {
    NotFound,
    StaleVersion,
    ImageNotLinked,
    ImageInactive,
    ImageNotEligible,
    InvalidInput,
    TooManyItems,
    /// An upload that is no image (SVG, HTML, text, ...).
    NotAnImage,
    /// An upload in an image format that is not accepted (AVIF, GIF, ...).
    UnsupportedFormat,
    /// An upload that does not decode (truncated, corrupt, a polyglot).
    DecodeError,
    /// An upload whose header claims more pixels than accepted.
    TooManyPixels,
    /// The image is shown for the hotel, but not as the hotel's upload.
    NotAnUpload,
    /// The picture was taken down (`purgeImage`) and cannot come back.
    Purged,
}

/// An expected failure: where in the input (`field`, a path), and why. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    pub code: UserErrorCode,
    pub field: Vec<String>,
    pub message: String,
}

impl UserError {
    pub fn new(code: UserErrorCode, field: &[&str], message: impl Into<String>) -> Self {
        Self {
            code,
            field: field.iter().map(|s| (*s).to_owned()).collect(),
            message: message.into(),
        }
    }

    /// The same failure at position `index` of the list its field names
    /// (`["imageIds"]` becomes `["imageIds", "3"]`).
    pub fn at(mut self, index: usize) -> Self {
        self.field
            .insert(1.min(self.field.len()), index.to_string());
        self
    }

    /// The same failure inside item `index` of a batch (`["imageId"]` becomes
    /// `["items", "3", "imageId"]`).
    pub fn in_item(mut self, index: usize) -> Self {
        self.field
            .splice(0..0, ["items".to_owned(), index.to_string()]);
        self
    }

    /// `TOO_MANY_ITEMS` for a list longer than `max`.
    pub fn too_many(field: &str, max: usize, what: &str) -> Self {
        Self::new(
            UserErrorCode::TooManyItems,
            &[field],
            format!("at most {max} {what}"),
        )
    }
}

/// A caption or reason longer than [`MAX_TEXT_CHARS`] is refused.
pub fn check_text(value: Option<&str>, field: &str) -> Result<(), UserError> {
    match value {
        Some(text) if !text_fits(text) => Err(UserError::new(
            UserErrorCode::InvalidInput,
            &[field],
            format!("at most {MAX_TEXT_CHARS} characters"),
        )),
        _ => Ok(()),
    }
}

/// A score (quality, confidence) outside 0..1 is refused.
pub fn check_score(value: f64, field: &[&str]) -> Result<Score, UserError> {
    Score::new(value).ok_or_else(|| {
        UserError::new(
            UserErrorCode::InvalidInput,
            field,
            "must be between 0 and 1",
        )
    })
}

/// How a use case failed, sorted the way its callers treat it: a refusal of the caller, an
/// expected failure to report in `userErrors`, or an unexpected one to log and hide. Every use
/// case has an error enum of its own (what can go wrong differs); each converts into this.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error(transparent)]
    User(#[from] UserError),
    #[error("unexpected failure")]
    Unexpected(#[source] StoreError),
}

/// What the kernel needs of a use case's error enum: store failures convert into it, and it
/// says whether it is a transient one ([`retrying`] runs the transaction again).
pub trait UseCaseError: From<StoreError> + Into<Failure> {
    fn store_error(&self) -> Option<&StoreError>;

    fn is_transient(&self) -> bool {
        self.store_error().is_some_and(StoreError::is_transient)
    }
}

/// A bare store failure: for changes with no caller and no user errors (a `republish` batch),
/// so that they too run again on a transient failure.
impl UseCaseError for StoreError {
    fn store_error(&self) -> Option<&StoreError> {
        Some(self)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self::Unexpected(error)
    }
}

/// Declares the error enum of a use case whose failures are the usual three: the caller is
/// refused ([`Refused`]), an expected failure ([`UserError`]), or an unexpected store
/// failure. Each use case names its own, so a signature says which use case failed; one whose
/// failures differ writes its enum by hand and implements [`UseCaseError`] and
/// `Into<Failure>` itself.
macro_rules! use_case_error {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, thiserror::Error)]
        pub enum $name {
            #[error(transparent)]
            Refused(#[from] $crate::service::auth::Refused),
            #[error(transparent)]
            User(#[from] $crate::service::write::UserError),
            #[error("unexpected failure")]
            Unexpected(#[from] $crate::store::StoreError),
        }

        impl From<sea_orm::DbErr> for $name {
            fn from(error: sea_orm::DbErr) -> Self {
                $name::Unexpected($crate::store::StoreError::Db(error))
            }
        }

        impl From<$name> for $crate::service::write::Failure {
            fn from(error: $name) -> Self {
                match error {
                    $name::Refused(refusal) => Self::Refused(refusal),
                    $name::User(error) => Self::User(error),
                    $name::Unexpected(cause) => Self::Unexpected(cause),
                }
            }
        }

        impl $crate::service::write::UseCaseError for $name {
            fn store_error(&self) -> Option<&$crate::store::StoreError> {
                match self {
                    $name::Unexpected(cause) => Some(cause),
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use use_case_error;

/// Runs `attempt` again while it fails with a transient store error (a deadlock, a
/// serialization failure, SQLite's busy database, a concurrent insert of the same key),
/// backing off a little: every use case is one transaction that can simply run again.
pub async fn retrying<T, E, F, Fut>(mut attempt: F) -> Result<T, E>
where
    E: UseCaseError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(error) if error.is_transient() && tries < MAX_ATTEMPTS => {
                if let Some(cause) = error.store_error() {
                    tracing::debug!(error = %cause, tries, "transient failure; running the transaction again");
                }
                let jitter = u64::from(rand::random::<u8>() % 20);
                tokio::time::sleep(Duration::from_millis(10 * u64::from(tries) + jitter)).await;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// Opens changes: the store, the curation rules and where committed changes are announced.
#[derive(Clone, Debug)]
pub struct Writer {
    store: Store,
    rules: Arc<Rules>,
    /// Told what each committed change made stale.
    freshness: Freshness,
}

impl Writer {
    pub fn new(store: Store, rules: Rules, freshness: Freshness) -> Self {
        Self {
            store,
            rules: Arc::new(rules),
            freshness,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Opens a change: a write transaction (on SQLite it takes the write lock at once) and
    /// the time every row of the change is stamped with.
    pub async fn begin(&self) -> StoreResult<Change> {
        Ok(Change {
            txn: self.store.begin_write().await?,
            now: Utc::now(),
            writer: self.clone(),
            published: Vec::new(),
            events: Vec::new(),
        })
    }
}

/// One change in progress (see the module doc). Dropped without [`Change::commit`], it rolls
/// back.
pub struct Change {
    txn: WriteTxn,
    now: DateTime<Utc>,
    writer: Writer,
    /// Every hotel whose published row the change wrote, in order.
    published: Vec<PublishedChange>,
    /// The use case's own events.
    events: Vec<OutboxEvent>,
}

impl Change {
    pub fn txn(&self) -> &WriteTxn {
        &self.txn
    }

    /// The time of the change.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    pub fn rules(&self) -> &Rules {
        &self.writer.rules
    }

    /// Curates `hotels` on the change's transaction and writes the published view of each
    /// one that changed; returns those changes (also kept for the events and the caches).
    pub async fn curate(&mut self, hotels: &[HotelId]) -> StoreResult<&[PublishedChange]> {
        let first = self.published.len();
        let changes = curate(&self.txn, &self.writer.rules, hotels, self.now).await?;
        self.published.extend(changes);
        Ok(&self.published[first..])
    }

    /// Whether curation changed any hotel so far.
    pub fn has_curation_changes(&self) -> bool {
        !self.published.is_empty()
    }

    /// Adds an event of the change to its outbox rows.
    pub fn emit(&mut self, event: OutboxEvent) {
        self.events.push(event);
    }

    /// Writes the audit row (`None`: a change that changed nothing worth auditing) and every
    /// event, counts the change under the request's idempotency key, commits, then tells the
    /// caches what is stale and wakes the outbox relay.
    ///
    /// With an idempotency key, a commit whose reply was lost (the connection broke after
    /// `COMMIT` was sent) is not a failure when the key's count shows that it was applied.
    pub async fn commit(self, audit: Option<AuditEntry>) -> StoreResult<()> {
        self.commit_audited(audit.into_iter().collect()).await
    }

    /// [`Change::commit`] with one audit row per entry of `audits`: a change that applies the
    /// outcomes of several operations at once (a group of processed images) audits each one.
    pub async fn commit_audited(self, audits: Vec<AuditEntry>) -> StoreResult<()> {
        let Change {
            txn,
            now,
            writer,
            published,
            mut events,
        } = self;
        events.extend(events::curation_events(&published, now));
        let stale = stale_keys(&published, &events);
        let claim = audits.iter().find_map(|a| a.idempotency.clone());
        for audit in audits {
            journal::append_audit(&txn, audit, now).await?;
        }
        let has_events = !events.is_empty();
        if has_events {
            journal::append_events(&txn, events, now).await?;
        }
        let counted = match &claim {
            Some(claim) => Some((claim, count_change(&txn, claim).await?)),
            None => None,
        };
        if let Err(error) = txn.commit().await {
            let applied = match counted {
                Some((claim, count)) => committed_anyway(&writer.store, claim, count).await,
                None => false,
            };
            if !applied {
                return Err(error.into());
            }
            tracing::warn!(error = %error, "the commit's reply was lost, but the idempotency key shows it applied");
        }
        // A change that changed nothing published (a re-sent import batch, a recomputation that
        // found every hotel as it was) has nothing to announce.
        if has_events || !stale.is_empty() {
            writer.freshness.committed(&stale).await;
        }
        Ok(())
    }
}

/// Counts the change under `claim` on its transaction; returns the key's count with it.
/// Refused when the key was taken over by a later attempt (this one's hold ran out).
async fn count_change(txn: &WriteTxn, claim: &Claim) -> StoreResult<i32> {
    if !idempotency::count_change(txn, claim).await? {
        return Err(StoreError::KeyTakenOver);
    }
    idempotency::changes(txn, claim).await
}

/// Whether a commit that failed was applied all the same: the key's count, read again on a
/// fresh connection, includes the change (`count`).
async fn committed_anyway(store: &Store, claim: &Claim, count: i32) -> bool {
    match idempotency::changes(store.connection(), claim).await {
        Ok(now) => now >= count,
        Err(error) => {
            tracing::warn!(error = %error, "cannot tell whether a failed commit applied");
            false
        }
    }
}

/// Curates `hotels` on `conn` (a change's transaction, or a seeding one) in chunks: loads the
/// inputs, lets the rules decide each hotel's view, writes those that changed.
pub async fn curate<C: ConnectionTrait>(
    conn: &C,
    rules: &Rules,
    hotels: &[HotelId],
    now: DateTime<Utc>,
) -> StoreResult<Vec<PublishedChange>> {
    let mut changes = Vec::new();
    for chunk in hotels.chunks(CURATION_CHUNK) {
        let inputs = curation::load_inputs(conn, chunk).await?;
        let unique: BTreeSet<HotelId> = chunk.iter().copied().collect();
        let mut records = Vec::new();
        for hotel in unique {
            if let Some((record, change)) = republish(hotel, inputs.of(hotel), rules) {
                records.push(record);
                changes.push(change);
            }
        }
        curation::save_hotels(conn, &records, now).await?;
    }
    Ok(changes)
}

/// What a change made stale: every hotel whose published row it wrote, and every image an
/// event names (the events name each image whose stored fields changed).
fn stale_keys(changes: &[PublishedChange], events: &[OutboxEvent]) -> Vec<CacheKey> {
    let hotels = changes.iter().map(|c| CacheKey::Hotel(c.hotel_id));
    let images = events
        .iter()
        .filter(|e| e.aggregate_type == events::IMAGE)
        .filter_map(|e| e.aggregate_id.parse().ok())
        .map(CacheKey::Image);
    let keys: BTreeSet<CacheKey> = hotels.chain(images).collect();
    keys.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_errors_point_into_lists_and_batch_items() {
        let pin = UserError::new(UserErrorCode::ImageNotLinked, &["imageIds"], "x").at(3);
        assert_eq!(pin.field, ["imageIds", "3"]);
        let item = UserError::new(UserErrorCode::NotFound, &["imageId"], "x").in_item(2);
        assert_eq!(item.field, ["items", "2", "imageId"]);
    }

    #[test]
    fn texts_and_scores_are_checked_by_the_catalog_rules() {
        let long = "é".repeat(MAX_TEXT_CHARS + 1);
        assert!(check_text(Some(&"é".repeat(MAX_TEXT_CHARS)), "caption").is_ok());
        assert_eq!(
            check_text(Some(&long), "caption").map_err(|e| e.field),
            Err(vec!["caption".to_owned()])
        );
        assert!(check_score(1.0, &["qualityScore"]).is_ok());
        for bad in [-0.01, 1.01, f64::NAN] {
            assert!(check_score(bad, &["qualityScore"]).is_err(), "{bad}");
        }
    }
}
