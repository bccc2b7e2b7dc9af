//! `republish`: every hotel's published state (main image and gallery) as `HotelSnapshot`
//! events through the outbox, so that a new downstream consumer can bootstrap from the stream
//! instead of needing a bootstrap job of its own.
//!
//! Hotels go in ID order, a batch per change of the write kernel: the batch's snapshots and
//! the run's progress row (`republish_run`) commit together, so a run that stops resumes after
//! the last committed batch (run `republish` again; `--restart` starts over). The rate limit
//! (`--rate` hotels per second) keeps the outbox, the relay and the consumers from being
//! flooded. A snapshot carries the hotel's `version`: a consumer keeps, per hotel, whatever it
//! saw with the highest version (a change committing beside a batch may be published before
//! the batch's older snapshot of that hotel).

use std::time::{Duration, Instant};

use serde_json::json;

use super::ServiceResult;
use super::events::{HOTEL, SCHEMA_VERSION};
use super::write::{Writer, retrying};
use crate::domain::catalog::HotelId;
use crate::domain::curation::HotelRecord;
use crate::store::journal::OutboxEvent;
use crate::store::{StoreResult, read, republish as runs};

/// How a run goes.
#[derive(Debug, Clone, Copy)]
pub struct RepublishPlan {
    /// Hotels per change (transaction).
    pub batch: u64,
    /// Most hotels per second; 0 = no limit.
    pub rate: u32,
    /// Start a new run even when an unfinished one could be resumed.
    pub restart: bool,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepublishReport {
    pub run: i64,
    /// Snapshots written by earlier attempts of the same run (0 for a new run).
    pub resumed_after: i64,
    /// Snapshots written now.
    pub hotels: u64,
}

#[derive(Clone, Debug)]
pub struct Republisher {
    writer: Writer,
}

impl Republisher {
    pub fn new(writer: Writer) -> Self {
        Self { writer }
    }

    /// Runs (or resumes) a snapshot of every hotel; `progress` gets each batch's size.
    pub async fn run(
        &self,
        plan: RepublishPlan,
        mut progress: impl FnMut(u64),
    ) -> ServiceResult<RepublishReport> {
        let db = self.writer.store().connection();
        let run = match runs::unfinished(db).await? {
            Some(run) if !plan.restart => run,
            _ => runs::start(db, chrono::Utc::now()).await?,
        };
        progress(u64::try_from(run.hotels).unwrap_or(0));
        let started = Instant::now();
        let mut after = run.after;
        let mut written = 0u64;
        loop {
            let hotels = self
                .writer
                .store()
                .hotel_ids_after(after, plan.batch.max(1))
                .await?;
            let Some(&last) = hotels.last() else { break };
            // One transient failure (a deadlock, a busy database) runs the batch again rather
            // than ending the run.
            let emitted = retrying(|| self.batch(run.id, &hotels, last)).await?;
            after = Some(last);
            written += emitted;
            progress(emitted);
            if plan.rate > 0 {
                let due = Duration::from_secs_f64(written as f64 / f64::from(plan.rate));
                tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
            }
        }
        // This run only: another one started meanwhile (`--restart`) goes on.
        runs::finish(db, run.id, chrono::Utc::now()).await?;
        Ok(RepublishReport {
            run: run.id,
            resumed_after: run.hotels,
            hotels: written,
        })
    }
}

impl Republisher {
    /// One batch's change: the snapshots of `hotels` (a hotel deleted meanwhile has none) and
    /// the run's progress; returns how many snapshots it wrote.
    async fn batch(&self, run: i64, hotels: &[HotelId], last: HotelId) -> StoreResult<u64> {
        let mut change = self.writer.begin().await?;
        let now = change.now();
        let records = read::hotels_on(change.txn(), &raw(hotels)).await?;
        let mut emitted = 0;
        for hotel in hotels {
            if let Some(record) = records.get(hotel) {
                change.emit(snapshot(run, record, now));
                emitted += 1;
            }
        }
        runs::advance(change.txn(), run, last, emitted).await?;
        change.commit(None).await?;
        Ok(emitted)
    }
}

fn raw(hotels: &[HotelId]) -> Vec<i64> {
    hotels.iter().map(|h| h.get()).collect()
}

/// `HotelSnapshot`: a hotel's published state as of `version`.
fn snapshot(run: i64, record: &HotelRecord, at: chrono::DateTime<chrono::Utc>) -> OutboxEvent {
    let main = record.main.as_ref();
    OutboxEvent {
        aggregate_type: HOTEL,
        aggregate_id: record.id.to_string(),
        event_type: "HotelSnapshot",
        payload: json!({
            "schemaVersion": SCHEMA_VERSION,
            "hotelId": record.id.to_string(),
            "runId": run.to_string(),
            "version": record.version,
            "mainImageId": main.map(|m| m.image_id.to_string()),
            "mainImageOrigin": main.map(|m| m.origin.as_str()),
            "galleryImageIds": record.gallery.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "imageCount": record.image_count,
            "occurredAt": at,
        }),
    }
}
