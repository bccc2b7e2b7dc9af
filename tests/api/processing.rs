//! Processing partner images (issue 16): a local partner server serves good pictures and every
//! kind of failure; the app's workers fetch, measure and store them. Each image ends in its
//! documented state and reason, and a hotel's gallery shows an image only once it is READY.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use images_subgraph::config::Settings;
use images_subgraph::domain::upload::samples;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::events::{Row, Schemas, outbox};
use crate::helpers::{
    TestApp, gallery, main_image, picture_server, spawn_app_with, spawn_replica_of,
};

/// Largest partner image the test app takes (`UPLOAD_MAX_BYTES`).
const MAX_BYTES: usize = 256 * 1024;
/// A hotel the demo catalog does not have.
const HOTEL: i64 = 9001;

/// A local partner server (see [`partner_server`]).
struct PartnerServer {
    port: u16,
    /// `/gated.jpg` answers once a permit is added.
    gate: Arc<Semaphore>,
    /// `/mended.jpg` answers 404 until this is set, then a picture.
    mended: Arc<AtomicBool>,
}

/// A local partner server with good pictures and every kind of failure.
async fn partner_server() -> PartnerServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("an address").port();
    let gate = Arc::new(Semaphore::new(0));
    let mended = Arc::new(AtomicBool::new(false));
    let flaky = Arc::new(AtomicU32::new(0));
    let jpeg = |seed| {
        move || async move {
            (
                [(header::CONTENT_TYPE, "image/jpeg")],
                samples::jpeg(640, 480, seed),
            )
        }
    };
    let app = Router::new()
        .route("/a.jpg", get(jpeg(1)))
        .route(
            "/b.png",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/png")],
                    samples::png(400, 300),
                )
            }),
        )
        .route(
            "/c.webp",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/webp")],
                    samples::webp(480, 320, 6),
                )
            }),
        )
        // Too small for a gallery (a short side under 300 pixels), whatever a feed declares.
        .route(
            "/small.jpg",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/jpeg")],
                    samples::jpeg(200, 150, 7),
                )
            }),
        )
        .route(
            "/gated.jpg",
            get({
                let gate = gate.clone();
                move || async move {
                    let _ = gate.acquire().await.map(|p| p.forget());
                    (
                        [(header::CONTENT_TYPE, "image/jpeg")],
                        samples::jpeg(800, 600, 3),
                    )
                }
            }),
        )
        .route("/404", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/flaky.jpg",
            get(move || {
                let flaky = flaky.clone();
                async move {
                    if flaky.fetch_add(1, Ordering::SeqCst) == 0 {
                        StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    } else {
                        (
                            [(header::CONTENT_TYPE, "image/jpeg")],
                            samples::jpeg(640, 480, 4),
                        )
                            .into_response()
                    }
                }
            }),
        )
        .route(
            "/mended.jpg",
            get({
                let mended = mended.clone();
                move || async move {
                    if mended.load(Ordering::SeqCst) {
                        (
                            [(header::CONTENT_TYPE, "image/jpeg")],
                            samples::jpeg(640, 480, 5),
                        )
                            .into_response()
                    } else {
                        StatusCode::NOT_FOUND.into_response()
                    }
                }
            }),
        )
        .route("/slow.jpg", get(|| async { slow_body() }))
        .route("/big.jpg", get(|| async { vec![0xFFu8; MAX_BYTES + 1] }))
        .route(
            "/page.jpg",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/jpeg")],
                    "<html><body>hi</body></html>",
                )
            }),
        )
        .route(
            "/bomb.png",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/png")],
                    samples::png_header(100_000, 100_000),
                )
            }),
        )
        .route(
            "/hop/{n}",
            get(|n: Path<u32>| async move {
                match n.0 {
                    0 => Redirect::to("/a.jpg"),
                    n => Redirect::to(&format!("/hop/{}", n - 1)),
                }
            }),
        )
        .route(
            "/to-localhost",
            get(move || async move { Redirect::to(&format!("http://localhost:{port}/a.jpg")) }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    PartnerServer { port, gate, mended }
}

/// A body that starts and then stalls.
fn slow_body() -> Response {
    let first = futures::stream::iter([Ok::<_, std::io::Error>(vec![0xFFu8, 0xD8, 0xFF])]);
    Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending())).into_response()
}

/// The app with one worker that retries quickly, gives up on a fetch after 700 ms, and
/// fetches from 127.0.0.1.
async fn processing_app() -> TestApp {
    processing_app_with(|_| {}).await
}

/// [`processing_app`] with settings changed by `configure`.
async fn processing_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.process_workers = 1;
        s.process_poll_ms = 50;
        s.process_retry_base_ms = 50;
        s.process_max_attempts = 2;
        s.fetch_timeout_ms = 700;
        s.upload_max_bytes = MAX_BYTES;
        s.fetch_allow_hosts = vec!["127.0.0.1".to_owned()];
        configure(s);
    })
    .await
}

/// Imports `paths` of the partner server for [`HOTEL`] (partner 1, no declared metadata).
async fn import(app: &TestApp, port: u16, paths: &[&str]) {
    let urls: Vec<String> = paths
        .iter()
        .map(|p| format!("http://127.0.0.1:{port}{p}"))
        .collect();
    import_urls(app, &urls).await;
}

/// Imports `urls` for [`HOTEL`] (partner 1, no declared metadata).
async fn import_urls(app: &TestApp, urls: &[String]) {
    let items: Vec<_> = urls
        .iter()
        .map(|url| json!({ "hotelId": HOTEL.to_string(), "url": url }))
        .collect();
    let data = app
        .graphql_as(
            &app.admin(),
            "mutation($input: ImportImagesInput!) { importImages(input: $input) { results { outcome } userErrors { code } } }",
            json!({ "input": { "partnerId": "1", "items": items } }),
        )
        .await
        .ok();
    assert_eq!(data["importImages"]["userErrors"], json!([]), "{data}");
}

/// Images of `path` in `state` with `reason` (`None`: no reason).
async fn count(app: &TestApp, path: &str, state: &str, reason: Option<&str>) -> i64 {
    let reason = match reason {
        Some(r) => format!("processing_reason = '{r}'"),
        None => "processing_reason IS NULL".to_owned(),
    };
    app.scalar(&format!(
        "SELECT COUNT(*) FROM image WHERE canonical_url LIKE '%{path}' \
         AND processing_state = '{state}' AND {reason}"
    ))
    .await
}

#[tokio::test]
async fn a_pending_image_is_never_shown_and_the_gallery_changes_on_the_next_request_once_ready() {
    // The fetch waits at the gate while the test looks: long enough on a busy machine.
    let app = processing_app_with(|s| s.fetch_timeout_ms = 30_000).await;
    let PartnerServer { port, gate, .. } = partner_server().await;
    import(&app, port, &["/gated.jpg"]).await;

    assert_eq!(count(&app, "/gated.jpg", "PENDING", None).await, 1);
    assert!(gallery(&app, HOTEL).await.is_empty());
    assert_eq!(main_image(&app, HOTEL).await, None);

    gate.add_permits(1);
    app.drained().await;
    assert_eq!(count(&app, "/gated.jpg", "READY", None).await, 1);
    let shown = gallery(&app, HOTEL).await;
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(main_image(&app, HOTEL).await.as_ref(), shown.first());
    // Measured, stored under its content hash, and announced.
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) FROM image WHERE width = 800 AND height = 600 \
                    AND content_sha256 IS NOT NULL AND perceptual_hash IS NOT NULL \
                    AND measured_quality IS NOT NULL AND fetched_at IS NOT NULL \
                    AND storage_key LIKE 'u/%.jpg'"
        )
        .await,
        1
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM outbox WHERE type = 'ImageProcessed'")
            .await,
        1
    );
}

#[tokio::test]
async fn each_partner_image_ends_in_its_documented_state_and_reason() {
    let app = processing_app().await;
    let port = partner_server().await.port;
    let cases: [(&str, &str, Option<&str>); 12] = [
        ("/a.jpg", "READY", None),
        ("/b.png", "READY", None),
        ("/c.webp", "READY", None),
        ("/small.jpg", "READY", None),
        ("/flaky.jpg", "READY", None),
        ("/404", "FAILED", Some("HTTP_STATUS")),
        ("/slow.jpg", "FAILED", Some("TIMEOUT")),
        ("/big.jpg", "FAILED", Some("TOO_LARGE")),
        ("/page.jpg", "FAILED", Some("NOT_AN_IMAGE")),
        ("/bomb.png", "FAILED", Some("TOO_MANY_PIXELS")),
        ("/hop/9", "FAILED", Some("TOO_MANY_REDIRECTS")),
        ("/to-localhost", "FAILED", Some("BLOCKED_ADDRESS")),
    ];
    let paths: Vec<&str> = cases.iter().map(|c| c.0).collect();
    import(&app, port, &paths).await;
    app.drained().await;

    for (path, state, reason) in cases {
        assert_eq!(count(&app, path, state, reason).await, 1, "{path}");
    }
    // The 500 was tried again; the timeout twice (PROCESS_MAX_ATTEMPTS), a 404 once.
    for (path, attempts) in [("/flaky.jpg", 2), ("/slow.jpg", 2), ("/404", 1)] {
        let sql = format!(
            "SELECT COUNT(*) FROM image WHERE canonical_url LIKE '%{path}' \
             AND processing_attempts = {attempts}"
        );
        assert_eq!(app.scalar(&sql).await, 1, "{path}");
    }
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM outbox WHERE type = 'ImageFailed'")
            .await,
        7
    );
    // READY and shown: the JPEG, the PNG, the WebP and the JPEG that failed once; the small
    // one is READY but measured too small for the gallery.
    assert_eq!(gallery(&app, HOTEL).await.len(), 4);
    // Every event of processing has its documented layout.
    let schemas = Schemas::load();
    let processing: Vec<Row> = outbox(&app)
        .await
        .into_iter()
        .filter(|e| matches!(e.event_type.as_str(), "ImageProcessed" | "ImageFailed"))
        .collect();
    assert_eq!(processing.len(), 12);
    for event in &processing {
        schemas.check(event).unwrap();
    }
}

const RETRY: &str = "mutation($input: RetryImageProcessingInput!) {
    retryImageProcessing(input: $input) { retriedCount imageIds userErrors { code field } } }";

#[tokio::test]
async fn an_admin_retries_failed_images_by_id_or_by_partner_and_they_are_processed_again() {
    let app = processing_app().await;
    let server = partner_server().await;
    import(&app, server.port, &["/mended.jpg", "/404", "/a.jpg"]).await;
    app.drained().await;
    assert_eq!(
        count(&app, "/mended.jpg", "FAILED", Some("HTTP_STATUS")).await,
        1
    );
    let id_of = |path: &str| format!("SELECT id FROM image WHERE canonical_url LIKE '%{path}'");
    let mended = app.scalar(&id_of("/mended.jpg")).await.to_string();
    let ready = app.scalar(&id_of("/a.jpg")).await.to_string();
    let retry = |input: serde_json::Value, token: String| {
        let app = &app;
        async move {
            app.graphql_as(&token, RETRY, json!({ "input": input }))
                .await
        }
    };

    // Bad input and the wrong callers change nothing.
    let cases = [
        (json!({}), "INVALID_INPUT"),
        (
            json!({ "imageIds": [mended], "partnerId": "1" }),
            "INVALID_INPUT",
        ),
        (json!({ "imageIds": ["x"] }), "INVALID_INPUT"),
        (json!({ "partnerId": "4242" }), "NOT_FOUND"),
    ];
    for (input, code) in cases {
        let data = retry(input.clone(), app.admin()).await.ok();
        let payload = &data["retryImageProcessing"];
        assert_eq!(payload["userErrors"][0]["code"], code, "{input}: {data}");
        assert_eq!(payload["retriedCount"], 0, "{input}");
    }
    let refused = retry(
        json!({ "partnerId": "1" }),
        app.token("images:hotelier", &[HOTEL]),
    )
    .await;
    assert_eq!(refused.error_codes(), ["FORBIDDEN"]);
    assert_eq!(
        count(&app, "/mended.jpg", "FAILED", Some("HTTP_STATUS")).await,
        1
    );

    // The partner fixed one picture: retried by ID, it is READY and shown; a READY image
    // named with it is left as it is.
    server.mended.store(true, Ordering::SeqCst);
    let data = retry(json!({ "imageIds": [mended, ready] }), app.admin())
        .await
        .ok();
    assert_eq!(
        data["retryImageProcessing"],
        json!({ "retriedCount": 1, "imageIds": [mended], "userErrors": [] })
    );
    app.drained().await;
    assert_eq!(count(&app, "/mended.jpg", "READY", None).await, 1);
    assert!(gallery(&app, HOTEL).await.contains(&mended));
    assert_eq!(count(&app, "/404", "FAILED", Some("HTTP_STATUS")).await, 1);

    // By partner: every FAILED image it delivers is tried again, from its first attempt.
    let data = retry(json!({ "partnerId": "1" }), app.admin()).await.ok();
    assert_eq!(data["retryImageProcessing"]["retriedCount"], 1, "{data}");
    app.drained().await;
    let sql = "SELECT COUNT(*) FROM image WHERE canonical_url LIKE '%/404' \
               AND processing_state = 'FAILED' AND processing_attempts = 1";
    assert_eq!(app.scalar(sql).await, 1);
    let retried = app
        .scalar("SELECT COUNT(*) FROM audit_log WHERE operation = 'retryImageProcessing'")
        .await;
    assert_eq!(retried, 2);
}

/// A partner server that counts the requests of each path: `/slow/{n}.jpg` answers after
/// 100 ms, `/stall.jpg` after 8 s the first time and at once after that.
async fn counting_server() -> (
    u16,
    Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("an address").port();
    let seen: Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>> = Arc::default();
    let count = {
        let seen = seen.clone();
        move |path: String| {
            let mut seen = seen.lock().unwrap();
            let n = seen.entry(path).or_default();
            *n += 1;
            *n
        }
    };
    let slow_count = count.clone();
    let app = Router::new()
        .route(
            "/slow/{n}",
            get(move |n: Path<u32>| {
                slow_count(format!("/slow/{}", n.0));
                async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    (
                        [(header::CONTENT_TYPE, "image/jpeg")],
                        samples::jpeg(640, 480, 10 + n.0),
                    )
                }
            }),
        )
        .route(
            "/stall.jpg",
            get(move || {
                let first = count("/stall.jpg".to_owned()) == 1;
                async move {
                    if first {
                        tokio::time::sleep(Duration::from_secs(8)).await;
                    }
                    (
                        [(header::CONTENT_TYPE, "image/jpeg")],
                        samples::jpeg(640, 480, 99),
                    )
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, seen)
}

#[tokio::test]
async fn two_instances_never_process_one_image_at_once_and_an_expired_lease_is_taken_again() {
    let first = spawn_app_with(|s| {
        s.process_workers = 2;
        s.process_poll_ms = 50;
        s.process_lease_secs = 4;
        s.fetch_timeout_ms = 12_000;
        s.fetch_allow_hosts = vec!["127.0.0.1".to_owned()];
    })
    .await;
    let second = spawn_replica_of(&first).await;
    let (port, seen) = counting_server().await;
    let mut paths: Vec<String> = (0..8).map(|n| format!("/slow/{n}")).collect();
    paths.push("/stall.jpg".to_owned());
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    import(&first, port, &paths).await;
    second.drained().await;

    assert_eq!(
        first
            .scalar("SELECT COUNT(*) FROM image WHERE processing_state = 'READY' AND canonical_url LIKE 'http://127.0.0.1:%'")
            .await,
        9
    );
    let seen = seen.lock().unwrap().clone();
    for n in 0..8 {
        assert_eq!(seen[&format!("/slow/{n}")], 1, "{seen:?}");
    }
    // The first fetch outlived its lease: another worker fetched again and recorded it; the
    // late first worker wrote nothing.
    assert_eq!(seen["/stall.jpg"], 2, "{seen:?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        first
            .scalar("SELECT COUNT(*) FROM outbox WHERE type = 'ImageProcessed'")
            .await,
        9
    );
}

#[tokio::test]
async fn workers_committing_together_record_every_image_once_with_its_audit_and_event() {
    // Six workers finish their pictures at about the same time, so their READY outcomes are
    // committed in groups (one change for several images). Two pictures come twice under
    // other paths, so groups also merge.
    let app = spawn_app_with(|s| {
        s.process_workers = 6;
        s.process_poll_ms = 50;
        s.fetch_allow_hosts = vec!["127.0.0.1".to_owned()];
    })
    .await;
    let server = picture_server().await;
    let mut urls: Vec<String> = (0..12).map(|n| format!("{server}/a/p{n}.jpg")).collect();
    urls.extend(["p3", "p7"].map(|name| format!("{server}/b/{name}.jpg")));
    import_urls(&app, &urls).await;
    app.drained().await;

    // 14 images were processed, each once, each audited and announced on its own; the two
    // copies were merged into the images that came first.
    let linked_ready = format!(
        "SELECT COUNT(*) FROM hotel_image h JOIN image i ON i.id = h.image_id \
         WHERE h.hotel_id = {HOTEL} AND i.processing_state = 'READY'"
    );
    for (sql, expected) in [
        (
            "SELECT COUNT(*) FROM audit_log WHERE operation = 'processImage'",
            14,
        ),
        (
            "SELECT COUNT(DISTINCT s.entity_id) FROM audit_subject s JOIN audit_log a ON a.id = s.audit_id WHERE a.operation = 'processImage' AND s.kind = 'image'",
            14,
        ),
        (
            "SELECT COUNT(*) FROM outbox WHERE type = 'ImageProcessed'",
            14,
        ),
        ("SELECT COUNT(*) FROM outbox WHERE type = 'ImagesMerged'", 2),
        (linked_ready.as_str(), 12),
    ] {
        assert_eq!(app.scalar(sql).await, expected, "{sql}");
    }
    // The hotel was curated with what the groups committed: its gallery shows READY images.
    let shown = gallery(&app, HOTEL).await;
    assert!(!shown.is_empty());
    let ready = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM image WHERE processing_state = 'READY' AND id IN ({})",
            shown.join(", ")
        ))
        .await;
    assert_eq!(ready, i64::try_from(shown.len()).unwrap());
}
