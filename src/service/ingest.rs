//! Ingestion use cases: partners and their URL rewrite rules, importing a batch of partner
//! deliveries, and retiring what a snapshot feed no longer contains.
//!
//! An import batch is one change through the write kernel ([`super::write`]): lock the batch's hotels, read what the catalog knows in
//! a few statements, decide every item in order ([`plan`]), write the rows in multi-row
//! statements, curate the touched hotels, and write one audit row and the outbox events. A
//! rejected item changes nothing; the accepted ones commit. A batch that changes nothing (a
//! feed seen before) writes no audit row and no event and bumps no version; it only refreshes
//! "last seen" times, which is what a snapshot import retires by.
//!
//! Concurrent imports of the same URLs are settled by the database (see
//! [`crate::store::ingest`]): the losing transaction is rolled back and run again from the
//! start, as are transactions that hit a deadlock or a busy database.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::auth::Scope;
use super::events;
use super::write::{Caller, UserError, UserErrorCode, Writer, retrying, use_case_error};
use crate::domain::catalog::{HotelId, ImageId, ParseError, PartnerId, PartnerKind};
use crate::domain::ingest::{
    Delivery, ImageRef, NO_ACTIVE_SOURCE, Outcome, Plan, RawItem, Rejection, plan,
    validate_allowing,
};
use crate::domain::url::{Rewrites, UrlRewrite};
use crate::store::ingest::{self as store, PartnerFeed};
use crate::store::journal::{AuditEntry, OutboxEvent};
use crate::store::manage::linked_hotels;
use crate::store::{PartnerRecord, StoreError};

use_case_error!(
    /// How an ingestion use case failed.
    IngestError
);

pub type IngestResult<T> = Result<T, IngestError>;

/// Most items one `importImages` call takes.
pub const MAX_IMPORT_ITEMS: usize = 1_000;
/// Most items one batch of the import command takes. Its large key lists (URL keys, legacy IDs,
/// hotels to lock and curate) travel as one parameter each (`store::bulk::in_keys`); the few
/// plain `IN` lists left (hotels left without an image, revived images) stay under SQLite's
/// 32,766 bind parameters.
pub const MAX_BATCH_ITEMS: usize = 15_000;
/// Most URL rewrite rules of one partner.
pub const MAX_REWRITES: usize = 50;
/// Longest partner name, in characters (its column's width).
pub const MAX_PARTNER_NAME: usize = 200;
/// Sources retired per transaction by a snapshot import.
const RETIRE_CHUNK: u64 = 1_000;

/// What happened to one item of an import.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportResult {
    /// The item's position in the batch.
    pub index: usize,
    pub outcome: Outcome,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The image it is (none when rejected).
    pub image: Option<ImageId>,
}

/// A batch of one partner's items, validated and waiting for its transaction.
#[derive(Debug)]
pub struct Prepared {
    partner: PartnerId,
    validated: Vec<Result<Delivery, Rejection>>,
}

/// A partner as an admin defines it.
#[derive(Debug, Clone)]
pub struct PartnerInput {
    pub id: PartnerId,
    pub name: String,
    pub kind: PartnerKind,
    pub url_rewrites: Vec<UrlRewrite>,
}

/// What retiring a partner's unseen sources did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retirement {
    /// Sources retired.
    pub sources: u64,
    /// Images that went inactive (no active source left).
    pub images: u64,
    /// Hotels whose gallery or main image changed.
    pub hotels: u64,
}

/// The phases of an import batch, as [`Profile`] times them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Validating items and canonicalizing their URLs (CPU).
    Validate,
    /// Locking (and creating) the batch's hotels.
    Lock,
    /// Reading what the catalog knows of the batch.
    Known,
    /// Deciding every item (CPU).
    Plan,
    /// Writing images, tags, links, sources, deliveries, legacy IDs.
    Write,
    /// Curating the touched hotels (reads and hotel rows).
    Curate,
    /// Audit row, outbox events and the commit.
    Commit,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Validate,
        Phase::Lock,
        Phase::Known,
        Phase::Plan,
        Phase::Write,
        Phase::Curate,
        Phase::Commit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Validate => "validate",
            Phase::Lock => "lock",
            Phase::Known => "known",
            Phase::Plan => "plan",
            Phase::Write => "write",
            Phase::Curate => "curate",
            Phase::Commit => "commit",
        }
    }
}

/// Time spent per [`Phase`] by an ingestor's import batches since it was made (all attempts,
/// retried ones included): what the import command reports as its profile.
#[derive(Debug, Default)]
pub struct Profile {
    nanos: [AtomicU64; Phase::ALL.len()],
}

impl Profile {
    fn add(&self, phase: Phase, since: Instant) -> Instant {
        let now = Instant::now();
        let nanos = u64::try_from((now - since).as_nanos()).unwrap_or(u64::MAX);
        self.nanos[phase as usize].fetch_add(nanos, Ordering::Relaxed);
        now
    }

    /// Seconds per phase, in [`Phase::ALL`] order.
    pub fn seconds(&self) -> Vec<(Phase, f64)> {
        Phase::ALL
            .iter()
            .map(|p| {
                (
                    *p,
                    self.nanos[*p as usize].load(Ordering::Relaxed) as f64 / 1e9,
                )
            })
            .collect()
    }
}

/// Imports partner deliveries into the catalog.
#[derive(Clone, Debug)]
pub struct Ingestor {
    writer: Writer,
    profile: Arc<Profile>,
    /// Hosts taken whatever address they name (`FETCH_ALLOW_HOSTS`: tests, local setups).
    allow_hosts: Arc<Vec<String>>,
}

impl Ingestor {
    pub fn new(writer: Writer) -> Self {
        Self {
            writer,
            profile: Arc::default(),
            allow_hosts: Arc::default(),
        }
    }

    /// The same ingestor, taking partner URLs of `hosts` whatever address they name (the
    /// processing workers fetch them only when `FETCH_ALLOW_HOSTS` lists them too).
    pub fn allowing_hosts(mut self, hosts: &[String]) -> Self {
        self.allow_hosts = Arc::new(hosts.to_vec());
        self
    }

    /// Time spent per phase of import batches so far.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Renews the database's statistics of the tables imports write (see
    /// [`store::refresh_statistics`]): for bulk imports, as the catalog grows.
    pub async fn refresh_statistics(&self) -> IngestResult<()> {
        Ok(store::refresh_statistics(self.writer.store().connection()).await?)
    }

    /// Creates or updates a partner and its URL rewrite rules (admin). A change of kind
    /// re-curates every hotel showing the partner's images (the kind ranks images).
    pub async fn upsert_partner(
        &self,
        caller: &Caller,
        input: PartnerInput,
    ) -> IngestResult<PartnerRecord> {
        caller.require(caller.actor.is_admin())?;
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > MAX_PARTNER_NAME {
            return Err(UserError::new(
                UserErrorCode::InvalidInput,
                &["name"],
                format!("1 to {MAX_PARTNER_NAME} characters"),
            )
            .into());
        }
        check_rewrites(&input.url_rewrites)?;
        let record = PartnerRecord {
            id: input.id,
            name: name.to_owned(),
            kind: input.kind,
        };
        let mut change = self.writer.begin().await?;
        let previous =
            store::upsert_partner(change.txn(), &record, &input.url_rewrites, change.now()).await?;
        let hotels = match previous {
            Some(kind) if kind != record.kind => {
                store::hotels_of_partner(change.txn(), record.id).await?
            }
            _ => Vec::new(),
        };
        change.curate(&hotels).await?;
        let mut entry = caller
            .audit(
                "upsertPartner",
                json!({ "partnerId": record.id.to_string() }),
            )
            .with_after(json!({
                "name": record.name,
                "kind": record.kind.as_str(),
                "urlRewrites": input.url_rewrites,
            }));
        if let Some(kind) = previous {
            entry = entry.with_before(json!({ "kind": kind.as_str() }));
        }
        change.commit(Some(entry)).await?;
        Ok(record)
    }

    /// Imports one batch of `partner`'s deliveries: one result per item, in order (see the
    /// module doc). Importers may import for their own partner only; admins for any.
    pub async fn import(
        &self,
        caller: &Caller,
        partner: PartnerId,
        items: &[RawItem],
    ) -> IngestResult<Vec<ImportResult>> {
        self.check(caller, partner, items, MAX_IMPORT_ITEMS)?;
        let rewrites = self.rewrites(partner).await?;
        let started = Instant::now();
        let validated = items
            .iter()
            .map(|item| validate_allowing(item, &rewrites, &self.allow_hosts))
            .collect();
        self.profile.add(Phase::Validate, started);
        self.import_prepared(caller, Prepared { partner, validated })
            .await
    }

    /// The first half of [`Self::import`] for a batch of the import command (up to
    /// [`MAX_BATCH_ITEMS`] items): checks the caller, reads the partner's rules and validates
    /// the items on a blocking thread, so that the command prepares the next batch while the
    /// current one is written. [`Self::import_prepared`] does the rest.
    pub async fn prepare_batch(
        &self,
        caller: &Caller,
        partner: PartnerId,
        items: Vec<RawItem>,
    ) -> IngestResult<Prepared> {
        self.check(caller, partner, &items, MAX_BATCH_ITEMS)?;
        let rewrites = self.rewrites(partner).await?;
        let profile = self.profile.clone();
        let allow_hosts = self.allow_hosts.clone();
        let validated = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let validated = items
                .iter()
                .map(|item| validate_allowing(item, &rewrites, &allow_hosts))
                .collect();
            profile.add(Phase::Validate, started);
            validated
        })
        .await
        .map_err(|e| {
            StoreError::Corrupt(ParseError {
                what: "validation of an import batch",
                value: e.to_string(),
            })
        })?;
        Ok(Prepared { partner, validated })
    }

    /// Imports a batch validated by [`Self::prepare_batch`] (or by [`Self::import`]): one
    /// result per item, in order.
    pub async fn import_prepared(
        &self,
        caller: &Caller,
        prepared: Prepared,
    ) -> IngestResult<Vec<ImportResult>> {
        let Prepared { partner, validated } = prepared;
        if validated.iter().all(Result::is_err) {
            let results = results(plan(validated, &Default::default()), &[]);
            // Nothing to write but the batch's audit row: its rejections are counted too.
            retrying(|| async {
                let change = self.writer.begin().await?;
                change
                    .commit(Some(batch_audit(caller, partner, &results)))
                    .await?;
                Ok::<_, IngestError>(())
            })
            .await?;
            return Ok(results);
        }
        retrying(|| self.import_once(caller, partner, validated.clone())).await
    }

    fn check(
        &self,
        caller: &Caller,
        partner: PartnerId,
        items: &[RawItem],
        max: usize,
    ) -> IngestResult<()> {
        caller.require(may_import(caller, partner))?;
        if items.len() > max {
            return Err(UserError::too_many("items", max, "items").into());
        }
        // The object store is this service's own: adopting its objects is a migration's
        // business (admins, and the import command, which runs as the system), never a
        // partner's, whose deliveries are URLs.
        let names_stored = items.iter().any(|item| {
            item.storage_key
                .as_deref()
                .is_some_and(|k| !k.trim().is_empty())
        });
        if names_stored {
            caller.require(caller.actor.is_admin())?;
        }
        Ok(())
    }

    /// The partner's compiled URL rewrite rules (a user error for an unknown partner).
    async fn rewrites(&self, partner: PartnerId) -> IngestResult<Rewrites> {
        let feed = self.partner_feed(partner).await?;
        Ok(Rewrites::compile(&feed.rewrites).map_err(|e| {
            StoreError::Corrupt(ParseError {
                what: "partner URL rewrite rules",
                value: e.to_string(),
            })
        })?)
    }

    async fn partner_feed(&self, partner: PartnerId) -> IngestResult<PartnerFeed> {
        store::partner_feed(self.writer.store().connection(), partner)
            .await?
            .ok_or_else(|| {
                UserError::new(UserErrorCode::NotFound, &["partnerId"], "no such partner").into()
            })
    }

    /// One run of an import batch's transaction.
    async fn import_once(
        &self,
        caller: &Caller,
        partner: PartnerId,
        validated: Vec<Result<Delivery, Rejection>>,
    ) -> IngestResult<Vec<ImportResult>> {
        let deliveries: Vec<&Delivery> = validated.iter().flatten().collect();
        let hotels: Vec<HotelId> = deliveries
            .iter()
            .map(|d| d.hotel)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let profile = &self.profile;
        let clock = Instant::now();
        let mut change = self.writer.begin().await?;
        let now = change.now();
        store::lock_hotels(change.txn(), &hotels, now).await?;
        let clock = profile.add(Phase::Lock, clock);
        let known = store::load_known(change.txn(), partner, &deliveries).await?;
        let clock = profile.add(Phase::Known, clock);
        let plan = plan(validated, &known);
        let clock = profile.add(Phase::Plan, clock);
        let created = store::write_plan(change.txn(), partner, &plan, now).await?;

        let accepted_hotels: BTreeSet<HotelId> =
            plan.accepted.iter().map(|a| a.delivery.hotel).collect();
        let empty: Vec<HotelId> = hotels
            .iter()
            .filter(|h| !accepted_hotels.contains(h))
            .copied()
            .collect();
        store::drop_empty_hotels(change.txn(), &empty).await?;

        let results = results(plan.clone(), &created);
        let clock = profile.add(Phase::Write, clock);
        // Every batch is audited, also one that changes nothing: its outcomes are counted
        // (`importOutcomes`, `catalog_imported_items`).
        let entry = batch_audit(caller, partner, &results);
        if !plan.changes_catalog() {
            // A batch seen before, or one whose every item was rejected: only "last seen"
            // times moved; nothing to announce.
            change.commit(Some(entry)).await?;
            profile.add(Phase::Commit, clock);
            return Ok(results);
        }
        let mut touched: BTreeSet<HotelId> = plan
            .accepted
            .iter()
            .filter(|a| a.outcome.changes_catalog())
            .map(|a| a.delivery.hotel)
            .collect();
        if !plan.revived.is_empty() {
            touched.extend(linked_hotels(change.txn(), &plan.revived).await?);
        }
        let touched: Vec<HotelId> = touched.into_iter().collect();
        change.curate(&touched).await?;
        let clock = profile.add(Phase::Curate, clock);
        for event in batch_events(&plan, &created, partner, now) {
            change.emit(event);
        }
        change.commit(Some(entry)).await?;
        profile.add(Phase::Commit, clock);
        Ok(results)
    }

    /// Retires `partner`'s active sources last seen before `seen_before` (a snapshot feed that
    /// no longer contains them): images left with no active source go inactive (unless a
    /// hotelier delivered them), and their hotels are curated. In transactions of
    /// [`RETIRE_CHUNK`] sources.
    pub async fn retire_unseen(
        &self,
        caller: &Caller,
        partner: PartnerId,
        seen_before: DateTime<Utc>,
    ) -> IngestResult<Retirement> {
        caller.require(may_import(caller, partner))?;
        let feed = self.partner_feed(partner).await?;
        let mut total = Retirement::default();
        if feed.kind == PartnerKind::Hotelier {
            // Hotelier uploads are never retired by a feed.
            return Ok(total);
        }
        loop {
            let chunk = retrying(|| self.retire_chunk(caller, partner, seen_before)).await?;
            if chunk.sources == 0 {
                return Ok(total);
            }
            total.sources += chunk.sources;
            total.images += chunk.images;
            total.hotels += chunk.hotels;
        }
    }

    async fn retire_chunk(
        &self,
        caller: &Caller,
        partner: PartnerId,
        seen_before: DateTime<Utc>,
    ) -> IngestResult<Retirement> {
        let mut change = self.writer.begin().await?;
        let now = change.now();
        let images =
            store::unseen_sources(change.txn(), partner, seen_before, RETIRE_CHUNK).await?;
        if images.is_empty() {
            return Ok(Retirement::default());
        }
        let sources = store::retire_sources(change.txn(), partner, &images, seen_before).await?;
        let deactivated = store::deactivate_orphans(change.txn(), &images, now).await?;
        // Every hotel of these images: a retired source may also change an image's rank.
        let hotels = linked_hotels(change.txn(), &images).await?;
        let hotels_changed = change.curate(&hotels).await?.len() as u64;
        let deactivated_ids: Vec<String> = deactivated.iter().map(ToString::to_string).collect();
        let entry = caller
            .audit("retireSources", json!({ "partnerId": partner.to_string() }))
            .with_after(json!({
                "retiredSources": sources,
                "deactivatedImageIds": deactivated_ids,
            }));
        for image in &deactivated {
            change.emit(events::status_event(
                *image,
                false,
                Some(NO_ACTIVE_SOURCE),
                None,
                now,
            ));
        }
        change.commit(Some(entry)).await?;
        Ok(Retirement {
            sources,
            images: deactivated.len() as u64,
            hotels: hotels_changed,
        })
    }
}

fn may_import(caller: &Caller, partner: PartnerId) -> bool {
    caller.actor.is_admin()
        || (caller.actor.has(Scope::Import) && caller.actor.partner_id == Some(partner))
}

/// Every rule must compile; a bad one is named by its position and part.
fn check_rewrites(rules: &[UrlRewrite]) -> Result<(), UserError> {
    if rules.len() > MAX_REWRITES {
        return Err(UserError::new(
            UserErrorCode::TooManyItems,
            &["urlRewrites"],
            format!("at most {MAX_REWRITES} rules"),
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        let Err(error) = Rewrites::compile(std::slice::from_ref(rule)) else {
            continue;
        };
        // The pattern alone decides whether the regex is at fault; else the replacement is.
        let pattern_only = UrlRewrite {
            pattern: rule.pattern.clone(),
            replacement: String::new(),
        };
        let part = if Rewrites::compile(&[pattern_only]).is_err() {
            "pattern"
        } else {
            "replacement"
        };
        return Err(UserError::new(
            UserErrorCode::InvalidInput,
            &["urlRewrites", &i.to_string(), part],
            error.to_string(),
        ));
    }
    Ok(())
}

/// One result per item, in order; `created` holds the IDs of the plan's new images.
fn results(plan: Plan, created: &[ImageId]) -> Vec<ImportResult> {
    let resolve = |image: ImageRef| resolve(image, created);
    let mut out: Vec<ImportResult> = plan
        .accepted
        .into_iter()
        .map(|a| ImportResult {
            index: a.index,
            outcome: a.outcome,
            reason: None,
            image: resolve(a.image),
        })
        .chain(plan.rejected.into_iter().map(|(index, why)| ImportResult {
            index,
            outcome: Outcome::Rejected,
            reason: Some(why.to_string()),
            image: None,
        }))
        .collect();
    out.sort_by_key(|r| r.index);
    out
}

/// Counts per outcome, for the audit row.
/// The audit row of an import batch: its partner, and how many items had each outcome (what
/// `importOutcomes` and the `catalog_imported_items` gauge count).
fn batch_audit(caller: &Caller, partner: PartnerId, results: &[ImportResult]) -> AuditEntry {
    caller
        .audit("importImages", json!({ "partnerId": partner.to_string() }))
        .with_after(summary(results))
}

fn summary(results: &[ImportResult]) -> serde_json::Value {
    let counts: serde_json::Map<String, serde_json::Value> = Outcome::ALL
        .iter()
        .map(|outcome| {
            let n = results.iter().filter(|r| r.outcome == *outcome).count();
            (outcome.as_str().to_owned(), json!(n))
        })
        .collect();
    serde_json::Value::Object(counts)
}

/// The ID of a plan's image; `created` holds the IDs of the plan's new images.
fn resolve(image: ImageRef, created: &[ImageId]) -> Option<ImageId> {
    match image {
        ImageRef::Known(id) => Some(id),
        ImageRef::New(n) => created.get(n).copied(),
    }
}

/// `ImageCreated` for every new image, `ImageLinked` for every image newly shown for a hotel,
/// and `ImageActivated` for every revived one.
fn batch_events(
    plan: &Plan,
    created: &[ImageId],
    partner: PartnerId,
    now: DateTime<Utc>,
) -> Vec<OutboxEvent> {
    let mut out = Vec::new();
    for (n, image) in created.iter().enumerate() {
        if let Some(creator) = plan.creator(n) {
            out.push(events::image_created(
                *image,
                creator.delivery.canonical_url.as_str(),
                partner,
                creator.delivery.hotel,
                now,
            ));
        }
    }
    out.extend(
        plan.accepted
            .iter()
            .filter(|item| item.outcome == Outcome::Linked)
            .filter_map(|item| {
                let image = resolve(item.image, created)?;
                Some(events::image_linked(
                    image,
                    partner,
                    item.delivery.hotel,
                    now,
                ))
            }),
    );
    out.extend(
        plan.revived
            .iter()
            .map(|image| events::status_event(*image, true, None, None, now)),
    );
    out
}
