//! The one place new catalog rows are built: images, their tags, links to hotels, partner
//! sources, deliveries and empty hotel rows. Imports, uploads and seeding write the same rows,
//! so a new column is filled in here once, and every status or kind reaches the database
//! through its domain enum's text form, never as a literal.

use chrono::{DateTime, Utc};
use entity::{delivery, hotel, hotel_image, image, image_source, image_tag};
use sea_orm::ActiveValue::{NotSet, Set};

use crate::domain::catalog::{Category, ProcessingState, SourceStatus, Status, Tag};

/// A new image, as its creator knows it.
#[derive(Debug, Clone)]
pub struct NewImage<'a> {
    /// `None`: the database assigns it (seeding assigns its own).
    pub id: Option<i64>,
    pub url_key: &'a str,
    pub canonical_url: &'a str,
    pub storage_key: String,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub caption: Option<String>,
    /// The effective category of its tags.
    pub category: Category,
    pub quality_score: Option<f64>,
    pub content_sha256: Option<String>,
    /// READY for bytes measured already (uploads, the demo seed); PENDING for a partner's URL,
    /// which the processing workers fetch (due at once).
    pub processing: ProcessingState,
    /// The stored object whose bytes a PENDING image adopts instead of fetching its URL.
    pub adopted_key: Option<String>,
}

/// The row of a new, active image.
pub fn image(new: NewImage<'_>, now: DateTime<Utc>) -> image::ActiveModel {
    image::ActiveModel {
        id: new.id.map_or(NotSet, Set),
        url_key: Set(new.url_key.to_owned()),
        canonical_url: Set(new.canonical_url.to_owned()),
        storage_key: Set(new.storage_key),
        width: Set(new.width),
        height: Set(new.height),
        caption: Set(new.caption),
        alt_text: Set(None),
        category: Set(new.category.as_str().to_owned()),
        quality_score: Set(new.quality_score),
        content_sha256: Set(new.content_sha256),
        perceptual_hash: Set(None),
        status: Set(Status::Active.as_str().to_owned()),
        status_reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        measured_quality: Set(None),
        processing_state: Set(new.processing.as_str().to_owned()),
        processing_reason: Set(None),
        processing_attempts: Set(0),
        processing_error: Set(None),
        next_attempt_at: Set((new.processing == ProcessingState::Pending).then_some(now)),
        lease_owner: Set(None),
        fetched_at: Set((new.processing == ProcessingState::Ready).then_some(now)),
        adopted_key: Set(new.adopted_key),
    }
}

/// One tag of an image.
pub fn tag(image: i64, tag: &Tag) -> image_tag::ActiveModel {
    image_tag::ActiveModel {
        image_id: Set(image),
        origin: Set(tag.origin.as_str().to_owned()),
        category: Set(tag.category.as_str().to_owned()),
        confidence: Set(tag.confidence),
    }
}

/// An active link: the image is shown for the hotel.
pub fn link(hotel: i64, image: i64, now: DateTime<Utc>) -> hotel_image::ActiveModel {
    hotel_image::ActiveModel {
        hotel_id: Set(hotel),
        image_id: Set(image),
        status: Set(Status::Active.as_str().to_owned()),
        status_reason: Set(None),
        caption: Set(None),
        alt_text: Set(None),
        status_set_by: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// An active source: the partner delivers the image, from `url`.
pub fn source(
    image: i64,
    partner: i64,
    url: &str,
    partner_image_ref: Option<String>,
    now: DateTime<Utc>,
) -> image_source::ActiveModel {
    image_source::ActiveModel {
        id: NotSet,
        image_id: Set(image),
        partner_id: Set(partner),
        source_url: Set(url.to_owned()),
        partner_image_ref: Set(partner_image_ref),
        status: Set(SourceStatus::Active.as_str().to_owned()),
        first_seen_at: Set(now),
        last_seen_at: Set(now),
    }
}

/// The partner delivered the image for the hotel.
pub fn delivery(hotel: i64, image: i64, partner: i64, now: DateTime<Utc>) -> delivery::ActiveModel {
    delivery::ActiveModel {
        hotel_id: Set(hotel),
        image_id: Set(image),
        partner_id: Set(partner),
        first_seen_at: Set(now),
        last_seen_at: Set(now),
    }
}

/// The row of a hotel with nothing published yet (version 0), for curation to fill in.
pub fn empty_hotel(hotel: i64, now: DateTime<Utc>) -> hotel::ActiveModel {
    hotel::ActiveModel {
        id: Set(hotel),
        version: Set(0),
        main_image_id: Set(None),
        main_image_origin: Set(None),
        main_image_chosen_by: Set(None),
        main_image_chosen_at: Set(None),
        image_count: Set(0),
        gallery: Set(String::new()),
        link_texts: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}
