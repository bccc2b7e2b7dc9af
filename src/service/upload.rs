//! Hotelier uploads: the bytes go to the object store under their content hash (the same bytes
//! uploaded twice are one image), then one change (through the write kernel) links the image to
//! the hotel with the HOTELIER partner as its source and curates the hotel.

use serde_json::json;
use sha2::{Digest, Sha256};

use super::events;
use super::write::{
    Caller, UserError, UserErrorCode, Writer, check_text, retrying, use_case_error,
};
use crate::domain::catalog::{HotelId, ImageId, PartnerId};
use crate::domain::upload::{InspectedUpload, UploadError as FileError, inspect};
use crate::store::StoreError;
use crate::store::manage::{self as writes, UploadRecord};
use crate::store::objects::Objects;

use_case_error!(
    /// How an upload failed.
    UploadError
);

#[derive(Clone, Debug)]
pub struct Uploader {
    writer: Writer,
    objects: Objects,
    /// Largest accepted file.
    pub max_bytes: usize,
    /// The HOTELIER partner uploads are credited to.
    partner: PartnerId,
}

impl Uploader {
    pub fn new(writer: Writer, objects: Objects, max_bytes: usize, partner: PartnerId) -> Self {
        Self {
            writer,
            objects,
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
    ) -> Result<ImageId, UploadError> {
        caller.require(caller.actor.may_manage_hotel(hotel))?;
        check_text(caption, "caption")?;
        let inspected = inspect(&bytes, self.max_bytes).map_err(|error| {
            let code = match error {
                FileError::TooLarge { .. } => UserErrorCode::TooManyItems,
                _ => UserErrorCode::InvalidInput,
            };
            UserError::new(code, &["file"], error.to_string())
        })?;
        let storage_key = inspected.storage_key();
        self.objects
            .put(&storage_key, bytes)
            .await
            .map_err(|e| StoreError::Objects(e.to_string()))?;
        retrying(|| self.record(caller, hotel, &inspected, &storage_key, caption)).await
    }

    /// The change that records stored bytes as an image of `hotel`.
    async fn record(
        &self,
        caller: &Caller,
        hotel: HotelId,
        inspected: &InspectedUpload,
        storage_key: &str,
        caption: Option<&str>,
    ) -> Result<ImageId, UploadError> {
        // Uploads have no partner URL: their key is derived from the content, in a namespace
        // of its own so it can never equal the key of a canonical URL.
        let url_key = hex::encode(Sha256::digest(format!("upload:{}", inspected.sha256)));
        // What the image records as its URL and source: the content it was made of, not where
        // the bytes lie (a local store's URL is an absolute path of the server).
        let source_url = format!("upload:{}", inspected.sha256);
        let mut change = self.writer.begin().await?;
        let now = change.now();
        let record = UploadRecord {
            hotel,
            partner: self.partner.get(),
            url_key: &url_key,
            source_url: &source_url,
            storage_key,
            width: inspected.width,
            height: inspected.height,
            content_sha256: &inspected.sha256,
            caption,
        };
        let (image, created) = writes::record_upload(change.txn(), &record, now).await?;
        change.curate(&[hotel]).await?;
        if created {
            change.emit(events::image_created(
                image,
                &source_url,
                self.partner,
                hotel,
                now,
            ));
        }
        let audit = caller
            .audit(
                "uploadImage",
                json!({ "hotelId": hotel.to_string(), "imageId": image.to_string() }),
            )
            .with_after(json!({ "sha256": inspected.sha256, "created": created }));
        change.commit(Some(audit)).await?;
        Ok(image)
    }
}
