//! Adopting bytes that are already stored (issue 16 item 10): an import line that names an
//! object of the object store (`storageKey`, `storage_key` in feeds) makes an image whose bytes
//! are read from the store and measured, never fetched; a missing object ends FAILED with
//! `OBJECT_MISSING`; a key that is no object key is refused at import.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use images_subgraph::domain::catalog::PartnerId;
use images_subgraph::domain::ingest::Outcome;
use images_subgraph::domain::measure::{MeasureLimits, measure};
use images_subgraph::domain::upload::samples;
use images_subgraph::import::{Format, ImportOptions, import_feed};
use images_subgraph::store::objects::Objects;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::events::{Schemas, outbox};
use crate::helpers::{TestApp, gallery, spawn_app_with};

/// A hotel the demo catalog does not have.
const HOTEL: i64 = 9002;

const IMPORT: &str = "mutation($input: ImportImagesInput!) { importImages(input: $input) { \
    results { outcome reason image { id } } userErrors { code } } }";

/// A partner server that answers every request with a picture, and counts them.
async fn counting_server() -> (u16, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("an address").port();
    let requests = Arc::new(AtomicU32::new(0));
    let counted = requests.clone();
    let app = Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { samples::jpeg(320, 240, 5) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, requests)
}

/// The app with one processing worker that may fetch from 127.0.0.1, and its object store.
async fn app() -> (TestApp, Objects) {
    let app = spawn_app_with(|s| {
        s.process_workers = 1;
        s.process_poll_ms = 50;
        s.fetch_allow_hosts = vec!["127.0.0.1".to_owned()];
    })
    .await;
    let objects = Objects::open(app.settings.object_store_url.as_deref().expect("a store"))
        .expect("the app's store");
    (app, objects)
}

fn item(port: u16, path: &str, storage_key: &str) -> Value {
    json!({
        "hotelId": HOTEL.to_string(),
        "url": format!("http://127.0.0.1:{port}{path}"),
        "storageKey": storage_key,
    })
}

/// `(state, reason, storage_key, width, height, sha256)` of the image of `path`.
async fn processed(app: &TestApp, path: &str) -> Value {
    let row = entity::image::Entity::find()
        .filter(entity::image::Column::CanonicalUrl.like(format!("%{path}")))
        .one(&app.core.db)
        .await
        .expect("read")
        .expect("the image");
    json!([
        row.processing_state,
        row.processing_reason,
        row.storage_key,
        row.width,
        row.height,
        row.content_sha256,
    ])
}

#[tokio::test]
async fn an_adopted_object_is_measured_from_the_store_and_a_missing_one_fails() {
    let (app, objects) = app().await;
    let (port, requests) = counting_server().await;
    let bytes = samples::jpeg(640, 480, 21);
    let measured = measure(&bytes, MeasureLimits::default()).expect("a picture");
    objects
        .put("legacy/2019/hotel 9002/pool.jpg", bytes.clone())
        .await
        .expect("stored");

    let data = app
        .graphql_as(
            &app.admin(),
            IMPORT,
            json!({ "input": { "partnerId": "1", "items": [
                item(port, "/pool.jpg", "legacy/2019/hotel 9002/pool.jpg"),
                item(port, "/gone.jpg", "legacy/2019/hotel 9002/gone.jpg"),
                item(port, "/bad.jpg", "legacy/../../etc/passwd"),
            ] } }),
        )
        .await
        .ok();
    let results = &data["importImages"]["results"];
    assert_eq!(results[0]["outcome"], "CREATED", "{data}");
    assert_eq!(results[1]["outcome"], "CREATED", "{data}");
    assert_eq!(results[2]["outcome"], "REJECTED", "{data}");
    assert_eq!(
        results[2]["reason"],
        "storage_key has an empty, `.` or `..` part: not a valid object key"
    );
    app.drained().await;

    // Read and measured from the store, served from where it is.
    assert_eq!(
        processed(&app, "/pool.jpg").await,
        json!([
            "READY",
            null,
            "legacy/2019/hotel 9002/pool.jpg",
            640,
            480,
            measured.sha256
        ])
    );
    let gone = processed(&app, "/gone.jpg").await;
    assert_eq!(
        (&gone[0], &gone[1]),
        (&json!("FAILED"), &json!("OBJECT_MISSING"))
    );
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM image WHERE canonical_url LIKE '%/gone.jpg' \
             AND processing_attempts = 1"
        )
        .await,
        1,
        "a missing object is not tried again"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 0, "nothing was fetched");

    // The adopted image is shown, and its URL serves the stored bytes.
    let id = results[0]["image"]["id"]
        .as_str()
        .expect("an ID")
        .to_owned();
    assert_eq!(gallery(&app, HOTEL).await, std::slice::from_ref(&id));
    let url = app
        .graphql(
            "query($id: ID!) { image(id: $id) { url(size: ORIGINAL) } }",
            json!({ "id": id }),
        )
        .await
        .ok()["image"]["url"]
        .as_str()
        .expect("a URL")
        .to_owned();
    let path = url
        .strip_prefix("https://images.example.com")
        .expect("a CDN URL");
    let served = app
        .client
        .get(app.url(&format!("/media{path}")))
        .send()
        .await
        .expect("sent");
    assert_eq!(served.status(), 200, "{url}");
    assert_eq!(served.bytes().await.expect("a body").to_vec(), bytes);

    // The same events as for fetched images, in their documented layout.
    let schemas = Schemas::load();
    let events: Vec<_> = outbox(&app)
        .await
        .into_iter()
        .filter(|e| matches!(e.event_type.as_str(), "ImageProcessed" | "ImageFailed"))
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types.len(), 2, "{types:?}");
    assert!(types.contains(&"ImageProcessed") && types.contains(&"ImageFailed"));
    for event in &events {
        schemas.check(event).unwrap();
    }
}

#[tokio::test]
async fn feed_lines_name_stored_objects_and_only_admins_may() {
    let (app, objects) = app().await;
    let (port, requests) = counting_server().await;
    objects
        .put("legacy/feed.png", samples::png(400, 300))
        .await
        .expect("stored");

    // A partner's own token may not name stored objects: they are the service's.
    let refused = app
        .graphql_as(
            &app.importer(1),
            IMPORT,
            json!({ "input": { "partnerId": "1", "items": [item(port, "/p.jpg", "legacy/feed.png")] } }),
        )
        .await;
    assert_eq!(refused.error_codes(), ["FORBIDDEN"]);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM image WHERE canonical_url LIKE '%/p.jpg'")
            .await,
        0
    );

    // The import command (JSON Lines and CSV) takes `storage_key`.
    let jsonl = format!(
        "{{\"hotel_id\": {HOTEL}, \"url\": \"http://127.0.0.1:{port}/feed.png\", \"storage_key\": \"legacy/feed.png\"}}\n"
    );
    let csv = format!(
        "hotel_id,url,storage_key\n{HOTEL},http://127.0.0.1:{port}/csv.png,legacy/missing.png\n\
         {HOTEL},http://127.0.0.1:{port}/bad.png,/legacy/feed.png\n"
    );
    for (feed, format, want) in [
        (jsonl, Format::Jsonl, vec![Outcome::Created]),
        (csv, Format::Csv, vec![Outcome::Created, Outcome::Rejected]),
    ] {
        let mut rejects = Vec::new();
        let summary = import_feed(
            &app.core.ingestor,
            Cursor::new(feed.into_bytes()),
            &ImportOptions {
                partner: PartnerId::new(1),
                format,
                snapshot: false,
                batch_size: 100,
            },
            &mut rejects,
            &mut (),
        )
        .await
        .expect("imported");
        for outcome in Outcome::ALL {
            let expected = want.iter().filter(|o| **o == outcome).count() as u64;
            assert_eq!(summary.count(outcome), expected, "{format:?} {outcome}");
        }
    }
    app.drained().await;
    let feed = processed(&app, "/feed.png").await;
    assert_eq!(
        feed,
        json!(["READY", null, "legacy/feed.png", 400, 300, feed[5].clone()])
    );
    let csv = processed(&app, "/csv.png").await;
    assert_eq!(
        (&csv[0], &csv[1]),
        (&json!("FAILED"), &json!("OBJECT_MISSING"))
    );
    assert_eq!(requests.load(Ordering::SeqCst), 0, "nothing was fetched");
}
