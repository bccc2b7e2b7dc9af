//! Federation: entities, `_service`, the committed SDL, and the cost of `_entities`.

use serde_json::{Value, json};

use crate::helpers::{TestApp, operation, spawn_app, spawn_app_with};

fn representations(ids: impl IntoIterator<Item = i64>) -> Value {
    Value::Array(
        ids.into_iter()
            .map(|id| json!({ "__typename": "Hotel", "id": id.to_string() }))
            .collect(),
    )
}

/// The search page for `ids`: its `_entities` and the SQL statements it cost.
async fn search_page(app: &TestApp, ids: &[i64]) -> (Vec<Value>, u64) {
    let query = operation("frontend/SearchResultsMainImages.graphql");
    let (answer, statements) = app
        .count_statements(app.graphql(
            &query,
            json!({ "representations": representations(ids.iter().copied()) }),
        ))
        .await;
    let data = answer.ok();
    let entities = data["_entities"].as_array().expect("a list").clone();
    (entities, statements)
}

#[tokio::test]
async fn search_results_main_images_cost_one_statement_per_table_for_fifty_hotels() {
    let app = spawn_app().await;
    let ids: Vec<i64> = (1..=50).map(|n| n * 7).collect();
    let (entities, statements) = search_page(&app, &ids).await;
    assert_eq!(entities.len(), 50);
    for (entity, id) in entities.iter().zip(&ids) {
        assert_eq!(entity["id"], id.to_string(), "order kept");
        let main = &entity["mainImage"];
        assert!(
            main["id"].is_string(),
            "hotel {id} has a main image: {entity}"
        );
        assert!(
            main["url"].as_str().unwrap().contains("/w320/"),
            "SMALL size: {main}"
        );
        assert!(main["width"].as_i64().unwrap() >= 300);
        let category = main["category"].as_str().unwrap();
        assert!(!["LOGO", "MAP"].contains(&category));
    }
    // One statement on `hotel`, one on `image`.
    assert!(statements <= 2, "{statements} statements for 50 hotels");
}

/// The hotels and main images of a search page are read before execution and handed to the
/// request's loaders: no loader batch runs (so no field waits for the batch delay), however
/// long the delay, and a hotel this subgraph does not know costs nothing more.
#[tokio::test]
async fn a_search_page_is_answered_from_records_read_before_execution_without_loader_batches() {
    let app = spawn_app_with(|settings| {
        settings.loader_delay_us = 5_000_000;
    })
    .await;
    // 48 known hotels (one of them twice) and one this subgraph has never heard of.
    let mut ids: Vec<i64> = (1..=48).map(|n| n * 9).collect();
    ids.push(9);
    ids.push(987_654_321);
    let (entities, statements) = search_page(&app, &ids).await;
    assert_eq!(entities.len(), 50);
    assert!(
        entities[..49]
            .iter()
            .all(|e| e["mainImage"]["url"].is_string())
    );
    assert_eq!(entities[48], entities[0], "the same hotel twice");
    assert_eq!(
        entities[49],
        json!({ "id": "987654321", "mainImage": null })
    );
    assert!(statements <= 2, "{statements} statements");
    app.assert_no_record_loader_batches().await;
}

#[tokio::test]
async fn entities_resolve_any_well_formed_hotel_id_and_null_for_malformed_ones() {
    let app = spawn_app().await;
    let query = operation("frontend/SearchResultsMainImages.graphql");
    let reps = json!([
        { "__typename": "Hotel", "id": "1" },
        { "__typename": "Hotel", "id": "987654321" },
        { "__typename": "Hotel", "id": "-4" },
        { "__typename": "Hotel", "id": "abc" },
    ]);
    let data = app
        .graphql(&query, json!({ "representations": reps }))
        .await
        .ok();
    let entities = &data["_entities"];
    assert!(entities[0]["mainImage"]["id"].is_string());
    assert_eq!(entities[1], json!({ "id": "987654321", "mainImage": null }));
    assert_eq!(entities[2], Value::Null);
    assert_eq!(entities[3], Value::Null);
}

#[tokio::test]
async fn image_and_partner_entities_resolve_by_id() {
    let app = spawn_app().await;
    let data = app
        .graphql(
            r#"query($r: [_Any!]!) { _entities(representations: $r) {
                ... on Image { id width } ... on Partner { id name kind } } }"#,
            json!({ "r": [
                { "__typename": "Image", "id": "1" },
                { "__typename": "Image", "id": "999999999" },
                { "__typename": "Partner", "id": "2" },
                { "__typename": "Partner", "id": "77" },
            ] }),
        )
        .await
        .ok();
    let entities = &data["_entities"];
    assert_eq!(entities[0]["id"], "1");
    assert_eq!(entities[1], Value::Null);
    assert_eq!(
        entities[2],
        json!({ "id": "2", "name": "Chain Two", "kind": "HOTEL_CHAIN" })
    );
    assert_eq!(entities[3], Value::Null);
}

#[tokio::test]
async fn the_service_sdl_and_the_committed_schema_file_tell_the_same_story() {
    let app = spawn_app().await;
    // With introspection for admins only (tests run outside the embedded mode), so is `_service`.
    let data = app
        .graphql_as(&app.admin(), "{ _service { sdl } }", json!({}))
        .await
        .ok();
    let served = data["_service"]["sdl"].as_str().expect("sdl");
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql is committed");
    let exported = images_subgraph::graphql::published_sdl(
        &images_subgraph::app::schema(
            &app.settings,
            app.core.catalog.clone(),
            app.core.freshness.clone(),
            Default::default(),
            images_subgraph::telemetry::Metrics::new(),
        )
        .unwrap(),
    )
    .expect("the SDL publishes");
    assert_eq!(
        exported, committed,
        "schema.graphql is stale: run `cargo run -- export-schema > schema.graphql`"
    );
    assert_eq!(served.trim(), committed.trim());
    for key in [
        r#"type Hotel @key(fields: "id") @cacheTag(format: "hotel-{$key.id}") {"#,
        r#"type Image @key(fields: "id") @cacheTag(format: "image-{$key.id}") {"#,
        r#"type Partner @key(fields: "id")"#,
        r#"url: "https://specs.apollo.dev/federation/v2.12""#,
        r#"version: Int! @authenticated @requiresScopes(scopes: [["images:admin"], ["images:hotelier"]])"#,
        r#"legacyIds: [String!]! @authenticated @requiresScopes(scopes: [["images:admin"]])"#,
        r#"gallery(first: Int! = 20, after: String): ImageConnection! @listSize(slicingArguments: ["first"], sizedFields: ["edges", "nodes"])"#,
    ] {
        assert!(committed.contains(key), "{key} missing");
    }
}

#[tokio::test]
async fn the_service_field_answers_the_published_sdl_under_any_alias() {
    let app = spawn_app().await;
    let data = app
        .graphql_as(
            &app.admin(),
            "{ service: _service { __typename text: sdl again: sdl } }",
            json!({}),
        )
        .await
        .ok();
    let service = &data["service"];
    assert_eq!(service["__typename"], "_Service");
    let text = service["text"].as_str().expect("sdl");
    assert!(
        text.contains("@authenticated"),
        "published, not the library's export"
    );
    assert_eq!(service["again"], service["text"]);
}
