//! Publishing curation: for the hotels a change touched, and for every hotel after a rule
//! change (the `recompute` command).

use std::sync::Arc;

use tokio::task::JoinSet;

use chrono::Utc;
use serde_json::json;

use super::freshness::Freshness;
use super::manage::{Caller, ManageError, audit_entry, commit, curate};
use super::{ServiceError, ServiceResult};
use crate::domain::catalog::HotelId;
use crate::domain::curation::Rules;
use crate::store::Store;
use crate::store::publish::PublishedChange;

/// Runs the curation rules against stored data and publishes the outcome.
#[derive(Clone, Debug)]
pub struct Curator {
    store: Store,
    rules: Arc<Rules>,
    /// Told which hotels a recomputation changed.
    freshness: Freshness,
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
    pub fn new(store: Store, rules: Rules, freshness: Freshness) -> Self {
        Self {
            store,
            rules: Arc::new(rules),
            freshness,
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Curates `hotels` now, in one transaction that also writes the events of what changed
    /// and an audit row; the cache forgets the hotels it rewrote.
    pub async fn publish(&self, hotels: &[HotelId]) -> ServiceResult<Vec<PublishedChange>> {
        let now = Utc::now();
        let run = async {
            let txn = self.store.begin_write().await?;
            let changes = curate(&txn, &self.rules, hotels, now).await?;
            if changes.is_empty() {
                // Nothing written: no audit row either (and on SQLite, no write at all, so
                // that parallel chunks do not contend for the one writer).
                txn.commit().await?;
                return Ok(changes);
            }
            let audit = audit_entry(
                &Caller::system("recompute"),
                "recompute",
                json!({ "hotels": hotels.len() }),
            );
            commit(&self.freshness, txn, audit, Vec::new(), &changes, now).await?;
            Ok::<_, ManageError>(changes)
        };
        run.await.map_err(|error| match error {
            ManageError::Unexpected(cause) => ServiceError::Unexpected(cause),
            ManageError::Forbidden => ServiceError::Forbidden,
            // Curation alone has no expected failures.
            ManageError::User(user) => ServiceError::Task(user.to_string()),
        })
    }

    pub async fn hotel_count(&self) -> ServiceResult<u64> {
        Ok(self.store.hotel_count().await?)
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
            let chunk = self.store.hotel_ids_after(after, plan.chunk_size).await?;
            let Some(&last) = chunk.last() else { break };
            after = Some(last);
            if in_flight.len() >= plan.parallelism.max(1) {
                changed += self.finish_one(&mut in_flight, &mut progress).await?;
            }
            let curator = self.clone();
            in_flight.spawn(async move {
                let changes = curator.publish(&chunk).await?;
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
