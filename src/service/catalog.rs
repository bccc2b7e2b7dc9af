//! The read use cases: batched lookups of hotels, images, galleries and their relations.
//!
//! Each method takes a set of keys and returns what exists, keyed; missing keys are simply
//! absent ("not found" is not an error). Hotels and images, the hot reads, go through the
//! [`Cache`], which shares its records (`Arc`) instead of copying them; the rest reads the
//! database.

use std::collections::HashMap;
use std::sync::Arc;

use super::ServiceResult;
use crate::cache::Cache;
use crate::domain::catalog::{HotelId, ImageId, PartnerId, Tag};
use crate::domain::curation::HotelRecord;
use crate::store::admin::{AuditFilter, AuditRecord};
use crate::store::search::{ImageSearch, SearchPage};
use crate::store::{ImageRecord, LinkFilter, PartnerRecord, SourceRecord, Store, Window};

/// Read access to the catalog.
#[derive(Clone, Debug)]
pub struct Catalog {
    store: Store,
    cache: Cache,
}

impl Catalog {
    pub fn new(store: Store, cache: Cache) -> Self {
        Self { store, cache }
    }

    pub async fn hotels(
        &self,
        ids: &[HotelId],
    ) -> ServiceResult<HashMap<HotelId, Arc<HotelRecord>>> {
        let store = &self.store;
        Ok(self
            .cache
            .hotels(ids, |missing| async move { store.hotels(&missing).await })
            .await?)
    }

    /// Images by ID. An ID retired into another image (same bytes, see
    /// [`crate::store::merge`]) answers its survivor: the record under the retired ID is the
    /// survivor's, `id` included. The mapping is looked up only for IDs no level has an image
    /// for, and the survivor is read through the cache like any image, so it is as fresh as
    /// the survivor's own invalidations make it (a retired ID's mapping never changes).
    pub async fn images(
        &self,
        ids: &[ImageId],
    ) -> ServiceResult<HashMap<ImageId, Arc<ImageRecord>>> {
        let mut found = self.live_images(ids).await?;
        let missing: Vec<ImageId> = ids
            .iter()
            .copied()
            .filter(|id| !found.contains_key(id))
            .collect();
        if missing.is_empty() {
            return Ok(found);
        }
        let survivors = self.store.survivors(&missing).await?;
        if survivors.is_empty() {
            return Ok(found);
        }
        let mut wanted: Vec<ImageId> = survivors.values().copied().collect();
        wanted.sort_unstable();
        wanted.dedup();
        let live = self.live_images(&wanted).await?;
        for (retired, survivor) in survivors {
            if let Some(record) = live.get(&survivor) {
                found.insert(retired, record.clone());
            }
        }
        Ok(found)
    }

    /// The images (not retired) of `ids`, through the cache.
    async fn live_images(
        &self,
        ids: &[ImageId],
    ) -> ServiceResult<HashMap<ImageId, Arc<ImageRecord>>> {
        let store = &self.store;
        Ok(self
            .cache
            .images(ids, |missing| async move { store.images(&missing).await })
            .await?)
    }

    /// The reason each image was deactivated with (admin reads: the caller checks).
    pub async fn status_reasons(&self, ids: &[ImageId]) -> ServiceResult<HashMap<ImageId, String>> {
        Ok(self.store.status_reasons(ids).await?)
    }

    /// Processing state and measured values of `ids` (admin reads: the caller checks).
    pub async fn processing(
        &self,
        ids: &[ImageId],
    ) -> ServiceResult<HashMap<ImageId, crate::store::admin::Processing>> {
        Ok(self.store.processing(ids).await?)
    }

    /// A page of the audit log, newest first (admin reads: the caller checks).
    pub async fn audit_log(
        &self,
        filter: &AuditFilter,
        window: Window,
    ) -> ServiceResult<Vec<AuditRecord>> {
        Ok(self.store.audit_log(filter, window).await?)
    }

    /// A page of the images matching `filter`, highest ID first, examining at most `budget`
    /// rows (admin reads: the caller checks).
    pub async fn search_images(
        &self,
        filter: &ImageSearch,
        window: Window,
        budget: u64,
    ) -> ServiceResult<SearchPage> {
        Ok(self.store.search_images(filter, window, budget).await?)
    }

    /// A page of the hotels without a main image, by ID (admin reads: the caller checks).
    pub async fn hotels_without_main_image(&self, window: Window) -> ServiceResult<Vec<HotelId>> {
        Ok(self.store.hotels_without_main_image(window).await?)
    }

    pub async fn count_hotels_without_main_image(&self) -> ServiceResult<u64> {
        Ok(self.store.count_hotels_without_main_image().await?)
    }

    pub async fn tags(&self, ids: &[ImageId]) -> ServiceResult<HashMap<ImageId, Vec<Tag>>> {
        Ok(self.store.tags(ids).await?)
    }

    pub async fn sources(
        &self,
        ids: &[ImageId],
    ) -> ServiceResult<HashMap<ImageId, Vec<SourceRecord>>> {
        Ok(self.store.sources(ids).await?)
    }

    pub async fn legacy_ids(
        &self,
        ids: &[ImageId],
    ) -> ServiceResult<HashMap<ImageId, Vec<String>>> {
        Ok(self.store.legacy_ids(ids).await?)
    }

    pub async fn images_by_legacy_id(
        &self,
        legacy_ids: &[String],
    ) -> ServiceResult<HashMap<String, ImageId>> {
        Ok(self.store.images_by_legacy_id(legacy_ids).await?)
    }

    pub async fn images_by_url_key(
        &self,
        url_keys: &[String],
    ) -> ServiceResult<HashMap<String, ImageId>> {
        Ok(self.store.images_by_url_key(url_keys).await?)
    }

    /// Every partner (`None`) or the given ones, by ID.
    pub async fn partners(&self, ids: Option<&[PartnerId]>) -> ServiceResult<Vec<PartnerRecord>> {
        Ok(self.store.partners(ids).await?)
    }

    pub async fn hotel_links(
        &self,
        hotels: &[HotelId],
        filter: LinkFilter,
        window: Window,
    ) -> ServiceResult<HashMap<HotelId, Vec<ImageId>>> {
        Ok(self.store.hotel_links(hotels, filter, window).await?)
    }

    pub async fn hotel_link_counts(
        &self,
        hotels: &[HotelId],
        filter: LinkFilter,
    ) -> ServiceResult<HashMap<HotelId, i64>> {
        Ok(self.store.hotel_link_counts(hotels, filter).await?)
    }

    pub async fn image_hotels(
        &self,
        images: &[ImageId],
        window: Window,
    ) -> ServiceResult<HashMap<ImageId, Vec<HotelId>>> {
        Ok(self.store.image_hotels(images, window).await?)
    }

    pub async fn image_hotel_counts(
        &self,
        images: &[ImageId],
    ) -> ServiceResult<HashMap<ImageId, i64>> {
        Ok(self.store.image_hotel_counts(images).await?)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Whether the database answers (readiness).
    pub async fn ready(&self) -> ServiceResult<()> {
        Ok(self.store.ping().await?)
    }
}
