//! The catalog's business figures (what the old system ran as dashboard queries): hotels with
//! and without a main image, who chose the main images, images by status, the unclassified
//! backlog, and import outcomes per partner over the last day and week. Served to admins as
//! `catalogStats`, and as Prometheus gauges refreshed on an interval ([`refresh_gauges`]).
//!
//! Import outcomes come from the audit rows of the import batches (`importImages`: the
//! partner in `entityIds`, the count per outcome in `after`), so the command-line import and
//! the mutation count alike. Processing states do not exist yet (issue 16): not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::ServiceResult;
use super::catalog::Catalog;
use crate::domain::catalog::{MainImageOrigin, PartnerId, Status};
use crate::domain::ingest::Outcome;
use crate::store::stats::RawFigures;
use crate::store::{StoreError, StoreResult};
use crate::telemetry::Metrics;

/// The figures at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogStats {
    pub at: DateTime<Utc>,
    pub hotels_without_main_image: u64,
    /// Hotels with a main image, by who chose it.
    pub main_images_by_origin: BTreeMap<MainImageOrigin, u64>,
    pub images_by_status: BTreeMap<Status, u64>,
    /// Images without any tag (model or manual).
    pub unclassified_images: u64,
    /// Items imported per partner and outcome.
    pub imports: BTreeMap<(PartnerId, Outcome), ImportCounts>,
}

/// Items of one partner with one outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub last_day: u64,
    pub last_week: u64,
}

impl CatalogStats {
    pub fn hotels_with_main_image(&self) -> u64 {
        self.main_images_by_origin.values().sum()
    }

    /// The share of main images (0..1) chosen by `origin`; 0 without main images.
    pub fn main_image_share(&self, origin: MainImageOrigin) -> f64 {
        let all = self.hotels_with_main_image();
        let chosen = self
            .main_images_by_origin
            .get(&origin)
            .copied()
            .unwrap_or(0);
        if all == 0 {
            0.0
        } else {
            chosen as f64 / all as f64
        }
    }
}

const DAY: TimeDelta = TimeDelta::days(1);
const WEEK: TimeDelta = TimeDelta::days(7);

impl Catalog {
    /// The figures now.
    pub async fn stats(&self) -> ServiceResult<CatalogStats> {
        let now = Utc::now();
        let raw = self.store().catalog_figures(now - WEEK).await?;
        Ok(figures(raw, now)?)
    }
}

/// Parses and sums the stored figures.
fn figures(raw: RawFigures, now: DateTime<Utc>) -> StoreResult<CatalogStats> {
    let mut stats = CatalogStats {
        at: now,
        hotels_without_main_image: 0,
        main_images_by_origin: MainImageOrigin::ALL.iter().map(|o| (*o, 0)).collect(),
        images_by_status: Status::ALL.iter().map(|s| (*s, 0)).collect(),
        unclassified_images: raw.untagged_images,
        imports: BTreeMap::new(),
    };
    for (origin, n) in raw.hotels_by_origin {
        let n = n.max(0) as u64;
        match origin {
            None => stats.hotels_without_main_image += n,
            Some(origin) => {
                *stats
                    .main_images_by_origin
                    .entry(origin.parse().map_err(StoreError::Corrupt)?)
                    .or_default() += n
            }
        }
    }
    for (status, n) in raw.images_by_status {
        *stats
            .images_by_status
            .entry(status.parse().map_err(StoreError::Corrupt)?)
            .or_default() += n.max(0) as u64;
    }
    for (at, entity_ids, after) in raw.imports {
        let Some(partner) = import_partner(&entity_ids) else {
            continue;
        };
        let outcomes: serde_json::Value = after
            .and_then(|a| serde_json::from_str(&a).ok())
            .unwrap_or_default();
        for outcome in Outcome::ALL {
            let n = outcomes[outcome.as_str()].as_u64().unwrap_or(0);
            let counts = stats.imports.entry((partner, outcome)).or_default();
            counts.last_week += n;
            if at >= now - DAY {
                counts.last_day += n;
            }
        }
    }
    Ok(stats)
}

/// The partner of an import batch's audit row (`{"partnerId": "2"}`).
fn import_partner(entity_ids: &str) -> Option<PartnerId> {
    let ids: serde_json::Value = serde_json::from_str(entity_ids).ok()?;
    ids["partnerId"].as_str()?.parse().ok()
}

/// Sets the `catalog_*` gauges from `catalog`'s figures every `every`, until dropped. A
/// partner that no longer imports keeps its series, at 0.
pub async fn refresh_gauges(catalog: Catalog, metrics: Metrics, every: Duration) {
    // The first refresh after one period: not in the middle of start-up.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut partners_seen: BTreeSet<PartnerId> = BTreeSet::new();
    loop {
        ticks.tick().await;
        match catalog.stats().await {
            Ok(stats) => {
                partners_seen.extend(stats.imports.keys().map(|(partner, _)| *partner));
                set_gauges(&metrics, &stats, &partners_seen);
            }
            Err(error) => tracing::warn!(error = %error, "cannot refresh the catalog figures"),
        }
    }
}

fn set_gauges(metrics: &Metrics, stats: &CatalogStats, partners: &BTreeSet<PartnerId>) {
    use crate::telemetry::{
        CATALOG_HOTELS, CATALOG_IMAGES, CATALOG_IMPORTED, CATALOG_UNCLASSIFIED,
    };
    metrics.set_gauge(
        CATALOG_HOTELS,
        &[("main_image", "none".into())],
        stats.hotels_without_main_image as f64,
    );
    for (origin, n) in &stats.main_images_by_origin {
        let label = origin.as_str().to_ascii_lowercase();
        metrics.set_gauge(CATALOG_HOTELS, &[("main_image", label)], *n as f64);
    }
    for (status, n) in &stats.images_by_status {
        let label = status.as_str().to_ascii_lowercase();
        metrics.set_gauge(CATALOG_IMAGES, &[("status", label)], *n as f64);
    }
    metrics.set_gauge(CATALOG_UNCLASSIFIED, &[], stats.unclassified_images as f64);
    for partner in partners {
        for outcome in Outcome::ALL {
            let counts = stats
                .imports
                .get(&(*partner, outcome))
                .copied()
                .unwrap_or_default();
            for (window, n) in [("1d", counts.last_day), ("7d", counts.last_week)] {
                let labels = [
                    ("partner", partner.to_string()),
                    ("outcome", outcome.as_str().to_ascii_lowercase()),
                    ("window", window.to_owned()),
                ];
                metrics.set_gauge(CATALOG_IMPORTED, &labels, n as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_summed_by_origin_status_partner_outcome_and_window() {
        let now = Utc::now();
        let raw = RawFigures {
            hotels_by_origin: vec![
                (None, 2),
                (Some("COMPUTED".into()), 5),
                (Some("HOTELIER".into()), 3),
            ],
            images_by_status: vec![("ACTIVE".into(), 9), ("INACTIVE".into(), 1)],
            untagged_images: 4,
            imports: vec![
                (
                    now - TimeDelta::hours(1),
                    r#"{"partnerId":"2"}"#.into(),
                    Some(r#"{"CREATED":3,"REJECTED":1}"#.into()),
                ),
                (
                    now - TimeDelta::days(3),
                    r#"{"partnerId":"2"}"#.into(),
                    Some(r#"{"CREATED":2}"#.into()),
                ),
                (now, r#"{"hotels":1}"#.into(), None),
            ],
        };

        let stats = figures(raw, now).unwrap();

        assert_eq!(stats.hotels_without_main_image, 2);
        assert_eq!(stats.hotels_with_main_image(), 8);
        assert_eq!(stats.main_image_share(MainImageOrigin::Hotelier), 3.0 / 8.0);
        assert_eq!(stats.main_images_by_origin[&MainImageOrigin::Admin], 0);
        assert_eq!(stats.images_by_status[&Status::Inactive], 1);
        assert_eq!(stats.unclassified_images, 4);
        let partner = PartnerId::new(2).unwrap();
        assert_eq!(
            stats.imports[&(partner, Outcome::Created)],
            ImportCounts {
                last_day: 3,
                last_week: 5
            }
        );
        assert_eq!(stats.imports[&(partner, Outcome::Rejected)].last_day, 1);
        assert_eq!(stats.imports.len(), Outcome::ALL.len(), "one partner");
    }
}
