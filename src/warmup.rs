//! The `warmup` command: fills the CDN's cache before traffic arrives (a launch, a new CDN, a
//! purge) by requesting, for every hotel or the chosen ones, the CDN URLs of its main image and
//! of the first gallery images at the chosen sizes — the very URLs `Image.url(size)` answers,
//! built by the same [`Cdn`] from the hotels' published state (the read path: [`Catalog`]).
//!
//! Hotels are read in chunks, so memory stays flat however large the catalog; at most
//! `concurrency` requests are in flight. Each answer's body is read to its end (a CDN caches
//! what it delivered in full) and thrown away. The summary counts the answers by HTTP status;
//! requests that got no answer count as `timeout` or `error`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::domain::catalog::{HotelId, ImageId};
use crate::domain::curation::HotelRecord;
use crate::domain::media::{Cdn, ImageSize};
use crate::service::catalog::Catalog;

/// Hotels read from the database at once.
const HOTEL_CHUNK: u64 = 500;

/// What to warm.
#[derive(Debug, Clone)]
pub struct Plan {
    /// These hotels, in this order; every hotel when `None`.
    pub hotels: Option<Vec<HotelId>>,
    /// Gallery images per hotel besides the main image (the gallery's first ones).
    pub gallery: usize,
    /// The sizes each image is requested at.
    pub sizes: Vec<ImageSize>,
    /// Requests in flight at once (0 counts as 1).
    pub concurrency: usize,
    /// How long one request may take, its body included.
    pub timeout: Duration,
}

/// What a warmup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Hotels read (known to the catalog).
    pub hotels: u64,
    /// Chosen hotels the catalog does not know.
    pub unknown_hotels: u64,
    /// URLs requested.
    pub requests: u64,
    /// Answers by HTTP status (`"200"`, `"404"`, ...), and `timeout` / `error` for requests
    /// that got none.
    pub by_status: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        write!(
            f,
            "{} URLs of {} hotels in {seconds:.1}s ({:.0}/s)",
            self.requests,
            self.hotels,
            self.requests as f64 / seconds.max(1e-9)
        )?;
        if self.unknown_hotels > 0 {
            write!(f, "; {} hotels unknown", self.unknown_hotels)?;
        }
        for (status, count) in &self.by_status {
            write!(f, "\n  {status}: {count}")?;
        }
        Ok(())
    }
}

/// Requests the CDN URLs that `plan` names, advancing `bar` by one per answered request (its
/// length grows as hotels are read).
pub async fn warm(
    catalog: &Catalog,
    cdn: &Cdn,
    plan: &Plan,
    bar: &ProgressBar,
) -> anyhow::Result<Summary> {
    anyhow::ensure!(!plan.sizes.is_empty(), "--sizes names no size");
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(plan.timeout)
        .user_agent(concat!(
            "images-subgraph-warmup/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()?;
    let limit = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    let mut summary = Summary::default();
    // A hotel named twice is warmed (and counted) once: as a duplicate it would count as
    // unknown.
    let chosen: Option<Vec<HotelId>> = plan.hotels.as_ref().map(|ids| {
        let mut seen = std::collections::HashSet::new();
        ids.iter().copied().filter(|id| seen.insert(*id)).collect()
    });
    let mut chunks = HotelChunks::new(chosen.as_deref());
    while let Some(chunk) = chunks.next(catalog).await? {
        let records = catalog.hotels(&chunk).await?;
        summary.hotels += records.len() as u64;
        summary.unknown_hotels += (chunk.len() - records.len()) as u64;
        let wanted: Vec<ImageId> = chunk
            .iter()
            .filter_map(|id| records.get(id))
            .flat_map(|hotel| images_to_warm(hotel, plan.gallery))
            .collect();
        let images = catalog.images(&wanted).await?;
        let urls: Vec<String> = wanted
            .iter()
            .filter_map(|id| images.get(id))
            .flat_map(|image| {
                plan.sizes
                    .iter()
                    .map(|&size| cdn.url(&image.storage_key, size))
            })
            .collect();
        bar.inc_length(urls.len() as u64);
        for url in urls {
            let permit = limit.clone().acquire_owned().await?;
            let client = client.clone();
            in_flight.spawn(async move {
                let status = fetch(&client, &url).await;
                drop(permit);
                status
            });
            while let Some(done) = in_flight.try_join_next() {
                count(&mut summary, done?, bar);
            }
        }
    }
    while let Some(done) = in_flight.join_next().await {
        count(&mut summary, done?, bar);
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn count(summary: &mut Summary, status: String, bar: &ProgressBar) {
    summary.requests += 1;
    *summary.by_status.entry(status).or_default() += 1;
    bar.inc(1);
}

/// The main image, then the first `gallery` images of the gallery (which opens with the main
/// image: it is not requested twice).
fn images_to_warm(hotel: &HotelRecord, gallery: usize) -> impl Iterator<Item = ImageId> + '_ {
    let main = hotel.main.as_ref().map(|main| main.image_id);
    main.into_iter().chain(
        hotel
            .gallery
            .iter()
            .copied()
            .filter(move |id| Some(*id) != main)
            .take(gallery),
    )
}

/// GETs `url` and reads its body to the end; the answer's status, or why there was none.
async fn fetch(client: &reqwest::Client, url: &str) -> String {
    let mut response = match client.get(url).send().await {
        Ok(response) => response,
        Err(error) => return failure(&error),
    };
    let status = response.status().as_u16().to_string();
    loop {
        match response.chunk().await {
            Ok(Some(_)) => {}
            Ok(None) => return status,
            Err(error) => return failure(&error),
        }
    }
}

fn failure(error: &reqwest::Error) -> String {
    tracing::debug!(url = ?error.url().map(|u| u.as_str()), %error, "warmup request failed");
    if error.is_timeout() {
        "timeout".to_owned()
    } else {
        "error".to_owned()
    }
}

/// The hotels to warm, chunk by chunk: the chosen ones, or every hotel in ID order.
enum HotelChunks<'a> {
    Chosen(std::slice::Chunks<'a, HotelId>),
    All { after: Option<HotelId>, done: bool },
}

impl<'a> HotelChunks<'a> {
    fn new(chosen: Option<&'a [HotelId]>) -> Self {
        match chosen {
            Some(ids) => Self::Chosen(ids.chunks(HOTEL_CHUNK as usize)),
            None => Self::All {
                after: None,
                done: false,
            },
        }
    }

    async fn next(&mut self, catalog: &Catalog) -> anyhow::Result<Option<Vec<HotelId>>> {
        match self {
            Self::Chosen(chunks) => Ok(chunks.next().map(<[HotelId]>::to_vec)),
            Self::All { done: true, .. } => Ok(None),
            Self::All { after, done } => {
                let chunk = catalog.store().hotel_ids_after(*after, HOTEL_CHUNK).await?;
                *after = chunk.last().copied();
                *done = chunk.len() < HOTEL_CHUNK as usize;
                Ok((!chunk.is_empty()).then_some(chunk))
            }
        }
    }
}
