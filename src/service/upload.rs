//! Hotelier uploads: the bytes go to the object store under their content hash (the same bytes
//! uploaded twice are one image), then one change (through the write kernel) links the image to
//! the hotel with the HOTELIER partner as its source and curates the hotel.

use serde_json::json;

use super::events;
use super::manage::{begin_hotel_change, not_linked};
use super::write::{
    Caller, UserError, UserErrorCode, Writer, check_text, retrying, use_case_error,
};
use crate::domain::catalog::{HotelId, ImageId, PartnerId};
use crate::domain::measure::{MeasureLimits, Reason};
use crate::domain::upload::{InspectedUpload, UploadError as FileError, inspect, upload_url_key};
use crate::store::StoreError;
use crate::store::manage::{self as writes, Removal, UploadRecord};
use crate::store::objects::Objects;

use_case_error!(
    /// How an upload failed.
    UploadError
);

/// What removing an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemovedUpload {
    /// The image is no longer shown for the hotel (false: another partner delivers it there).
    pub unlinked: bool,
    /// No hotel showed the image any more, and its stored bytes were deleted.
    pub bytes_deleted: bool,
}

#[derive(Clone, Debug)]
pub struct Uploader {
    writer: Writer,
    objects: Objects,
    /// Largest accepted file.
    pub max_bytes: usize,
    /// Largest accepted picture (pixels, side), checked before it is decoded.
    limits: MeasureLimits,
    /// The HOTELIER partner uploads are credited to.
    partner: PartnerId,
}

impl Uploader {
    pub fn new(
        writer: Writer,
        objects: Objects,
        max_bytes: usize,
        limits: MeasureLimits,
        partner: PartnerId,
    ) -> Self {
        Self {
            writer,
            objects,
            max_bytes,
            limits,
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
        // Measuring decodes the whole picture: CPU work, off the async threads.
        let (max_bytes, limits) = (self.max_bytes, self.limits);
        let (bytes, inspected) = tokio::task::spawn_blocking(move || {
            let inspected = inspect(&bytes, max_bytes, limits);
            (bytes, inspected)
        })
        .await
        .map_err(|e| StoreError::Objects(format!("measuring an upload failed: {e}")))?;
        let inspected = inspected.map_err(refused_file)?;
        // Bytes a takedown buried never come back: refused before they are stored again (and
        // checked again in the change, against a takedown committing meanwhile).
        let sha256 = &inspected.measured.sha256;
        if super::purge::bytes_buried(self.writer.store().connection(), sha256).await? {
            return Err(super::purge::purged_error("file").into());
        }
        retrying(|| self.record(caller, hotel, &inspected, &bytes, caption)).await
    }

    /// Deletes the bytes at `key` unless an image shown for some hotel uses them (an upload
    /// of the same bytes may have committed since the removal did); whether they were deleted.
    /// Checked and deleted inside a transaction holding the rows of the images stored there,
    /// so an upload of the same bytes stores them again only after the deletion.
    async fn delete_unshown(&self, key: &str) -> Result<bool, StoreError> {
        let change = self.writer.begin().await?;
        if writes::storage_key_shown(change.txn(), key).await? {
            return Ok(false);
        }
        self.objects
            .delete(key)
            .await
            .map_err(|e| StoreError::Objects(e.to_string()))?;
        // Nothing was written: dropping the change ends it.
        Ok(true)
    }

    /// Removes `hotel`'s upload of `image` (a hotelier for their own hotels, or an admin): the
    /// hotel's delivery, and its link unless another partner delivers the image there; then,
    /// after the commit, the stored bytes when no hotel shows them any more.
    pub async fn remove(
        &self,
        caller: &Caller,
        hotel: HotelId,
        image: ImageId,
        expected_version: Option<i64>,
    ) -> Result<RemovedUpload, UploadError> {
        let removed = retrying(|| self.remove_once(caller, hotel, image, expected_version)).await?;
        let mut bytes_deleted = false;
        if let Some(key) = &removed.orphaned_bytes {
            // After the commit: a rolled-back removal must not lose the bytes. A failure leaves
            // bytes nobody shows, which only costs storage.
            match self.delete_unshown(key).await {
                Ok(deleted) => bytes_deleted = deleted,
                Err(error) => {
                    tracing::warn!(%error, key, "the bytes of a removed upload were not deleted")
                }
            }
        }
        Ok(RemovedUpload {
            unlinked: removed.unlinked,
            bytes_deleted,
        })
    }

    async fn remove_once(
        &self,
        caller: &Caller,
        hotel: HotelId,
        image: ImageId,
        expected_version: Option<i64>,
    ) -> Result<Removal, UploadError> {
        let (mut change, before) =
            begin_hotel_change::<UploadError>(&self.writer, caller, hotel, expected_version)
                .await?;
        if writes::link_status(change.txn(), hotel, image)
            .await?
            .is_none()
        {
            return Err(not_linked().into());
        }
        let Some(removal) =
            writes::remove_delivery(change.txn(), hotel, image, self.partner.get()).await?
        else {
            return Err(UserError::new(
                UserErrorCode::NotAnUpload,
                &["imageId"],
                "the image was not uploaded for this hotel",
            )
            .into());
        };
        change.curate(&[hotel]).await?;
        let bytes = removal.orphaned_bytes.is_some();
        let audit = caller
            .audit(
                "removeUpload",
                json!({ "hotelId": hotel.to_string(), "imageId": image.to_string() }),
            )
            .with_before(json!({ "version": before }))
            // Orphaned: to be deleted after the commit (the payload says whether they were).
            .with_after(json!({ "unlinked": removal.unlinked, "bytesOrphaned": bytes }));
        let now = change.now();
        change.emit(events::image_unlinked(
            image,
            hotel,
            removal.unlinked,
            bytes,
            now,
        ));
        change.commit(Some(audit)).await?;
        Ok(removal)
    }

    /// The change that records stored bytes as an image of `hotel`.
    async fn record(
        &self,
        caller: &Caller,
        hotel: HotelId,
        inspected: &InspectedUpload,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> Result<ImageId, UploadError> {
        let url_key = upload_url_key(&inspected.measured.sha256);
        let storage_key = inspected.storage_key();
        let storage_key = storage_key.as_str();
        // What the image records as its URL and source: the content it was made of, not where
        // the bytes lie (a local store's URL is an absolute path of the server).
        let source_url = format!("upload:{}", inspected.measured.sha256);
        let mut change = self.writer.begin().await?;
        // The image's row first: a takedown of it committing meanwhile is seen below, and a
        // removal deleting its bytes finishes before they are stored again.
        writes::lock_image_by_url_key(change.txn(), &url_key).await?;
        if super::purge::bytes_buried(change.txn(), &inspected.measured.sha256).await? {
            return Err(super::purge::purged_error("file").into());
        }
        // Stored inside the change: a change rolled back leaves bytes nobody shows (storage
        // only), never an image without its bytes.
        self.objects
            .put(storage_key, bytes.to_vec())
            .await
            .map_err(|e| StoreError::Objects(e.to_string()))?;
        let now = change.now();
        let record = UploadRecord {
            hotel,
            partner: self.partner.get(),
            url_key: &url_key,
            source_url: &source_url,
            storage_key,
            width: inspected.measured.width,
            height: inspected.measured.height,
            content_sha256: &inspected.measured.sha256,
            perceptual_hash: inspected.measured.perceptual_hash,
            measured_quality: inspected.measured.quality.score,
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
            .with_after(json!({ "sha256": inspected.measured.sha256, "created": created }));
        change.commit(Some(audit)).await?;
        Ok(image)
    }
}

/// The user error of a file that was refused, with the measuring's reason as its code.
fn refused_file(error: FileError) -> UserError {
    let code = match &error {
        FileError::TooLarge { .. } => UserErrorCode::TooManyItems,
        FileError::Empty => UserErrorCode::InvalidInput,
        FileError::Refused(refusal) => match refusal.reason {
            Reason::UnsupportedFormat => UserErrorCode::UnsupportedFormat,
            Reason::TooManyPixels => UserErrorCode::TooManyPixels,
            Reason::NotAnImage => UserErrorCode::NotAnImage,
            // The other reasons are of fetching; a file that is there but unusable does not
            // decode.
            _ => UserErrorCode::DecodeError,
        },
    };
    UserError::new(code, &["file"], error.to_string())
}
