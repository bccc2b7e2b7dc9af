//! The `Mutation` root: every change takes one `input` and returns a payload with the changed
//! objects and `userErrors`. An expected failure (not found, stale version, invalid input, ...)
//! is a `userErrors` entry with a stable code and changes nothing; a caller without a token is
//! a top-level `UNAUTHENTICATED` error, one without the right a `FORBIDDEN` one.

use async_graphql::{
    Context, ID, InputObject, MaybeUndefined, Object, Result, SimpleObject, Upload,
};
use std::io::Read as _;

use super::ingest::{
    ImportImagesInput, ImportImagesPayload, UpsertPartnerInput, UpsertPartnerPayload,
};
use super::payload::{
    ImageTagInput, UserError, caller, forget_loaded, outcome, parse_id, parse_ids, service,
};
use super::types::{Hotel, Image, load_images, load_images_shown_by};
use crate::domain::catalog::{HotelId, ImageId};
use crate::service::manage::{Classification, ManageError, Manager, TagInput, TextsChange};
use crate::service::process::{ProcessError, Processor, RetryScope};
use crate::service::purge::{PurgeError, Purger};
use crate::service::upload::{UploadError, Uploader};
use crate::service::write::{self, UserErrorCode};

/// Longest list of hotel IDs one (de)activation takes.
const MAX_HOTEL_IDS: usize = 1_000;

#[derive(InputObject)]
pub struct SetMainImageInput {
    pub hotel_id: ID,
    pub image_id: ID,
    /// The hotel's `version` the caller last saw; the change is refused when it moved on.
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct ResetMainImageInput {
    pub hotel_id: ID,
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct SetGalleryPinsInput {
    pub hotel_id: ID,
    /// These images lead the gallery in this order (after the main image); empty clears pins.
    pub image_ids: Vec<ID>,
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct DeactivateImageInput {
    pub image_id: ID,
    pub reason: Option<String>,
    /// Only for these hotels; without it, everywhere.
    pub hotel_ids: Option<Vec<ID>>,
}

#[derive(InputObject)]
pub struct ActivateImageInput {
    pub image_id: ID,
    /// Only for these hotels; without it, everywhere.
    pub hotel_ids: Option<Vec<ID>>,
}

#[derive(InputObject)]
pub struct UpdateImageInput {
    pub image_id: ID,
    /// The image's own caption, shown wherever a hotel has none of its own. Omitted:
    /// unchanged; null: cleared.
    pub caption: MaybeUndefined<String>,
    /// The image's own alt text, likewise.
    pub alt_text: MaybeUndefined<String>,
    /// Manual tags, which beat model tags. Omitted: unchanged; empty: cleared.
    pub tags: Option<Vec<ImageTagInput>>,
}

#[derive(InputObject)]
pub struct HideImageInput {
    pub hotel_id: ID,
    pub image_id: ID,
    pub reason: Option<String>,
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct ShowImageInput {
    pub hotel_id: ID,
    pub image_id: ID,
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct UpdateHotelImageInput {
    pub hotel_id: ID,
    pub image_id: ID,
    /// The hotel's caption of the image, shown wherever the hotel shows it. Omitted:
    /// unchanged; null: cleared (the image's own caption shows again).
    pub caption: MaybeUndefined<String>,
    /// The hotel's alt text of the image, likewise.
    pub alt_text: MaybeUndefined<String>,
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct RemoveUploadInput {
    pub hotel_id: ID,
    pub image_id: ID,
    pub expected_version: Option<i64>,
}

#[derive(InputObject)]
pub struct PurgeImageInput {
    pub image_id: ID,
    /// Why (a legal or privacy request): kept in the audit log and the `ImagePurged` event.
    pub reason: String,
}

#[derive(SimpleObject)]
pub struct PurgeImagePayload {
    /// The purged image: inactive, without texts, shown nowhere.
    pub image: Option<Image>,
    /// The hotels that showed it.
    pub affected_hotels: Vec<Hotel>,
    /// Its stored bytes are deleted from the object store.
    pub bytes_deleted: bool,
    pub user_errors: Vec<UserError>,
}

#[derive(InputObject)]
pub struct ClassificationInput {
    pub image_id: ID,
    /// The model's tags; they replace the image's previous model tags.
    pub tags: Vec<ImageTagInput>,
    /// In 0..1.
    pub quality_score: Option<f64>,
}

#[derive(InputObject)]
pub struct ClassifyImagesInput {
    /// At most 500.
    pub items: Vec<ClassificationInput>,
}

/// Payloads of the hotel-scoped changes: the hotel as it is after the call.
macro_rules! hotel_payload {
    ($name:ident) => {
        #[derive(SimpleObject)]
        pub struct $name {
            pub hotel: Option<Hotel>,
            pub user_errors: Vec<UserError>,
        }
    };
}
hotel_payload!(SetMainImagePayload);
hotel_payload!(ResetMainImagePayload);
hotel_payload!(SetGalleryPinsPayload);

#[derive(SimpleObject)]
pub struct RemoveUploadPayload {
    pub hotel: Option<Hotel>,
    /// No hotel shows the image any more: its stored bytes were deleted.
    pub bytes_deleted: bool,
    pub user_errors: Vec<UserError>,
}

/// Payloads of the changes of one hotel's image: the hotel, and the image as the hotel shows
/// it, after the call.
macro_rules! hotel_image_payload {
    ($name:ident) => {
        #[derive(SimpleObject)]
        pub struct $name {
            pub hotel: Option<Hotel>,
            pub image: Option<Image>,
            pub user_errors: Vec<UserError>,
        }
    };
}
hotel_image_payload!(HideImagePayload);
hotel_image_payload!(ShowImagePayload);
hotel_image_payload!(UpdateHotelImagePayload);

macro_rules! status_payload {
    ($name:ident) => {
        #[derive(SimpleObject)]
        pub struct $name {
            pub image: Option<Image>,
            /// The hotels whose view of the image changed.
            pub affected_hotels: Vec<Hotel>,
            pub user_errors: Vec<UserError>,
        }
    };
}
status_payload!(DeactivateImagePayload);
status_payload!(ActivateImagePayload);

#[derive(SimpleObject)]
pub struct UpdateImagePayload {
    pub image: Option<Image>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct ClassifyImagesPayload {
    pub images: Vec<Image>,
    pub user_errors: Vec<UserError>,
}

/// Which FAILED images to process again: some by ID, or every one a partner delivers.
#[derive(InputObject)]
pub struct RetryImageProcessingInput {
    /// At most 1000. Give these or `partnerId`, not both.
    pub image_ids: Option<Vec<ID>>,
    pub partner_id: Option<ID>,
}

#[derive(SimpleObject)]
pub struct RetryImageProcessingPayload {
    /// How many images turned PENDING again (images of the scope that were not FAILED are left
    /// as they are).
    pub retried_count: usize,
    /// Those images, by ID.
    pub image_ids: Vec<ID>,
    pub user_errors: Vec<UserError>,
}

#[derive(InputObject)]
pub struct UploadImageInput {
    pub hotel_id: ID,
    /// A JPEG, PNG or WebP file (GraphQL multipart request).
    pub file: Upload,
    pub caption: Option<String>,
}

#[derive(SimpleObject)]
pub struct UploadImagePayload {
    pub image: Option<Image>,
    pub hotel: Option<Hotel>,
    pub user_errors: Vec<UserError>,
}

/// Reads an uploaded file, refusing it once it passes `max_bytes`.
async fn read_upload(
    ctx: &Context<'_>,
    file: &Upload,
    max_bytes: usize,
) -> Result<Vec<u8>, write::UserError> {
    let unreadable = || {
        write::UserError::new(
            UserErrorCode::InvalidInput,
            &["file"],
            "the file cannot be read",
        )
    };
    let value = file.value(ctx).map_err(|_| unreadable())?;
    // The multipart parser spooled the file to a temporary file: read it off the async threads.
    let read = tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        value
            .into_read()
            .take(max_bytes as u64 + 1)
            .read_to_end(&mut bytes)
            .map(|_| bytes)
    });
    let bytes = match read.await {
        Ok(Ok(bytes)) => bytes,
        _ => return Err(unreadable()),
    };
    if bytes.len() > max_bytes {
        return Err(write::UserError::new(
            UserErrorCode::TooManyItems,
            &["file"],
            format!("the file is larger than {max_bytes} bytes"),
        ));
    }
    Ok(bytes)
}

/// The hotel after a change (or as it is, after a refused one), when the ID is valid.
fn hotel_after(id: &ID) -> Option<Hotel> {
    id.parse::<HotelId>().ok().map(|id| Hotel { id })
}

/// The image as the hotel shows it (with the hotel's texts), when both IDs are valid.
async fn hotel_image_after(ctx: &Context<'_>, hotel: &ID, image: &ID) -> Result<Option<Image>> {
    let (Some(hotel), Ok(image)) = (hotel_after(hotel), image.parse::<ImageId>()) else {
        return Ok(None);
    };
    let record = hotel.record(ctx).await?;
    Ok(load_images_shown_by(ctx, &[image], record.as_ref())
        .await?
        .pop())
}

/// `Omitted` / `null` / a value, as a change of one text.
fn text_change(value: &MaybeUndefined<String>) -> Option<Option<&str>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(text) => Some(Some(text.as_str())),
    }
}

async fn image_after(ctx: &Context<'_>, id: &ID) -> Result<Option<Image>> {
    match id.parse::<ImageId>() {
        Ok(id) => Ok(load_images(ctx, &[id]).await?.pop()),
        Err(_) => Ok(None),
    }
}

/// The root mutation type. The name must be `Mutation` for federation.
pub struct Mutation;

#[Object(cache_control(no_cache))]
impl Mutation {
    /// A hotelier (own hotels) or an admin picks the main image; the image must be shown for
    /// that hotel, active and eligible.
    async fn set_main_image(
        &self,
        ctx: &Context<'_>,
        input: SetMainImageInput,
    ) -> Result<SetMainImagePayload> {
        let (manager, caller) = (service::<Manager>(ctx)?, caller(ctx)?);
        forget_loaded(ctx);
        let run = async {
            let hotel = parse_id(&input.hotel_id, &["hotelId"])?;
            let image = parse_id(&input.image_id, &["imageId"])?;
            manager
                .set_main_image(&caller, hotel, image, input.expected_version)
                .await
        };
        let user_errors = outcome(run.await)?.err().unwrap_or_default();
        Ok(SetMainImagePayload {
            hotel: hotel_after(&input.hotel_id),
            user_errors,
        })
    }

    /// Back to the computed main image.
    async fn reset_main_image(
        &self,
        ctx: &Context<'_>,
        input: ResetMainImageInput,
    ) -> Result<ResetMainImagePayload> {
        let (manager, caller) = (service::<Manager>(ctx)?, caller(ctx)?);
        forget_loaded(ctx);
        let run = async {
            let hotel = parse_id(&input.hotel_id, &["hotelId"])?;
            manager
                .reset_main_image(&caller, hotel, input.expected_version)
                .await
        };
        let user_errors = outcome(run.await)?.err().unwrap_or_default();
        Ok(ResetMainImagePayload {
            hotel: hotel_after(&input.hotel_id),
            user_errors,
        })
    }

    /// These images lead the gallery, in this order, after the main image.
    async fn set_gallery_pins(
        &self,
        ctx: &Context<'_>,
        input: SetGalleryPinsInput,
    ) -> Result<SetGalleryPinsPayload> {
        let (manager, caller) = (service::<Manager>(ctx)?, caller(ctx)?);
        forget_loaded(ctx);
        let run = async {
            let hotel = parse_id(&input.hotel_id, &["hotelId"])?;
            let images: Vec<ImageId> = parse_ids(&input.image_ids, "imageIds")?;
            manager
                .set_gallery_pins(&caller, hotel, &images, input.expected_version)
                .await
        };
        let user_errors = outcome(run.await)?.err().unwrap_or_default();
        Ok(SetGalleryPinsPayload {
            hotel: hotel_after(&input.hotel_id),
            user_errors,
        })
    }

    /// Takes an image offline everywhere, or for the given hotels only (admin).
    async fn deactivate_image(
        &self,
        ctx: &Context<'_>,
        input: DeactivateImageInput,
    ) -> Result<DeactivateImagePayload> {
        let (image, affected_hotels, user_errors) = change_status(
            ctx,
            &input.image_id,
            false,
            input.reason.as_deref(),
            input.hotel_ids.as_deref(),
        )
        .await?;
        Ok(DeactivateImagePayload {
            image,
            affected_hotels,
            user_errors,
        })
    }

    /// Undoes a deactivation, everywhere or for the given hotels (admin).
    async fn activate_image(
        &self,
        ctx: &Context<'_>,
        input: ActivateImageInput,
    ) -> Result<ActivateImagePayload> {
        let (image, affected_hotels, user_errors) =
            change_status(ctx, &input.image_id, true, None, input.hotel_ids.as_deref()).await?;
        Ok(ActivateImagePayload {
            image,
            affected_hotels,
            user_errors,
        })
    }

    /// An admin fixes a caption or the tags (manual tags beat model tags).
    async fn update_image(
        &self,
        ctx: &Context<'_>,
        input: UpdateImageInput,
    ) -> Result<UpdateImagePayload> {
        let (manager, caller) = (service::<Manager>(ctx)?, caller(ctx)?);
        forget_loaded(ctx);
        let run = async {
            let image = parse_id(&input.image_id, &["imageId"])?;
            let texts = TextsChange {
                caption: text_change(&input.caption),
                alt_text: text_change(&input.alt_text),
            };
            let tags: Option<Vec<TagInput>> = input
                .tags
                .as_ref()
                .map(|t| t.iter().map(|&t| t.into()).collect());
            manager
                .update_image(&caller, image, texts, tags.as_deref())
                .await
        };
        let user_errors = outcome(run.await)?.err().unwrap_or_default();
        Ok(UpdateImagePayload {
            image: image_after(ctx, &input.image_id).await?,
            user_errors,
        })
    }

    /// A hotelier (own hotels) or an admin uploads an image for a hotel. The same bytes
    /// uploaded twice are one image.
    async fn upload_image(
        &self,
        ctx: &Context<'_>,
        input: UploadImageInput,
    ) -> Result<UploadImagePayload> {
        let (uploader, caller) = (service::<Uploader>(ctx)?, caller(ctx)?);
        forget_loaded(ctx);
        let run = async {
            let hotel = parse_id(&input.hotel_id, &["hotelId"])?;
            let bytes = read_upload(ctx, &input.file, uploader.max_bytes).await?;
            uploader
                .upload(&caller, hotel, bytes, input.caption.as_deref())
                .await
        };
        let result: Result<ImageId, UploadError> = run.await;
        match outcome(result)? {
            Ok(image) => Ok(UploadImagePayload {
                // As the hotel shows it: with the hotel's caption, whoever uploaded the same
                // bytes before.
                image: hotel_image_after(ctx, &input.hotel_id, &ID(image.to_string())).await?,
                hotel: hotel_after(&input.hotel_id),
                user_errors: Vec::new(),
            }),
            Err(user_errors) => Ok(UploadImagePayload {
                image: None,
                hotel: hotel_after(&input.hotel_id),
                user_errors,
            }),
        }
    }

    /// A hotelier (own hotels) or an admin hides an image for one hotel (it leaves the
    /// hotel's gallery; other hotels keep showing it).
    async fn hide_image(
        &self,
        ctx: &Context<'_>,
        input: HideImageInput,
    ) -> Result<HideImagePayload> {
        let user_errors = change_visibility(
            ctx,
            &input.hotel_id,
            &input.image_id,
            false,
            input.reason.as_deref(),
            input.expected_version,
        )
        .await?;
        Ok(HideImagePayload {
            hotel: hotel_after(&input.hotel_id),
            image: hotel_image_after(ctx, &input.hotel_id, &input.image_id).await?,
            user_errors,
        })
    }

    /// Shows again an image the hotel hid (a hotelier for own hotels, or an admin); what an
    /// admin took offline only an admin brings back.
    async fn show_image(
        &self,
        ctx: &Context<'_>,
        input: ShowImageInput,
    ) -> Result<ShowImagePayload> {
        let user_errors = change_visibility(
            ctx,
            &input.hotel_id,
            &input.image_id,
            true,
            None,
            input.expected_version,
        )
        .await?;
        Ok(ShowImagePayload {
            hotel: hotel_after(&input.hotel_id),
            image: hotel_image_after(ctx, &input.hotel_id, &input.image_id).await?,
            user_errors,
        })
    }

    /// The hotel's own caption and alt text of one of its images (a hotelier for own hotels,
    /// or an admin); other hotels showing the same image are not affected.
    async fn update_hotel_image(
        &self,
        ctx: &Context<'_>,
        input: UpdateHotelImageInput,
    ) -> Result<UpdateHotelImagePayload> {
        let (manager, caller) = (service::<Manager>(ctx)?, caller(ctx)?);
        forget_loaded(ctx);
        let run = async {
            let hotel = parse_id(&input.hotel_id, &["hotelId"])?;
            let image = parse_id(&input.image_id, &["imageId"])?;
            let texts = TextsChange {
                caption: text_change(&input.caption),
                alt_text: text_change(&input.alt_text),
            };
            manager
                .update_hotel_image(&caller, hotel, image, texts, input.expected_version)
                .await
        };
        let user_errors = outcome(run.await)?.err().unwrap_or_default();
        Ok(UpdateHotelImagePayload {
            hotel: hotel_after(&input.hotel_id),
            image: hotel_image_after(ctx, &input.hotel_id, &input.image_id).await?,
            user_errors,
        })
    }

    /// Removes a hotel's upload (a hotelier for own hotels, or an admin): the image leaves the
    /// hotel, and its stored bytes are deleted when no hotel shows it any more.
    async fn remove_upload(
        &self,
        ctx: &Context<'_>,
        input: RemoveUploadInput,
    ) -> Result<RemoveUploadPayload> {
        let (uploader, caller) = (service::<Uploader>(ctx)?, caller(ctx)?);
        forget_loaded(ctx);
        let run = async {
            let hotel = parse_id(&input.hotel_id, &["hotelId"])?;
            let image = parse_id(&input.image_id, &["imageId"])?;
            uploader
                .remove(&caller, hotel, image, input.expected_version)
                .await
        };
        let result: Result<_, UploadError> = run.await;
        let (bytes_deleted, user_errors) = match outcome(result)? {
            Ok(removed) => (removed.bytes_deleted, Vec::new()),
            Err(user_errors) => (false, user_errors),
        };
        Ok(RemoveUploadPayload {
            hotel: hotel_after(&input.hotel_id),
            bytes_deleted,
            user_errors,
        })
    }

    /// Takes a picture down for good, for a legal or privacy request (admin): it leaves every
    /// hotel, its bytes are deleted and the CDN is asked to purge it, and no partner or
    /// hotelier can bring it back (by any spelling of its URL, or the same bytes).
    async fn purge_image(
        &self,
        ctx: &Context<'_>,
        input: PurgeImageInput,
    ) -> Result<PurgeImagePayload> {
        let (purger, caller) = (service::<Purger>(ctx)?, caller(ctx)?);
        forget_loaded(ctx);
        let run = async {
            let image = parse_id(&input.image_id, &["imageId"])?;
            purger.purge(&caller, image, &input.reason).await
        };
        let result: Result<_, PurgeError> = run.await;
        let (affected_hotels, bytes_deleted, user_errors) = match outcome(result)? {
            Ok(purged) => (
                purged.hotels.into_iter().map(|id| Hotel { id }).collect(),
                purged.bytes_deleted,
                Vec::new(),
            ),
            Err(user_errors) => (Vec::new(), false, user_errors),
        };
        Ok(PurgeImagePayload {
            image: image_after(ctx, &input.image_id).await?,
            affected_hotels,
            bytes_deleted,
            user_errors,
        })
    }

    /// The tagging pipeline posts tags and quality for a batch (at most 500; all or nothing).
    async fn classify_images(
        &self,
        ctx: &Context<'_>,
        input: ClassifyImagesInput,
    ) -> Result<ClassifyImagesPayload> {
        let (manager, caller) = (service::<Manager>(ctx)?, caller(ctx)?);
        forget_loaded(ctx);
        let run = async {
            let items = input
                .items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    Ok(Classification {
                        image: parse_id(&item.image_id, &["imageId"]).map_err(|e| e.in_item(i))?,
                        tags: item.tags.iter().map(|&t| t.into()).collect(),
                        quality_score: item.quality_score,
                    })
                })
                .collect::<Result<Vec<_>, write::UserError>>()?;
            manager.classify_images(&caller, &items).await
        };
        match outcome(run.await)? {
            Ok(ids) => Ok(ClassifyImagesPayload {
                images: load_images(ctx, &ids).await?,
                user_errors: Vec::new(),
            }),
            Err(user_errors) => Ok(ClassifyImagesPayload {
                images: Vec::new(),
                user_errors,
            }),
        }
    }

    /// Processes FAILED images again from their first attempt (admin): by ID, or every FAILED
    /// image of a partner, e.g. once its image server is fixed.
    async fn retry_image_processing(
        &self,
        ctx: &Context<'_>,
        input: RetryImageProcessingInput,
    ) -> Result<RetryImageProcessingPayload> {
        let (processor, caller) = (service::<Processor>(ctx)?, caller(ctx)?);
        let run = async {
            let scope = match (&input.image_ids, &input.partner_id) {
                (Some(ids), None) => RetryScope::Images(parse_ids(ids, "imageIds")?),
                (None, Some(partner)) => RetryScope::Partner(parse_id(partner, &["partnerId"])?),
                _ => {
                    return Err(write::UserError::new(
                        UserErrorCode::InvalidInput,
                        &["imageIds"],
                        "give either imageIds or partnerId",
                    )
                    .into());
                }
            };
            processor.retry(&caller, &scope).await
        };
        let result: Result<_, ProcessError> = run.await;
        Ok(match outcome(result)? {
            Ok(ids) => RetryImageProcessingPayload {
                retried_count: ids.len(),
                image_ids: ids.iter().map(|id| ID(id.to_string())).collect(),
                user_errors: Vec::new(),
            },
            Err(user_errors) => RetryImageProcessingPayload {
                retried_count: 0,
                image_ids: Vec::new(),
                user_errors,
            },
        })
    }

    /// The partner-ingestion pipeline delivers a batch (at most 1000 items; scope
    /// `images:import` for the token's partner, or admin). One result per item; accepted items
    /// commit even when others are rejected; re-delivering a batch changes nothing.
    async fn import_images(
        &self,
        ctx: &Context<'_>,
        input: ImportImagesInput,
    ) -> Result<ImportImagesPayload> {
        super::ingest::import_images(ctx, input).await
    }

    /// Creates or updates a partner and its URL rewrite rules (admin).
    async fn upsert_partner(
        &self,
        ctx: &Context<'_>,
        input: UpsertPartnerInput,
    ) -> Result<UpsertPartnerPayload> {
        super::ingest::upsert_partner(ctx, input).await
    }
}

/// `hideImage` and `showImage`: the user errors of the change.
async fn change_visibility(
    ctx: &Context<'_>,
    hotel_id: &ID,
    image_id: &ID,
    visible: bool,
    reason: Option<&str>,
    expected_version: Option<i64>,
) -> Result<Vec<UserError>> {
    let (manager, caller) = (service::<Manager>(ctx)?, caller(ctx)?);
    forget_loaded(ctx);
    let run = async {
        let hotel = parse_id(hotel_id, &["hotelId"])?;
        let image = parse_id(image_id, &["imageId"])?;
        manager
            .set_link_visibility(&caller, hotel, image, visible, reason, expected_version)
            .await
    };
    let result: Result<_, ManageError> = run.await;
    Ok(outcome(result)?.err().unwrap_or_default())
}

/// `deactivateImage` and `activateImage`: the image and the hotels whose view of it changed.
async fn change_status(
    ctx: &Context<'_>,
    image_id: &ID,
    active: bool,
    reason: Option<&str>,
    hotel_ids: Option<&[ID]>,
) -> Result<(Option<Image>, Vec<Hotel>, Vec<UserError>)> {
    let (manager, caller) = (service::<Manager>(ctx)?, caller(ctx)?);
    forget_loaded(ctx);
    let run = async {
        let image = parse_id(image_id, &["imageId"])?;
        let hotels: Option<Vec<HotelId>> = hotel_ids
            .map(|ids| parse_ids(ids, "hotelIds"))
            .transpose()?;
        if hotels.as_ref().is_some_and(|h| h.len() > MAX_HOTEL_IDS) {
            return Err(write::UserError::too_many("hotelIds", MAX_HOTEL_IDS, "hotels").into());
        }
        manager
            .set_image_status(&caller, image, active, reason, hotels.as_deref())
            .await
    };
    let result: Result<_, ManageError> = run.await;
    match outcome(result)? {
        Ok(change) => Ok((
            image_after(ctx, image_id).await?,
            change
                .affected_hotels
                .into_iter()
                .map(|id| Hotel { id })
                .collect(),
            Vec::new(),
        )),
        Err(user_errors) => Ok((image_after(ctx, image_id).await?, Vec::new(), user_errors)),
    }
}
