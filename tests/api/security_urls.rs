//! Issue 19, item 8: what `transformUrl`, `sourceUrl` and the import let out or sign. Partner
//! URLs with credentials or non-public hosts are refused at import, transformation URLs are
//! built from the stored copy rather than the partner's URL, and uploads expose no path.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use images_subgraph::domain::upload::samples;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Answer, TestApp, spawn_app_with};

const IMPORT: &str = "mutation($input: ImportImagesInput!) { importImages(input: $input) {
    results { index outcome reason image { id url(size: ORIGINAL) transformUrl(width: 300) } }
    userErrors { code field message } } }";

const UPLOAD: &str = "mutation($input: UploadImageInput!) { uploadImage(input: $input) {
    image { id url(size: ORIGINAL) transformUrl(width: 300) }
    userErrors { code field message } } }";

/// An app that signs transformation URLs.
async fn signing_app() -> TestApp {
    spawn_app_with(|s| {
        s.imgproxy_key = Some(hex::encode("test-key").parse().unwrap());
        s.imgproxy_salt = Some(hex::encode("test-salt").parse().unwrap());
        s.imgproxy_url = "https://imgproxy.test".into();
    })
    .await
}

/// The `results` of importing `urls` for hotel 1 as partner 2.
async fn import_urls(app: &TestApp, urls: &[&str]) -> Vec<Value> {
    let items: Vec<Value> = urls
        .iter()
        .map(|url| json!({ "hotelId": "1", "url": url, "width": 1600, "height": 1067 }))
        .collect();
    let data = app
        .graphql_as(
            &app.importer(2),
            IMPORT,
            json!({ "input": { "partnerId": "2", "items": items } }),
        )
        .await
        .ok();
    let payload = &data["importImages"];
    assert_eq!(payload["userErrors"], json!([]), "{payload:#}");
    payload["results"].as_array().unwrap().clone()
}

/// The source an imgproxy URL asks imgproxy to fetch: its last segment, base64url, without the
/// format extension.
fn imgproxy_source(transform_url: &str) -> String {
    let last = transform_url.rsplit('/').next().unwrap();
    let encoded = last.split('.').next().unwrap();
    String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap()
}

#[tokio::test]
async fn partner_urls_with_credentials_or_non_public_hosts_are_rejected_at_import() {
    let app = signing_app().await;
    let refused = [
        "https://user:secret@img.partner.example/h1/a.jpg",
        "https://user@img.partner.example/h1/b.jpg",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://127.0.0.1/admin.jpg",
        "http://127.1.2.3:8080/a.jpg",
        "http://10.0.0.5/a.jpg",
        "http://172.16.0.1/a.jpg",
        "http://172.31.255.255/a.jpg",
        "http://192.168.1.1/a.jpg",
        "http://100.64.0.1/a.jpg",
        "http://0.0.0.0/a.jpg",
        "http://224.0.0.1/a.jpg",
        "http://255.255.255.255/a.jpg",
        "http://[::1]/a.jpg",
        "http://[::]/a.jpg",
        "http://[fd00::1]/a.jpg",
        "http://[fe80::1]/a.jpg",
        "http://[::ffff:127.0.0.1]/a.jpg",
        "http://[::ffff:169.254.169.254]/a.jpg",
        "http://localhost/a.jpg",
        "http://LOCALHOST./a.jpg",
        "http://media.localhost/a.jpg",
        // Spellings the URL parser turns into 127.0.0.1 and 169.254.169.254.
        "http://2130706433/a.jpg",
        "http://0x7f.1/a.jpg",
        "http://0251.0376.0251.0376/a.jpg",
    ];
    let results = import_urls(&app, &refused).await;
    assert_eq!(results.len(), refused.len());
    for (url, result) in refused.iter().zip(&results) {
        assert_eq!(result["outcome"], "REJECTED", "{url}: {result:#}");
        assert_eq!(result["image"], Value::Null, "{url}");
        let reason = result["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("credentials") || reason.contains("not a public host"),
            "{url}: {reason}"
        );
        assert!(
            !reason.contains("secret"),
            "the reason repeats the password: {reason}"
        );
    }

    // Public hosts, including addresses that merely look close to the refused ranges.
    let accepted = [
        "https://img.partner.example/h1/public.jpg",
        "http://172.32.0.1/a.jpg",
        "http://100.128.0.1/a.jpg",
        "http://8.8.8.8/a.jpg",
        "http://[2001:4860:4860::8888]/a.jpg",
        "https://localhost.example/a.jpg",
    ];
    let results = import_urls(&app, &accepted).await;
    for (url, result) in accepted.iter().zip(&results) {
        assert_eq!(result["outcome"], "CREATED", "{url}: {result:#}");
    }
}

#[tokio::test]
async fn transform_urls_are_built_from_the_stored_copy_not_the_partner_url() {
    let app = signing_app().await;
    let results = import_urls(
        &app,
        &["https://img.partner.example/h1/private/pool.jpg?token=abc"],
    )
    .await;
    let image = &results[0]["image"];
    assert_eq!(results[0]["outcome"], "CREATED", "{results:?}");
    let transform = image["transformUrl"].as_str().unwrap();
    assert!(
        transform.starts_with("https://imgproxy.test/"),
        "{transform}"
    );
    let source = imgproxy_source(transform);
    assert_eq!(source, image["url"].as_str().unwrap(), "{transform}");
    assert!(!source.contains("img.partner.example"), "{source}");
    assert!(!source.contains("token=abc"), "{source}");
}

async fn upload_png(app: &TestApp, bytes: Vec<u8>) -> Answer {
    let token = app.token("images:hotelier", &[14]);
    let input = json!({ "hotelId": "14", "file": null });
    crate::helpers::upload_png(app, &token, UPLOAD, input, bytes).await
}

#[tokio::test]
async fn uploads_expose_no_filesystem_path() {
    let app = signing_app().await;
    let bytes = samples::png(640, 480);
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let data = upload_png(&app, bytes).await.ok();
    let payload = &data["uploadImage"];
    assert_eq!(payload["userErrors"], json!([]), "{payload:#}");
    let image = &payload["image"];

    let transform = image["transformUrl"].as_str().unwrap();
    let source = imgproxy_source(transform);
    assert_eq!(source, image["url"].as_str().unwrap(), "{transform}");

    let sources = app
        .graphql_as(
            &app.admin(),
            "query($id: ID!) { image(id: $id) { sources { sourceUrl } } }",
            json!({ "id": image["id"] }),
        )
        .await
        .ok();
    let source_url = sources["image"]["sources"][0]["sourceUrl"]
        .as_str()
        .unwrap();
    assert_eq!(source_url, format!("upload:{sha256}"));

    // Nothing stored for the image names the object store's directory.
    let image_id: i64 = image["id"].as_str().unwrap().parse().unwrap();
    let leaking = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM image WHERE id = {image_id} \
             AND (canonical_url LIKE '%file:%' OR canonical_url LIKE '%local:%' \
                  OR canonical_url LIKE '%/tmp%')"
        ))
        .await;
    assert_eq!(leaking, 0);
    let outbox = app
        .scalar(
            "SELECT COUNT(*) FROM outbox WHERE payload LIKE '%local://%' OR payload LIKE '%file://%'",
        )
        .await;
    assert_eq!(outbox, 0);
}
