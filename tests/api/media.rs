//! The demo shows real pictures (issue 16 item 9): seeding with pictures stores one per
//! distinct image, the rows say what measuring it finds, and `/media` serves every size of
//! `url(size)`. The tests seed a small catalog with pictures (the test apps' demo catalog has
//! none: drawing 10,000 pictures per test would take most of the run).

use std::collections::{BTreeMap, HashMap};

use entity::{hotel_image, image};
use images_subgraph::app::{Core, curation_rules};
use images_subgraph::config::Settings;
use images_subgraph::domain::measure::{
    MeasureLimits, NEAR_DUPLICATE_DISTANCE, hash_distance, measure,
};
use images_subgraph::seed::{Plan, generate};
use images_subgraph::store::objects::Objects;
use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::json;

use crate::helpers::{ScratchDatabase, TestApp, spawn_app_with};

/// An object store in a temporary directory.
fn store(dir: &tempfile::TempDir) -> Objects {
    let url = url::Url::from_directory_path(dir.path()).expect("a URL");
    Objects::open(url.as_str()).expect("a store")
}

/// The demo plan, eight hotels of it, with pictures in `objects`.
fn small_demo(objects: Objects) -> Plan {
    Plan {
        hotels: 8,
        chunk: 3,
        ..Plan::demo(Some(objects))
    }
}

#[tokio::test]
async fn the_demo_seed_stores_a_picture_per_image_and_its_rows_say_what_measuring_it_finds() {
    let database = ScratchDatabase::new().await;
    let settings = Settings::for_database(&database.url);
    let core = Core::open(&settings).await.expect("open");
    let dir = tempfile::tempdir().expect("temp dir");
    let objects = store(&dir);
    let report = generate(
        &core.db,
        &curation_rules(&settings),
        &small_demo(objects.clone()),
        |_| {},
    )
    .await
    .expect("seeded");

    let images = image::Entity::find().all(&core.db).await.expect("images");
    assert!(images.len() > 100, "{}", images.len());
    for row in &images {
        let bytes = objects
            .get(&row.storage_key)
            .await
            .expect("readable")
            .unwrap_or_else(|| panic!("image {}: nothing at {}", row.id, row.storage_key));
        let measured = measure(&bytes, MeasureLimits::default()).expect("a picture");
        assert_eq!(
            (
                row.width,
                row.height,
                row.content_sha256.as_deref(),
                row.perceptual_hash,
                row.measured_quality,
            ),
            (
                Some(measured.width as i32),
                Some(measured.height as i32),
                Some(measured.sha256.as_str()),
                Some(measured.perceptual_hash as i64),
                Some(measured.quality.score),
            ),
            "image {}",
            row.id
        );
        assert_eq!(row.processing_state, "READY");
    }

    // Distinct pictures for distinct images; the same-bytes copies share their original's.
    let mut by_bytes: BTreeMap<&str, Vec<&image::Model>> = BTreeMap::new();
    for row in &images {
        by_bytes
            .entry(row.content_sha256.as_deref().expect("a hash"))
            .or_default()
            .push(row);
    }
    let shared: Vec<&Vec<&image::Model>> = by_bytes.values().filter(|v| v.len() > 1).collect();
    assert!(!shared.is_empty(), "the plan has same-bytes copies");
    for copies in &shared {
        assert_eq!(copies.len(), 2, "an original and its copy");
        assert_eq!(copies[0].storage_key, copies[1].storage_key);
    }
    assert_eq!(report.pictures, by_bytes.len() as u64);

    // No two pictures a hotel shows are near-duplicates: curation leaves none out for that.
    let links = hotel_image::Entity::find()
        .all(&core.db)
        .await
        .expect("links");
    let by_id: HashMap<i64, &image::Model> = images.iter().map(|i| (i.id, i)).collect();
    let mut hotels: BTreeMap<i64, Vec<&image::Model>> = BTreeMap::new();
    for link in &links {
        hotels
            .entry(link.hotel_id)
            .or_default()
            .push(by_id[&link.image_id]);
    }
    for (hotel, shown) in hotels {
        for (i, a) in shown.iter().enumerate() {
            for b in &shown[i + 1..] {
                if a.content_sha256 == b.content_sha256 {
                    continue;
                }
                let distance = hash_distance(
                    a.perceptual_hash.expect("hashed") as u64,
                    b.perceptual_hash.expect("hashed") as u64,
                );
                assert!(
                    distance > NEAR_DUPLICATE_DISTANCE,
                    "hotel {hotel}: images {} and {} differ in {distance} bits",
                    a.id,
                    b.id
                );
            }
        }
    }
}

/// An app without the demo catalog, then the small demo with pictures in its object store.
async fn app_with_pictures() -> TestApp {
    let app = spawn_app_with(|s| s.seed_demo = Some(false)).await;
    let objects = Objects::open(app.settings.object_store_url.as_deref().expect("a store"))
        .expect("the app's store");
    generate(
        &app.core.db,
        &curation_rules(&app.settings),
        &small_demo(objects),
        |_| {},
    )
    .await
    .expect("seeded");
    app
}

/// GETs `/media` at the path of `url` (a CDN URL): status, content type, body.
async fn get_media(app: &TestApp, url: &str) -> (StatusCode, Option<String>, Vec<u8>) {
    let path = url
        .strip_prefix("https://images.example.com")
        .expect("a CDN URL");
    let response = app
        .client
        .get(app.url(&format!("/media{path}")))
        .send()
        .await
        .expect("sent");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("text").to_owned());
    (
        status,
        content_type,
        response.bytes().await.expect("a body").to_vec(),
    )
}

#[tokio::test]
async fn media_answers_each_size_of_a_demo_image_with_a_picture_of_that_size() {
    let app = app_with_pictures().await;
    let data = app
        .graphql(
            "{ hotel(id: 1) { gallery(first: 1) { nodes { id width height \
             c: url(size: THUMBNAIL) s: url(size: SMALL) m: url(size: MEDIUM) \
             x: url(size: XLARGE) o: url(size: ORIGINAL) } } } }",
            json!({}),
        )
        .await
        .ok();
    let node = &data["hotel"]["gallery"]["nodes"][0];
    let (width, height) = (
        node["width"].as_u64().expect("a width") as u32,
        node["height"].as_u64().expect("a height") as u32,
    );
    // The seed's landscape and portrait pictures: narrower than MEDIUM, wider than SMALL.
    assert!(width > 320 && width < 640, "{node}");
    let small = (
        320,
        (u64::from(height) * 320).div_ceil(u64::from(width)) as u32,
    );
    let cases = [
        ("c", (160, 160)),
        ("s", small),
        ("m", (width, height)),
        ("x", (width, height)),
        ("o", (width, height)),
    ];
    for (field, want) in cases {
        let url = node[field].as_str().expect("a URL");
        let (status, content_type, body) = get_media(&app, url).await;
        assert_eq!(status, StatusCode::OK, "{url}");
        assert_eq!(content_type.as_deref(), Some("image/png"), "{url}");
        let measured = measure(&body, MeasureLimits::default()).expect("a picture");
        assert_eq!((measured.width, measured.height), want, "{url}");
    }
    // The original is the stored file itself.
    let original = get_media(&app, node["o"].as_str().expect("a URL")).await.2;
    let id: i64 = node["id"]
        .as_str()
        .expect("an ID")
        .parse()
        .expect("a number");
    let row = image::Entity::find_by_id(id)
        .one(&app.core.db)
        .await
        .expect("read")
        .expect("the image");
    let objects = Objects::open(app.settings.object_store_url.as_deref().expect("a store"))
        .expect("the app's store");
    assert_eq!(
        objects.get(&row.storage_key).await.expect("read"),
        Some(original)
    );
}

#[tokio::test]
async fn media_answers_404_for_an_unknown_key_size_or_file() {
    let app = app_with_pictures().await;
    let key = image::Entity::find()
        .all(&app.core.db)
        .await
        .expect("images")
        .first()
        .expect("an image")
        .storage_key
        .clone();
    let dir = url::Url::parse(app.settings.object_store_url.as_deref().expect("a store"))
        .expect("a URL")
        .to_file_path()
        .expect("a directory");
    std::fs::create_dir_all(dir.join("t")).expect("a directory");
    std::fs::write(dir.join("t/page.jpg"), b"<html>not a picture</html>").expect("written");
    let cases = [
        // The size segments of the configured sizes answer.
        (format!("/media/c160/{key}"), StatusCode::OK),
        (format!("/media/w320/{key}"), StatusCode::OK),
        // Any other size does not.
        (format!("/media/w321/{key}"), StatusCode::NOT_FOUND),
        (format!("/media/c1600/{key}"), StatusCode::NOT_FOUND),
        (format!("/media/big/{key}"), StatusCode::NOT_FOUND),
        // Keys of nothing, or of no picture.
        (
            "/media/c160/u/00/unknown.jpg".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            "/media/original/u/00/unknown.jpg".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        ("/media/w320/t/page.jpg".to_owned(), StatusCode::NOT_FOUND),
        (
            "/media/original/t/page.jpg".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        // An empty part is no key (the file system would read `u//ab/...` as `u/ab/...`).
        (
            format!("/media/w320/{}", key.replacen('/', "//", 1)),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (path, want) in cases {
        let status = app
            .client
            .get(app.url(&path))
            .send()
            .await
            .expect("sent")
            .status();
        assert_eq!(status, want, "{path}");
    }
}
