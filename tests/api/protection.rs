//! Protections against hostile and broken input: each attack is sent over HTTP, and then the
//! server must still answer a normal query.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, answer, spawn_app, spawn_app_with};

async fn still_serves(app: &TestApp) {
    let data = app.graphql("{ hotel(id: 1) { id } }", json!({})).await.ok();
    assert_eq!(data["hotel"]["id"], "1");
}

async fn post_raw(app: &TestApp, body: String) -> crate::helpers::Answer {
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("sent");
    answer(response).await
}

#[tokio::test]
async fn deeply_nested_argument_values_are_refused_before_parsing() {
    let app = spawn_app().await;
    for (open, close) in [("[", "]"), ("{a: ", "}")] {
        let query = format!(
            "{{ hotel(id: {}1{}) {{ id }} }}",
            open.repeat(2000),
            close.repeat(2000)
        );
        let refused = app.graphql(&query, json!({})).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{:#}",
            refused.body
        );
        assert_eq!(refused.error_codes(), ["LIMIT_EXCEEDED"]);
    }
    // Deep JSON variables are refused by the JSON reader.
    let deep_variables = format!(
        r#"{{"query":"{{ hotel(id: 1) {{ id }} }}","variables":{{"a":{}1{}}}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let refused = post_raw(&app, deep_variables).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    still_serves(&app).await;
}

#[tokio::test]
async fn overlong_and_token_heavy_documents_are_refused() {
    let app = spawn_app().await;
    let long = format!("{{ hotel(id: 1) {{ id }} }} # {}", "x".repeat(70_000));
    assert_eq!(
        app.graphql(&long, json!({})).await.error_codes(),
        ["LIMIT_EXCEEDED"]
    );
    let many_tokens = format!("{{ hotel(id: 1) {{ {} }} }}", "id ".repeat(12_000));
    assert_eq!(
        app.graphql(&many_tokens, json!({})).await.error_codes(),
        ["LIMIT_EXCEEDED"]
    );
    still_serves(&app).await;
}

#[tokio::test]
async fn depth_complexity_aliases_root_fields_repeats_and_fragment_cycles_are_limited() {
    let app = spawn_app().await;
    let token = app.admin();
    let aliases: String = (0..31)
        .map(|i| format!("h{i}: hotel(id: {i}) {{ id }} "))
        .collect();
    let roots: String = (0..21)
        .map(|i| format!("p{i}: partners {{ id }} "))
        .collect();
    let cases = [
        // Depth: hotel > images > nodes > hotels > nodes > images > nodes > hotels > nodes > images > nodes > hotels > nodes > id.
        "{ hotel(id: 1) { images { nodes { hotels { nodes { images { nodes { hotels { nodes { images { nodes { hotels { nodes { id } } } } } } } } } } } } } }".to_owned(),
        // Complexity: 100 x 100 x 100 items.
        "{ hotel(id: 1) { images(first: 100) { nodes { hotels(first: 100) { nodes { images(first: 100) { nodes { id width height caption } } } } } } } }".to_owned(),
        format!("{{ {aliases} }}"),
        format!("{{ {roots} }}"),
        "{ hotel(id: 1) { id id id id } }".to_owned(),
        "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }".to_owned(),
    ];
    for query in &cases {
        let refused = app.graphql_as(&token, query, json!({})).await;
        assert!(
            refused.body["errors"].is_array(),
            "{query}: {:#}",
            refused.body
        );
        assert_eq!(refused.body["data"], Value::Null, "{query}: nothing ran");
    }
    still_serves(&app).await;
}

#[tokio::test]
async fn entities_over_the_limit_are_refused_before_any_work() {
    let app = spawn_app().await;
    let reps: Vec<Value> = (1..=501)
        .map(|id| json!({ "__typename": "Hotel", "id": id.to_string() }))
        .collect();
    let query = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Hotel { mainImage { id } } } }";
    let (refused, statements) = app
        .count_statements(app.graphql(query, json!({ "r": reps })))
        .await;
    assert_eq!(refused.error_codes(), ["LIMIT_EXCEEDED"]);
    assert_eq!(statements, 0);
    still_serves(&app).await;
}

#[tokio::test]
async fn batches_beyond_the_limit_are_refused() {
    let app = spawn_app().await;
    let batch: Vec<Value> = (0..11)
        .map(|_| json!({ "query": "{ hotel(id: 1) { id } }" }))
        .collect();
    let refused = post_raw(&app, Value::Array(batch).to_string()).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.error_codes(), ["LIMIT_EXCEEDED"]);
    still_serves(&app).await;
}

#[tokio::test]
async fn introspection_and_suggestions_are_for_admins_only_in_production() {
    let app = spawn_app_with(|s| s.introspection = Some(false)).await;
    let introspection = "{ __schema { queryType { name } } }";
    // async-graphql answers a disabled introspection with null, not an error.
    let anonymous = app.graphql(introspection, json!({})).await;
    assert_eq!(
        anonymous.data()["__schema"],
        Value::Null,
        "{:#}",
        anonymous.body
    );
    let admin = app
        .graphql_as(&app.admin(), introspection, json!({}))
        .await
        .ok();
    assert_eq!(admin["__schema"]["queryType"]["name"], "Query");

    let typo = app
        .graphql("{ hotel(id: 1) { mainImag { id } } }", json!({}))
        .await;
    let message = typo.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!message.contains("Did you mean"), "{message}");
    // `_service` shows the whole schema too: admins (or the router, behind its secret) only;
    // see security.rs.
    app.graphql_as(&app.admin(), "{ _service { sdl } }", json!({}))
        .await
        .ok();
}

#[tokio::test]
async fn without_the_router_secret_graphql_is_forbidden() {
    let app = spawn_app_with(|s| s.router_secret = Some("s3cret".parse().unwrap())).await;
    for query in ["{ hotel(id: 1) { id } }", "{ _service { sdl } }"] {
        let refused = app.graphql(query, json!({})).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(refused.error_codes(), ["FORBIDDEN"]);
    }
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("x-router-secret", "s3cret")
        .json(&json!({ "query": "{ hotel(id: 1) { id } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer(response).await.ok()["hotel"]["id"], "1");
    let health = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK, "health stays open");
}

#[tokio::test]
async fn excess_requests_are_shed_with_503_at_once() {
    let app = spawn_app_with(|s| s.max_concurrent_requests = 1).await;
    let holder = app.slow_request(Duration::from_millis(1500));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shed = app.graphql("{ hotel(id: 1) { id } }", json!({})).await;
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.error_codes(), ["OVERLOADED"]);
    assert_eq!(holder.await.unwrap(), Some(StatusCode::OK));
    still_serves(&app).await;
}

#[tokio::test]
async fn requests_over_the_timeout_are_cut_off() {
    let app = spawn_app_with(|s| s.request_timeout_ms = 200).await;
    let slow = app.slow_request(Duration::from_millis(1000));
    assert_eq!(slow.await.unwrap(), Some(StatusCode::GATEWAY_TIMEOUT));
    still_serves(&app).await;
}
