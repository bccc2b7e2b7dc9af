//! Takedowns (`purgeImage`, issue 21 item 6): the picture leaves every hotel, its bytes leave
//! the object store, no partner or hotelier can bring it back, and the CDN purge is sent to a
//! local receiver, retried while the receiver fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use images_subgraph::config::Secret;
use images_subgraph::domain::upload::samples;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, gallery, operation, picture_server, spawn_app, spawn_app_with, upload_png,
};

const PURGE: &str = "mutation($input: PurgeImageInput!) { purgeImage(input: $input) {
    image { id status caption } affectedHotels { id } bytesDeleted userErrors { code field message } } }";

/// A CDN purge endpoint on a port of its own: records every request (authorization header and
/// JSON body) and fails the first `failures` of them with 503.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    async fn start(failures: usize) -> (Self, String) {
        let receiver = Self::default();
        let seen = receiver.seen.clone();
        let app = axum::Router::new().route(
            "/purge",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let body = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let mut seen = seen.lock().expect("the receiver's lock");
                    seen.push((auth, body));
                    if seen.len() <= failures {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!(
            "http://{}/purge",
            listener.local_addr().expect("an address")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn requests(&self) -> Vec<(String, Value)> {
        self.seen.lock().expect("the receiver's lock").clone()
    }

    /// Waits (up to 15 s) until `n` requests arrived.
    async fn until(&self, n: usize) -> Vec<(String, Value)> {
        for _ in 0..300 {
            if self.requests().len() >= n {
                return self.requests();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the CDN got {:?}", self.requests());
    }
}

async fn purge(
    app: &TestApp,
    token: Option<&str>,
    image: &str,
    reason: &str,
) -> crate::helpers::Answer {
    app.graphql_with(
        PURGE,
        json!({ "input": { "imageId": image, "reason": reason } }),
        token,
    )
    .await
}

/// Imports `items` for `partner` as an admin; returns each item's (outcome, reason, image).
async fn import(
    app: &TestApp,
    partner: i64,
    items: Value,
) -> Vec<(String, Option<String>, Option<String>)> {
    let data = app
        .graphql_as(
            &app.admin(),
            &operation("pipelines/ImportImages.graphql"),
            json!({ "input": { "partnerId": partner.to_string(), "items": items } }),
        )
        .await
        .ok();
    data["importImages"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap_or_default().to_owned(),
                r["reason"].as_str().map(str::to_owned),
                r["image"]["id"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_purged_picture_leaves_every_hotel_and_no_spelling_or_copy_brings_it_back() {
    let (cdn, url) = Receiver::start(1).await;
    let app = spawn_app_with(|s| {
        s.cdn_purge_url = Some(url);
        s.cdn_purge_token = Some(Secret::new("cdn-token"));
        s.fetch_allow_hosts = vec!["127.0.0.1".to_owned()];
    })
    .await;
    let server = picture_server().await;
    let url = format!("{server}/takedown/face.jpg");
    let items: Vec<Value> = ["30", "31"]
        .iter()
        .map(|hotel| json!({ "hotelId": hotel, "url": url, "qualityScore": 1.0 }))
        .collect();
    let created = import(&app, 2, json!(items)).await;
    let image = created[0].2.clone().expect("an image");
    assert_eq!(app.process_due().await, 1);
    assert!(gallery(&app, 30).await.contains(&image));
    let sha = app
        .text(&format!(
            "SELECT content_sha256 FROM image WHERE id = {image}"
        ))
        .await;
    let large = app
        .graphql(
            "query($id: ID!) { image(id: $id) { url(size: LARGE) } }",
            json!({ "id": image }),
        )
        .await
        .ok()["image"]["url"]
        .clone();

    let payload = purge(&app, Some(&app.admin()), &image, "court order 2026-117")
        .await
        .ok()["purgeImage"]
        .clone();
    assert_eq!(payload["userErrors"], json!([]), "{payload:#}");
    assert_eq!(
        payload["affectedHotels"],
        json!([{ "id": "30" }, { "id": "31" }])
    );
    assert_eq!(payload["image"]["status"], "INACTIVE");
    assert_eq!(payload["bytesDeleted"], true);
    assert!(!gallery(&app, 30).await.contains(&image));
    assert!(!gallery(&app, 31).await.contains(&image));

    // Another spelling of the URL, another partner, or the same bytes under a new URL: refused.
    let again = import(
        &app,
        3,
        json!([
            { "hotelId": "32", "url": format!("{url}?utm_source=x#top") },
            { "hotelId": "32", "url": "https://cdn.other.example/copy.jpg", "contentSha256": sha.to_uppercase() },
            { "hotelId": "32", "url": "https://cdn.other.example/unrelated.jpg" },
        ]),
    )
    .await;
    let outcomes: Vec<&str> = again.iter().map(|(o, _, _)| o.as_str()).collect();
    assert_eq!(outcomes, ["REJECTED", "REJECTED", "CREATED"]);
    for (_, reason, _) in &again[..2] {
        assert!(
            reason.as_deref().is_some_and(|r| r.starts_with("PURGED")),
            "{reason:?}"
        );
    }
    // Nor does an admin's activation.
    let activated = app
        .graphql_as(
            &app.admin(),
            "mutation($input: ActivateImageInput!) { activateImage(input: $input) { userErrors { code } } }",
            json!({ "input": { "imageId": image } }),
        )
        .await
        .ok();
    assert_eq!(
        activated["activateImage"]["userErrors"][0]["code"],
        "PURGED"
    );

    // Audited, one event; the CDN got the purge once it answered (the first try failed).
    let count = |sql: &'static str| app.scalar(sql);
    assert_eq!(
        count("SELECT COUNT(*) FROM outbox WHERE type = 'ImagePurged'").await,
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM audit_log WHERE operation = 'purgeImage'").await,
        1
    );
    let requests = cdn.until(2).await;
    for (auth, body) in &requests {
        assert_eq!(auth, "Bearer cdn-token");
        assert!(
            body["urls"].as_array().expect("urls").contains(&large),
            "{body}"
        );
        assert_eq!(body["surrogateKeys"], json!([format!("image:{image}")]));
    }
    for _ in 0..100 {
        if count("SELECT COUNT(*) FROM cdn_purge WHERE sent_at IS NULL").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        count("SELECT COUNT(*) FROM cdn_purge WHERE sent_at IS NULL").await,
        0
    );
    assert_eq!(cdn.requests().len(), 2, "sent once it was accepted");
}

#[tokio::test]
async fn a_purged_picture_fetched_again_under_a_new_url_is_refused_and_not_stored_again() {
    let app = spawn_app_with(|s| s.fetch_allow_hosts = vec!["127.0.0.1".to_owned()]).await;
    let server = picture_server().await;
    let item =
        |hotel: &str, path: &str| json!({ "hotelId": hotel, "url": format!("{server}{path}") });
    let first = import(&app, 2, json!([item("30", "/one/face.jpg")])).await;
    let image = first[0].2.clone().expect("an image");
    assert_eq!(app.process_due().await, 1);
    let payload = purge(&app, Some(&app.admin()), &image, "privacy request")
        .await
        .ok()["purgeImage"]
        .clone();
    assert_eq!(payload["userErrors"], json!([]), "{payload:#}");
    let sha = app
        .text(&format!(
            "SELECT content_sha256 FROM image WHERE id = {image}"
        ))
        .await;

    // The same bytes under a URL nobody has seen, with no declared hash: the import cannot
    // tell, the fetch can.
    let again = import(&app, 3, json!([item("32", "/two/face.jpg")])).await;
    assert_eq!(again[0].0, "CREATED");
    let copy = again[0].2.clone().expect("an image");
    assert_eq!(app.process_due().await, 1);
    let refused = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM image WHERE id = {copy} \
             AND processing_state = 'FAILED' AND processing_reason = 'PURGED'"
        ))
        .await;
    assert_eq!(refused, 1);
    assert!(!gallery(&app, 32).await.contains(&copy));
    let objects = images_subgraph::store::objects::Objects::open(
        &app.settings.object_store_url().expect("a store URL"),
    )
    .expect("the store");
    let key = images_subgraph::domain::media::upload_storage_key(&sha, "jpg");
    assert_eq!(objects.get(&key).await.expect("the store answers"), None);
}

#[tokio::test]
async fn a_purged_upload_loses_its_bytes_and_cannot_be_uploaded_again() {
    let app = spawn_app().await;
    let hotelier = app.token("images:hotelier", &[14]);
    let query = "mutation($input: UploadImageInput!) { uploadImage(input: $input) {
        image { id url(size: ORIGINAL) } userErrors { code field } } }";
    let input = json!({ "hotelId": "14", "file": null });
    let bytes = samples::png(1500, 1000);
    let uploaded = upload_png(&app, &hotelier, query, input.clone(), bytes.clone())
        .await
        .ok()["uploadImage"]
        .clone();
    let image = uploaded["image"]["id"]
        .as_str()
        .expect("an image")
        .to_owned();
    let url = uploaded["image"]["url"].as_str().expect("a URL").to_owned();
    let media = app.url(&format!(
        "/media{}",
        &url[url.find("/original/").expect("a path")..]
    ));
    let served = || async { app.client.get(&media).send().await.expect("sent").status() };
    assert_eq!(served().await, 200);

    let payload = purge(&app, Some(&app.admin()), &image, "privacy request")
        .await
        .ok()["purgeImage"]
        .clone();
    assert_eq!(payload["userErrors"], json!([]), "{payload:#}");
    assert_eq!(served().await, 404);
    assert!(!gallery(&app, 14).await.contains(&image));

    let again = upload_png(&app, &hotelier, query, input, bytes).await.ok()["uploadImage"].clone();
    assert_eq!(again["userErrors"][0]["code"], "PURGED", "{again:#}");
    assert_eq!(served().await, 404, "refused before it was stored");
    // Purging it again is harmless.
    let payload = purge(&app, Some(&app.admin()), &image, "privacy request")
        .await
        .ok()["purgeImage"]
        .clone();
    assert_eq!(payload["userErrors"], json!([]));
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM outbox WHERE type = 'ImagePurged'")
            .await,
        1
    );
}

#[tokio::test]
async fn only_admins_purge_and_a_takedown_needs_a_known_image_and_a_reason() {
    let app = spawn_app().await;
    let image = gallery(&app, 14).await[0].clone();
    let hotelier = app.token("images:hotelier", &[14]);
    assert_eq!(
        purge(&app, Some(&hotelier), &image, "mine")
            .await
            .error_codes(),
        ["FORBIDDEN"]
    );
    assert_eq!(
        purge(&app, Some(&app.importer(2)), &image, "x")
            .await
            .error_codes(),
        ["FORBIDDEN"]
    );
    assert_eq!(
        purge(&app, None, &image, "x").await.error_codes(),
        ["UNAUTHENTICATED"]
    );
    let admin = app.admin();
    let blank = purge(&app, Some(&admin), &image, " ").await.ok();
    assert_eq!(
        blank["purgeImage"]["userErrors"][0]["code"],
        "INVALID_INPUT"
    );
    let unknown = purge(&app, Some(&admin), "999999999", "x").await.ok();
    assert_eq!(unknown["purgeImage"]["userErrors"][0]["code"], "NOT_FOUND");
    assert!(gallery(&app, 14).await.contains(&image));
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM purged_key").await,
        0,
        "nothing was buried"
    );
}

const DEACTIVATE: &str = "mutation($input: DeactivateImageInput!) {
    deactivateImage(input: $input) { userErrors { code field } } }";
const UPDATE: &str = "mutation($input: UpdateImageInput!) {
    updateImage(input: $input) { userErrors { code field } } }";
const CLASSIFY: &str = "mutation($input: ClassifyImagesInput!) {
    classifyImages(input: $input) { userErrors { code field } } }";

#[tokio::test]
async fn a_purged_image_refuses_every_other_admin_change_and_a_second_purge_repeats_nothing() {
    let app = spawn_app().await;
    let admin = app.admin();
    let image = gallery(&app, 14).await[0].clone();
    let payload = purge(&app, Some(&admin), &image, "court order").await.ok()["purgeImage"].clone();
    assert_eq!(payload["userErrors"], json!([]), "{payload:#}");

    let deactivated = app
        .graphql_as(
            &admin,
            DEACTIVATE,
            json!({ "input": { "imageId": image, "reason": "x" } }),
        )
        .await
        .ok();
    assert_eq!(
        deactivated["deactivateImage"]["userErrors"],
        json!([{ "code": "PURGED", "field": ["imageId"] }])
    );
    let updated = app
        .graphql_as(
            &admin,
            UPDATE,
            json!({ "input": { "imageId": image, "caption": "back" } }),
        )
        .await
        .ok();
    assert_eq!(
        updated["updateImage"]["userErrors"],
        json!([{ "code": "PURGED", "field": ["imageId"] }])
    );
    let items = json!([{ "imageId": image, "tags": [{ "category": "POOL", "confidence": 0.9 }] }]);
    let classified = app
        .graphql_as(&admin, CLASSIFY, json!({ "input": { "items": items } }))
        .await
        .ok();
    assert_eq!(
        classified["classifyImages"]["userErrors"],
        json!([{ "code": "PURGED", "field": ["items", "0", "imageId"] }])
    );
    let caption = app
        .graphql(
            "query($id: ID!) { image(id: $id) { caption } }",
            json!({ "id": image }),
        )
        .await
        .ok();
    assert_eq!(caption["image"]["caption"], Value::Null);

    let again = purge(&app, Some(&admin), &image, "court order").await.ok()["purgeImage"].clone();
    assert_eq!(again["userErrors"], json!([]));
    for sql in [
        "SELECT COUNT(*) FROM outbox WHERE type = 'ImagePurged'",
        "SELECT COUNT(*) FROM audit_log WHERE operation = 'purgeImage'",
    ] {
        assert_eq!(app.scalar(sql).await, 1, "{sql}");
    }
}

#[tokio::test]
async fn concurrent_purges_of_one_image_take_it_down_once() {
    let app = spawn_app().await;
    let admin = app.admin();
    let image = gallery(&app, 14).await[0].clone();
    let runs = (0..4).map(|_| purge(&app, Some(&admin), &image, "court order"));
    for answer in futures::future::join_all(runs).await {
        assert_eq!(answer.ok()["purgeImage"]["userErrors"], json!([]));
    }
    for sql in [
        "SELECT COUNT(*) FROM outbox WHERE type = 'ImagePurged'",
        "SELECT COUNT(*) FROM audit_log WHERE operation = 'purgeImage'",
    ] {
        assert_eq!(app.scalar(sql).await, 1, "{sql}");
    }
}

#[tokio::test]
async fn a_takedown_is_in_the_audit_log_of_every_hotel_that_showed_the_image() {
    let app = spawn_app().await;
    let admin = app.admin();
    let image = gallery(&app, 14).await[0].clone();
    let payload = purge(&app, Some(&admin), &image, "court order").await.ok()["purgeImage"].clone();
    assert_eq!(payload["affectedHotels"], json!([{ "id": "14" }]));
    let log = app
        .graphql_as(
            &admin,
            "query { auditLog(filter: { hotelId: \"14\" }, first: 5) { edges { node { action } } } }",
            json!({}),
        )
        .await
        .ok();
    assert_eq!(
        log["auditLog"]["edges"][0]["node"]["action"], "purgeImage",
        "{log:#}"
    );
}

#[tokio::test]
async fn bytes_that_cannot_be_deleted_do_not_fail_the_committed_takedown() {
    let app = spawn_app().await;
    let hotelier = app.token("images:hotelier", &[14]);
    let query = "mutation($input: UploadImageInput!) { uploadImage(input: $input) {
        image { id } userErrors { code } } }";
    let input = json!({ "hotelId": "14", "file": null });
    let uploaded = upload_png(&app, &hotelier, query, input, samples::png(1500, 1000))
        .await
        .ok();
    let image = uploaded["uploadImage"]["image"]["id"]
        .as_str()
        .expect("an image")
        .to_owned();
    // Every stored file becomes a directory: the object store cannot delete it.
    let media = app.settings.object_store_url.clone().expect("a media URL");
    let root = url::Url::parse(&media)
        .expect("a URL")
        .to_file_path()
        .expect("a path");
    let mut stuck = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                std::fs::remove_file(&path).expect("removed");
                std::fs::create_dir_all(path.join("stuck")).expect("a directory");
                stuck.push(path);
            }
        }
    }
    assert!(!stuck.is_empty());

    let answer = purge(&app, Some(&app.admin()), &image, "privacy request").await;
    let payload = answer.ok()["purgeImage"].clone();
    assert_eq!(payload["userErrors"], json!([]), "{payload:#}");
    assert_eq!(payload["image"]["status"], "INACTIVE");
    assert_eq!(payload["bytesDeleted"], false, "{payload:#}");

    // Once the store can delete again, purging again deletes them.
    for path in &stuck {
        std::fs::remove_dir_all(path).expect("removed");
        std::fs::write(path, b"bytes").expect("written");
    }
    let again = purge(&app, Some(&app.admin()), &image, "privacy request")
        .await
        .ok();
    assert_eq!(again["purgeImage"]["bytesDeleted"], true);
    assert!(stuck.iter().all(|path| !path.exists()));
}
