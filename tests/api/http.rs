//! GraphQL over HTTP: methods, content negotiation, tokens, health, body limit.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{answer, spawn_app};

#[tokio::test]
async fn health_endpoints_answer() {
    let app = spawn_app().await;
    for path in ["/health/live", "/health/ready"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn queries_work_over_get_and_mutations_over_get_are_refused() {
    let app = spawn_app().await;
    let ok = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "{ hotel(id: 2) { id } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer(ok).await.ok(), json!({ "hotel": { "id": "2" } }));

    let refused = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "mutation { anything }")])
        .send()
        .await
        .unwrap();
    let refused = answer(refused).await;
    assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(refused.error_codes(), ["METHOD_NOT_ALLOWED"]);
}

#[tokio::test]
async fn the_answer_is_json_unless_the_client_accepts_graphql_response_json() {
    let app = spawn_app().await;
    let plain = app.graphql("{ hotel(id: 1) { id } }", json!({})).await;
    assert_eq!(plain.content_type, "application/json");

    let send = |query: &'static str| {
        app.client
            .post(app.url("/graphql"))
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query }))
            .send()
    };
    let negotiated = answer(send("{ hotel(id: 1) { id } }").await.unwrap()).await;
    assert_eq!(negotiated.content_type, "application/graphql-response+json");
    assert_eq!(negotiated.status, StatusCode::OK);

    let invalid = answer(send("{ hotel(id: 1) { nope } }").await.unwrap()).await;
    assert_eq!(
        invalid.status,
        StatusCode::BAD_REQUEST,
        "{:#}",
        invalid.body
    );
}

#[tokio::test]
async fn a_bad_token_is_rejected_not_treated_as_anonymous() {
    let app = spawn_app().await;
    let bad = app
        .graphql_as("not-a-jwt", "{ hotel(id: 1) { id } }", json!({}))
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.error_codes(), ["UNAUTHENTICATED"]);
    assert_eq!(bad.body.get("data"), None);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_the_server_stays_up() {
    let app = spawn_app().await;
    let padding = " ".repeat(2 << 20);
    let response = app
        .client
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"query":"{{ hotel(id: 1) {{ id }} }}{padding}"}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    app.graphql("{ hotel(id: 1) { id } }", json!({})).await.ok();
}

#[tokio::test]
async fn a_batch_of_requests_gets_a_batch_of_answers() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/graphql"))
        .json(&json!([
            { "query": "{ hotel(id: 1) { id } }" },
            { "query": "{ hotel(id: 2) { id } }" },
        ]))
        .send()
        .await
        .unwrap();
    let body = answer(response).await.body;
    assert_eq!(body[0]["data"]["hotel"]["id"], "1");
    assert_eq!(body[1]["data"]["hotel"]["id"], "2");
}
