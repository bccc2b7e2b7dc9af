//! Processing partner images (issue 16): workers take PENDING images off the queue (the image
//! rows, see [`crate::store::processing`]), fetch their bytes safely ([`Fetcher`]), measure
//! them ([`measure`]), store them under a content-addressed key (the same [`Objects`] backend
//! as uploads), and then, in one change through the write kernel, turn the image READY with
//! its measured values, point its storage key at what was stored, re-curate its hotels and emit
//! `ImageProcessed`. An image whose import named a stored object (`adopted_key`, a migrated
//! catalog's file) is read from the store instead of fetched, measured the same way, and
//! served from where it is (its storage key becomes the adopted key; nothing is copied); a
//! missing object is FAILED with `OBJECT_MISSING`. When the measured bytes are those of another
//! live image, the two become one in the same change: the younger ID is retired into the older
//! one (see [`crate::store::merge`]), the hotels of both are re-curated, and `ImagesMerged` is
//! emitted. A refusal that can never succeed (not an image, too many pixels, a blocked
//! address, ...) turns it FAILED at once (`ImageFailed`); a failure that may pass (a timeout, a
//! 5xx or 429, the network) is tried again after an exponential backoff with jitter (or the
//! server's `Retry-After`), and FAILED after [`ProcessSettings::max_attempts`].
//!
//! A per-host limit ([`ProcessSettings::per_host`]) keeps one slow partner host from taking
//! every worker: a job whose host is busy goes back to the queue for a moment, uncounted.
//!
//! READY outcomes are committed in groups: a worker whose image is measured and stored queues
//! its outcome, and whichever worker holds the commit turn writes every outcome queued by then
//! in one change (one transaction, one curation of the hotels they share, one commit). An idle
//! queue commits at once, so grouping adds no wait; under load it divides the database's work
//! per image (see BENCHMARKS.md, "Image processing"). A group that cannot be written is written
//! again one image at a time, so one image's failure is its own.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};

use super::events;
use super::write::{Caller, Change, UserError, UserErrorCode, Writer, retrying, use_case_error};
use crate::domain::catalog::{HotelId, ImageId};
use crate::domain::measure::{MeasureLimits, Measured, Reason, measure};
use crate::domain::media::upload_storage_key;
use crate::fetch::{FetchError, Fetcher};
use crate::store::StoreError;
use crate::store::manage::linked_hotels;
use crate::store::merge;
use crate::store::objects::{Objects, ObjectsError, Stored};
pub use crate::store::processing::RetryScope;
use crate::store::processing::{self as queue, Job};

use_case_error!(
    /// How recording a processing outcome (or a retry) failed.
    ProcessError
);

/// How often the workers of a process read the queue's figures for the metrics: about as often
/// as Prometheus scrapes, not at every poll (they are counts, read by every replica).
const QUEUE_FIGURES_EVERY: Duration = Duration::from_secs(15);

/// Most images one retry may name by ID.
pub const MAX_RETRY_IDS: usize = 1_000;

/// How the workers run.
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    /// Workers in this process (0: none), and how many due images one claim takes (at least
    /// one): each worker gets one.
    pub workers: usize,
    /// Attempts before an image is FAILED.
    pub max_attempts: u32,
    /// How long a claimed image is held before another worker may take it.
    pub lease: Duration,
    /// Fetches running at once against one host, per process.
    pub per_host: usize,
    /// The first retry's wait; each further one doubles it (with jitter).
    pub retry_base: Duration,
    /// The longest wait between two attempts.
    pub retry_max: Duration,
    /// How often an idle worker looks at the queue.
    pub poll: Duration,
}

impl Default for ProcessSettings {
    fn default() -> Self {
        Self {
            workers: 2,
            max_attempts: 5,
            lease: Duration::from_secs(120),
            per_host: 4,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(6 * 3600),
            poll: Duration::from_secs(2),
        }
    }
}

/// What became of one claimed image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ready,
    /// Given up on, with the reason.
    Failed(Reason),
    /// Due again later, after a failure that may pass.
    Retry(Reason),
    /// Its host was busy: back to the queue, uncounted.
    Deferred,
    /// Another worker took the job over (this one's lease ran out): nothing written.
    LeaseLost,
}

impl Outcome {
    /// The label of the outcome in summaries and metrics.
    pub fn label(self) -> String {
        match self {
            Outcome::Ready => "READY".to_owned(),
            Outcome::Failed(reason) => format!("FAILED {reason}"),
            Outcome::Retry(reason) => format!("RETRY {reason}"),
            Outcome::Deferred => "DEFERRED".to_owned(),
            Outcome::LeaseLost => "LEASE_LOST".to_owned(),
        }
    }
}

/// Observes processing (metrics); the default observes nothing.
pub trait ProcessObserver: Send + Sync + std::fmt::Debug {
    /// One fetch: its reason code (`OK` when it succeeded), its host, the bytes it read.
    fn fetched(&self, _host: &str, _outcome: &str, _bytes: usize) {}
    /// One job finished with `outcome` after `elapsed`.
    fn processed(&self, _outcome: Outcome, _elapsed: Duration) {}
    /// The queue's figures, read every [`QUEUE_FIGURES_EVERY`] while workers run.
    fn queue(&self, _figures: &queue::QueueFigures) {}
}

#[derive(Debug)]
struct Unobserved;
impl ProcessObserver for Unobserved {}

/// The processing use case and its workers.
#[derive(Clone, Debug)]
pub struct Processor {
    writer: Writer,
    fetcher: Fetcher,
    objects: Objects,
    limits: MeasureLimits,
    settings: ProcessSettings,
    /// This process's name in `lease_owner`.
    owner: String,
    /// One semaphore per host, created on first use.
    hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
    /// Wakes idle workers (new imports, retries).
    wake: Arc<Notify>,
    /// A permit per core, held while a picture is measured.
    cores: Arc<Semaphore>,
    /// Jobs claimed and not started yet, with when they were claimed: a claim takes up to
    /// [`ProcessSettings::workers`] due images at once.
    claimed: Arc<Mutex<VecDeque<(Job, Instant)>>>,
    /// READY outcomes waiting for their group's commit.
    ready: Arc<ReadyGroup>,
    observer: Arc<dyn ProcessObserver>,
}

/// The READY outcomes measured and stored but not committed yet, and the commit turn: the
/// worker holding `turn` commits everything `waiting` holds (its own outcome and those queued
/// while the previous group committed).
#[derive(Debug, Default)]
struct ReadyGroup {
    waiting: Mutex<Vec<(Ready, Answer)>>,
    turn: tokio::sync::Mutex<()>,
}

/// Where the outcome of a [`Ready`] goes: the worker waiting for it.
type Answer = oneshot::Sender<Result<Outcome, ProcessError>>;

/// A measured and stored image, to be recorded READY.
#[derive(Debug)]
struct Ready {
    job: Job,
    measured: Measured,
    storage_key: String,
}

impl Processor {
    pub fn new(
        writer: Writer,
        fetcher: Fetcher,
        objects: Objects,
        limits: MeasureLimits,
        settings: ProcessSettings,
    ) -> Self {
        Self {
            writer,
            fetcher,
            objects,
            limits,
            settings,
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            hosts: Arc::default(),
            wake: Arc::new(Notify::new()),
            cores: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            )),
            claimed: Arc::default(),
            ready: Arc::default(),
            observer: Arc::new(Unobserved),
        }
    }

    /// The same processor, reporting to `observer`.
    pub fn observed_by(mut self, observer: Arc<dyn ProcessObserver>) -> Self {
        self.observer = observer;
        self
    }

    pub fn settings(&self) -> &ProcessSettings {
        &self.settings
    }

    /// Wakes the idle workers: images may be due.
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Runs [`ProcessSettings::workers`] workers until `stop` completes.
    pub async fn run(self, stop: impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let workers: Vec<_> = (0..self.settings.workers)
            .map(|_| {
                let worker = self.clone();
                let mut stopped = rx.clone();
                tokio::spawn(async move {
                    loop {
                        let worked = match worker.step().await {
                            Ok(outcome) => outcome.is_some(),
                            Err(error) => {
                                tracing::warn!(%error, "processing: cannot use the queue");
                                false
                            }
                        };
                        if worked && !*stopped.borrow() {
                            continue;
                        }
                        tokio::select! {
                            _ = stopped.changed() => return,
                            () = worker.wake.notified() => {}
                            () = tokio::time::sleep(worker.settings.poll) => {}
                        }
                        if *stopped.borrow() {
                            return;
                        }
                    }
                })
            })
            .collect();
        let reporter = {
            let processor = self.clone();
            tokio::spawn(async move {
                loop {
                    match queue::queue_figures(processor.writer.store().connection(), Utc::now())
                        .await
                    {
                        Ok(figures) => processor.observer.queue(&figures),
                        Err(error) => {
                            tracing::debug!(%error, "processing: cannot read the queue's figures")
                        }
                    }
                    tokio::time::sleep(QUEUE_FIGURES_EVERY).await;
                }
            })
        };
        stop.await;
        reporter.abort();
        let _ = tx.send(true);
        for worker in workers {
            // A job cut off keeps its lease and is taken again when it ends.
            let _ = tokio::time::timeout(Duration::from_secs(5), worker).await;
        }
    }

    /// Claims one due image and processes it; `None` when none is due.
    pub async fn step(&self) -> Result<Option<Outcome>, ProcessError> {
        let Some(job) = self.claim().await? else {
            return Ok(None);
        };
        Ok(Some(self.process(&job).await?))
    }

    /// When the next PENDING image is due (`None`: none is pending).
    pub async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, ProcessError> {
        Ok(queue::next_due_at(self.writer.store().connection()).await?)
    }

    /// The next job: one claimed before and not started, else the first of a new claim of up
    /// to [`ProcessSettings::workers`] due images (one transaction for several jobs). A job
    /// that waited here for half its lease is left alone: it is due again when its lease ends.
    async fn claim(&self) -> Result<Option<Job>, ProcessError> {
        loop {
            let Some((job, claimed_at)) = lock(&self.claimed).pop_front() else {
                break;
            };
            if claimed_at.elapsed() < self.settings.lease / 2 {
                return Ok(Some(job));
            }
        }
        let claimed_at = Instant::now();
        let mut jobs = retrying(|| async {
            let txn = self.writer.store().begin_write().await?;
            let now = Utc::now();
            let until = now + chrono::Duration::from_std(self.settings.lease).unwrap_or_default();
            let batch = u64::try_from(self.settings.workers.max(1)).unwrap_or(1);
            let jobs = queue::claim_due(&txn, &self.owner, now, until, batch).await?;
            txn.commit().await.map_err(StoreError::from)?;
            Ok::<_, ProcessError>(jobs)
        })
        .await?
        .into_iter();
        let first = jobs.next();
        lock(&self.claimed).extend(jobs.map(|job| (job, claimed_at)));
        Ok(first)
    }

    /// Fetches (or reads the adopted object), measures and stores `job`'s image and records
    /// the outcome.
    async fn process(&self, job: &Job) -> Result<Outcome, ProcessError> {
        let started = Instant::now();
        let taken = match &job.adopted_key {
            Some(key) => self.adopt(key).await,
            None => {
                let host = host_of(&job.url);
                let Some(_permit) = self.host_permit(&host) else {
                    let at = Utc::now() + chrono::Duration::seconds(1);
                    queue::release(self.writer.store().connection(), job.image, &self.owner, at)
                        .await?;
                    return Ok(Outcome::Deferred);
                };
                self.fetch_and_measure(job, &host).await
            }
        };
        let outcome = match taken {
            Ok((measured, storage_key)) => {
                let sha256 = measured.sha256.clone();
                let ready = Ready {
                    job: job.clone(),
                    measured,
                    storage_key,
                };
                let outcome = self.record_ready(ready).await?;
                if outcome == Outcome::Ready {
                    self.merge_late(job.image, &sha256).await?;
                }
                outcome
            }
            Err(failure) => retrying(|| self.record_failure(job, &failure)).await?,
        };
        self.observer.processed(outcome, started.elapsed());
        Ok(outcome)
    }

    fn host_permit(&self, host: &str) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut hosts = lock(&self.hosts);
            hosts
                .entry(host.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_host.max(1))))
                .clone()
        };
        semaphore.try_acquire_owned().ok()
    }

    /// The bytes of `job`, measured and stored; or why not.
    async fn fetch_and_measure(
        &self,
        job: &Job,
        host: &str,
    ) -> Result<(Measured, String), FetchError> {
        let fetched = self.fetcher.fetch(&job.url).await;
        match &fetched {
            Ok(f) => self.observer.fetched(host, "OK", f.bytes.len()),
            Err(e) => self.observer.fetched(host, e.reason.as_str(), 0),
        }
        let (bytes, measured) = self.measure(fetched?.bytes).await?;
        let key = upload_storage_key(&measured.sha256, measured.format.extension());
        self.objects
            .put(&key, bytes)
            .await
            .map_err(|e| failure(Reason::NetworkError, format!("storing failed: {e}")))?;
        Ok((measured, key))
    }

    /// The bytes of the stored object `key`, measured; the image is served from there. The
    /// same size limit as a fetch; a missing object cannot appear by trying again (FAILED at
    /// once), a store that does not answer may (retried).
    async fn adopt(&self, key: &str) -> Result<(Measured, String), FetchError> {
        let max = self.fetcher.max_bytes();
        let bytes = match self.objects.get_at_most(key, max).await {
            Ok(Stored::Bytes(bytes)) => bytes,
            Ok(Stored::TooLarge(size)) => {
                return Err(failure(
                    Reason::TooLarge,
                    format!("the stored object `{key}` has {size} bytes; at most {max} are taken"),
                ));
            }
            Ok(Stored::Missing) | Err(ObjectsError::Key) => {
                return Err(failure(
                    Reason::ObjectMissing,
                    format!("no stored object `{key}` (named by the import's storage_key)"),
                ));
            }
            Err(error) => {
                return Err(failure(
                    Reason::NetworkError,
                    format!("reading the stored object `{key}` failed: {error}"),
                ));
            }
        };
        let (_, measured) = self.measure(bytes).await?;
        Ok((measured, key.to_owned()))
    }

    /// Measures `bytes` on a blocking thread (decoding the whole picture is CPU work, off the
    /// async threads) and refuses those of a picture taken down; returns them with what was
    /// found. Fetched and adopted bytes alike.
    async fn measure(&self, bytes: Vec<u8>) -> Result<(Vec<u8>, Measured), FetchError> {
        let limits = self.limits;
        // One picture per core at a time: more would only share the cores, each one's buffers
        // pushing the others' out of the caches.
        let _core = self.cores.acquire().await;
        let (bytes, measured) = tokio::task::spawn_blocking(move || {
            let measured = measure(&bytes, limits);
            (bytes, measured)
        })
        .await
        .map_err(|e| failure(Reason::DecodeError, format!("measuring failed: {e}")))?;
        let measured = measured.map_err(|refusal| failure(refusal.reason, refusal.message))?;
        // Bytes a takedown buried never come back, under whatever URL: refused before they
        // are stored again.
        let buried =
            super::purge::bytes_buried(self.writer.store().connection(), &measured.sha256).await;
        match buried {
            Ok(false) => {}
            Ok(true) => {
                return Err(failure(
                    Reason::Purged,
                    "the bytes are those of a picture taken down (purgeImage)",
                ));
            }
            Err(e) => {
                return Err(failure(
                    Reason::NetworkError,
                    format!("checking takedowns failed: {e}"),
                ));
            }
        }
        Ok((bytes, measured))
    }

    /// Records `ready` READY with the group its commit turn takes (see the module doc).
    async fn record_ready(&self, ready: Ready) -> Result<Outcome, ProcessError> {
        let (done, mut outcome) = oneshot::channel();
        lock(&self.ready.waiting).push((ready, done));
        let turn = self.ready.turn.lock().await;
        // A turn before this one may have committed it already.
        if let Ok(outcome) = outcome.try_recv() {
            return outcome;
        }
        let group = std::mem::take(&mut *lock(&self.ready.waiting));
        // On a task of its own: the other workers' outcomes do not depend on this worker
        // being polled to the end.
        let processor = self.clone();
        let _ = tokio::spawn(async move { processor.commit_ready(group).await }).await;
        drop(turn);
        // No answer only when the committing task panicked: the job keeps its lease and is
        // taken again when the lease ends, unless it was committed.
        outcome.await.unwrap_or(Err(StoreError::Conflict.into()))
    }

    /// Commits `group` in one change; when that fails, each of its images in a change of its
    /// own. Every outcome goes to its worker.
    async fn commit_ready(&self, group: Vec<(Ready, Answer)>) {
        if group.len() > 1 {
            let readies: Vec<&Ready> = group.iter().map(|(ready, _)| ready).collect();
            match retrying(|| self.record_ready_group(&readies)).await {
                Ok(outcomes) => {
                    for ((_, done), outcome) in group.into_iter().zip(outcomes) {
                        let _ = done.send(Ok(outcome));
                    }
                    return;
                }
                Err(error) => tracing::warn!(
                    %error,
                    images = group.len(),
                    "processing: a READY group failed; recording its images one by one"
                ),
            }
        }
        for (ready, done) in group {
            let alone = [&ready];
            let outcome = retrying(|| self.record_ready_group(&alone))
                .await
                .and_then(|outcomes| {
                    // One outcome per image of the group, in its order: the first is this one's.
                    outcomes
                        .first()
                        .copied()
                        .ok_or_else(|| StoreError::Conflict.into())
                });
            let _ = done.send(outcome);
        }
    }

    /// The change that makes the images of `group` READY, in its order; re-curates the hotels
    /// they are linked to once.
    async fn record_ready_group(&self, group: &[&Ready]) -> Result<Vec<Outcome>, ProcessError> {
        let mut change = self.writer.begin().await?;
        let now = change.now();
        let mut outcomes = Vec::with_capacity(group.len());
        let mut audits = Vec::with_capacity(group.len());
        let mut unmerged = Vec::new();
        let mut hotels = Vec::new();
        for ready in group {
            let (image, measured) = (ready.job.image, &ready.measured);
            if !queue::mark_ready(
                change.txn(),
                image,
                &self.owner,
                measured,
                &ready.storage_key,
                now,
            )
            .await?
            {
                outcomes.push(Outcome::LeaseLost);
                continue;
            }
            change.emit(events::image_processed(
                image,
                measured,
                &ready.storage_key,
                now,
            ));
            let mut subjects = json!({ "imageId": image.to_string() });
            let mut after = json!({ "state": "READY", "sha256": measured.sha256 });
            match &merge_same_bytes(&mut change, image, &measured.sha256).await? {
                None => unmerged.push(image),
                Some((merged, merged_hotels)) => {
                    note_merge(merged, &mut subjects, &mut after);
                    hotels.extend_from_slice(merged_hotels);
                }
            }
            audits.push(
                Caller::system("process")
                    .audit("processImage", subjects)
                    .with_after(after),
            );
            outcomes.push(Outcome::Ready);
        }
        if !unmerged.is_empty() {
            hotels.extend(linked_hotels(change.txn(), &unmerged).await?);
        }
        hotels.sort_unstable();
        hotels.dedup();
        change.curate(&hotels).await?;
        change.commit_audited(audits).await?;
        Ok(outcomes)
    }

    /// After `image` turned READY: another worker may have committed the same bytes at the
    /// same moment, unseen by this change as this one was by its. Looked at again now that
    /// both are visible (the later of the two looks after both committed), and merged then.
    async fn merge_late(&self, image: ImageId, sha256: &str) -> Result<(), ProcessError> {
        let conn = self.writer.store().connection();
        if merge::same_bytes(conn, image, sha256).await?.is_some() {
            retrying(|| self.record_merge(image, sha256)).await?;
        }
        Ok(())
    }

    /// The change that merges `image` with the live images holding the bytes `sha256`, when
    /// there still are some.
    async fn record_merge(&self, image: ImageId, sha256: &str) -> Result<(), ProcessError> {
        let mut change = self.writer.begin().await?;
        let Some((merged, hotels)) = merge_same_bytes(&mut change, image, sha256).await? else {
            return Ok(());
        };
        change.curate(&hotels).await?;
        let mut subjects = json!({ "imageId": image.to_string() });
        let mut after = json!({ "sha256": sha256 });
        note_merge(&merged, &mut subjects, &mut after);
        let audit = Caller::system("process")
            .audit("mergeImages", subjects)
            .with_after(after);
        change.commit(Some(audit)).await?;
        Ok(())
    }

    /// The change that records a failed attempt: FAILED, or PENDING again later.
    async fn record_failure(&self, job: &Job, error: &FetchError) -> Result<Outcome, ProcessError> {
        let attempts = job.attempts + 1;
        let retry_in = (is_transient(error) && attempts < self.settings.max_attempts)
            .then(|| self.retry_wait(job.attempts, error.retry_after));
        let mut change = self.writer.begin().await?;
        let now = change.now();
        let retry_at =
            retry_in.map(|wait| now + chrono::Duration::from_std(wait).unwrap_or_default());
        let reason = error.reason.as_str();
        if !queue::mark_failed(
            change.txn(),
            job.image,
            &self.owner,
            reason,
            &error.message,
            retry_at,
            now,
        )
        .await?
        {
            return Ok(Outcome::LeaseLost);
        }
        if retry_at.is_some() {
            change.commit(None).await?;
            tracing::debug!(image = %job.image, reason, attempts, "processing: retry scheduled");
            return Ok(Outcome::Retry(error.reason));
        }
        change.emit(events::image_failed(job.image, reason, attempts, now));
        let audit = Caller::system("process")
            .audit("processImage", json!({ "imageId": job.image.to_string() }))
            .with_after(json!({ "state": "FAILED", "reason": reason, "attempts": attempts }));
        change.commit(Some(audit)).await?;
        tracing::info!(image = %job.image, reason, attempts, error = %error.message, "processing: image failed");
        Ok(Outcome::Failed(error.reason))
    }

    /// The wait before the next attempt: the server's `Retry-After` when it gave one, else
    /// `retry_base * 2^attempts` (at most `retry_max`), less up to half of it at random so
    /// that images failed together do not come back together.
    fn retry_wait(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.settings.retry_max);
        }
        let full = self
            .settings
            .retry_base
            .saturating_mul(1u32 << attempts.min(20))
            .min(self.settings.retry_max);
        let jitter = full.mul_f64(rand::random::<f64>() / 2.0);
        full - jitter
    }

    /// Turns FAILED images PENDING again, due at once with their attempts reset (an admin's
    /// retry); returns them. Images of the scope that are not FAILED are left as they are.
    pub async fn retry(
        &self,
        caller: &Caller,
        scope: &RetryScope,
    ) -> Result<Vec<ImageId>, ProcessError> {
        caller.require(caller.actor.is_admin())?;
        if let RetryScope::Images(ids) = scope
            && ids.len() > MAX_RETRY_IDS
        {
            return Err(UserError::too_many("imageIds", MAX_RETRY_IDS, "images").into());
        }
        let retried = retrying(|| async {
            let change = self.writer.begin().await?;
            if let RetryScope::Partner(partner) = scope
                && crate::store::ingest::partner_feed(change.txn(), *partner)
                    .await?
                    .is_none()
            {
                return Err(UserError::new(
                    UserErrorCode::NotFound,
                    &["partnerId"],
                    "no such partner",
                )
                .into());
            }
            let now = change.now();
            let ids = queue::retry_failed(change.txn(), scope, now).await?;
            let audit = caller.audit(
                "retryImageProcessing",
                json!({ "imageIds": ids.iter().map(ToString::to_string).collect::<Vec<_>>() }),
            );
            change.commit(Some(audit)).await?;
            Ok::<_, ProcessError>(ids)
        })
        .await?;
        self.wake();
        Ok(retried)
    }
}

/// Makes `image` one with the live images holding the same bytes `sha256`, in `change` (see
/// [`merge`]), and emits `ImagesMerged` for each retired image; returns the merge and the
/// hotels to re-curate (every hotel of the merged images: their links are the survivor's
/// now). `None`: no other live image holds those bytes.
async fn merge_same_bytes(
    change: &mut Change,
    image: ImageId,
    sha256: &str,
) -> Result<Option<(merge::Merge, Vec<HotelId>)>, ProcessError> {
    let Some(merged) = merge::same_bytes(change.txn(), image, sha256).await? else {
        return Ok(None);
    };
    let now = change.now();
    merge::merge(change.txn(), &merged, now).await?;
    let hotels = linked_hotels(change.txn(), &[merged.survivor]).await?;
    for &retired in &merged.retired {
        change.emit(events::images_merged(
            retired,
            merged.survivor,
            &merged.retired,
            &hotels,
            now,
        ));
    }
    Ok(Some((merged, hotels)))
}

/// Adds a merge to an audit row: its subjects name the survivor and every retired image (the
/// audit log of each shows it), its `after` says which became which.
fn note_merge(
    merged: &merge::Merge,
    subjects: &mut serde_json::Value,
    after: &mut serde_json::Value,
) {
    let retired: Vec<String> = merged.retired.iter().map(ToString::to_string).collect();
    let mut images = retired.clone();
    images.push(merged.survivor.to_string());
    subjects["imageIds"] = json!(images);
    after["survivorId"] = json!(merged.survivor.to_string());
    after["retiredImageIds"] = json!(retired);
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether another attempt may succeed: a timeout, the network, a 5xx, 408 or 429.
fn is_transient(error: &FetchError) -> bool {
    match error.reason {
        Reason::Timeout | Reason::NetworkError => true,
        Reason::HttpStatus => error
            .status
            .is_some_and(|s| s >= 500 || s == 408 || s == 429),
        _ => false,
    }
}

fn failure(reason: Reason, message: impl Into<String>) -> FetchError {
    FetchError {
        reason,
        message: message.into(),
        status: None,
        retry_after: None,
    }
}

/// The host of `url` as written (the per-host limit's key); the whole URL when it has none.
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(reason: Reason, status: Option<u16>) -> FetchError {
        FetchError {
            status,
            ..failure(reason, "x")
        }
    }

    #[test]
    fn only_failures_that_may_pass_are_retried() {
        let cases = [
            (error(Reason::Timeout, None), true),
            (error(Reason::NetworkError, None), true),
            (error(Reason::HttpStatus, Some(500)), true),
            (error(Reason::HttpStatus, Some(503)), true),
            (error(Reason::HttpStatus, Some(429)), true),
            (error(Reason::HttpStatus, Some(404)), false),
            (error(Reason::HttpStatus, Some(403)), false),
            (error(Reason::NotAnImage, None), false),
            (error(Reason::TooManyPixels, None), false),
            (error(Reason::BlockedAddress, None), false),
            (error(Reason::TooManyRedirects, None), false),
            (error(Reason::TooLarge, None), false),
            (error(Reason::DecodeError, None), false),
            (error(Reason::ObjectMissing, None), false),
        ];
        for (error, transient) in cases {
            assert_eq!(is_transient(&error), transient, "{error:?}");
        }
    }
}
