//! The events downstream teams receive (DESIGN section 7), built here and written to the
//! outbox in the transaction of their change. Payloads are versioned JSON: `schemaVersion`
//! grows when a field changes meaning or disappears (adding a field keeps it).

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::domain::catalog::{HotelId, ImageId, PartnerId};
use crate::domain::curation::PublishedChange;
use crate::store::journal::OutboxEvent;

/// The current version of every payload.
pub const SCHEMA_VERSION: u32 = 1;
/// Aggregate type of the events about one hotel's published view.
pub const HOTEL: &str = "Hotel";
/// Aggregate type of the events about one image.
pub const IMAGE: &str = "Image";

fn ids(images: &[ImageId]) -> Vec<String> {
    images.iter().map(ToString::to_string).collect()
}

/// `MainImageChanged` and `GalleryChanged` for what curation changed.
pub fn curation_events(changes: &[PublishedChange], at: DateTime<Utc>) -> Vec<OutboxEvent> {
    let mut events = Vec::new();
    for change in changes {
        let hotel = change.hotel_id.to_string();
        if change.main_changed() {
            events.push(OutboxEvent {
                aggregate_type: HOTEL,
                aggregate_id: hotel.clone(),
                event_type: "MainImageChanged",
                payload: json!({
                    "schemaVersion": SCHEMA_VERSION,
                    "hotelId": hotel,
                    "imageId": change.main.map(|i| i.to_string()),
                    "previousImageId": change.previous_main.map(|i| i.to_string()),
                    "version": change.version,
                    "occurredAt": at,
                }),
            });
        }
        if change.gallery_changed {
            events.push(OutboxEvent {
                aggregate_type: HOTEL,
                aggregate_id: hotel.clone(),
                event_type: "GalleryChanged",
                payload: json!({
                    "schemaVersion": SCHEMA_VERSION,
                    "hotelId": hotel,
                    "imageIds": ids(&change.gallery),
                    "version": change.version,
                    "occurredAt": at,
                }),
            });
        }
    }
    events
}

/// `ImageDeactivated` / `ImageActivated`: everywhere (`hotels` is `None`) or for some hotels.
pub fn status_event(
    image: ImageId,
    active: bool,
    reason: Option<&str>,
    hotels: Option<&[HotelId]>,
    at: DateTime<Utc>,
) -> OutboxEvent {
    OutboxEvent {
        aggregate_type: IMAGE,
        aggregate_id: image.to_string(),
        event_type: if active {
            "ImageActivated"
        } else {
            "ImageDeactivated"
        },
        payload: json!({
            "schemaVersion": SCHEMA_VERSION,
            "imageId": image.to_string(),
            "reason": reason,
            "hotelIds": hotels.map(|h| h.iter().map(ToString::to_string).collect::<Vec<_>>()),
            "occurredAt": at,
        }),
    }
}

/// `ImageUpdated`: which fields changed; of the image itself (`hotel` is `None`), or as one
/// hotel shows it (its caption and alt text).
pub fn image_updated(
    image: ImageId,
    hotel: Option<HotelId>,
    fields: &[&str],
    at: DateTime<Utc>,
) -> OutboxEvent {
    OutboxEvent {
        aggregate_type: IMAGE,
        aggregate_id: image.to_string(),
        event_type: "ImageUpdated",
        payload: json!({
            "schemaVersion": SCHEMA_VERSION,
            "imageId": image.to_string(),
            "hotelId": hotel.map(|h| h.to_string()),
            "changedFields": fields,
            "occurredAt": at,
        }),
    }
}

/// `ImagePurged`: the picture was taken down for good (legal or privacy request): it left
/// every hotel, its bytes are deleted, and it can never be imported or uploaded again.
pub fn image_purged(
    image: ImageId,
    reason: &str,
    hotels: &[HotelId],
    at: DateTime<Utc>,
) -> OutboxEvent {
    OutboxEvent {
        aggregate_type: IMAGE,
        aggregate_id: image.to_string(),
        event_type: "ImagePurged",
        payload: json!({
            "schemaVersion": SCHEMA_VERSION,
            "imageId": image.to_string(),
            "reason": reason,
            "hotelIds": hotels.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "occurredAt": at,
        }),
    }
}

/// `ImageUnlinked`: a hotel's upload was removed; the image is no longer shown for the hotel
/// (`unlinked`, unless another partner delivers it there), and its bytes were deleted when no
/// hotel shows it any more (`bytesDeleted`).
pub fn image_unlinked(
    image: ImageId,
    hotel: HotelId,
    unlinked: bool,
    bytes_deleted: bool,
    at: DateTime<Utc>,
) -> OutboxEvent {
    OutboxEvent {
        aggregate_type: IMAGE,
        aggregate_id: image.to_string(),
        event_type: "ImageUnlinked",
        payload: json!({
            "schemaVersion": SCHEMA_VERSION,
            "imageId": image.to_string(),
            "hotelId": hotel.to_string(),
            "unlinked": unlinked,
            "bytesDeleted": bytes_deleted,
            "occurredAt": at,
        }),
    }
}

/// `ImageCreated`: a partner delivered a picture no image had yet.
pub fn image_created(
    image: ImageId,
    canonical_url: &str,
    partner: PartnerId,
    hotel: HotelId,
    at: DateTime<Utc>,
) -> OutboxEvent {
    OutboxEvent {
        aggregate_type: IMAGE,
        aggregate_id: image.to_string(),
        event_type: "ImageCreated",
        payload: json!({
            "schemaVersion": SCHEMA_VERSION,
            "imageId": image.to_string(),
            "canonicalUrl": canonical_url,
            "partnerId": partner.to_string(),
            "hotelId": hotel.to_string(),
            "occurredAt": at,
        }),
    }
}

/// `ImageProcessed`: the image's bytes were fetched, measured and stored; it is READY and its
/// measured values replace what the partner declared.
pub fn image_processed(
    image: ImageId,
    measured: &crate::domain::measure::Measured,
    storage_key: &str,
    at: DateTime<Utc>,
) -> OutboxEvent {
    OutboxEvent {
        aggregate_type: IMAGE,
        aggregate_id: image.to_string(),
        event_type: "ImageProcessed",
        payload: json!({
            "schemaVersion": SCHEMA_VERSION,
            "imageId": image.to_string(),
            "width": measured.width,
            "height": measured.height,
            "format": measured.format.extension(),
            "contentSha256": measured.sha256,
            "perceptualHash": format!("{:016x}", measured.perceptual_hash),
            "measuredQuality": measured.quality.score,
            "storageKey": storage_key,
            "occurredAt": at,
        }),
    }
}

/// `ImageFailed`: processing gave up on the image (a permanent refusal, or too many attempts).
pub fn image_failed(image: ImageId, reason: &str, attempts: u32, at: DateTime<Utc>) -> OutboxEvent {
    OutboxEvent {
        aggregate_type: IMAGE,
        aggregate_id: image.to_string(),
        event_type: "ImageFailed",
        payload: json!({
            "schemaVersion": SCHEMA_VERSION,
            "imageId": image.to_string(),
            "reason": reason,
            "attempts": attempts,
            "occurredAt": at,
        }),
    }
}

/// `ImageLinked`: a partner delivered a known picture for a hotel it was not shown for yet.
pub fn image_linked(
    image: ImageId,
    partner: PartnerId,
    hotel: HotelId,
    at: DateTime<Utc>,
) -> OutboxEvent {
    OutboxEvent {
        aggregate_type: IMAGE,
        aggregate_id: image.to_string(),
        event_type: "ImageLinked",
        payload: json!({
            "schemaVersion": SCHEMA_VERSION,
            "imageId": image.to_string(),
            "hotelId": hotel.to_string(),
            "partnerId": partner.to_string(),
            "occurredAt": at,
        }),
    }
}

/// `ImagesMerged`: `retired` held the same bytes as `survivor` and was retired into it. Its
/// links, sources, deliveries, pins, main-image choices and legacy IDs now belong to the
/// survivor, and lookups by the retired ID answer the survivor. One event per retired image,
/// with that image as its aggregate: its last event. `retiredImageIds` lists every image the
/// same change retired, `hotelIds` the hotels re-curated for it.
pub fn images_merged(
    retired: ImageId,
    survivor: ImageId,
    all_retired: &[ImageId],
    hotels: &[HotelId],
    at: DateTime<Utc>,
) -> OutboxEvent {
    OutboxEvent {
        aggregate_type: IMAGE,
        aggregate_id: retired.to_string(),
        event_type: "ImagesMerged",
        payload: json!({
            "schemaVersion": SCHEMA_VERSION,
            "imageId": retired.to_string(),
            "survivorId": survivor.to_string(),
            "retiredImageIds": ids(all_retired),
            "hotelIds": hotels.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "occurredAt": at,
        }),
    }
}
