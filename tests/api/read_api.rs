//! The read API: lookups, lists, connections and the internal-field gate.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn hotel_returns_null_for_a_hotel_the_subgraph_knows_nothing_of() {
    let app = spawn_app().await;
    let data = app
        .graphql(
            r#"{ known: hotel(id: 3) { id } unknown: hotel(id: 40000) { id } bad: hotel(id: "x") { id } }"#,
            json!({}),
        )
        .await
        .ok();
    assert_eq!(
        data,
        json!({ "known": { "id": "3" }, "unknown": null, "bad": null })
    );
}

#[tokio::test]
async fn hotels_and_images_keep_the_order_asked_with_null_for_unknown() {
    let app = spawn_app().await;
    let data = app
        .graphql(
            r#"{ hotels(ids: ["5", "999999", "2"]) { id }
                 images(ids: ["3", "0", "1"]) { id } }"#,
            json!({}),
        )
        .await
        .ok();
    assert_eq!(data["hotels"], json!([{ "id": "5" }, null, { "id": "2" }]));
    assert_eq!(data["images"], json!([{ "id": "3" }, null, { "id": "1" }]));
}

#[tokio::test]
async fn lists_of_more_than_a_hundred_ids_are_refused() {
    let app = spawn_app().await;
    let ids: Vec<String> = (1..=101).map(|n| n.to_string()).collect();
    let answer = app
        .graphql(
            "query($ids: [ID!]!) { hotels(ids: $ids) { id } }",
            json!({ "ids": ids }),
        )
        .await;
    assert_eq!(answer.error_codes(), ["BAD_USER_INPUT"]);
}

#[tokio::test]
async fn gallery_pages_follow_their_cursors_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let query = r#"query($after: String) { hotel(id: 1) {
        mainImage { id }
        gallery(first: 4, after: $after) {
            totalCount pageInfo { hasNextPage endCursor } nodes { id } } } }"#;
    let mut after = Value::Null;
    let mut seen = Vec::new();
    let mut main: Value;
    let mut total: i64;
    loop {
        let data = app.graphql(query, json!({ "after": after })).await.ok();
        let hotel = &data["hotel"];
        main = hotel["mainImage"]["id"].clone();
        total = hotel["gallery"]["totalCount"].as_i64().unwrap();
        for node in hotel["gallery"]["nodes"].as_array().unwrap() {
            seen.push(node["id"].clone());
        }
        if !hotel["gallery"]["pageInfo"]["hasNextPage"]
            .as_bool()
            .unwrap()
        {
            break;
        }
        after = hotel["gallery"]["pageInfo"]["endCursor"].clone();
    }
    assert!(total > 4, "the demo hotel has more than one page");
    assert_eq!(seen.len() as i64, total);
    assert_eq!(seen[0], main, "the main image leads the gallery");
    let mut unique = seen.clone();
    unique.sort_by_key(|v| v.to_string());
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no repeats");
}

#[tokio::test]
async fn paging_arguments_out_of_bounds_are_user_errors() {
    let app = spawn_app().await;
    for (first, after) in [(0, Value::Null), (101, Value::Null), (5, json!("bogus"))] {
        let answer = app
            .graphql(
                "query($first: Int!, $after: String) { hotel(id: 1) { gallery(first: $first, after: $after) { totalCount } } }",
                json!({ "first": first, "after": after }),
            )
            .await;
        assert_eq!(
            answer.error_codes(),
            ["BAD_USER_INPUT"],
            "first {first}, after {after}"
        );
    }
}

#[tokio::test]
async fn internal_fields_are_denied_to_anonymous_callers_and_served_to_admins() {
    let app = spawn_app().await;
    let query = r#"{ hotel(id: 1) { id mainImageChoice { origin } }
                     image(id: 1) { legacyIds } }"#;
    let anonymous = app.graphql(query, json!({})).await;
    assert_eq!(
        anonymous.error_codes(),
        ["UNAUTHENTICATED", "UNAUTHENTICATED"]
    );
    assert_eq!(anonymous.data()["hotel"]["mainImageChoice"], Value::Null);

    let admin = app.graphql_as(&app.admin(), query, json!({})).await.ok();
    assert_eq!(admin["hotel"]["mainImageChoice"]["origin"], "COMPUTED");
    assert!(admin["image"]["legacyIds"].is_array());
}

#[tokio::test]
async fn a_hotelier_reads_internals_of_their_own_hotels_only() {
    let app = spawn_app().await;
    let token = app.token("images:hotelier", &[1]);
    let query = "{ own: hotel(id: 1) { version } other: hotel(id: 2) { version } }";
    let answer = app.graphql_as(&token, query, json!({})).await;
    assert!(answer.data()["own"]["version"].as_i64().unwrap() >= 1);
    assert_eq!(answer.data()["other"], Value::Null);
    assert_eq!(answer.error_codes(), ["FORBIDDEN"]);
}

#[tokio::test]
async fn hotel_images_filter_by_status_and_category_and_page_by_id() {
    let app = spawn_app().await;
    let token = app.admin();
    let all = app
        .graphql_as(
            &token,
            r#"{ hotel(id: 1) { imageCount
                 all: images(first: 100) { totalCount nodes { id category } }
                 bedrooms: images(first: 100, category: BEDROOM, status: ACTIVE) { totalCount nodes { id category } }
                 firstTwo: images(first: 2) { pageInfo { hasNextPage endCursor } nodes { id } } } }"#,
            json!({}),
        )
        .await
        .ok();
    let hotel = &all["hotel"];
    let nodes = hotel["all"]["nodes"].as_array().unwrap();
    assert_eq!(
        hotel["all"]["totalCount"].as_u64().unwrap() as usize,
        nodes.len()
    );
    assert_eq!(
        hotel["imageCount"].as_u64().unwrap() as usize,
        nodes.len(),
        "all demo links are active"
    );
    let ids: Vec<i64> = nodes
        .iter()
        .map(|n| n["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ordered by ID: {ids:?}"
    );
    let bedrooms = hotel["bedrooms"]["nodes"].as_array().unwrap();
    let expected = nodes.iter().filter(|n| n["category"] == "BEDROOM").count();
    assert_eq!(bedrooms.len(), expected);
    assert_eq!(
        hotel["bedrooms"]["totalCount"].as_u64().unwrap() as usize,
        expected
    );

    let cursor = hotel["firstTwo"]["pageInfo"]["endCursor"].clone();
    let next = app
        .graphql_as(
            &token,
            "query($after: String) { hotel(id: 1) { images(first: 2, after: $after) { nodes { id } } } }",
            json!({ "after": cursor }),
        )
        .await
        .ok();
    assert_eq!(
        next["hotel"]["images"]["nodes"],
        json!([{ "id": nodes[2]["id"] }, { "id": nodes[3]["id"] }])
    );
}

#[tokio::test]
async fn partners_are_listed() {
    let app = spawn_app().await;
    let data = app
        .graphql("{ partners { id kind } }", json!({}))
        .await
        .ok();
    assert_eq!(
        data["partners"],
        json!([
            { "id": "1", "kind": "OTA" },
            { "id": "2", "kind": "HOTEL_CHAIN" },
            { "id": "3", "kind": "CONTENT_PROVIDER" },
            { "id": "4", "kind": "HOTELIER" },
        ])
    );
}

#[tokio::test]
async fn transform_url_is_null_without_a_key_and_signed_with_one() {
    let app = spawn_app().await;
    let query =
        "{ image(id: 1) { transformUrl(width: 300, height: 200, fit: FILL, format: WEBP) } }";
    let data = app.graphql(query, json!({})).await.ok();
    assert_eq!(data["image"]["transformUrl"], Value::Null);

    let signed = crate::helpers::spawn_app_with(|s| {
        s.imgproxy_key = Some(hex::encode("test-key").parse().unwrap());
        s.imgproxy_salt = Some(hex::encode("test-salt").parse().unwrap());
        s.imgproxy_url = "https://imgproxy.test".into();
    })
    .await;
    let data = signed.graphql(query, json!({})).await.ok();
    let url = data["image"]["transformUrl"].as_str().unwrap();
    assert!(url.starts_with("https://imgproxy.test/"), "{url}");
    assert!(
        url.contains("/rs:fill:300:200/") && url.ends_with(".webp"),
        "{url}"
    );
}
