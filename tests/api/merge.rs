//! Dedup by bytes across partners (issue 16 item 6): two partners deliver the same picture
//! under different URLs; once processing has measured both, they are one image. The younger ID
//! is retired into the older one and keeps resolving, through every cache level (L1, Redis)
//! and through the compiled plans as through the executor; the hotels of both show the
//! survivor once, and `ImagesMerged` says so.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use images_subgraph::config::Switch;
use images_subgraph::domain::upload::samples;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::events::{Schemas, outbox};
use crate::helpers::{
    TestApp, gallery, redis_url, sample, spawn_app_with, spawn_replica_of_with, upload_png,
};

/// Hotels the demo catalog does not have.
const FIRST: i64 = 9101;
const SECOND: i64 = 9102;

/// The one picture of these tests as a PNG (a size of its own: no other test's bytes); the
/// server's `/as-jpeg/...` is the same scene as a JPEG.
fn picture() -> Vec<u8> {
    samples::png(411, 307)
}

/// A partner server serving one picture at every path: `/gated/...` only once the gate opens,
/// `/flaky/...` after a 500 the first time, `/as-jpeg/...` as a JPEG (other bytes).
async fn same_picture_server() -> (u16, Arc<Semaphore>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("an address").port();
    let gate = Arc::new(Semaphore::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let respond = || ([(header::CONTENT_TYPE, "image/png")], picture()).into_response();
    let app = Router::new()
        .route("/open/{name}", get(move || async move { respond() }))
        .route(
            "/as-jpeg/{name}",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/jpeg")],
                    samples::jpeg(411, 307, 0),
                )
            }),
        )
        .route(
            "/flaky/{name}",
            get(move || async move {
                if failed.swap(true, Ordering::SeqCst) {
                    respond()
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            }),
        )
        .route(
            "/gated/{name}",
            get({
                let gate = gate.clone();
                move || async move {
                    let _ = gate.acquire().await.map(|p| p.forget());
                    respond()
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, gate)
}

/// The app with one quick worker fetching from 127.0.0.1, with Redis (L2) and compiled plans;
/// a failed fetch is tried again after about `retry_ms`.
async fn merging_app(retry_ms: u64) -> TestApp {
    spawn_app_with(|s| {
        s.process_workers = 1;
        s.process_poll_ms = 50;
        s.process_retry_base_ms = retry_ms;
        s.fetch_allow_hosts = vec!["127.0.0.1".to_owned()];
        s.redis_url = Some(redis_url().parse().expect("Redis URL"));
    })
    .await
}

/// Imports `path` of the partner server as `partner`'s delivery for `hotels`, under
/// `legacy_id`; returns the outcomes.
async fn import(
    app: &TestApp,
    port: u16,
    partner: i64,
    path: &str,
    hotels: &[i64],
    legacy_id: &str,
) -> Vec<String> {
    let items: Vec<Value> = hotels
        .iter()
        .map(|hotel| {
            json!({
                "hotelId": hotel.to_string(),
                "url": format!("http://127.0.0.1:{port}{path}"),
                "legacyId": legacy_id,
            })
        })
        .collect();
    let data = app
        .graphql_as(
            &app.admin(),
            "mutation($input: ImportImagesInput!) { importImages(input: $input) { results { outcome } userErrors { code } } }",
            json!({ "input": { "partnerId": partner.to_string(), "items": items } }),
        )
        .await
        .ok();
    assert_eq!(data["importImages"]["userErrors"], json!([]), "{data}");
    data["importImages"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["outcome"].as_str().expect("an outcome").to_owned())
        .collect()
}

/// The ID of the image imported from `path`.
async fn image_of(app: &TestApp, path: &str) -> i64 {
    app.scalar(&format!(
        "SELECT id FROM image WHERE canonical_url LIKE '%{path}'"
    ))
    .await
}

/// Waits until `id` answers as `expected` (a change of the background workers reaches the
/// caches a moment after its commit, which is what [`TestApp::drained`] sees).
async fn answers_as(app: &TestApp, id: i64, expected: i64) {
    let want = vec![json!(expected.to_string()); 3];
    for _ in 0..100 {
        if public_ids(app, id).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(public_ids(app, id).await, want, "image {id}");
}

/// What a client sees of `id`: `image`, `images` and `_entities` (each answers one image ID),
/// as an anonymous client.
async fn public_ids(app: &TestApp, id: i64) -> Vec<Value> {
    let data = app
        .graphql(
            "query($id: ID!, $reps: [_Any!]!) {
                image(id: $id) { id width }
                images(ids: [$id]) { id }
                _entities(representations: $reps) { ... on Image { id } }
            }",
            json!({ "id": id.to_string(), "reps": [{ "__typename": "Image", "id": id.to_string() }] }),
        )
        .await
        .ok();
    vec![
        data["image"]["id"].clone(),
        data["images"][0]["id"].clone(),
        data["_entities"][0]["id"].clone(),
    ]
}

async fn planned_answers(app: &TestApp) -> f64 {
    sample(&app.metrics().await, "graphql_planned_answers_total").unwrap_or(0.0)
}

/// What an admin sees of `id`: its ID, partners, legacy IDs and hotels.
async fn admin_view(app: &TestApp, id: i64) -> Value {
    let data = app
        .graphql_as(
            &app.admin(),
            "query($id: ID!) { image(id: $id) {
                id sources { partner { id } } legacyIds hotels { nodes { id } }
            } }",
            json!({ "id": id.to_string() }),
        )
        .await
        .ok();
    data["image"].clone()
}

/// The image IDs a lookup by legacy ID and by source URL answer.
async fn lookups(app: &TestApp, legacy_id: &str, url: &str) -> (Value, Value) {
    let data = app
        .graphql_as(
            &app.admin(),
            "query($legacy: String!, $url: String!) {
                imageByLegacyId(legacyId: $legacy) { id }
                imageBySourceUrl(url: $url) { id }
            }",
            json!({ "legacy": legacy_id, "url": url }),
        )
        .await
        .ok();
    (
        data["imageByLegacyId"]["id"].clone(),
        data["imageBySourceUrl"]["id"].clone(),
    )
}

#[tokio::test]
async fn two_partners_delivering_the_same_bytes_end_as_one_image_that_the_retired_id_resolves_to() {
    let app = merging_app(50).await;
    let (port, gate) = same_picture_server().await;
    // Partner 1 delivers the picture for the first hotel: processed, READY.
    import(&app, port, 1, "/open/one.png", &[FIRST], "M-ONE").await;
    app.drained().await;
    let older = image_of(&app, "/open/one.png").await;
    // Partner 2 delivers it under another URL for both hotels (processed once the gate opens).
    import(&app, port, 2, "/gated/two.png", &[FIRST, SECOND], "M-TWO").await;
    let younger = image_of(&app, "/gated/two.png").await;
    assert!(younger > older);
    // Read while both exist, so that every cache level holds the younger image as itself.
    let id = |i: i64| json!(i.to_string());
    assert_eq!(public_ids(&app, younger).await, vec![id(younger); 3]);
    assert_eq!(gallery(&app, FIRST).await, vec![older.to_string()]);

    gate.add_permits(1);
    app.drained().await;
    answers_as(&app, younger, older).await;

    // One image: the older survives, the younger's row is gone and its ID answers the older.
    assert_eq!(
        app.scalar(&format!("SELECT COUNT(*) FROM image WHERE id = {younger}"))
            .await,
        0
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT survivor_id FROM merged_image WHERE id = {younger}"
        ))
        .await,
        older
    );
    // The executor answers as the compiled plans do, on a replica with cold caches as on the
    // warm app (its L1 and Redis were invalidated).
    let executor = spawn_replica_of_with(&app, |s| s.compiled_plans = Switch::Off).await;
    let planned_before = planned_answers(&app).await;
    for reader in [&app, &executor] {
        assert_eq!(public_ids(reader, younger).await, vec![id(older); 3]);
        assert_eq!(public_ids(reader, older).await, vec![id(older); 3]);
    }
    assert_eq!(planned_answers(&app).await - planned_before, 2.0);
    assert_eq!(planned_answers(&executor).await, 0.0);
    // Both partners' sources, both legacy IDs and both hotels belong to the survivor, whichever
    // ID asks.
    let expected = json!({
        "id": older.to_string(),
        "sources": [{ "partner": { "id": "1" } }, { "partner": { "id": "2" } }],
        "legacyIds": ["M-ONE", "M-TWO"],
        "hotels": { "nodes": [{ "id": FIRST.to_string() }, { "id": SECOND.to_string() }] },
    });
    assert_eq!(admin_view(&app, younger).await, expected);
    assert_eq!(admin_view(&app, older).await, expected);
    let url = format!("http://127.0.0.1:{port}/gated/two.png");
    assert_eq!(lookups(&app, "M-TWO", &url).await, (id(older), id(older)));
    // Both hotels were re-curated: each shows the survivor, once.
    assert_eq!(gallery(&app, FIRST).await, vec![older.to_string()]);
    assert_eq!(gallery(&app, SECOND).await, vec![older.to_string()]);
    // Partner 2 delivering its URL again finds the survivor: nothing new is created.
    let again = import(&app, port, 2, "/gated/two.png", &[FIRST, SECOND], "M-TWO").await;
    assert_eq!(again, ["UNCHANGED", "UNCHANGED"]);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM image WHERE canonical_url LIKE 'http://127.0.0.1:%'")
            .await,
        1
    );

    // Announced, in its documented layout, with the audit row naming both images.
    let schemas = Schemas::load();
    let merged: Vec<_> = outbox(&app)
        .await
        .into_iter()
        .filter(|e| e.event_type == "ImagesMerged")
        .collect();
    assert_eq!(merged.len(), 1);
    schemas.check(&merged[0]).unwrap();
    assert_eq!(merged[0].aggregate_id, younger.to_string());
    assert_eq!(merged[0].payload["survivorId"], id(older));
    assert_eq!(
        merged[0].payload["retiredImageIds"],
        json!([younger.to_string()])
    );
    assert_eq!(
        merged[0].payload["hotelIds"],
        json!([FIRST.to_string(), SECOND.to_string()])
    );
    // The older image's audit log: its own processing, and the merge.
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM audit_subject WHERE kind = 'image' AND entity_id = {older}"
        ))
        .await,
        2
    );
}

#[tokio::test]
async fn the_older_image_survives_also_when_it_is_processed_last() {
    let app = merging_app(3_000).await;
    let (port, _gate) = same_picture_server().await;
    // The older image's first fetch fails: the younger is processed while it waits to retry.
    import(&app, port, 1, "/flaky/one.png", &[FIRST], "L-ONE").await;
    import(&app, port, 2, "/open/two.png", &[SECOND], "L-TWO").await;
    let older = image_of(&app, "/flaky/one.png").await;
    let younger = image_of(&app, "/open/two.png").await;
    for _ in 0..300 {
        if app
            .scalar(&format!(
                "SELECT COUNT(*) FROM image WHERE id = {younger} AND processing_state = 'READY'"
            ))
            .await
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gallery(&app, SECOND).await, vec![younger.to_string()]);
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM image WHERE id = {older} AND processing_state = 'PENDING'"
        ))
        .await,
        1
    );

    app.drained().await;

    answers_as(&app, younger, older).await;
    assert_eq!(gallery(&app, FIRST).await, vec![older.to_string()]);
    assert_eq!(gallery(&app, SECOND).await, vec![older.to_string()]);
    assert_eq!(
        admin_view(&app, younger).await["legacyIds"],
        json!(["L-ONE", "L-TWO"])
    );
}

#[tokio::test]
async fn an_upload_of_a_partner_images_bytes_becomes_a_source_of_that_image() {
    let app = merging_app(50).await;
    let (port, _gate) = same_picture_server().await;
    import(&app, port, 1, "/open/one.png", &[FIRST], "U-ONE").await;
    app.drained().await;
    let partners = image_of(&app, "/open/one.png").await;

    let answer = upload_png(
        &app,
        &app.token("images:hotelier", &[SECOND]),
        "mutation($input: UploadImageInput!) { uploadImage(input: $input) { image { id } userErrors { code } } }",
        json!({ "hotelId": SECOND.to_string(), "file": null }),
        picture(),
    )
    .await
    .ok();
    assert_eq!(
        answer["uploadImage"]["image"]["id"],
        json!(partners.to_string())
    );
    assert_eq!(gallery(&app, SECOND).await, vec![partners.to_string()]);
    let sources = &admin_view(&app, partners).await["sources"];
    assert_eq!(
        sources,
        &json!([{ "partner": { "id": "1" } }, { "partner": { "id": "4" } }])
    );
}

#[tokio::test]
async fn the_same_picture_in_other_bytes_stays_two_images_and_is_shown_once() {
    let app = merging_app(50).await;
    let (port, _gate) = same_picture_server().await;
    import(&app, port, 1, "/open/one.png", &[FIRST], "N-ONE").await;
    import(&app, port, 2, "/as-jpeg/two.jpg", &[FIRST], "N-TWO").await;
    app.drained().await;

    // Other bytes: no merge. Their measured perceptual hashes are close: one is shown.
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM image WHERE canonical_url LIKE 'http://127.0.0.1:%' \
             AND processing_state = 'READY'"
        )
        .await,
        2
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM merged_image").await, 0);
    assert_eq!(gallery(&app, FIRST).await.len(), 1);
}

#[tokio::test]
async fn a_hotel_showing_both_copies_keeps_one_link_with_what_the_hotel_gave_either() {
    let app = merging_app(50).await;
    let (port, gate) = same_picture_server().await;
    // One partner delivers the picture twice for one hotel: two URLs, two images.
    import(&app, port, 1, "/open/one.png", &[FIRST], "C-ONE").await;
    app.drained().await;
    import(&app, port, 1, "/gated/two.png", &[FIRST], "C-TWO").await;
    let older = image_of(&app, "/open/one.png").await;
    let younger = image_of(&app, "/gated/two.png").await;
    // The hotel captions the younger copy; an admin takes it offline for the hotel.
    let admin = app.admin();
    let (hotel, image) = (FIRST.to_string(), younger.to_string());
    let changes = [
        (
            "mutation($input: UpdateHotelImageInput!) { updateHotelImage(input: $input) { userErrors { code } } }",
            json!({ "hotelId": hotel, "imageId": image, "caption": "Our terrace" }),
            "updateHotelImage",
        ),
        (
            "mutation($input: DeactivateImageInput!) { deactivateImage(input: $input) { userErrors { code } } }",
            json!({ "imageId": image, "reason": "blurred", "hotelIds": [hotel] }),
            "deactivateImage",
        ),
    ];
    for (mutation, input, field) in changes {
        let data = app
            .graphql_as(&admin, mutation, json!({ "input": input }))
            .await
            .ok();
        assert_eq!(data[field]["userErrors"], json!([]), "{data}");
    }
    assert_eq!(gallery(&app, FIRST).await, vec![older.to_string()]);

    gate.add_permits(1);
    app.drained().await;
    answers_as(&app, younger, older).await;

    // One link: offline for the hotel (as the younger's was), with the hotel's caption.
    let data = app
        .graphql_as(
            &admin,
            "query($id: ID!) { hotel(id: $id) {
                all: images { nodes { id } }
                offline: images(status: INACTIVE) { nodes { id caption } }
            } }",
            json!({ "id": hotel }),
        )
        .await
        .ok();
    assert_eq!(
        data["hotel"]["all"]["nodes"],
        json!([{ "id": older.to_string() }])
    );
    assert_eq!(
        data["hotel"]["offline"]["nodes"],
        json!([{ "id": older.to_string(), "caption": "Our terrace" }])
    );
    assert_eq!(gallery(&app, FIRST).await, Vec::<String>::new());
    // One source per partner, both legacy IDs.
    let view = admin_view(&app, older).await;
    assert_eq!(view["sources"], json!([{ "partner": { "id": "1" } }]));
    assert_eq!(view["legacyIds"], json!(["C-ONE", "C-TWO"]));
}
