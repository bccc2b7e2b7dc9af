//! Hotelier uploads: the bytes go to the object store under their content hash (the same bytes
//! uploaded twice are one image), then one transaction links the image to the hotel with the
//! HOTELIER partner as its source and curates the hotel.

use chrono::Utc;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::events;
use super::freshness::Freshness;
use super::manage::{Caller, ManageError, ManageResult, UserError, UserErrorCode, commit};
use crate::domain::catalog::{HotelId, ImageId, PartnerId};
use crate::domain::curation::Rules;
use crate::domain::upload::{UploadError, inspect};
use crate::store::manage::{self as writes, AuditEntry, UploadRecord};
use crate::store::objects::Objects;
use crate::store::publish::publish;
use crate::store::{Store, StoreError};

#[derive(Clone, Debug)]
pub struct Uploader {
    store: Store,
    /// Told what each committed upload made stale.
    freshness: Freshness,
    objects: Objects,
    rules: Rules,
    /// Largest accepted file.
    pub max_bytes: usize,
    /// The HOTELIER partner uploads are credited to.
    partner: PartnerId,
}

impl Uploader {
    pub fn new(
        store: Store,
        freshness: Freshness,
        objects: Objects,
        rules: Rules,
        max_bytes: usize,
        partner: PartnerId,
    ) -> Self {
        Self {
            store,
            freshness,
            objects,
            rules,
            max_bytes,
            partner,
        }
    }

    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// Stores `bytes` as an image of `hotel`; returns the image.
    pub async fn upload(
        &self,
        caller: &Caller,
        hotel: HotelId,
        bytes: Vec<u8>,
        caption: Option<&str>,
    ) -> ManageResult<ImageId> {
        if !caller.actor.may_manage_hotel(hotel) {
            return Err(ManageError::Forbidden);
        }
        if caption.is_some_and(|c| c.chars().count() > super::manage::MAX_TEXT) {
            return Err(UserError::new(
                UserErrorCode::InvalidInput,
                &["caption"],
                "at most 1000 characters",
            )
            .into());
        }
        let inspected = inspect(&bytes, self.max_bytes).map_err(|error| {
            let code = match error {
                UploadError::TooLarge { .. } => UserErrorCode::TooManyItems,
                _ => UserErrorCode::InvalidInput,
            };
            UserError::new(code, &["file"], error.to_string())
        })?;
        let storage_key = inspected.storage_key();
        self.objects
            .put(&storage_key, bytes)
            .await
            .map_err(|e| StoreError::Objects(e.to_string()))?;
        // Uploads have no partner URL: their key is derived from the content, in a namespace
        // of its own so it can never equal the key of a canonical URL.
        let url_key = hex::encode(Sha256::digest(format!("upload:{}", inspected.sha256)));
        let source_url = self.objects.source_url(&storage_key);
        let now = Utc::now();
        let txn = self.store.begin_write().await?;
        let (image, created) = writes::record_upload(
            &txn,
            &UploadRecord {
                hotel,
                partner: self.partner.get(),
                url_key: &url_key,
                source_url: &source_url,
                storage_key: &storage_key,
                width: inspected.width,
                height: inspected.height,
                content_sha256: &inspected.sha256,
                caption,
            },
            now,
        )
        .await?;
        let changes = publish(&txn, &[hotel], &self.rules, now).await?;
        let created_event =
            created.then(|| events::image_created(image, &source_url, self.partner, hotel, now));
        let audit = AuditEntry {
            actor: caller.name(),
            operation: "uploadImage",
            entity_ids: json!({ "hotelId": hotel.to_string(), "imageId": image.to_string() }),
            before: None,
            after: Some(json!({ "sha256": inspected.sha256, "created": created })),
            request_id: caller.request_id.clone(),
        };
        commit(
            &self.freshness,
            txn,
            audit,
            created_event.into_iter().collect(),
            &changes,
            now,
        )
        .await?;
        Ok(image)
    }
}
