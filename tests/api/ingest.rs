//! Ingestion: partners and their rewrite rules, the contract feed through the import command
//! (first and second import), the `importImages` mutation, unified IDs under concurrent
//! imports, legacy IDs, the rejects file, and snapshot retirement.

use std::collections::BTreeMap;
use std::io::Cursor;

use images_subgraph::config::Cli;
use images_subgraph::domain::catalog::PartnerId;
use images_subgraph::domain::ingest::Outcome;
use images_subgraph::import::{Format, ImportOptions, Observer, Summary, import_feed};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::{TestApp, operation, picture_server, spawn_app_with};

const UPSERT_PARTNER: &str = "mutation($input: UpsertPartnerInput!) {
    upsertPartner(input: $input) { partner { id name kind } userErrors { code field message } } }";

const CONTRACT_FEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/partner-feed.jsonl"
);

/// Every table of the catalog.
const TABLES: [&str; 12] = [
    "partner",
    "hotel",
    "image",
    "image_source",
    "delivery",
    "legacy_image_id",
    "hotel_image",
    "image_tag",
    "main_image_override",
    "gallery_pin",
    "outbox",
    "audit_log",
];

/// An app on an empty catalog (no demo data).
async fn empty_app() -> TestApp {
    spawn_app_with(|s| s.seed_demo = Some(false)).await
}

async fn upsert_partner(app: &TestApp, id: i64, kind: &str, rules: Value) -> Value {
    app.graphql_as(
        &app.admin(),
        UPSERT_PARTNER,
        json!({ "input": { "id": id.to_string(), "name": format!("Partner {id}"), "kind": kind, "urlRewrites": rules } }),
    )
    .await
    .ok()["upsertPartner"]
        .clone()
}

/// Partners 1, 2 and 3 as the contract feed expects them.
async fn contract_partners(app: &TestApp) {
    for (id, kind) in [(1, "OTA"), (2, "HOTEL_CHAIN"), (3, "CONTENT_PROVIDER")] {
        let payload = upsert_partner(app, id, kind, json!([])).await;
        assert_eq!(payload["userErrors"], json!([]), "{payload:#}");
        assert_eq!(payload["partner"]["kind"], kind);
    }
}

/// Every line's outcome, as the import reports it.
#[derive(Default)]
struct Lines(BTreeMap<u64, Outcome>);

impl Observer for Lines {
    fn line(&mut self, line: u64, outcome: Outcome) {
        self.0.insert(line, outcome);
    }
}

fn options(partner: Option<i64>, format: Format, snapshot: bool) -> ImportOptions {
    ImportOptions {
        partner: partner.and_then(PartnerId::new),
        format,
        snapshot,
        batch_size: 1_000,
    }
}

/// Imports `feed` through the import command's library function.
async fn import(
    app: &TestApp,
    feed: Vec<u8>,
    options: &ImportOptions,
) -> (Summary, BTreeMap<u64, Outcome>, Vec<Value>) {
    let mut rejects = Vec::new();
    let mut lines = Lines::default();
    let summary = import_feed(
        &app.core.ingestor,
        Cursor::new(feed),
        options,
        &mut rejects,
        &mut lines,
    )
    .await
    .expect("the import runs");
    let rejects = String::from_utf8(rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (summary, lines.0, rejects)
}

fn contract_feed() -> Vec<u8> {
    std::fs::read(CONTRACT_FEED).expect("the contract feed")
}

/// Row counts of every table, and every hotel's version and gallery.
/// The catalog is as `before`, but for the audit rows of the batches (each batch is audited,
/// so that its outcomes are counted).
async fn changed_nothing_but_audit_rows(app: &TestApp, before: Value) {
    let mut after = catalog_state(app).await;
    let audit_rows = |state: &Value| state["counts"]["audit_log"].as_i64().expect("a count");
    assert!(
        audit_rows(&after) > audit_rows(&before),
        "the batches are audited"
    );
    after["counts"]["audit_log"] = before["counts"]["audit_log"].clone();
    assert_eq!(after, before);
}

async fn catalog_state(app: &TestApp) -> Value {
    let mut counts = serde_json::Map::new();
    for table in TABLES {
        let n = app.scalar(&format!("SELECT COUNT(*) FROM {table}")).await;
        counts.insert(table.to_owned(), json!(n));
    }
    let backend = app.core.db.get_database_backend();
    let rows = app
        .core
        .db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT id, version, gallery FROM hotel ORDER BY id".to_owned(),
        ))
        .await
        .unwrap();
    let hotels: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!([
                row.try_get_by_index::<i64>(0).unwrap(),
                row.try_get_by_index::<i64>(1).unwrap(),
                row.try_get_by_index::<String>(2).unwrap(),
            ])
        })
        .collect();
    json!({ "counts": counts, "hotels": hotels })
}

async fn image_by_url(app: &TestApp, url: &str) -> Option<String> {
    let data = app
        .graphql(
            "query($url: String!) { imageBySourceUrl(url: $url) { id } }",
            json!({ "url": url }),
        )
        .await
        .ok();
    data["imageBySourceUrl"]["id"].as_str().map(str::to_owned)
}

async fn image_by_legacy_id(app: &TestApp, legacy_id: &str) -> Option<String> {
    let data = app
        .graphql(
            "query($id: String!) { imageByLegacyId(legacyId: $id) { id } }",
            json!({ "id": legacy_id }),
        )
        .await
        .ok();
    data["imageByLegacyId"]["id"].as_str().map(str::to_owned)
}

/// Linked images, active images, gallery size and version of a hotel (as an admin).
async fn hotel_counts(app: &TestApp, hotel: i64) -> (i64, i64, i64, i64) {
    let data = app
        .graphql_as(
            &app.admin(),
            "query($id: ID!) { hotel(id: $id) { version imageCount
                images(first: 100) { totalCount } gallery(first: 100) { totalCount } } }",
            json!({ "id": hotel.to_string() }),
        )
        .await
        .ok();
    let hotel = &data["hotel"];
    assert!(hotel.is_object(), "hotel {hotel} is unknown: {data}");
    (
        hotel["images"]["totalCount"].as_i64().unwrap(),
        hotel["imageCount"].as_i64().unwrap(),
        hotel["gallery"]["totalCount"].as_i64().unwrap(),
        hotel["version"].as_i64().unwrap(),
    )
}

fn url_of_line(feed: &str, line: usize) -> String {
    let text = feed.lines().nth(line - 1).unwrap();
    serde_json::from_str::<Value>(text).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_contract_feed_gives_its_outcomes_and_a_second_import_changes_nothing() {
    use Outcome::*;
    let app = empty_app().await;
    contract_partners(&app).await;
    let multi_partner = options(None, Format::Jsonl, false);

    let (summary, lines, rejects) = import(&app, contract_feed(), &multi_partner).await;
    let expected = [
        Created,
        Created,
        Deduplicated,
        Unchanged,
        Linked,
        Created,
        Unchanged,
        Created,
        Unchanged,
        Rejected,
        Rejected,
        Rejected,
        Created,
        Created,
        Rejected,
        Rejected,
    ];
    let want: BTreeMap<u64, Outcome> = (1..).zip(expected).collect();
    assert_eq!(lines, want);
    assert_eq!(summary.lines, 16);
    for (outcome, n) in [
        (Created, 6),
        (Deduplicated, 1),
        (Linked, 1),
        (Unchanged, 3),
        (Rejected, 5),
    ] {
        assert_eq!(summary.count(outcome), n, "{outcome}");
    }
    let rejected: Vec<(i64, String)> = rejects
        .iter()
        .map(|r| {
            (
                r["line"].as_i64().unwrap(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let lines_rejected: Vec<i64> = rejected.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines_rejected, [10, 11, 12, 15, 16]);
    assert!(rejected[0].1.contains("scheme `ftp`"), "{rejected:?}");
    assert!(rejected[1].1.starts_with("not a URL"), "{rejected:?}");
    assert!(rejected[2].1.contains("hotel ID `-5`"), "{rejected:?}");
    assert!(rejected[3].1.starts_with("not valid JSON"), "{rejected:?}");
    assert_eq!(
        rejected[4].1,
        "legacy ID `L-1` already belongs to another image"
    );

    // 6 distinct images, linked as the README says.
    assert_eq!(app.scalar("SELECT COUNT(*) FROM image").await, 6);
    let (linked, active, _, _) = hotel_counts(&app, 100).await;
    assert_eq!((linked, active), (4, 4));
    assert_eq!(hotel_counts(&app, 200).await.0, 1);
    // Nothing is shown before its bytes are fetched and measured: the feed's "one of them
    // eligible" holds once they are (a declared 200x150 is only a hint; `processing.rs` shows
    // an image measured too small staying out of the gallery).
    let (linked, active, shown, _) = hotel_counts(&app, 300).await;
    assert_eq!((linked, active, shown), (2, 2, 0));
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM image WHERE processing_state = 'PENDING'")
            .await,
        6
    );

    // Every spelling finds its image; legacy IDs map to their images.
    let feed = String::from_utf8(contract_feed()).unwrap();
    let image = |line| url_of_line(&feed, line);
    let pool = image_by_url(&app, &image(1)).await.expect("line 1's image");
    let room = image_by_url(&app, &image(2)).await.expect("line 2's image");
    for (lines, id) in [(&[1, 3, 5][..], &pool), (&[2, 4][..], &room)] {
        for &line in lines {
            assert_eq!(image_by_url(&app, &image(line)).await.as_ref(), Some(id));
        }
    }
    for group in [[6, 7], [8, 9]] {
        let first = image_by_url(&app, &image(group[0])).await;
        assert!(first.is_some());
        assert_eq!(image_by_url(&app, &image(group[1])).await, first);
    }
    assert_eq!(
        image_by_url(&app, &image(16)).await,
        None,
        "line 16 stored nothing"
    );
    assert_eq!(image_by_legacy_id(&app, "L-1").await.as_ref(), Some(&pool));
    assert_eq!(image_by_legacy_id(&app, "L-3").await.as_ref(), Some(&pool));
    assert_eq!(image_by_legacy_id(&app, "L-2").await.as_ref(), Some(&room));
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM outbox WHERE type = 'ImageCreated'")
            .await,
        6
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM hotel").await, 3);

    // The second import changes nothing.
    let before = catalog_state(&app).await;
    let (summary, lines, rejects) = import(&app, contract_feed(), &multi_partner).await;
    assert_eq!(summary.count(Unchanged), 11);
    assert_eq!(summary.count(Rejected), 5);
    assert_eq!(lines.len(), 16);
    assert_eq!(rejects.len(), 5);
    changed_nothing_but_audit_rows(&app, before).await;
}

fn item(hotel: i64, url: &str) -> Value {
    json!({ "hotelId": hotel.to_string(), "url": url, "width": 1600, "height": 1067 })
}

#[tokio::test]
async fn small_batches_give_the_same_outcomes_as_one_batch() {
    // Batches of two lines: every batch is validated while the one before it is written, and
    // each line sees what the earlier batches committed.
    let whole = empty_app().await;
    contract_partners(&whole).await;
    let (_, in_one, _) = import(
        &whole,
        contract_feed(),
        &options(None, Format::Jsonl, false),
    )
    .await;

    let app = empty_app().await;
    contract_partners(&app).await;
    let small = ImportOptions {
        batch_size: 2,
        ..options(None, Format::Jsonl, false)
    };
    let (summary, in_pairs, rejects) = import(&app, contract_feed(), &small).await;
    assert_eq!(in_pairs, in_one);
    assert_eq!(summary.lines, 16);
    assert_eq!(rejects.len(), 5);
    assert_eq!(catalog_counts(&app).await, catalog_counts(&whole).await);
    let phases: Vec<&str> = summary.phases.iter().map(|(phase, _)| *phase).collect();
    assert!(
        phases.contains(&"write") && phases.contains(&"wait_input"),
        "{phases:?}"
    );
}

#[tokio::test]
async fn the_import_command_takes_batches_of_up_to_fifteen_thousand_lines() {
    let app = empty_app().await;
    contract_partners(&app).await;
    let mut rejects = Vec::new();
    let too_big = ImportOptions {
        batch_size: images_subgraph::service::ingest::MAX_BATCH_ITEMS + 1,
        ..options(None, Format::Jsonl, false)
    };
    let refused = import_feed(
        &app.core.ingestor,
        Cursor::new(contract_feed()),
        &too_big,
        &mut rejects,
        &mut (),
    )
    .await;
    assert!(refused.is_err());
    let biggest = ImportOptions {
        batch_size: images_subgraph::service::ingest::MAX_BATCH_ITEMS,
        ..options(None, Format::Jsonl, false)
    };
    let (summary, _, _) = import(&app, contract_feed(), &biggest).await;
    assert_eq!(summary.count(Outcome::Created), 6);
}

/// Row counts of the catalog's tables (the audit log aside: one row per batch).
async fn catalog_counts(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in TABLES
        .iter()
        .filter(|t| **t != "audit_log" && **t != "outbox")
    {
        counts.push(app.scalar(&format!("SELECT COUNT(*) FROM {table}")).await);
    }
    counts
}

async fn import_images(app: &TestApp, token: &str, partner: i64, items: Vec<Value>) -> Value {
    app.graphql_as(
        token,
        &operation("pipelines/ImportImages.graphql"),
        json!({ "input": { "partnerId": partner.to_string(), "items": items } }),
    )
    .await
    .body
}

#[tokio::test]
async fn import_images_commits_the_accepted_items_of_a_batch_beside_the_rejected_ones() {
    let app = empty_app().await;
    contract_partners(&app).await;
    let token = app.importer(2);
    let items = vec![
        item(1, "https://img.partner.example/h1/a.jpg"),
        item(1, "mailto:someone@example.com"),
        json!({ "hotelId": "1", "url": "https://img.partner.example/h1/b.jpg", "qualityScore": 2.0 }),
        item(2, "https://IMG.partner.example/h1/a.jpg?utm_medium=feed"),
        json!({ "hotelId": "2", "url": "https://img.partner.example/h2/c.jpg",
                "tags": [{ "category": "POOL", "confidence": 0.9 }], "contentSha256": "AB".repeat(32),
                "legacyId": "OLD-7", "caption": "Pool" }),
    ];
    let body = import_images(&app, &token, 2, items.clone()).await;
    let payload = &body["data"]["importImages"];
    assert_eq!(payload["userErrors"], json!([]), "{body:#}");
    let results = payload["results"].as_array().unwrap();
    let outcomes: Vec<&str> = results
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["CREATED", "REJECTED", "REJECTED", "LINKED", "CREATED"]
    );
    let indexes: Vec<i64> = results
        .iter()
        .map(|r| r["index"].as_i64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 1, 2, 3, 4]);
    assert!(results[1]["reason"].as_str().unwrap().contains("mailto"));
    assert_eq!(
        results[2]["reason"],
        "quality_score must be between 0 and 1, not 2"
    );
    assert_eq!(results[1]["image"], Value::Null);
    assert_eq!(results[0]["image"]["id"], results[3]["image"]["id"]);
    assert_eq!(results[0]["reason"], Value::Null);

    // Committed: the hotels show the accepted images, with the delivered classification.
    assert_eq!(hotel_counts(&app, 1).await.0, 1);
    assert_eq!(hotel_counts(&app, 2).await.0, 2);
    let created = results[4]["image"]["id"].as_str().unwrap();
    let data = app
        .graphql_as(
            &app.admin(),
            "query($id: ID!) { image(id: $id) { category caption legacyIds tags { category origin }
                sources { partner { id } sourceUrl } } }",
            json!({ "id": created }),
        )
        .await
        .ok();
    assert_eq!(
        data["image"],
        json!({ "category": "POOL", "caption": "Pool", "legacyIds": ["OLD-7"],
                "tags": [{ "category": "POOL", "origin": "MODEL" }],
                "sources": [{ "partner": { "id": "2" }, "sourceUrl": "https://img.partner.example/h2/c.jpg" }] })
    );

    // Idempotent over the API as well.
    let again = import_images(&app, &token, 2, items).await;
    let outcomes: Vec<&str> = again["data"]["importImages"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "UNCHANGED",
            "REJECTED",
            "REJECTED",
            "UNCHANGED",
            "UNCHANGED"
        ]
    );
}

/// Rows travel to the database by `COPY` (PostgreSQL) or as JSON, key lists as one array or
/// JSON parameter: quotes, backslashes, COPY's delimiters and escapes (tab, newline, carriage
/// return, `\N`), non-ASCII text and exact scores must come back as they went in.
#[tokio::test]
async fn texts_and_scores_come_back_from_the_bulk_writes_as_they_went_in() {
    let app = empty_app().await;
    contract_partners(&app).await;
    let caption = "The \"blue\" pool \\ terrace,\tcafé\n日本\r😀 \\N \\t {\"x\": [1]}";
    let legacy_id = "OLD-\"7\"\\x,{é}\t\\N";
    let items = vec![json!({
        "hotelId": "1", "url": "https://img.partner.example/h1/caf%C3%A9%20bleu.jpg",
        "caption": caption, "legacyId": legacy_id, "qualityScore": 0.123456789012345,
        "tags": [{ "category": "POOL", "confidence": 0.987654321 }],
    })];
    let body = import_images(&app, &app.importer(2), 2, items).await;
    let results = &body["data"]["importImages"]["results"];
    assert_eq!(results[0]["outcome"], "CREATED", "{body:#}");
    let id = results[0]["image"]["id"].as_str().unwrap().to_owned();

    assert_eq!(
        image_by_legacy_id(&app, legacy_id).await.as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        image_by_url(&app, "https://img.partner.example/h1/café bleu.jpg")
            .await
            .as_deref(),
        Some(id.as_str())
    );
    let data = app
        .graphql_as(
            &app.admin(),
            "query($id: ID!) { image(id: $id) { caption legacyIds qualityScore
                tags { confidence } } }",
            json!({ "id": id }),
        )
        .await
        .ok();
    assert_eq!(
        data["image"],
        json!({ "caption": caption, "legacyIds": [legacy_id], "qualityScore": 0.123456789012345,
                "tags": [{ "confidence": 0.987654321 }] })
    );
}

/// The import command refreshes the planner's statistics as it grows the catalog; a failure
/// there is only logged, so the statement is checked here, on every engine.
#[tokio::test]
async fn the_planner_statistics_of_the_import_tables_can_be_refreshed() {
    let app = empty_app().await;
    contract_partners(&app).await;
    import(&app, contract_feed(), &options(None, Format::Jsonl, false)).await;
    app.core
        .ingestor
        .refresh_statistics()
        .await
        .expect("refreshing the statistics");
}

#[tokio::test]
async fn an_importer_may_import_for_its_own_partner_only() {
    let app = empty_app().await;
    contract_partners(&app).await;
    let items = vec![item(1, "https://img.partner.example/h1/a.jpg")];

    let foreign = import_images(&app, &app.importer(1), 2, items.clone()).await;
    assert_eq!(
        foreign["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{foreign:#}"
    );
    let anonymous = app
        .graphql(
            &operation("pipelines/ImportImages.graphql"),
            json!({ "input": { "partnerId": "1", "items": items.clone() } }),
        )
        .await;
    assert_eq!(anonymous.error_codes(), ["UNAUTHENTICATED"]);
    let hotelier = import_images(&app, &app.token("images:hotelier", &[1]), 1, items.clone()).await;
    assert_eq!(hotelier["errors"][0]["extensions"]["code"], "FORBIDDEN");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM image").await, 0);

    let unknown = import_images(&app, &app.admin(), 9, items).await;
    assert_eq!(
        unknown["data"]["importImages"]["userErrors"],
        json!([{ "code": "NOT_FOUND", "field": ["partnerId"], "message": "no such partner" }])
    );
}

#[tokio::test]
async fn more_than_a_thousand_items_are_too_many_and_change_nothing() {
    let app = empty_app().await;
    contract_partners(&app).await;
    let items: Vec<Value> = (0..1_001)
        .map(|i| item(1, &format!("https://img.partner.example/h1/{i}.jpg")))
        .collect();
    let body = import_images(&app, &app.importer(1), 1, items).await;
    let payload = &body["data"]["importImages"];
    assert_eq!(
        payload["userErrors"][0]["code"], "TOO_MANY_ITEMS",
        "{body:#}"
    );
    assert_eq!(payload["userErrors"][0]["field"], json!(["items"]));
    assert_eq!(payload["results"], json!([]));
    assert_eq!(app.scalar("SELECT COUNT(*) FROM image").await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM hotel").await, 0);
}

#[tokio::test]
async fn concurrent_imports_of_the_same_new_urls_give_one_image_per_url() {
    let app = empty_app().await;
    contract_partners(&app).await;
    for round in 0..3 {
        let urls: Vec<String> = (0..40)
            .map(|i| format!("https://img.shared.example/r{round}/{i}.jpg"))
            .collect();
        // Partner 1 delivers for hotel 10, partner 2 for hotel 20 (so the two imports race
        // on the images, not on a hotel) and, in round 1, for hotel 10 as well.
        let first: Vec<Value> = urls.iter().map(|u| item(10, u)).collect();
        let mut second: Vec<Value> = urls.iter().rev().map(|u| item(20, u)).collect();
        if round == 1 {
            second.extend(urls.iter().take(10).map(|u| {
                item(
                    10,
                    &format!(
                        "{}#another-spelling",
                        u.replacen("https://img.", "HTTPS://IMG.", 1)
                    ),
                )
            }));
        }
        let (one, two) = (app.importer(1), app.importer(2));
        let (a, b) = tokio::join!(
            import_images(&app, &one, 1, first),
            import_images(&app, &two, 2, second),
        );
        let mut created = BTreeMap::new();
        for body in [&a, &b] {
            let payload = &body["data"]["importImages"];
            assert_eq!(payload["userErrors"], json!([]), "{body:#}");
            for result in payload["results"].as_array().unwrap() {
                assert_ne!(result["outcome"], "REJECTED", "{result}");
                if result["outcome"] == "CREATED" {
                    *created
                        .entry(result["image"]["id"].clone().to_string())
                        .or_insert(0) += 1;
                }
            }
        }
        assert_eq!(created.len(), 40, "round {round}: one CREATED per URL");
        assert!(
            created.values().all(|n| *n == 1),
            "round {round}: {created:?}"
        );
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM image").await, 120);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM image_source").await,
        240,
        "each image has both partners as sources"
    );
    assert_eq!(hotel_counts(&app, 10).await.0, 120);
    assert_eq!(hotel_counts(&app, 20).await.0, 120);
}

#[tokio::test]
async fn partner_rewrite_rules_are_validated_and_unify_size_variants() {
    let app = empty_app().await;
    let bad = upsert_partner(
        &app,
        5,
        "OTA",
        json!([
            { "pattern": "_(small|large)\\.jpg$", "replacement": ".jpg" },
            { "pattern": "(unclosed", "replacement": "" },
        ]),
    )
    .await;
    assert_eq!(bad["partner"], Value::Null);
    assert_eq!(bad["userErrors"][0]["code"], "INVALID_INPUT");
    assert_eq!(
        bad["userErrors"][0]["field"],
        json!(["urlRewrites", "1", "pattern"])
    );
    let bad_group = upsert_partner(
        &app,
        5,
        "OTA",
        json!([{ "pattern": "_(small)\\.jpg$", "replacement": "$2.jpg" }]),
    )
    .await;
    assert_eq!(
        bad_group["userErrors"][0]["field"],
        json!(["urlRewrites", "0", "replacement"])
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM partner").await, 0);

    let forbidden = app
        .graphql_as(
            &app.importer(5),
            UPSERT_PARTNER,
            json!({ "input": { "id": "5", "name": "x", "kind": "OTA" } }),
        )
        .await;
    assert_eq!(forbidden.error_codes(), ["FORBIDDEN"]);

    let good = upsert_partner(
        &app,
        5,
        "OTA",
        json!([{ "pattern": "_(small|large)\\.jpg$", "replacement": ".jpg" }]),
    )
    .await;
    assert_eq!(good["userErrors"], json!([]));
    assert_eq!(
        good["partner"],
        json!({ "id": "5", "name": "Partner 5", "kind": "OTA" })
    );
    let body = import_images(
        &app,
        &app.importer(5),
        5,
        vec![
            item(1, "https://img.five.example/a_small.jpg"),
            item(1, "https://img.five.example/a_large.jpg"),
        ],
    )
    .await;
    let results = &body["data"]["importImages"]["results"];
    assert_eq!(results[0]["outcome"], "CREATED", "{body:#}");
    assert_eq!(results[1]["outcome"], "UNCHANGED");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM image").await, 1);
    let partners = app
        .graphql("{ partners { id kind } }", json!({}))
        .await
        .ok();
    assert_eq!(partners["partners"], json!([{ "id": "5", "kind": "OTA" }]));
}

fn jsonl(lines: &[(i64, &str)]) -> Vec<u8> {
    lines
        .iter()
        .map(|(hotel, url)| {
            format!(
                "{}\n",
                json!({ "hotel_id": hotel, "url": url, "width": 1600, "height": 1067 })
            )
        })
        .collect::<String>()
        .into_bytes()
}

async fn image_status(app: &TestApp, url: &str) -> String {
    let id = image_by_url(app, url).await.expect("the image");
    let data = app
        .graphql(
            "query($id: ID!) { image(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await
        .ok();
    data["image"]["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_snapshot_retires_what_it_no_longer_contains_but_never_hotelier_uploads() {
    // The images are fetched from a local server, so that they are READY and curated.
    let app = spawn_app_with(|s| {
        s.seed_demo = Some(false);
        s.fetch_allow_hosts = vec!["127.0.0.1".to_owned()];
    })
    .await;
    let server = picture_server().await;
    contract_partners(&app).await;
    assert_eq!(
        upsert_partner(&app, 4, "HOTELIER", json!([])).await["userErrors"],
        json!([])
    );
    let [kept, shared, uploaded, gone] =
        ["kept", "shared", "uploaded", "gone"].map(|name| format!("{server}/h1/{name}.jpg"));
    let (kept, shared, uploaded, gone) = (&*kept, &*shared, &*uploaded, &*gone);
    let full = jsonl(&[(1, kept), (1, shared), (1, uploaded), (1, gone)]);
    import(&app, full, &options(Some(1), Format::Jsonl, true)).await;
    import(
        &app,
        jsonl(&[(1, shared)]),
        &options(Some(2), Format::Jsonl, false),
    )
    .await;
    import(
        &app,
        jsonl(&[(1, uploaded)]),
        &options(Some(4), Format::Jsonl, false),
    )
    .await;
    assert_eq!(app.process_due().await, 4);
    let (linked, active, shown, version) = hotel_counts(&app, 1).await;
    assert_eq!((linked, active, shown), (4, 4, 4));

    // MySQL keeps whole seconds: let the next run start in a later second.
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let (summary, _, _) = import(
        &app,
        jsonl(&[(1, kept)]),
        &options(Some(1), Format::Jsonl, true),
    )
    .await;
    assert_eq!(summary.count(Outcome::Unchanged), 1);
    let retirement = summary.retirement.expect("a snapshot retires");
    assert_eq!((retirement.sources, retirement.images), (3, 1));
    assert_eq!(image_status(&app, kept).await, "ACTIVE");
    assert_eq!(
        image_status(&app, shared).await,
        "ACTIVE",
        "partner 2 still delivers it"
    );
    assert_eq!(
        image_status(&app, uploaded).await,
        "ACTIVE",
        "a hotelier upload"
    );
    assert_eq!(image_status(&app, gone).await, "INACTIVE");
    let (linked, active, _, after) = hotel_counts(&app, 1).await;
    assert_eq!((linked, active), (4, 3));
    assert!(after > version, "the hotel was curated");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM image_source WHERE status = 'RETIRED'")
            .await,
        3
    );

    // Delivered again, the retired image comes back.
    let (summary, _, _) = import(
        &app,
        jsonl(&[(1, gone)]),
        &options(Some(1), Format::Jsonl, false),
    )
    .await;
    assert_eq!(summary.count(Outcome::Unchanged), 1);
    assert_eq!(image_status(&app, gone).await, "ACTIVE");
    assert_eq!(hotel_counts(&app, 1).await.1, 4);
}

#[tokio::test]
async fn the_import_command_writes_each_rejected_line_with_its_number_and_reason() {
    let app = empty_app().await;
    contract_partners(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.csv");
    let rejects = dir.path().join("rejects.jsonl");
    std::fs::write(
        &feed,
        "hotel_id,url,width,height,tags,legacy_id\n\
         1,https://img.ota-one.example/h1/a.jpg,1600,1067,POOL:0.9;BAR:0.2,L-9\n\
         1,ftp://img.ota-one.example/h1/b.jpg,,,,\n\
         \n\
         2,https://img.ota-one.example/h1/a.jpg,1600,wide,,\n\
         0,https://img.ota-one.example/h1/c.jpg,,,,\n\
         2,https://img.ota-one.example/h2/d.jpg,800,600,,L-9\n\
         2,https://img.ota-one.example/h1/a.jpg?utm_source=x,,,,L-9\n",
    )
    .unwrap();
    let run = |file: &std::path::Path| {
        let args = [
            "images-subgraph".to_owned(),
            "--database-url".to_owned(),
            app.settings.database_url(),
            "import".to_owned(),
            "--partner-id".to_owned(),
            "1".to_owned(),
            "--rejects".to_owned(),
            rejects.display().to_string(),
            file.display().to_string(),
        ];
        images_subgraph::cli::run(<Cli as clap::Parser>::parse_from(args))
    };
    run(&feed).await.expect("the command succeeds");

    let written = std::fs::read_to_string(&rejects).unwrap();
    let rejected: Vec<Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rejected,
        [
            json!({ "line": 3, "reason": "scheme `ftp` is not allowed: only http and https URLs are accepted" }),
            json!({ "line": 5, "reason": "height: `wide` is not a number of the right kind" }),
            json!({ "line": 6, "reason": "hotel ID `0` is not a positive integer" }),
            json!({ "line": 7, "reason": "legacy ID `L-9` already belongs to another image" }),
        ]
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM image").await, 1);
    assert_eq!(
        hotel_counts(&app, 2).await.0,
        1,
        "line 8 linked the image to hotel 2"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM image_tag").await,
        2,
        "line 2's tags"
    );

    // Safe to re-run: the same rejects, nothing new.
    let before = catalog_state(&app).await;
    run(&feed).await.expect("the command succeeds again");
    assert_eq!(std::fs::read_to_string(&rejects).unwrap(), written);
    changed_nothing_but_audit_rows(&app, before).await;
}
