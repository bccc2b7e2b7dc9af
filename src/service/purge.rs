//! Takedowns for legal and privacy requests (`purgeImage`, admins only), and the CDN purges
//! they ask for.
//!
//! A purge is one change through the write kernel: the image leaves every hotel (each one
//! re-curated), its texts are cleared, its tombstones are written (the URL keys of every
//! spelling it was delivered by, and the hash of its bytes: an import item naming any of them
//! is `REJECTED` with reason `PURGED`, an upload of the same bytes `PURGED`), `ImagePurged` is
//! emitted and the audit row written; with `CDN_PURGE_URL` set, a CDN purge request is queued
//! in the same transaction. After the commit the stored bytes are deleted from the object
//! store, and the CDN purge worker is woken.
//!
//! **Why a queue of its own for the CDN.** The request must never be lost, yet a CDN that is
//! down must not hold anything else up. Sent from the request after commit, a failure would be
//! lost with the process; sent by the outbox relay, a CDN outage would stop every event.
//! So the request is a row (`cdn_purge`) committed with the takedown, and [`CdnPurges`] (a
//! worker in every replica) sends the due rows and retries failures with exponential backoff
//! until the CDN accepts them. Replicas claim a row before sending it (moving its due time
//! ahead), so normally one sends; a replica dying mid-send leaves it to be sent again after
//! the claim expires: at least once, and purges are idempotent.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::Notify;

use super::write::{
    Caller, UserError, UserErrorCode, Writer, check_text, retrying, use_case_error,
};
use crate::domain::catalog::ImageId;
use crate::domain::media::{Cdn, ImageSize};
use crate::domain::url::{Rewrites, UrlKey, canonicalize};
use crate::secret::Secret;
use crate::store::StoreError;
use crate::store::objects::Objects;
use crate::store::purge::{self as store, PendingPurge, Tombstone, TombstoneKind};

use_case_error!(
    /// How a takedown failed.
    PurgeError
);

/// What a takedown did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purged {
    pub image: ImageId,
    /// The hotels that showed the image.
    pub hotels: Vec<crate::domain::catalog::HotelId>,
    /// The stored bytes are gone from the object store.
    pub bytes_deleted: bool,
}

/// The `purgeImage` use case.
#[derive(Clone, Debug)]
pub struct Purger {
    writer: Writer,
    objects: Objects,
    cdn: Cdn,
    /// Set when `CDN_PURGE_URL` is: purge requests are queued and the worker woken.
    cdn_purges: Option<Arc<Notify>>,
}

impl Purger {
    pub fn new(
        writer: Writer,
        objects: Objects,
        cdn: Cdn,
        cdn_purges: Option<Arc<Notify>>,
    ) -> Self {
        Self {
            writer,
            objects,
            cdn,
            cdn_purges,
        }
    }

    /// Takes `image` down for good (see the module doc). Purging a purged image again deletes
    /// its bytes again (for a deletion that failed) and changes nothing else.
    pub async fn purge(
        &self,
        caller: &Caller,
        image: ImageId,
        reason: &str,
    ) -> Result<Purged, PurgeError> {
        caller.require(caller.actor.is_admin())?;
        if reason.trim().is_empty() {
            return Err(UserError::new(
                UserErrorCode::InvalidInput,
                &["reason"],
                "a takedown needs a reason",
            )
            .into());
        }
        check_text(Some(reason), "reason")?;
        let (purged, storage_key) = retrying(|| self.purge_once(caller, image, reason)).await?;
        if let Some(worker) = &self.cdn_purges {
            worker.notify_one();
        }
        // After the commit: a rolled-back takedown must not lose the bytes. The takedown stands
        // either way, so a failure is no error of the mutation: `bytesDeleted` says it, and
        // purging the image again deletes them again.
        let bytes_deleted = match self.objects.delete(&storage_key).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, key = storage_key, %image, "the bytes of a purged image were not deleted; purge it again");
                false
            }
        };
        Ok(Purged {
            bytes_deleted,
            ..purged
        })
    }

    async fn purge_once(
        &self,
        caller: &Caller,
        image: ImageId,
        reason: &str,
    ) -> Result<(Purged, String), PurgeError> {
        let mut change = self.writer.begin().await?;
        let now = change.now();
        let Some(taken) = store::take_down(change.txn(), image, now).await? else {
            return Err(
                UserError::new(UserErrorCode::NotFound, &["imageId"], "no such image").into(),
            );
        };
        let purged = Purged {
            image,
            hotels: taken.hotels.clone(),
            bytes_deleted: false,
        };
        if taken.already {
            // Nothing to bury or announce again. A hotel that came to show it since (a
            // partner's spelling no tombstone names) loses it again; otherwise dropping the
            // change rolls back what `take_down` repeated.
            if !taken.hotels.is_empty() {
                change.curate(&taken.hotels).await?;
                change.commit(None).await?;
            }
            return Ok((purged, taken.storage_key));
        }
        store::bury(
            change.txn(),
            image,
            &tombstones(&taken),
            reason,
            &caller.name(),
            now,
        )
        .await?;
        change.curate(&taken.hotels).await?;
        if self.cdn_purges.is_some() {
            store::queue_cdn_purge(
                change.txn(),
                &self.cdn_request(image, &taken.storage_key),
                now,
            )
            .await?;
        }
        let hotel_ids: Vec<String> = taken.hotels.iter().map(ToString::to_string).collect();
        let audit = caller
            .audit(
                "purgeImage",
                json!({ "imageId": image.to_string(), "hotelIds": hotel_ids }),
            )
            .with_after(json!({ "reason": reason }));
        change.emit(super::events::image_purged(
            image,
            reason,
            &taken.hotels,
            now,
        ));
        change.commit(Some(audit)).await?;
        Ok((purged, taken.storage_key))
    }

    /// The body of the CDN purge: every URL the image is served at, and its surrogate key.
    fn cdn_request(&self, image: ImageId, storage_key: &str) -> serde_json::Value {
        let urls: Vec<String> = ImageSize::ALL
            .iter()
            .map(|size| self.cdn.url(storage_key, *size))
            .collect();
        json!({ "urls": urls, "surrogateKeys": [format!("image:{image}")] })
    }
}

/// Whether a takedown buried the bytes of hash `sha256`: their hash, or the URL key an upload
/// of them has, is a tombstone. Uploads and processing refuse such bytes before storing them.
pub async fn bytes_buried(
    conn: &impl sea_orm::ConnectionTrait,
    sha256: &str,
) -> Result<bool, StoreError> {
    let upload_key = crate::domain::upload::upload_url_key(sha256);
    Ok(!store::purged_keys(conn, &[sha256, upload_key.as_str()])
        .await?
        .is_empty())
}

/// `PURGED` at `field`: the picture was taken down and cannot come back.
pub fn purged_error(field: &str) -> UserError {
    UserError::new(
        UserErrorCode::Purged,
        &[field],
        "the picture was taken down (purgeImage) and cannot come back",
    )
}

/// The keys that must never bring the picture back: its URL key, the plain canonical URL key
/// of every spelling a partner sent (without that partner's rewrite rules, so that another
/// partner's delivery of the same spelling matches too), and the hash of its bytes.
fn tombstones(taken: &store::PurgedImage) -> Vec<Tombstone> {
    let url_keys = std::iter::once(taken.url_key.clone()).chain(
        taken
            .source_urls
            .iter()
            .filter_map(|url| canonicalize(url, &Rewrites::default()).ok())
            .map(|canonical| UrlKey::of(&canonical).as_str().to_owned()),
    );
    let mut keys: Vec<Tombstone> = url_keys
        .map(|key| Tombstone {
            key,
            kind: TombstoneKind::UrlKey,
        })
        .collect();
    keys.extend(taken.content_sha256.iter().map(|sha| Tombstone {
        key: sha.clone(),
        kind: TombstoneKind::ContentSha256,
    }));
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    keys.dedup_by(|a, b| a.key == b.key);
    keys
}

/// Where CDN purges go.
#[derive(Debug, Clone)]
pub struct CdnPurgeSettings {
    /// `POST`ed the JSON body `{"urls": [...], "surrogateKeys": [...]}`.
    pub url: String,
    /// Sent as `Authorization: Bearer ...` when set.
    pub token: Option<Secret>,
    /// How often the worker looks for requests committed elsewhere (another replica).
    pub poll: Duration,
}

/// Most requests sent per round.
const BATCH: u64 = 20;
/// How long a claim holds a request against other replicas while it is sent.
const CLAIM: Duration = Duration::from_secs(30);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two attempts of a request.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The worker that sends queued CDN purges (see the module doc).
pub struct CdnPurges {
    store: crate::store::Store,
    settings: CdnPurgeSettings,
    client: reqwest::Client,
    wake: Arc<Notify>,
}

impl CdnPurges {
    pub fn new(
        store: crate::store::Store,
        settings: CdnPurgeSettings,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            store,
            settings,
            client,
            wake,
        })
    }

    /// Sends due requests until `stop` completes.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let wait = match self.round().await {
                Ok(wait) => wait,
                Err(error) => {
                    tracing::warn!(%error, "CDN purges: cannot read the queue");
                    self.settings.poll
                }
            };
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Sends the due requests; returns how long to wait before the next round.
    async fn round(&self) -> Result<Duration, StoreError> {
        let db = self.store.connection();
        loop {
            let due = store::due_cdn_purges(db, Utc::now(), BATCH).await?;
            if due.is_empty() {
                break;
            }
            for purge in &due {
                // From the time of the claim: sending the batch's earlier rows takes time.
                let until = Utc::now() + chrono::Duration::from_std(CLAIM).unwrap_or_default();
                if store::claim_cdn_purge(db, purge, until).await? {
                    let outcome = self.send(purge).await;
                    store::record_cdn_attempt(db, purge.id, outcome).await?;
                }
            }
        }
        let next = store::next_cdn_purge_at(db).await?;
        let until_next = next
            .and_then(|at| (at - Utc::now()).to_std().ok())
            .unwrap_or(self.settings.poll);
        Ok(until_next.min(self.settings.poll))
    }

    /// One attempt: `Ok(sent at)`, or the error and when to try again.
    async fn send(&self, purge: &PendingPurge) -> Result<DateTime<Utc>, (String, DateTime<Utc>)> {
        let mut request = self
            .client
            .post(&self.settings.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(purge.payload.clone());
        if let Some(token) = &self.settings.token {
            request = request.bearer_auth(token.expose());
        }
        let failure = match request.send().await {
            Ok(response) if response.status().is_success() => return Ok(Utc::now()),
            Ok(response) => format!("the CDN answered {}", response.status()),
            Err(error) => format!("the CDN is unreachable: {error}"),
        };
        let backoff = backoff(purge.attempts);
        tracing::warn!(id = purge.id, attempts = purge.attempts + 1, error = %failure, retry_in_s = backoff.as_secs_f64(), "CDN purge failed");
        Err((
            failure,
            Utc::now() + chrono::Duration::from_std(backoff).unwrap_or_default(),
        ))
    }
}

/// Wait after `attempts` failed attempts: 1 s, 2 s, 4 s, ... up to [`MAX_BACKOFF`].
fn backoff(attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts).unwrap_or(0).min(16);
    Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_five_minutes() {
        let waits: Vec<u64> = [0, 1, 2, 8, 9, 30]
            .iter()
            .map(|&n| backoff(n).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 256, 300, 300]);
    }

    #[test]
    fn a_takedown_buries_every_spelling_and_the_bytes() {
        let taken = store::PurgedImage {
            url_key: "a".repeat(64),
            storage_key: "k".to_owned(),
            content_sha256: Some("b".repeat(64)),
            source_urls: vec![
                "https://IMG.example.com:443/p.jpg?utm_source=x".to_owned(),
                "upload:cafe".to_owned(),
            ],
            hotels: Vec::new(),
            already: false,
        };
        let canonical =
            canonicalize("https://img.example.com/p.jpg", &Rewrites::default()).expect("a URL");
        let mut want = vec![
            "a".repeat(64),
            "b".repeat(64),
            UrlKey::of(&canonical).as_str().to_owned(),
        ];
        want.sort();
        let got: Vec<String> = tombstones(&taken).into_iter().map(|t| t.key).collect();
        assert_eq!(got, want);
    }
}
