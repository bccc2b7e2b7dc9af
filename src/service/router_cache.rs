//! Invalidation of the router's response cache (Apollo Router 2.10+, `response_cache`).
//!
//! The router caches what this subgraph answers for a hotel or an image (as long as its
//! `Cache-Control: max-age` allows) under the entity's cache tag, `hotel-{id}` or `image-{id}`
//! (the `@cacheTag` of `Hotel` and `Image` in the published SDL, see
//! `crate::graphql::sdl::TYPE_DIRECTIVES`). When the relay publishes a round of outbox events, it
//! hands them to [`RouterInvalidation::invalidate`], which asks the router's invalidation
//! endpoint to drop every entry tagged with one of the changed hotels or images, in the
//! router's format: a JSON array of `{"kind": "cache_tag", "subgraphs": [name], "cache_tag":
//! tag}`, with the shared key in the `Authorization` header.
//!
//! Best effort: a router that cannot be reached does not hold back the events (the entries
//! then live until their max-age), and the failure is logged.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use super::events::{HOTEL, IMAGE};
use crate::secret::Secret;
use crate::store::outbox::RelayedEvent;

/// How long one invalidation request may take: the relay's round waits for it.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The cache tag of an outbox event's aggregate: `hotel-{id}` or `image-{id}`.
pub fn cache_tag(aggregate_type: &str, aggregate_id: &str) -> Option<String> {
    match aggregate_type {
        HOTEL => Some(format!("hotel-{aggregate_id}")),
        IMAGE => Some(format!("image-{aggregate_id}")),
        _ => None,
    }
}

/// The cache tags an event makes stale: its aggregate's, and for an image event every hotel
/// its payload names (`hotelId`, `hotelIds`): a change of an image's texts or of a hotel's
/// `imageCount` emits no hotel event, yet the router's entry of the hotel shows them.
/// `HotelSnapshot` (a `republish` run) changes nothing: none.
fn stale_tags(event: &RelayedEvent) -> Vec<String> {
    if event.event_type == "HotelSnapshot" {
        return Vec::new();
    }
    let mut tags: Vec<String> = cache_tag(&event.aggregate_type, &event.aggregate_id)
        .into_iter()
        .collect();
    if event.aggregate_type == IMAGE {
        let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap_or_default();
        let hotels = match &payload["hotelIds"] {
            serde_json::Value::Array(ids) => ids.iter().collect(),
            _ => vec![&payload["hotelId"]],
        };
        tags.extend(
            hotels
                .into_iter()
                .filter_map(serde_json::Value::as_str)
                .filter_map(|id| cache_tag(HOTEL, id)),
        );
    }
    tags
}

/// Where and how to invalidate.
#[derive(Debug, Clone)]
pub struct RouterInvalidationSettings {
    /// The router's invalidation endpoint, e.g. `http://router:4000/invalidation`.
    pub url: String,
    /// The `shared_key` of the router's invalidation configuration for this subgraph.
    pub shared_key: Secret,
    /// This subgraph's name in the supergraph.
    pub subgraph: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InvalidationError {
    #[error("the router's invalidation endpoint cannot be reached")]
    Unreachable(#[from] reqwest::Error),
    #[error("the router's invalidation endpoint answered {0}")]
    Refused(reqwest::StatusCode),
}

/// A client of the router's invalidation endpoint.
#[derive(Debug, Clone)]
pub struct RouterInvalidation {
    client: reqwest::Client,
    settings: RouterInvalidationSettings,
}

impl RouterInvalidation {
    pub fn new(settings: RouterInvalidationSettings) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(TIMEOUT).build()?;
        Ok(Self { client, settings })
    }

    /// Asks the router to drop its entries of every hotel and image `events` are about (one
    /// request; none when no event names a hotel or an image).
    pub async fn invalidate(&self, events: &[RelayedEvent]) -> Result<(), InvalidationError> {
        let tags: BTreeSet<String> = events.iter().flat_map(stale_tags).collect();
        if tags.is_empty() {
            return Ok(());
        }
        let body: Vec<serde_json::Value> = tags
            .iter()
            .map(|tag| {
                json!({ "kind": "cache_tag", "subgraphs": [self.settings.subgraph], "cache_tag": tag })
            })
            .collect();
        let response = self
            .client
            .post(&self.settings.url)
            .header(
                reqwest::header::AUTHORIZATION,
                self.settings.shared_key.expose(),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::Value::Array(body).to_string())
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(InvalidationError::Refused(response.status()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hotels_and_images_are_tagged_by_their_id() {
        assert_eq!(cache_tag("Hotel", "12").as_deref(), Some("hotel-12"));
        assert_eq!(cache_tag("Image", "7").as_deref(), Some("image-7"));
        assert_eq!(cache_tag("Partner", "2"), None);
    }

    fn event(aggregate_type: &str, id: &str, event_type: &str, payload: &str) -> RelayedEvent {
        RelayedEvent {
            seq: 1,
            id: "e".to_owned(),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: id.to_owned(),
            event_type: event_type.to_owned(),
            payload: payload.to_owned(),
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn image_events_also_name_their_hotels_and_snapshots_nothing() {
        let cases = [
            (event("Hotel", "4", "GalleryChanged", "{}"), vec!["hotel-4"]),
            (event("Hotel", "4", "HotelSnapshot", "{}"), vec![]),
            (
                event("Image", "7", "ImageUpdated", r#"{"hotelId":"4"}"#),
                vec!["image-7", "hotel-4"],
            ),
            (
                event("Image", "7", "ImagePurged", r#"{"hotelIds":["4","5"]}"#),
                vec!["image-7", "hotel-4", "hotel-5"],
            ),
            (
                event("Image", "7", "ImageUpdated", r#"{"hotelId":null}"#),
                vec!["image-7"],
            ),
            (
                event("Image", "7", "ImageUpdated", "not JSON"),
                vec!["image-7"],
            ),
        ];
        for (event, want) in cases {
            assert_eq!(stale_tags(&event), want, "{}", event.event_type);
        }
    }
}
