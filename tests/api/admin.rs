//! The admin tool's reads (issue 21): the audit log, `Image.statusReason`, hotels without a
//! main image. Admins only: anonymous callers get `UNAUTHENTICATED`, hoteliers `FORBIDDEN`.

use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::{TestApp, gallery, sample, spawn_app, spawn_app_with};

const AUDIT_LOG: &str = "query($filter: AuditLogFilter, $first: Int, $after: String) {
    auditLog(filter: $filter, first: $first, after: $after) {
        edges { cursor node { id at actor action requestId entityIds before after } }
        pageInfo { hasNextPage endCursor } } }";

async fn audit_log(app: &TestApp, filter: Value, first: i64, after: Option<&str>) -> Value {
    app.graphql_as(
        &app.admin(),
        AUDIT_LOG,
        json!({ "filter": filter, "first": first, "after": after }),
    )
    .await
    .ok()["auditLog"]
        .clone()
}

fn actions(page: &Value) -> Vec<String> {
    page["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["action"].as_str().expect("an action").to_owned())
        .collect()
}

const DEACTIVATE: &str = "mutation($input: DeactivateImageInput!) {
    deactivateImage(input: $input) { userErrors { code } } }";

#[tokio::test]
async fn only_admins_read_the_audit_log_and_hotels_without_a_main_image() {
    let app = spawn_app().await;
    let hotelier = app.token("images:hotelier", &[1]);
    for query in [
        "{ auditLog(first: 1) { edges { cursor } } }",
        "{ hotelsWithoutMainImage(first: 1) { nodes { id } } }",
        "{ catalogStats { hotels } }",
    ] {
        let anonymous = app.graphql(query, json!({})).await;
        let by_hotelier = app.graphql_as(&hotelier, query, json!({})).await;
        let by_admin = app.graphql_as(&app.admin(), query, json!({})).await;

        assert_eq!(anonymous.error_codes(), ["UNAUTHENTICATED"], "{query}");
        assert_eq!(by_hotelier.error_codes(), ["FORBIDDEN"], "{query}");
        by_admin.ok();
    }
}

#[tokio::test]
async fn the_audit_log_lists_changes_newest_first_by_hotel_image_actor_action_and_time() {
    let app = spawn_app().await;
    let admin = app.admin();
    let hotelier = app.token("images:hotelier", &[4]);
    let main = gallery(&app, 4).await[1].clone();
    let offline = gallery(&app, 5).await[2].clone();
    app.graphql_as(
        &hotelier,
        "mutation($input: SetMainImageInput!) { setMainImage(input: $input) { userErrors { code } } }",
        json!({ "input": { "hotelId": "4", "imageId": main } }),
    )
    .await
    .ok();
    app.graphql_as(
        &admin,
        DEACTIVATE,
        json!({ "input": { "imageId": offline, "reason": "blurry", "hotelIds": ["5"] } }),
    )
    .await
    .ok();
    app.graphql_as(
        &admin,
        "mutation($id: ID!) { updateImage(input: { imageId: $id, caption: \"Lobby\" }) { userErrors { code } } }",
        json!({ "id": main }),
    )
    .await
    .ok();

    let of_hotel_4 = audit_log(&app, json!({ "hotelId": "4" }), 10, None).await;
    let entry = &of_hotel_4["edges"][0]["node"];
    assert_eq!(actions(&of_hotel_4), ["setMainImage"]);
    assert_eq!(entry["actor"], "test:images:hotelier");
    assert_eq!(
        entry["entityIds"],
        json!({ "hotelId": "4", "imageId": main })
    );
    assert!(entry["before"]["version"].is_i64(), "{entry:#}");
    assert_eq!(entry["after"]["mainImageId"], main.as_str());
    assert!(entry["requestId"].is_string(), "{entry:#}");
    assert_eq!(
        actions(&audit_log(&app, json!({ "hotelId": "5" }), 10, None).await),
        ["deactivateImage"],
        "a deactivation for some hotels names them"
    );
    assert_eq!(
        actions(&audit_log(&app, json!({ "imageId": main }), 10, None).await),
        ["updateImage", "setMainImage"],
        "newest first"
    );
    let by_admin = json!({ "actor": "test:images:admin" });
    assert_eq!(
        actions(&audit_log(&app, by_admin.clone(), 10, None).await),
        ["updateImage", "deactivateImage"]
    );
    let deactivations = audit_log(&app, json!({ "action": "deactivateImage" }), 10, None).await;
    assert_eq!(
        deactivations["edges"][0]["node"]["after"],
        json!({ "status": "INACTIVE", "reason": "blurry" })
    );
    let at = entry["at"].as_str().expect("a time");
    assert_eq!(
        actions(&audit_log(&app, json!({ "hotelId": "4", "to": at }), 10, None).await),
        Vec::<String>::new(),
        "`to` is exclusive"
    );
    assert_eq!(
        actions(&audit_log(&app, json!({ "hotelId": "4", "from": at }), 10, None).await),
        ["setMainImage"],
        "`from` is inclusive"
    );

    let first = audit_log(&app, by_admin.clone(), 1, None).await;
    assert_eq!(actions(&first), ["updateImage"]);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    let cursor = first["pageInfo"]["endCursor"].as_str().expect("a cursor");
    let second = audit_log(&app, by_admin, 1, Some(cursor)).await;
    assert_eq!(actions(&second), ["deactivateImage"]);
    assert_eq!(second["pageInfo"]["hasNextPage"], false);
}

#[tokio::test]
async fn a_bad_filter_or_cursor_is_bad_user_input() {
    let app = spawn_app().await;
    for (filter, after) in [
        (json!({ "hotelId": "x" }), None),
        (json!({}), Some("bm90IGEgY3Vyc29y")),
    ] {
        let answer = app
            .graphql_as(
                &app.admin(),
                AUDIT_LOG,
                json!({ "filter": filter, "first": 5, "after": after }),
            )
            .await;
        assert_eq!(
            answer.error_codes(),
            ["BAD_USER_INPUT"],
            "{:#}",
            answer.body
        );
    }
}

#[tokio::test]
async fn an_inactive_image_tells_admins_why() {
    let app = spawn_app().await;
    let admin = app.admin();
    let image = gallery(&app, 6).await[1].clone();
    let query = "query($id: ID!) { image(id: $id) { status statusReason } }";
    app.graphql_as(
        &admin,
        DEACTIVATE,
        json!({ "input": { "imageId": image, "reason": "copyright claim" } }),
    )
    .await
    .ok();

    let read = app
        .graphql_as(&admin, query, json!({ "id": image }))
        .await
        .ok();
    let anonymous = app.graphql(query, json!({ "id": image })).await;
    let hotelier = app
        .graphql_as(
            &app.token("images:hotelier", &[6]),
            query,
            json!({ "id": image }),
        )
        .await;

    assert_eq!(
        read["image"],
        json!({ "status": "INACTIVE", "statusReason": "copyright claim" })
    );
    assert_eq!(anonymous.error_codes(), ["UNAUTHENTICATED"]);
    assert_eq!(hotelier.error_codes(), ["FORBIDDEN"]);
    app.graphql_as(
        &admin,
        "mutation($id: ID!) { activateImage(input: { imageId: $id }) { userErrors { code } } }",
        json!({ "id": image }),
    )
    .await
    .ok();
    let active = app
        .graphql_as(&admin, query, json!({ "id": image }))
        .await
        .ok();
    assert_eq!(
        active["image"],
        json!({ "status": "ACTIVE", "statusReason": null })
    );
}

/// Imports one image of unknown size (never eligible: the hotel gets no main image) for each
/// of `hotels`, as partner 1.
async fn import_unsized(app: &TestApp, hotels: &[i64]) {
    let items: Vec<Value> = hotels
        .iter()
        .map(|hotel| json!({ "hotelId": hotel.to_string(), "url": format!("https://img.example/{hotel}.jpg") }))
        .collect();
    app.graphql_as(
        &app.admin(),
        "mutation($input: ImportImagesInput!) { importImages(input: $input) { userErrors { code } } }",
        json!({ "input": { "partnerId": "1", "items": items } }),
    )
    .await
    .ok();
}

#[tokio::test]
async fn hotels_without_a_main_image_are_listed_in_pages() {
    let app = spawn_app().await;
    let admin = app.admin();
    import_unsized(&app, &[901, 902, 903]).await;
    let query = "query($after: String) { hotelsWithoutMainImage(first: 2, after: $after) {
        totalCount nodes { id mainImage { id } } pageInfo { hasNextPage endCursor } } }";

    let first = app.graphql_as(&admin, query, json!({})).await.ok();
    let cursor = first["hotelsWithoutMainImage"]["pageInfo"]["endCursor"].clone();
    let second = app
        .graphql_as(&admin, query, json!({ "after": cursor }))
        .await
        .ok();

    let ids = |page: &Value| -> Vec<String> {
        page["hotelsWithoutMainImage"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| {
                assert_eq!(n["mainImage"], Value::Null);
                n["id"].as_str().expect("an ID").to_owned()
            })
            .collect()
    };
    assert_eq!(ids(&first), ["901", "902"]);
    assert_eq!(
        first["hotelsWithoutMainImage"]["pageInfo"]["hasNextPage"],
        true
    );
    assert_eq!(first["hotelsWithoutMainImage"]["totalCount"], 3);
    assert_eq!(ids(&second), ["903"]);
    assert_eq!(
        second["hotelsWithoutMainImage"]["pageInfo"]["hasNextPage"],
        false
    );
}

#[tokio::test]
async fn audit_rows_written_before_the_subject_index_are_indexed_by_the_migration() {
    let app = spawn_app().await;
    let db = &app.core.db;
    let backend = db.get_database_backend();
    let rows = [
        (1_000_001, r#"{"hotelId":"41","imageId":"12"}"#),
        (1_000_002, r#"{"imageId":"12","hotelIds":["42","43"]}"#),
        (1_000_003, r#"{"imageId":"13","hotelIds":null}"#),
        (1_000_004, r#"{"imageIds":["14","15"]}"#),
        (1_000_005, r#"{"partnerId":"2"}"#),
    ];
    for (id, entity_ids) in rows {
        let sql = format!(
            "INSERT INTO audit_log (id, created_at, actor, operation, entity_ids) \
             VALUES ({id}, '2026-01-01 00:00:00', 'old', 'old', '{entity_ids}')"
        );
        db.execute_raw(Statement::from_string(backend, sql))
            .await
            .expect("an old audit row");
    }

    // As before the migration: no row of the audit log is indexed yet.
    db.execute_raw(Statement::from_string(backend, "DELETE FROM audit_subject"))
        .await
        .expect("emptied");

    migration::fill_audit_subjects(db).await.expect("filled");

    let found = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT kind, entity_id, audit_id FROM audit_subject WHERE audit_id > 1000000 \
             ORDER BY audit_id, kind, entity_id"
                .to_owned(),
        ))
        .await
        .expect("subjects");
    let found: Vec<(String, i64, i64)> = found
        .iter()
        .map(|row| {
            (
                row.try_get_by_index(0).expect("kind"),
                row.try_get_by_index(1).expect("entity"),
                row.try_get_by_index(2).expect("audit row"),
            )
        })
        .collect();
    let expected: Vec<(String, i64, i64)> = [
        ("hotel", 41, 1_000_001),
        ("image", 12, 1_000_001),
        ("hotel", 42, 1_000_002),
        ("hotel", 43, 1_000_002),
        ("image", 12, 1_000_002),
        ("image", 13, 1_000_003),
        ("image", 14, 1_000_004),
        ("image", 15, 1_000_004),
    ]
    .iter()
    .map(|(kind, entity, audit)| ((*kind).to_owned(), *entity, *audit))
    .collect();
    assert_eq!(found, expected);
}

const CATALOG_STATS: &str = "{ catalogStats { at hotels hotelsWithMainImage hotelsWithoutMainImage
    mainImagesByOrigin { origin count share } imagesByStatus { status count }
    unclassifiedImages importOutcomes { partnerId outcome lastDay lastWeek } } }";

/// Items partner 1 imported with outcome CREATED, over the last day and week.
fn created_by_partner_1(stats: &Value) -> (i64, i64) {
    stats["importOutcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .find(|o| o["partnerId"] == "1" && o["outcome"] == "CREATED")
        .map_or((0, 0), |o| {
            (
                o["lastDay"].as_i64().expect("a count"),
                o["lastWeek"].as_i64().expect("a count"),
            )
        })
}

#[tokio::test]
async fn catalog_stats_count_main_images_by_origin_images_backlog_and_imports() {
    let app = spawn_app().await;
    let admin = app.admin();
    let before =
        app.graphql_as(&admin, CATALOG_STATS, json!({})).await.ok()["catalogStats"].clone();
    let set_main = "mutation($input: SetMainImageInput!) { setMainImage(input: $input) { userErrors { code } } }";
    let image = gallery(&app, 4).await[1].clone();
    app.graphql_as(
        &admin,
        set_main,
        json!({ "input": { "hotelId": "4", "imageId": image } }),
    )
    .await
    .ok();
    let image = gallery(&app, 5).await[1].clone();
    let hotelier = app.token("images:hotelier", &[5]);
    app.graphql_as(
        &hotelier,
        set_main,
        json!({ "input": { "hotelId": "5", "imageId": image } }),
    )
    .await
    .ok();
    import_unsized(&app, &[901, 902]).await;

    let stats = app.graphql_as(&admin, CATALOG_STATS, json!({})).await.ok()["catalogStats"].clone();

    let hotels = app.scalar("SELECT COUNT(*) FROM hotel").await;
    let without = app
        .scalar("SELECT COUNT(*) FROM hotel WHERE main_image_id IS NULL")
        .await;
    assert_eq!(stats["hotels"], hotels);
    assert_eq!(stats["hotelsWithoutMainImage"], without);
    assert_eq!(stats["hotelsWithMainImage"], hotels - without);
    let with_main = (hotels - without) as f64;
    let by_origin = &stats["mainImagesByOrigin"];
    assert_eq!(
        by_origin[1],
        json!({ "origin": "HOTELIER", "count": 1, "share": 1.0 / with_main })
    );
    assert_eq!(
        by_origin[2],
        json!({ "origin": "ADMIN", "count": 1, "share": 1.0 / with_main })
    );
    assert_eq!(by_origin[0]["count"], hotels - without - 2);
    let active = app
        .scalar("SELECT COUNT(*) FROM image WHERE status = 'ACTIVE'")
        .await;
    assert_eq!(
        stats["imagesByStatus"][0],
        json!({ "status": "ACTIVE", "count": active })
    );
    let untagged = app
        .scalar("SELECT COUNT(*) FROM image WHERE id NOT IN (SELECT image_id FROM image_tag)")
        .await;
    assert_eq!(stats["unclassifiedImages"], untagged);
    assert!(untagged >= 2, "the imported images have no tags");
    let (day, week) = created_by_partner_1(&before);
    assert_eq!(created_by_partner_1(&stats), (day + 2, week + 2));
}

#[tokio::test]
async fn the_catalog_figures_are_prometheus_gauges_refreshed_on_an_interval() {
    let app = spawn_app_with(|s| s.catalog_stats_interval_secs = 1).await;
    import_unsized(&app, &[901, 902]).await;
    let without = app
        .scalar("SELECT COUNT(*) FROM hotel WHERE main_image_id IS NULL")
        .await as f64;
    let series = r#"catalog_imported_items{partner="1",outcome="created",window="1d"}"#;

    // Each figure is a statement of its own: wait for a refresh that saw the import in all.
    let none = r#"catalog_hotels{main_image="none"}"#;
    let mut metrics = String::new();
    for _ in 0..40 {
        metrics = app.metrics().await;
        let imported = sample(&metrics, series).is_some_and(|n| n >= 2.0);
        if imported && sample(&metrics, none) == Some(without) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    assert!(
        sample(&metrics, series).is_some_and(|n| n >= 2.0),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, none), Some(without), "{metrics}");
    assert!(sample(&metrics, r#"catalog_images{status="active"}"#).is_some_and(|n| n > 0.0));
    assert!(sample(&metrics, "catalog_unclassified_images").is_some_and(|n| n >= 2.0));
}

#[tokio::test]
async fn import_outcomes_count_batches_that_changed_nothing() {
    let app = spawn_app().await;
    let admin = app.admin();
    let rejected = json!([
        { "hotelId": "4", "url": "ftp://img.example/a.jpg" },
        { "hotelId": "4", "url": "not a url" },
    ]);
    let answer = app
        .graphql_as(
            &app.importer(3),
            &crate::helpers::operation("pipelines/ImportImages.graphql"),
            json!({ "input": { "partnerId": "3", "items": rejected } }),
        )
        .await
        .ok();
    let outcomes: Vec<&Value> = answer["importImages"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| &r["outcome"])
        .collect();
    assert_eq!(outcomes, [&json!("REJECTED"), &json!("REJECTED")]);

    let stats = app.graphql_as(&admin, CATALOG_STATS, json!({})).await.ok()["catalogStats"].clone();
    let counted = stats["importOutcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .find(|o| o["partnerId"] == "3" && o["outcome"] == "REJECTED")
        .cloned();
    assert_eq!(
        counted.map(|o| (o["lastDay"].clone(), o["lastWeek"].clone())),
        Some((json!(2), json!(2))),
        "{stats:#}"
    );
}
