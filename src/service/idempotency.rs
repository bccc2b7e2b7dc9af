//! Idempotency keys: a client that sends a mutation request with an `Idempotency-Key` may send
//! it again (its answer was lost: a timeout, a dropped connection, a commit whose reply never
//! came) and gets the first answer back, never a second application of its changes.
//!
//! The rules, per (caller, key):
//! - The first request **holds** the key (a row of its own, inserted before it runs; the
//!   primary key decides between two duplicates sent at once) for at most the lease (the
//!   request timeout).
//! - Each change it commits is counted under the key **in the change's own transaction**,
//!   with its audit row ([`super::write::Change::commit`]), and only while the hold is still
//!   its own: a change is applied and counted, or neither.
//! - Once it has answered, the answer is kept with the key until the key expires (the TTL).
//!   An answer with an unexpected failure is not kept: when nothing was applied the key is
//!   forgotten (a retry runs afresh), otherwise the key stays, without an answer.
//! - A later request with the key: another request (hash of operations and variables) is
//!   refused ([`Admission::Reused`]); the same one gets the kept answer ([`Admission::Replay`]);
//!   while the first one runs it is told to wait ([`Admission::InUse`]); a first attempt that
//!   applied changes but left no answer is reported as such ([`Admission::Lost`]); one that
//!   applied nothing and whose hold ran out is taken over and runs again.
//! - Expired keys are deleted in small batches after each keyed request, or taken anew.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use sha2::{Digest as _, Sha256};

use crate::store::idempotency::{self as rows, Hold};
use crate::store::{Store, StoreResult};

pub use crate::store::idempotency::Claim;

/// Longest key accepted (Stripe's limit).
pub const MAX_KEY_CHARS: usize = 255;
/// Largest answer kept; a larger one is treated like one that could not be kept.
const MAX_KEPT_BYTES: usize = 4 * 1024 * 1024;
/// Expired keys deleted after each keyed request, at most.
const CLEANUP_BATCH: u64 = 100;
/// Tries to hold a key that vanishes or changes hands between two statements.
const MAX_TRIES: usize = 3;

/// A key as a client sent it: 1 to 255 visible ASCII characters (a UUID is typical).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// Why a key is refused.
pub const INVALID_KEY: &str = "Idempotency-Key must be 1 to 255 visible ASCII characters";

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Option<Self> {
        let fits = !raw.is_empty() && raw.len() <= MAX_KEY_CHARS;
        (fits && raw.bytes().all(|b| b.is_ascii_graphic())).then(|| Self(raw.to_owned()))
    }
}

/// What a request with a key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Run it: its changes commit under this claim; then [`Idempotency::finish`].
    Run(Claim),
    /// The first answer, to send again as it is.
    Replay(String),
    /// The key was first used with another request.
    Reused,
    /// The first request with the key is still running.
    InUse { retry_after: Duration },
    /// The first request applied changes but its answer could not be kept.
    Lost,
}

/// The keys of one catalog.
#[derive(Clone, Debug)]
pub struct Idempotency {
    store: Store,
    /// How long a key and its answer are kept.
    ttl: Duration,
    /// How long the first request may hold its key while it runs.
    lease: Duration,
}

impl Idempotency {
    pub fn new(store: Store, ttl: Duration, lease: Duration) -> Self {
        Self { store, ttl, lease }
    }

    /// How long a request may hold its key while it runs.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Decides what a request (`request_hash`) of `caller` with `key` may do.
    pub async fn admit(
        &self,
        caller: &str,
        key: &IdempotencyKey,
        request_hash: &str,
    ) -> StoreResult<Admission> {
        let db = self.store.connection();
        let now = Utc::now();
        let claim = Claim {
            id: key_id(caller, key),
            token: uuid::Uuid::new_v4().to_string(),
        };
        let hold = Hold {
            claim: &claim,
            request_hash,
            now,
            locked_until: now + delta(self.lease),
            expires_at: now + delta(self.ttl),
        };
        for _ in 0..MAX_TRIES {
            if rows::insert(db, &hold).await? {
                return Ok(Admission::Run(claim));
            }
            let Some(found) = rows::find(db, &claim.id).await? else {
                continue; // deleted meanwhile: insert again
            };
            let running_until = found.locked_until.filter(|until| *until > now);
            let admission = if found.expires_at <= now {
                None
            } else if found.request_hash != request_hash {
                Some(Admission::Reused)
            } else if let Some(response) = found.response {
                Some(Admission::Replay(response))
            } else if let Some(until) = running_until {
                let wait = (until - now).to_std().unwrap_or_default();
                Some(Admission::InUse {
                    retry_after: wait.max(Duration::from_secs(1)),
                })
            } else if found.changes > 0 {
                Some(Admission::Lost)
            } else {
                None
            };
            match admission {
                Some(admission) => return Ok(admission),
                // Expired, or abandoned before it applied anything: take it over.
                None if rows::take_over(db, &hold).await? => return Ok(Admission::Run(claim)),
                None => continue,
            }
        }
        Ok(Admission::InUse {
            retry_after: Duration::from_secs(1),
        })
    }

    /// Ends `claim`'s hold once its request answered: keeps `answer` (`None`: an answer not to
    /// keep, with an unexpected failure), then deletes a few expired keys. Failures are logged:
    /// the answer goes to the client all the same.
    pub async fn finish(&self, claim: &Claim, answer: Option<&str>) {
        let db = self.store.connection();
        let kept = match answer.filter(|a| a.len() <= MAX_KEPT_BYTES) {
            Some(answer) => rows::keep_response(db, claim, answer).await,
            None => rows::release(db, claim).await,
        };
        if let Err(error) = kept {
            tracing::warn!(error = %error, "cannot keep the answer of an idempotent request");
        }
        if let Err(error) = rows::delete_expired(db, Utc::now(), CLEANUP_BATCH).await {
            tracing::warn!(error = %error, "cannot delete expired idempotency keys");
        }
    }
}

/// The row of `caller`'s `key`: keys of different callers never meet. (A key has no newline,
/// so the text hashed names one pair only.)
fn key_id(caller: &str, key: &IdempotencyKey) -> String {
    hex::encode(Sha256::digest(format!("{caller}\n{}", key.0)))
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_visible_ascii() {
        assert!(IdempotencyKey::parse("3f1c2a9e-7b1d-4c55-9a0e-0b1f2c3d4e5f").is_some());
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_CHARS)).is_some());
        for bad in ["", " ", "a b", "é", "a\nb"] {
            assert!(IdempotencyKey::parse(bad).is_none(), "{bad:?}");
        }
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_CHARS + 1)).is_none());
    }

    #[test]
    fn one_key_of_two_callers_is_two_rows() {
        let key = IdempotencyKey::parse("k1").unwrap();
        assert_ne!(key_id("alice", &key), key_id("bob", &key));
        assert_eq!(key_id("alice", &key), key_id("alice", &key));
    }
}
