//! Hotelier uploads over the GraphQL multipart protocol: stored once per content, linked with
//! the HOTELIER partner as source, curated, served from `/media` in the embedded setup.

use futures::StreamExt as _;
use images_subgraph::domain::upload::samples;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const UPLOAD: &str = "mutation($input: UploadImageInput!) { uploadImage(input: $input) {
    image { id width height status qualityScore url(size: ORIGINAL) }
    hotel { imageCount images(first: 100) { nodes { id } } }
    userErrors { code field message } } }";

async fn upload(app: &TestApp, token: &str, hotel: i64, bytes: Vec<u8>) -> crate::helpers::Answer {
    let input = json!({ "hotelId": hotel.to_string(), "file": null, "caption": "Our terrace" });
    crate::helpers::upload_png(app, token, UPLOAD, input, bytes).await
}

/// Sends a hand-made multipart `form` to `/graphql` as the bearer of `token`.
async fn send_multipart(
    app: &TestApp,
    token: &str,
    form: reqwest::multipart::Form,
) -> crate::helpers::Answer {
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("an answer");
    crate::helpers::answer(response).await
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
    // No model has scored it yet: the quality measured from its pixels counts.
    let quality = image["qualityScore"]
        .as_f64()
        .expect("a measured quality score");
    assert!(quality > 0.0 && quality <= 1.0, "{quality}");
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
    assert_eq!(gif["userErrors"][0]["code"], "UNSUPPORTED_FORMAT");
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

/// Issue 19 item 3: an upload is decoded, within a pixel limit checked before decoding;
/// what does not decode is refused with the reason as its code, and nothing changes.
#[tokio::test]
async fn forged_truncated_and_polyglot_uploads_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let token = app.token("images:hotelier", &[14]);
    let hotel = "{ hotel(id: 14) { imageCount version images(first: 100) { nodes { id } } } }";
    let before = app.graphql_as(&token, hotel, json!({})).await.ok();

    let jpeg = samples::jpeg(800, 600, 1);
    let mut polyglot = samples::png(400, 300);
    polyglot.extend_from_slice(b"<html><script>alert(document.cookie)</script></html>");
    let mut html_in_png = samples::png_header(400, 300);
    html_in_png.extend_from_slice(b"<html><script>alert(document.cookie)</script></html>");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a PNG header claiming 4294967295x4294967295",
            samples::png_header(u32::MAX, u32::MAX),
            "TOO_MANY_PIXELS",
        ),
        (
            "a 33-byte PNG claiming 100000x100000",
            samples::png_header(100_000, 100_000),
            "TOO_MANY_PIXELS",
        ),
        (
            "a 30-byte WebP claiming 16384x16384",
            samples::webp_header(16_384, 16_384),
            "TOO_MANY_PIXELS",
        ),
        (
            "a 30-byte WebP claiming 1600x1067",
            samples::webp_header(1600, 1067),
            "DECODE_ERROR",
        ),
        (
            "a truncated JPEG",
            jpeg[..jpeg.len() / 2].to_vec(),
            "DECODE_ERROR",
        ),
        ("a PNG with HTML after its end", polyglot, "DECODE_ERROR"),
        ("a PNG header followed by HTML", html_in_png, "DECODE_ERROR"),
        (
            "HTML",
            b"<!doctype html><script>alert(1)</script>".to_vec(),
            "NOT_AN_IMAGE",
        ),
        (
            "SVG",
            br#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>"#.to_vec(),
            "NOT_AN_IMAGE",
        ),
        (
            "AVIF",
            b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf".to_vec(),
            "UNSUPPORTED_FORMAT",
        ),
    ];
    for (name, bytes, code) in cases {
        let refused = payload(upload(&app, &token, 14, bytes).await);
        assert_eq!(
            refused["userErrors"][0]["code"], code,
            "{name}: {refused:#}"
        );
        assert_eq!(refused["userErrors"][0]["field"], json!(["file"]), "{name}");
        assert_eq!(refused["image"], Value::Null, "{name}");
    }

    let after = app.graphql_as(&token, hotel, json!({})).await.ok();
    assert_eq!(after, before);
}

/// What an upload stores is measured from its pixels: dimensions, and a perceptual hash by
/// which the same picture in another format is a near-duplicate that curation shows once.
#[tokio::test]
async fn the_same_picture_uploaded_as_png_and_jpeg_is_shown_once() {
    let app = spawn_app().await;
    let token = app.token("images:hotelier", &[14]);
    let picture = images_subgraph::domain::measure::samples::scene(1200, 800, 7);
    let encode = |format| images_subgraph::domain::measure::samples::encode(&picture, format);
    let png = payload(upload(&app, &token, 14, encode(image::ImageFormat::Png)).await);
    let jpeg = payload(upload(&app, &token, 14, encode(image::ImageFormat::Jpeg)).await);
    for uploaded in [&png, &jpeg] {
        assert_eq!(uploaded["userErrors"], json!([]), "{uploaded:#}");
        assert_eq!(
            (&uploaded["image"]["width"], &uploaded["image"]["height"]),
            (&json!(1200), &json!(800))
        );
    }
    let (png, jpeg) = (&png["image"]["id"], &jpeg["image"]["id"]);
    assert_ne!(png, jpeg, "different bytes are different images");

    let gallery = app
        .graphql(
            "{ hotel(id: 14) { gallery(first: 100) { nodes { id } } } }",
            json!({}),
        )
        .await
        .ok();
    let shown: Vec<&Value> = gallery["hotel"]["gallery"]["nodes"]
        .as_array()
        .expect("a gallery")
        .iter()
        .map(|node| &node["id"])
        .filter(|id| *id == png || *id == jpeg)
        .collect();
    assert_eq!(shown.len(), 1, "{gallery:#}");
}

/// Issue 19 item 5: the `operations` and `map` parts of a multipart request are JSON and get
/// the JSON body limit, not the upload limit, even from a caller who may upload.
#[tokio::test]
async fn multipart_operations_and_map_parts_get_the_json_body_limit() {
    use reqwest::multipart::{Form, Part};
    let app = spawn_app().await;
    let token = app.token("images:hotelier", &[14]);
    let padding = "x".repeat(15 * 1024 * 1024);
    let operations = json!({
        "query": "mutation($input: UploadImageInput!) { uploadImage(input: $input) { userErrors { code } } }",
        "variables": { "input": { "hotelId": "14", "file": null, "caption": "c" }, "padding": padding },
    });
    let map = json!({ "0": ["variables.input.file"] });
    let mut padded_map = map.clone();
    padded_map["padding"] = json!([padding]);
    let cases = [
        ("operations", operations.to_string(), map.to_string()),
        (
            "map",
            json!({ "query": operations["query"], "variables": { "input": { "hotelId": "14", "file": null } } }).to_string(),
            padded_map.to_string(),
        ),
    ];
    for (part, operations, map) in cases {
        let form = Form::new()
            .text("operations", operations)
            .text("map", map)
            .part("0", Part::bytes(samples::png(64, 48)).file_name("a.png"));
        let answer = send_multipart(&app, &token, form).await;
        assert_eq!(
            answer.status,
            reqwest::StatusCode::PAYLOAD_TOO_LARGE,
            "{part}"
        );
        assert_eq!(answer.error_codes(), ["LIMIT_EXCEEDED"], "{part}");
    }

    // At most 10 files in one request.
    let small = json!({ "query": operations["query"], "variables": { "input": { "hotelId": "14", "file": null } } });
    let mut form = Form::new()
        .text("operations", small.to_string())
        .text("map", map.to_string());
    for i in 0..11 {
        form = form.part(i.to_string(), Part::bytes(vec![0u8; 16]).file_name("a.png"));
    }
    let answer = send_multipart(&app, &token, form).await;
    assert_eq!(answer.status, reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_codes(), ["BAD_REQUEST"]);
}

/// Review finding: one file part named by many paths of `map` was attached once per path (a
/// duplicate file handle each, and with an `Idempotency-Key`, hashed once each), so a 1 MB `map`
/// could make one upload count 75,000 times. Paths are files too: at most 10, none twice.
#[tokio::test]
async fn a_map_naming_one_file_many_times_is_refused() {
    use reqwest::multipart::{Form, Part};
    let app = spawn_app().await;
    let token = app.token("images:hotelier", &[14]);
    let operations = json!({
        "query": "mutation($input: UploadImageInput!) { uploadImage(input: $input) { userErrors { code } } }",
        "variables": { "input": { "hotelId": "14", "file": null, "caption": "c" } },
    });
    let images = async || {
        let answer = app
            .graphql(r#"{ hotel(id: "14") { imageCount } }"#, json!({}))
            .await;
        answer.ok()["hotel"]["imageCount"].clone()
    };
    let before = images().await;
    let many: Vec<String> = (0..11).map(|_| "variables.input.file".to_owned()).collect();
    let twice = ["variables.input.file", "variables.input.file"];
    for map in [json!({ "0": many }), json!({ "0": twice })] {
        let form = Form::new()
            .text("operations", operations.to_string())
            .text("map", map.to_string())
            .part("0", Part::bytes(samples::png(64, 48)).file_name("a.png"));
        let answer = send_multipart(&app, &token, form).await;
        assert_eq!(answer.status, reqwest::StatusCode::BAD_REQUEST, "{map}");
        assert_eq!(answer.error_codes(), ["BAD_REQUEST"], "{map}");
    }
    assert_eq!(images().await, before, "nothing was uploaded");
}
