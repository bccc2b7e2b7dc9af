//! Request-scoped batched loading: every entity resolver and relation field loads through
//! [`Loaders`], so N lookups of one kind in a request become one call to the service (one SQL
//! statement), whatever the number of representations or list items.
//!
//! Keys are small newtypes so that one loader can serve several relations of the same ID type
//! (an image's tags, sources and legacy IDs are all keyed by image).
//!
//! Every batch records its size (the `dataloader_batch_size` histogram, by key kind), and a
//! failed batch is logged here, once, however many fields were waiting on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use tracing::Instrument as _;

use super::error::{LoadError, log_unexpected};
use crate::domain::catalog::{HotelId, ImageId, PartnerId, Tag};
use crate::domain::curation::HotelRecord;
use crate::service::ServiceError;
use crate::service::catalog::Catalog;
use crate::store::{ImageRecord, LinkFilter, PartnerRecord, SourceRecord, Window};
use crate::telemetry::{LoaderKind, Metrics};

/// The loaders of one request. Never shared between requests: its cache is per request.
/// (Behind an `Arc`: [`super::execute`] primes them before the request's execution.)
pub type Loaders = Arc<DataLoader<CatalogLoader, HashMapCache>>;

/// Builds the loaders of one request. `delay` is how long a batch waits for more keys.
pub fn loaders(catalog: Catalog, metrics: Metrics, delay: Duration) -> Loaders {
    Arc::new(
        DataLoader::with_cache(
            CatalogLoader { catalog, metrics },
            // A batch runs in a task of its own: keep it in the request's span, so that what it
            // logs carries the request ID.
            |batch| tokio::spawn(batch.in_current_span()),
            HashMapCache::default(),
        )
        .delay(delay),
    )
}

pub struct CatalogLoader {
    catalog: Catalog,
    metrics: Metrics,
}

impl CatalogLoader {
    fn record_batch(&self, kind: &'static LoaderKind, size: usize) {
        self.metrics.loader_batch(kind, size);
    }
}

/// A failed batch: logged here, once, then shared by every field waiting on it.
fn failed(error: ServiceError) -> LoadError {
    log_unexpected(&error);
    Arc::new(error)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TagsOf(pub ImageId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourcesOf(pub ImageId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LegacyIdsOf(pub ImageId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusReasonOf(pub ImageId);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessingOf(pub ImageId);
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ByLegacyId(pub String);
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ByUrlKey(pub String);

/// A window of a hotel's linked images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HotelLinks {
    pub hotel: HotelId,
    pub filter: LinkFilter,
    pub window: Window,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HotelLinkCount {
    pub hotel: HotelId,
    pub filter: LinkFilter,
}
/// A window of the hotels an image is linked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageHotels {
    pub image: ImageId,
    pub window: Window,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageHotelCount(pub ImageId);

/// Empties the request's cache of everything (after a change in the same request).
pub fn forget_all(loaders: &Loaders) {
    loaders.clear::<HotelId>();
    loaders.clear::<ImageId>();
    loaders.clear::<PartnerId>();
    loaders.clear::<TagsOf>();
    loaders.clear::<SourcesOf>();
    loaders.clear::<LegacyIdsOf>();
    loaders.clear::<StatusReasonOf>();
    loaders.clear::<ProcessingOf>();
    loaders.clear::<ByLegacyId>();
    loaders.clear::<ByUrlKey>();
    loaders.clear::<HotelLinks>();
    loaders.clear::<HotelLinkCount>();
    loaders.clear::<ImageHotels>();
    loaders.clear::<ImageHotelCount>();
}

/// Implements `Loader<$key>` by calling `$method` with the unwrapped keys and re-keying the
/// answer; `$kind` labels its batch sizes.
macro_rules! keyed_loader {
    ($kind:literal, $key:ty, $inner:ty, $value:ty, $method:ident, $wrap:expr, $unwrap:expr) => {
        impl Loader<$key> for CatalogLoader {
            type Value = $value;
            type Error = LoadError;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, $value>, LoadError> {
                static KIND: LoaderKind = LoaderKind::new($kind);
                self.record_batch(&KIND, keys.len());
                let inner: Vec<$inner> = keys.iter().map($unwrap).collect();
                let found = self.catalog.$method(&inner).await.map_err(failed)?;
                Ok(found.into_iter().map(|(k, v)| ($wrap(k), v)).collect())
            }
        }
    };
}

/// Implements `Loader` for the cached records (hotels, images): every key gets an answer,
/// `None` when the record does not exist, so that the request's cache remembers misses too
/// (a hotel this subgraph has no images for is common, and asked for again by several fields).
macro_rules! record_loader {
    ($kind:literal, $key:ty, $record:ty, $method:ident) => {
        impl Loader<$key> for CatalogLoader {
            type Value = Option<Arc<$record>>;
            type Error = LoadError;

            async fn load(&self, keys: &[$key]) -> Result<HashMap<$key, Self::Value>, LoadError> {
                static KIND: LoaderKind = LoaderKind::new($kind);
                self.record_batch(&KIND, keys.len());
                let found = self.catalog.$method(keys).await.map_err(failed)?;
                Ok(every_key(keys, found))
            }
        }
    };
}

record_loader!("hotel", HotelId, HotelRecord, hotels);
record_loader!("image", ImageId, ImageRecord, images);

/// An entry for each of `keys`: the record found, or `None`.
pub fn every_key<K: Copy + Eq + std::hash::Hash, R>(
    keys: &[K],
    found: HashMap<K, R>,
) -> HashMap<K, Option<R>> {
    let mut answers: HashMap<K, Option<R>> = found.into_iter().map(|(k, r)| (k, Some(r))).collect();
    for key in keys {
        answers.entry(*key).or_insert(None);
    }
    answers
}

keyed_loader!(
    "image_tags",
    TagsOf,
    ImageId,
    Vec<Tag>,
    tags,
    TagsOf,
    |k: &TagsOf| k.0
);
keyed_loader!(
    "image_sources",
    SourcesOf,
    ImageId,
    Vec<SourceRecord>,
    sources,
    SourcesOf,
    |k: &SourcesOf| k.0
);
keyed_loader!(
    "image_legacy_ids",
    LegacyIdsOf,
    ImageId,
    Vec<String>,
    legacy_ids,
    LegacyIdsOf,
    |k: &LegacyIdsOf| k.0
);
keyed_loader!(
    "image_status_reason",
    StatusReasonOf,
    ImageId,
    String,
    status_reasons,
    StatusReasonOf,
    |k: &StatusReasonOf| k.0
);
keyed_loader!(
    "image_processing",
    ProcessingOf,
    ImageId,
    crate::store::admin::Processing,
    processing,
    ProcessingOf,
    |k: &ProcessingOf| k.0
);
keyed_loader!(
    "image_by_legacy_id",
    ByLegacyId,
    String,
    ImageId,
    images_by_legacy_id,
    ByLegacyId,
    |k: &ByLegacyId| k.0.clone()
);
keyed_loader!(
    "image_by_url_key",
    ByUrlKey,
    String,
    ImageId,
    images_by_url_key,
    ByUrlKey,
    |k: &ByUrlKey| k.0.clone()
);
keyed_loader!(
    "image_hotel_count",
    ImageHotelCount,
    ImageId,
    i64,
    image_hotel_counts,
    ImageHotelCount,
    |k: &ImageHotelCount| k.0
);

impl Loader<PartnerId> for CatalogLoader {
    type Value = PartnerRecord;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[PartnerId],
    ) -> Result<HashMap<PartnerId, PartnerRecord>, LoadError> {
        static KIND: LoaderKind = LoaderKind::new("partner");
        self.record_batch(&KIND, keys.len());
        let found = self.catalog.partners(Some(keys)).await.map_err(failed)?;
        Ok(found.into_iter().map(|p| (p.id, p)).collect())
    }
}

/// Splits `keys` into groups that share the parameters `param` picks, so that each group is
/// one batched call.
fn group_by<K: Copy, P: Eq + std::hash::Hash>(
    keys: &[K],
    param: impl Fn(&K) -> P,
) -> HashMap<P, Vec<K>> {
    let mut groups: HashMap<P, Vec<K>> = HashMap::new();
    for key in keys {
        groups.entry(param(key)).or_default().push(*key);
    }
    groups
}

impl Loader<HotelLinks> for CatalogLoader {
    type Value = Vec<ImageId>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[HotelLinks],
    ) -> Result<HashMap<HotelLinks, Vec<ImageId>>, LoadError> {
        static KIND: LoaderKind = LoaderKind::new("hotel_links");
        self.record_batch(&KIND, keys.len());
        let mut out = HashMap::new();
        for ((filter, window), group) in group_by(keys, |k| (k.filter, k.window)) {
            let hotels: Vec<HotelId> = group.iter().map(|k| k.hotel).collect();
            let mut found = self
                .catalog
                .hotel_links(&hotels, filter, window)
                .await
                .map_err(failed)?;
            for key in group {
                out.insert(key, found.remove(&key.hotel).unwrap_or_default());
            }
        }
        Ok(out)
    }
}

impl Loader<HotelLinkCount> for CatalogLoader {
    type Value = i64;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[HotelLinkCount],
    ) -> Result<HashMap<HotelLinkCount, i64>, LoadError> {
        static KIND: LoaderKind = LoaderKind::new("hotel_link_count");
        self.record_batch(&KIND, keys.len());
        let mut out = HashMap::new();
        for (filter, group) in group_by(keys, |k| k.filter) {
            let hotels: Vec<HotelId> = group.iter().map(|k| k.hotel).collect();
            let found = self
                .catalog
                .hotel_link_counts(&hotels, filter)
                .await
                .map_err(failed)?;
            for key in group {
                out.insert(key, found.get(&key.hotel).copied().unwrap_or(0));
            }
        }
        Ok(out)
    }
}

impl Loader<ImageHotels> for CatalogLoader {
    type Value = Vec<HotelId>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ImageHotels],
    ) -> Result<HashMap<ImageHotels, Vec<HotelId>>, LoadError> {
        static KIND: LoaderKind = LoaderKind::new("image_hotels");
        self.record_batch(&KIND, keys.len());
        let mut out = HashMap::new();
        for (window, group) in group_by(keys, |k| k.window) {
            let images: Vec<ImageId> = group.iter().map(|k| k.image).collect();
            let mut found = self
                .catalog
                .image_hotels(&images, window)
                .await
                .map_err(failed)?;
            for key in group {
                out.insert(key, found.remove(&key.image).unwrap_or_default());
            }
        }
        Ok(out)
    }
}
