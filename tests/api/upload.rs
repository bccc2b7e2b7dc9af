//! Hotelier uploads over the GraphQL multipart protocol: stored once per content, linked with
//! the HOTELIER partner as source, curated, served from `/media` in the embedded setup.

use futures::StreamExt as _;
use images_subgraph::domain::upload::samples;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const UPLOAD: &str = "mutation($input: UploadImageInput!) { uploadImage(input: $input) {
    image { id width height status url(size: ORIGINAL) }
    hotel { imageCount images(first: 100) { nodes { id } } }
    userErrors { code field message } } }";

async fn upload(app: &TestApp, token: &str, hotel: i64, bytes: Vec<u8>) -> crate::helpers::Answer {
    let input = json!({ "hotelId": hotel.to_string(), "file": null, "caption": "Our terrace" });
    crate::helpers::upload_png(app, token, UPLOAD, input, bytes).await
}

fn payload(answer: crate::helpers::Answer) -> Value {
    answer.ok()["uploadImage"].clone()
}

#[tokio::test]
async fn a_hoteliers_upload_is_stored_once_linked_and_served() {
    let app = spawn_app().await;
    let token = app.token("images:hotelier", &[14, 15]);
    let bytes = samples::png(1600, 1067);
    let first = payload(upload(&app, &token, 14, bytes.clone()).await);
    assert_eq!(first["userErrors"], json!([]), "{first:#}");
    let image = &first["image"];
    assert_eq!(
        (image["width"].as_i64(), image["height"].as_i64()),
        (Some(1600), Some(1067))
    );
    assert_eq!(image["status"], "ACTIVE");
    let id = image["id"].clone();
    let sources = app
        .graphql_as(
            &app.admin(),
            "query($id: ID!) { image(id: $id) { sources { partner { kind } } } }",
            json!({ "id": id }),
        )
        .await
        .ok();
    assert_eq!(
        sources["image"]["sources"],
        json!([{ "partner": { "kind": "HOTELIER" } }])
    );
    let linked: Vec<Value> = first["hotel"]["images"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].clone())
        .collect();
    assert!(linked.contains(&id));

    // The file is served from /media under the path of its CDN URL.
    let url = image["url"].as_str().unwrap();
    let path = &url[url.find("/original/").unwrap()..];
    let served = app
        .client
        .get(app.url(&format!("/media{path}")))
        .send()
        .await
        .unwrap();
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(served.bytes().await.unwrap().to_vec(), bytes);

    // The same bytes again, for another hotel: the same image.
    let second = payload(upload(&app, &token, 15, bytes).await);
    assert_eq!(second["image"]["id"], id);
}

#[tokio::test]
async fn uploads_of_other_formats_too_large_or_for_other_hotels_are_refused() {
    let app = spawn_app_with(|s| s.upload_max_bytes = 64).await;
    let token = app.token("images:hotelier", &[14]);
    let before = app
        .graphql("{ hotel(id: 14) { imageCount } }", json!({}))
        .await
        .ok();

    let gif = payload(
        upload(
            &app,
            &token,
            14,
            b"GIF89a\x10\x00\x10\x00\x00\x00\x00".to_vec(),
        )
        .await,
    );
    assert_eq!(gif["userErrors"][0]["code"], "INVALID_INPUT");
    assert_eq!(gif["userErrors"][0]["field"], json!(["file"]));

    let mut large = samples::png(1600, 1067);
    large.resize(1000, 0);
    let too_large = payload(upload(&app, &token, 14, large).await);
    assert_eq!(
        too_large["userErrors"][0]["code"], "TOO_MANY_ITEMS",
        "{too_large:#}"
    );

    let other_hotel = upload(&app, &token, 16, samples::png(800, 600)).await;
    assert_eq!(other_hotel.error_codes(), ["FORBIDDEN"]);

    assert_eq!(
        app.graphql("{ hotel(id: 14) { imageCount } }", json!({}))
            .await
            .ok(),
        before
    );
}

/// A multipart request whose body starts and then never ends, as a slow upload looks.
async fn endless_upload(app: &TestApp, token: Option<&str>) -> Option<reqwest::StatusCode> {
    let start = b"--x\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{".to_vec();
    let body =
        futures::stream::iter([Ok::<_, std::io::Error>(start)]).chain(futures::stream::pending());
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "multipart/form-data; boundary=x")
        .body(reqwest::Body::wrap_stream(body));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let sent = tokio::time::timeout(std::time::Duration::from_secs(3), request.send()).await;
    sent.ok()
        .map(|response| response.expect("an answer").status())
}

#[tokio::test]
async fn an_upload_without_the_right_token_is_refused_before_its_body_is_read() {
    let app = spawn_app().await;
    assert_eq!(
        endless_upload(&app, None).await,
        Some(reqwest::StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        endless_upload(&app, Some("not-a-token")).await,
        Some(reqwest::StatusCode::UNAUTHORIZED)
    );
    let importer = app.importer(2);
    assert_eq!(
        endless_upload(&app, Some(&importer)).await,
        Some(reqwest::StatusCode::FORBIDDEN)
    );
    // A hotelier's upload is read (here: waited for).
    let hotelier = app.token("images:hotelier", &[14]);
    assert_eq!(endless_upload(&app, Some(&hotelier)).await, None);
}
