//! Curating hotels on demand: every hotel after a rule change (the `recompute` command), in
//! parallel chunks. (Changes curate the hotels they touch themselves, through the write
//! kernel: [`super::write::Change::curate`].)

use tokio::task::JoinSet;

use serde_json::json;

use super::ServiceResult;
use super::write::{Caller, Writer};
use crate::domain::catalog::HotelId;
use crate::domain::curation::{PublishedChange, Rules};

/// Runs the curation rules against stored data and publishes the outcome.
#[derive(Clone, Debug)]
pub struct Curator {
    writer: Writer,
}

/// How `recompute_all` splits its work.
#[derive(Debug, Clone, Copy)]
pub struct RecomputePlan {
    /// Hotels per transaction.
    pub chunk_size: u64,
    /// Transactions in flight at once.
    pub parallelism: usize,
}

impl Curator {
    pub fn new(writer: Writer) -> Self {
        Self { writer }
    }

    pub fn rules(&self) -> &Rules {
        self.writer.rules()
    }

    /// Curates `hotels` now, in one change that also writes the events of what changed and an
    /// audit row; the caches forget the hotels it rewrote.
    pub async fn curate(&self, hotels: &[HotelId]) -> ServiceResult<Vec<PublishedChange>> {
        let mut change = self.writer.begin().await?;
        let changes = change.curate(hotels).await?.to_vec();
        // Nothing written: no audit row either.
        let audit = change.has_curation_changes().then(|| {
            Caller::system("recompute").audit("recompute", json!({ "hotels": hotels.len() }))
        });
        change.commit(audit).await?;
        Ok(changes)
    }

    pub async fn hotel_count(&self) -> ServiceResult<u64> {
        Ok(self.writer.store().hotel_count().await?)
    }

    /// Recomputes every hotel in chunks, `plan.parallelism` chunks at a time, calling
    /// `progress` with the number of hotels finished after each chunk. Returns how many hotels
    /// changed.
    pub async fn recompute_all(
        &self,
        plan: RecomputePlan,
        mut progress: impl FnMut(u64),
    ) -> ServiceResult<u64> {
        let mut in_flight = JoinSet::new();
        let mut after = None;
        let mut changed = 0u64;
        loop {
            let chunk = self
                .writer
                .store()
                .hotel_ids_after(after, plan.chunk_size)
                .await?;
            let Some(&last) = chunk.last() else { break };
            after = Some(last);
            if in_flight.len() >= plan.parallelism.max(1) {
                changed += self.finish_one(&mut in_flight, &mut progress).await?;
            }
            let curator = self.clone();
            in_flight.spawn(async move {
                let changes = curator.curate(&chunk).await?;
                Ok::<_, super::ServiceError>((chunk.len() as u64, changes.len() as u64))
            });
        }
        while !in_flight.is_empty() {
            changed += self.finish_one(&mut in_flight, &mut progress).await?;
        }
        Ok(changed)
    }

    async fn finish_one(
        &self,
        in_flight: &mut JoinSet<ServiceResult<(u64, u64)>>,
        progress: &mut impl FnMut(u64),
    ) -> ServiceResult<u64> {
        match in_flight.join_next().await {
            Some(Ok(result)) => {
                let (done, changed) = result?;
                progress(done);
                Ok(changed)
            }
            Some(Err(join_error)) => Err(super::ServiceError::Task(join_error.to_string())),
            None => Ok(0),
        }
    }
}
