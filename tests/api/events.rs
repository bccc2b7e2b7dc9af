//! Events (DESIGN section 7): every event the mutations emit validates against its JSON Schema
//! in `schema/events/`; the relay publishes every outbox event to the Redis stream exactly once
//! with several replicas running, in `seq` order per aggregate, again after a crash between
//! publishing and marking, and to the in-process bus in the embedded default; `/metrics` shows
//! the lag while the stream is out of reach.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use images_subgraph::domain::upload::samples;
use reqwest::multipart::{Form, Part};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, operation, sample, spawn_app, spawn_app_with, spawn_replicas};

/// The Redis that tests needing one use whatever the engine (`.ci/run` exports it).
fn redis_url() -> String {
    std::env::var("REDIS_URL_FOR_TESTS")
        .or_else(|_| std::env::var("TEST_REDIS_URL"))
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) seq: i64,
    id: String,
    aggregate_type: String,
    pub(crate) aggregate_id: String,
    pub(crate) event_type: String,
    pub(crate) payload: Value,
    published: bool,
}

pub(crate) async fn outbox(app: &TestApp) -> Vec<Row> {
    let backend = app.core.db.get_database_backend();
    let rows = app
        .core
        .db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT seq, id, aggregatetype, aggregateid, type, payload, published_at FROM outbox ORDER BY seq",
        ))
        .await
        .expect("outbox rows");
    rows.iter()
        .map(|row| {
            let payload: String = row.try_get_by_index(5).unwrap();
            let published: Option<chrono::DateTime<chrono::Utc>> = row.try_get_by_index(6).unwrap();
            Row {
                seq: row.try_get_by_index(0).unwrap(),
                id: row.try_get_by_index(1).unwrap(),
                aggregate_type: row.try_get_by_index(2).unwrap(),
                aggregate_id: row.try_get_by_index(3).unwrap(),
                event_type: row.try_get_by_index(4).unwrap(),
                payload: serde_json::from_str(&payload).expect("payload is JSON"),
                published: published.is_some(),
            }
        })
        .collect()
}

/// Waits until every outbox row is marked published.
async fn until_published(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = app
            .scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
            .await;
        if left == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{left} events still unpublished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The event schemas of `schema/events/`, by event type.
pub(crate) struct Schemas(HashMap<String, (Value, jsonschema::Validator)>);

impl Schemas {
    pub(crate) fn load() -> Self {
        let dir = format!("{}/schema/events", env!("CARGO_MANIFEST_DIR"));
        let mut schemas = HashMap::new();
        for entry in std::fs::read_dir(&dir).expect("schema/events") {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let schema: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            jsonschema::draft202012::meta::validate(&schema)
                .unwrap_or_else(|e| panic!("{} is no Draft 2020-12 schema: {e}", path.display()));
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            assert_eq!(schema["title"], name.as_str(), "{}", path.display());
            let validator = jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            schemas.insert(name, (schema, validator));
        }
        Self(schemas)
    }

    /// Checks an event against the schema of its type: the payload, and the envelope's
    /// aggregate type and ID.
    pub(crate) fn check(&self, row: &Row) -> Result<(), String> {
        let (schema, validator) = self
            .0
            .get(&row.event_type)
            .ok_or_else(|| format!("no schema for event type {:?}", row.event_type))?;
        let errors: Vec<String> = validator
            .iter_errors(&row.payload)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if !errors.is_empty() {
            return Err(format!("{} {}: {errors:?}", row.event_type, row.payload));
        }
        if schema["x-aggregatetype"] != row.aggregate_type.as_str() {
            return Err(format!(
                "{}: aggregatetype {}",
                row.event_type, row.aggregate_type
            ));
        }
        let field = schema["x-aggregateid"].as_str().unwrap_or_default();
        if row.payload[field] != row.aggregate_id.as_str() {
            return Err(format!(
                "{}: aggregateid {} is not {field}",
                row.event_type, row.aggregate_id
            ));
        }
        Ok(())
    }
}

/// IDs of a hotel's gallery, read as an admin, and its version.
async fn gallery(app: &TestApp, hotel: i64) -> (Vec<String>, i64) {
    let data = app
        .graphql_as(
            &app.admin(),
            "query($id: ID!) { hotel(id: $id) { version gallery(first: 100) { nodes { id } } } }",
            json!({ "id": hotel.to_string() }),
        )
        .await
        .ok();
    let ids = data["hotel"]["gallery"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, data["hotel"]["version"].as_i64().unwrap())
}

/// An admin sets the main image of a hotel with a big gallery (a change with events).
async fn change_a_main_image(app: &TestApp) {
    let hotel = big_galleries(app, 1).await[0];
    let (ids, _) = gallery(app, hotel).await;
    mutate(
        app,
        &app.admin(),
        "setMainImage",
        SET_MAIN,
        json!({ "hotelId": hotel.to_string(), "imageId": ids[3] }),
    )
    .await;
}

/// `count` hotels whose galleries hold at least 10 images (room for every kind of change).
async fn big_galleries(app: &TestApp, count: usize) -> Vec<i64> {
    let ids: Vec<String> = (1..=100).map(|i: i64| i.to_string()).collect();
    let data = app
        .graphql(
            "query($ids: [ID!]!) { hotels(ids: $ids) { id gallery(first: 1) { totalCount } } }",
            json!({ "ids": ids }),
        )
        .await
        .ok();
    let big: Vec<i64> = data["hotels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["gallery"]["totalCount"].as_i64().unwrap_or(0) >= 10)
        .map(|h| h["id"].as_str().unwrap().parse().unwrap())
        .take(count)
        .collect();
    assert_eq!(
        big.len(),
        count,
        "the demo catalog has enough big galleries"
    );
    big
}

/// Runs `mutation` with `input` and checks it reports no user error.
async fn mutate(app: &TestApp, token: &str, field: &str, mutation: &str, input: Value) -> Value {
    let data = app
        .graphql_as(token, mutation, json!({ "input": input }))
        .await
        .ok();
    assert_eq!(data[field]["userErrors"], json!([]), "{field}: {data:#}");
    data[field].clone()
}

const SET_MAIN: &str =
    "mutation($input: SetMainImageInput!) { setMainImage(input: $input) { userErrors { code } } }";
const RESET_MAIN: &str = "mutation($input: ResetMainImageInput!) { resetMainImage(input: $input) { userErrors { code } } }";
const SET_PINS: &str = "mutation($input: SetGalleryPinsInput!) { setGalleryPins(input: $input) { userErrors { code } } }";
const ACTIVATE: &str = "mutation($input: ActivateImageInput!) { activateImage(input: $input) { userErrors { code } } }";
const UPDATE: &str =
    "mutation($input: UpdateImageInput!) { updateImage(input: $input) { userErrors { code } } }";
const HIDE: &str =
    "mutation($input: HideImageInput!) { hideImage(input: $input) { userErrors { code } } }";
const SHOW: &str =
    "mutation($input: ShowImageInput!) { showImage(input: $input) { userErrors { code } } }";
const HOTEL_IMAGE: &str = "mutation($input: UpdateHotelImageInput!) { updateHotelImage(input: $input) { userErrors { code } } }";
const PURGE: &str =
    "mutation($input: PurgeImageInput!) { purgeImage(input: $input) { userErrors { code } } }";
const REMOVE: &str =
    "mutation($input: RemoveUploadInput!) { removeUpload(input: $input) { userErrors { code } } }";

/// Every kind of change on hotel `hotel` (and its images), by `app`: the management
/// mutations, an upload and an import.
async fn every_change(app: &TestApp, hotel: i64) {
    let admin = app.admin();
    let hotelier = app.token("images:hotelier", &[hotel]);
    let (ids, version) = gallery(app, hotel).await;
    assert!(ids.len() >= 10, "hotel {hotel}: {ids:?}");
    let id = |i: usize| ids[i].clone();
    let h = hotel.to_string();
    mutate(
        app,
        &hotelier,
        "setMainImage",
        SET_MAIN,
        json!({ "hotelId": h, "imageId": id(3), "expectedVersion": version }),
    )
    .await;
    mutate(
        app,
        &hotelier,
        "resetMainImage",
        RESET_MAIN,
        json!({ "hotelId": h }),
    )
    .await;
    mutate(
        app,
        &hotelier,
        "setGalleryPins",
        SET_PINS,
        json!({ "hotelId": h, "imageIds": [id(4), id(2)] }),
    )
    .await;
    let deactivate = operation("admin/DeactivateImage.graphql");
    mutate(
        app,
        &admin,
        "deactivateImage",
        &deactivate,
        json!({ "imageId": id(1), "reason": "watermark" }),
    )
    .await;
    mutate(
        app,
        &admin,
        "activateImage",
        ACTIVATE,
        json!({ "imageId": id(1) }),
    )
    .await;
    mutate(
        app,
        &admin,
        "deactivateImage",
        &deactivate,
        json!({ "imageId": id(5), "hotelIds": [h] }),
    )
    .await;
    mutate(
        app,
        &admin,
        "activateImage",
        ACTIVATE,
        json!({ "imageId": id(5), "hotelIds": [h] }),
    )
    .await;
    mutate(
        app,
        &admin,
        "updateImage",
        UPDATE,
        json!({ "imageId": id(6), "caption": "Lobby at night",
        "tags": [{ "category": "LOBBY", "confidence": 1.0 }] }),
    )
    .await;
    mutate(
        app,
        &admin,
        "updateImage",
        UPDATE,
        json!({ "imageId": id(6), "caption": null }),
    )
    .await;
    mutate(app, &app.token("images:classify", &[]), "classifyImages",
        &operation("pipelines/ClassifyImages.graphql"),
        json!({ "items": [
            { "imageId": id(7), "qualityScore": 0.99, "tags": [{ "category": "POOL", "confidence": 0.97 }] },
            { "imageId": id(8), "tags": [{ "category": "BAR", "confidence": 0.6 }] },
        ] })).await;
    let uploaded = upload(app, &hotelier, hotel).await;
    mutate(
        app,
        &hotelier,
        "hideImage",
        HIDE,
        json!({ "hotelId": h, "imageId": id(9), "reason": "renovated" }),
    )
    .await;
    mutate(
        app,
        &hotelier,
        "showImage",
        SHOW,
        json!({ "hotelId": h, "imageId": id(9) }),
    )
    .await;
    mutate(
        app,
        &hotelier,
        "updateHotelImage",
        HOTEL_IMAGE,
        json!({ "hotelId": h, "imageId": id(9), "caption": "Our garden", "altText": "A garden" }),
    )
    .await;
    mutate(
        app,
        &hotelier,
        "removeUpload",
        REMOVE,
        json!({ "hotelId": h, "imageId": uploaded }),
    )
    .await;
    let second = upload(app, &hotelier, hotel).await;
    mutate(
        app,
        &admin,
        "purgeImage",
        PURGE,
        json!({ "imageId": second, "reason": "privacy request" }),
    )
    .await;
    let url = format!(
        "https://img.partner.example/events/{}/a.jpg",
        uuid::Uuid::new_v4().simple()
    );
    let results = mutate(
        app,
        &app.importer(2),
        "importImages",
        &operation("pipelines/ImportImages.graphql"),
        json!({ "partnerId": "2", "items": [
            { "hotelId": h, "url": url, "width": 1600, "height": 1067, "qualityScore": 1.0 },
            { "hotelId": (hotel + 1).to_string(), "url": url, "width": 1600, "height": 1067 },
        ] }),
    )
    .await;
    let outcomes: Vec<&str> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["CREATED", "LINKED"]);
}

/// A hotelier's upload of a fresh PNG for `hotel`; returns the image's ID.
async fn upload(app: &TestApp, token: &str, hotel: i64) -> Value {
    let query = "mutation($input: UploadImageInput!) { uploadImage(input: $input) { image { id } userErrors { code } } }";
    let operations = json!({
        "query": query,
        "variables": { "input": { "hotelId": hotel.to_string(), "file": null } },
    });
    // Sizes differ per call, so that each upload is new bytes (a new image).
    let width = 1200 + (uuid::Uuid::new_v4().as_u128() % 400) as u32;
    let form = Form::new()
        .text("operations", operations.to_string())
        .text("map", json!({ "0": ["variables.input.file"] }).to_string())
        .part(
            "0",
            Part::bytes(samples::png(width, 800))
                .file_name("a.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let answer = crate::helpers::answer(
        app.client
            .post(app.url("/graphql"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let data = answer.ok();
    assert_eq!(data["uploadImage"]["userErrors"], json!([]), "{data:#}");
    data["uploadImage"]["image"]["id"].clone()
}

#[tokio::test]
async fn every_event_the_mutations_emit_validates_against_its_schema() {
    let schemas = Schemas::load();
    for name in [
        "ImageCreated",
        "ImageUpdated",
        "ImageDeactivated",
        "ImageActivated",
        "MainImageChanged",
        "GalleryChanged",
        "ImageLinked",
        "ImageUnlinked",
        "ImagePurged",
    ] {
        assert!(
            schemas.0.contains_key(name),
            "schema/events/{name}.json is missing"
        );
    }
    let app = spawn_app().await;
    every_change(&app, big_galleries(&app, 1).await[0]).await;

    let rows = outbox(&app).await;
    let mut types = BTreeMap::<&str, usize>::new();
    for row in &rows {
        if let Err(error) = schemas.check(row) {
            panic!("event {} does not validate: {error}", row.id);
        }
        *types.entry(row.event_type.as_str()).or_default() += 1;
    }
    for emitted in [
        "ImageCreated",
        "ImageUpdated",
        "ImageDeactivated",
        "ImageActivated",
        "MainImageChanged",
        "GalleryChanged",
        "ImageLinked",
        "ImageUnlinked",
        "ImagePurged",
    ] {
        assert!(types.contains_key(emitted), "no {emitted} among {types:?}");
    }
    // Both deactivations and both activations and a hotelier's hide and show; two edits, two
    // classifications, a hotel's texts.
    assert_eq!(types["ImageDeactivated"], 3, "{types:?}");
    assert_eq!(types["ImageActivated"], 3, "{types:?}");
    assert!(types["ImageUpdated"] >= 5, "{types:?}");
    assert_eq!(types["ImageUnlinked"], 1, "{types:?}");
    assert_eq!(types["ImagePurged"], 1, "{types:?}");
    // Two uploads and an import created one image each.
    assert_eq!(types["ImageCreated"], 3, "{types:?}");
    // The import's second item showed the same picture for another hotel.
    assert_eq!(types["ImageLinked"], 1, "{types:?}");
    let ids: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), rows.len(), "event IDs are unique");
}

#[tokio::test]
async fn the_schemas_refuse_unknown_types_and_payloads_that_break_their_contract() {
    let schemas = Schemas::load();
    let good = Row {
        seq: 1,
        id: uuid::Uuid::new_v4().to_string(),
        aggregate_type: "Hotel".into(),
        aggregate_id: "7".into(),
        event_type: "MainImageChanged".into(),
        payload: json!({ "schemaVersion": 1, "hotelId": "7", "imageId": "12", "previousImageId": null,
            "version": 3, "occurredAt": "2026-11-22T08:00:00.123456Z" }),
        published: false,
    };
    assert_eq!(schemas.check(&good), Ok(()));
    let linked = Row {
        aggregate_type: "Image".into(),
        aggregate_id: "12".into(),
        event_type: "ImageLinked".into(),
        payload: json!({ "schemaVersion": 1, "imageId": "12", "hotelId": "7", "partnerId": "2",
            "occurredAt": "2026-11-22T08:00:00Z" }),
        ..good.clone()
    };
    assert_eq!(schemas.check(&linked), Ok(()));

    let broken = |change: &dyn Fn(&mut Row)| {
        let mut row = good.clone();
        change(&mut row);
        schemas.check(&row)
    };
    type Break = Box<dyn Fn(&mut Row)>;
    let cases: Vec<(&str, Break)> = vec![
        (
            "unknown type",
            Box::new(|r| r.event_type = "HotelRenamed".into()),
        ),
        (
            "extra field",
            Box::new(|r| r.payload["surprise"] = json!(true)),
        ),
        (
            "missing field",
            Box::new(|r| {
                r.payload.as_object_mut().unwrap().remove("version");
            }),
        ),
        (
            "other version",
            Box::new(|r| r.payload["schemaVersion"] = json!(2)),
        ),
        ("numeric ID", Box::new(|r| r.payload["imageId"] = json!(12))),
        (
            "bad timestamp",
            Box::new(|r| r.payload["occurredAt"] = json!("yesterday")),
        ),
        (
            "wrong aggregate type",
            Box::new(|r| r.aggregate_type = "Image".into()),
        ),
        (
            "wrong aggregate ID",
            Box::new(|r| r.aggregate_id = "8".into()),
        ),
    ];
    for (what, change) in &cases {
        assert!(broken(change.as_ref()).is_err(), "{what} was accepted");
    }
}

/// One entry of the Redis stream.
#[derive(Debug)]
struct Entry {
    id: String,
    aggregate_type: String,
    aggregate_id: String,
    event_type: String,
    payload: String,
    seq: i64,
}

async fn stream(app: &TestApp) -> Vec<Entry> {
    let mut connection = images_subgraph::redis_link::Target::parse(&redis_url())
        .unwrap()
        .connect_now(Duration::from_secs(5))
        .await
        .expect("Redis is up");
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(app.event_stream())
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .unwrap();
    reply
        .ids
        .iter()
        .map(|entry| {
            let field = |name: &str| -> String {
                entry
                    .get(name)
                    .unwrap_or_else(|| panic!("no field {name} in {entry:?}"))
            };
            Entry {
                id: field("id"),
                aggregate_type: field("aggregatetype"),
                aggregate_id: field("aggregateid"),
                event_type: field("type"),
                payload: field("payload"),
                seq: field("seq").parse().unwrap(),
            }
        })
        .collect()
}

/// Checks that `entries` hold every row of `rows` as many times as `times` says (1 unless
/// named), each with the row's fields, in `seq` order per aggregate.
fn assert_stream_holds(entries: &[Entry], rows: &[Row]) {
    let by_id: HashMap<&str, &Row> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut seen = HashMap::<&str, usize>::new();
    let mut last_seq = HashMap::<(&str, &str), i64>::new();
    for entry in entries {
        let row = by_id
            .get(entry.id.as_str())
            .unwrap_or_else(|| panic!("{} is no outbox event", entry.id));
        assert_eq!(
            (
                entry.aggregate_type.as_str(),
                entry.aggregate_id.as_str(),
                entry.event_type.as_str(),
                entry.seq
            ),
            (
                row.aggregate_type.as_str(),
                row.aggregate_id.as_str(),
                row.event_type.as_str(),
                row.seq
            ),
        );
        assert_eq!(
            serde_json::from_str::<Value>(&entry.payload).unwrap(),
            row.payload
        );
        *seen.entry(entry.id.as_str()).or_default() += 1;
        let aggregate = (entry.aggregate_type.as_str(), entry.aggregate_id.as_str());
        if let Some(previous) = last_seq.insert(aggregate, entry.seq) {
            assert!(
                previous < entry.seq,
                "{aggregate:?}: seq {} after {previous}",
                entry.seq
            );
        }
    }
    let missing: Vec<&str> = rows
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| !seen.contains_key(id))
        .collect();
    assert!(missing.is_empty(), "never published: {missing:?}");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
}

#[tokio::test]
async fn replicas_publish_every_event_to_the_stream_exactly_once_in_order_per_aggregate() {
    let redis = redis_url();
    let apps = spawn_replicas(2, |s| s.redis_url = Some(redis.parse().unwrap())).await;
    let (a, b) = (&apps[0], &apps[1]);
    let hotels = big_galleries(a, 8).await;
    // Writes on both replicas at once, several on the same hotels (one hotel's changes queue
    // on its row), plus a batch on each replica.
    let mut writes = Vec::new();
    for &hotel in &hotels[..6] {
        for app in [a, b] {
            writes.push(async move {
                let admin = app.admin();
                let (ids, _) = gallery(app, hotel).await;
                for pick in [2, 5, 3] {
                    // Concurrent changes of one hotel: no expected version, so each one wins.
                    mutate(
                        app,
                        &admin,
                        "setMainImage",
                        SET_MAIN,
                        json!({ "hotelId": hotel.to_string(), "imageId": ids[pick] }),
                    )
                    .await;
                }
                mutate(
                    app,
                    &admin,
                    "setGalleryPins",
                    SET_PINS,
                    json!({ "hotelId": hotel.to_string(), "imageIds": [ids[6]] }),
                )
                .await;
            });
        }
    }
    futures::future::join_all(writes).await;
    every_change(a, hotels[6]).await;
    every_change(b, hotels[7]).await;
    until_published(a).await;

    let rows = outbox(a).await;
    assert!(rows.len() > 60, "only {} events", rows.len());
    assert!(rows.iter().all(|r| r.published));
    let entries = stream(a).await;
    assert_eq!(entries.len(), rows.len(), "stream entries vs outbox rows");
    assert_stream_holds(&entries, &rows);
    let published = |text: &str| sample(text, "outbox_published_total").unwrap_or(0.0);
    let total = published(&a.metrics().await) + published(&b.metrics().await);
    assert_eq!(
        total as usize,
        rows.len(),
        "the replicas' relays together published each once"
    );
}

#[tokio::test]
async fn events_published_but_never_marked_are_published_again() {
    let redis = redis_url();
    let app = spawn_app_with(|s| s.redis_url = Some(redis.parse().unwrap())).await;
    let hotel = big_galleries(&app, 1).await[0].to_string();
    every_change(&app, hotel.parse().unwrap()).await;
    until_published(&app).await;
    let rows = outbox(&app).await;
    assert_stream_holds(&stream(&app).await, &rows);

    // A relay that died after XADD and before its marks committed leaves exactly this: the
    // events in the stream, the rows unmarked.
    let crashed_row = |r: &Row| r.aggregate_type == "Hotel" && r.aggregate_id == hotel;
    let crashed: Vec<Row> = rows.iter().filter(|r| crashed_row(r)).cloned().collect();
    assert!(crashed.len() >= 6, "{crashed:?}");
    app.core
        .db
        .execute_unprepared(&format!(
            "UPDATE outbox SET published_at = NULL WHERE aggregatetype = 'Hotel' AND aggregateid = '{hotel}'"
        ))
        .await
        .unwrap();
    until_published(&app).await;

    let entries = stream(&app).await;
    assert_eq!(entries.len(), rows.len() + crashed.len());
    let mut count = HashMap::<&str, usize>::new();
    for entry in &entries {
        *count.entry(entry.id.as_str()).or_default() += 1;
    }
    for row in &rows {
        let expected = if crashed_row(row) { 2 } else { 1 };
        assert_eq!(
            count.get(row.id.as_str()),
            Some(&expected),
            "{} {}",
            row.event_type,
            row.aggregate_id
        );
    }
    // The second copies come in `seq` order too, after the first ones.
    let again: Vec<i64> = entries[rows.len()..].iter().map(|e| e.seq).collect();
    let mut sorted = again.clone();
    sorted.sort_unstable();
    assert_eq!(again, sorted);
}

#[tokio::test]
async fn the_embedded_default_delivers_events_on_the_in_process_bus() {
    let app = spawn_app_with(|s| s.redis_url = None).await;
    let mut bus = app
        .events
        .as_ref()
        .expect("an in-process bus without Redis")
        .subscribe();
    let hotel = big_galleries(&app, 1).await[0];
    let (ids, version) = gallery(&app, hotel).await;
    mutate(
        &app,
        &app.admin(),
        "setMainImage",
        SET_MAIN,
        json!({ "hotelId": hotel.to_string(), "imageId": ids[4], "expectedVersion": version }),
    )
    .await;

    let mut received = Vec::new();
    while received.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(10), bus.recv())
            .await
            .expect("events arrive on the bus")
            .unwrap();
        received.push(event);
    }
    let types: Vec<&str> = received.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["MainImageChanged", "GalleryChanged"]);
    let rows = outbox(&app).await;
    let schemas = Schemas::load();
    for (event, row) in received.iter().zip(&rows) {
        assert_eq!(
            (event.seq, &event.id, &event.aggregate_id),
            (row.seq, &row.id, &row.aggregate_id)
        );
        assert_eq!(
            serde_json::from_str::<Value>(&event.payload).unwrap(),
            row.payload
        );
        schemas.check(row).unwrap();
    }
    assert_eq!(received[0].aggregate_type, "Hotel");
    until_published(&app).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), bus.recv())
            .await
            .is_err(),
        "each event once"
    );
}

/// A TCP proxy to Redis on a port that refuses connections until [`Proxy::open`].
struct Proxy {
    port: u16,
}

impl Proxy {
    /// A port nothing listens on (yet).
    async fn closed() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        Self { port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts forwarding the port to the test Redis.
    async fn open(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let target = url::Url::parse(&redis_url()).unwrap();
        let target = format!(
            "{}:{}",
            target.host_str().unwrap(),
            target.port().unwrap_or(6379)
        );
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
    }
}

fn lag(metrics: &str) -> f64 {
    sample(metrics, "outbox_lag_seconds")
        .unwrap_or_else(|| panic!("no outbox_lag_seconds: {metrics}"))
}

#[tokio::test]
async fn metrics_show_the_lag_growing_while_the_stream_is_unreachable_and_zero_after() {
    let proxy = Proxy::closed().await;
    let app = spawn_app_with(|s| s.redis_url = Some(proxy.url().parse().unwrap())).await;
    assert_eq!(lag(&app.metrics().await), 0.0);
    change_a_main_image(&app).await;

    tokio::time::sleep(Duration::from_millis(700)).await;
    let first = app.metrics().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let second = app.metrics().await;
    assert!(lag(&first) >= 0.5, "{}", lag(&first));
    assert!(
        lag(&second) >= lag(&first) + 0.9,
        "{} then {}",
        lag(&first),
        lag(&second)
    );
    assert_eq!(sample(&second, "outbox_published_total"), Some(0.0));
    assert!(
        app.scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
            .await
            >= 2
    );

    proxy.open().await;
    until_published(&app).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = app.metrics().await;
        if lag(&text) == 0.0 {
            let rows = outbox(&app).await;
            assert_eq!(
                sample(&text, "outbox_published_total"),
                Some(rows.len() as f64)
            );
            assert_stream_holds(&stream(&app).await, &rows);
            break;
        }
        assert!(Instant::now() < deadline, "lag stays {}", lag(&text));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn with_the_relay_off_events_stay_in_the_outbox_for_debezium() {
    let app = spawn_app_with(|s| {
        s.outbox_relay = false;
        s.redis_url = None;
    })
    .await;
    assert!(app.events.is_none());
    change_a_main_image(&app).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let rows = outbox(&app).await;
    assert!(
        rows.len() >= 2 && rows.iter().all(|r| !r.published),
        "{rows:?}"
    );
    assert_eq!(sample(&app.metrics().await, "outbox_published_total"), None);
}
