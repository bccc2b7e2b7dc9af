//! Automatic persisted queries (shared by replicas through Redis) and `Cache-Control` hints.

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::helpers::{TestApp, redis_url, spawn_app, spawn_replicas};

const QUERY: &str = "query Main($id: ID!) { hotel(id: $id) { id mainImage { id } } }";

fn hash(query: &str) -> String {
    hex::encode(Sha256::digest(query.as_bytes()))
}

async fn post(app: &TestApp, body: Value, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.post(app.url("/graphql")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

#[tokio::test]
async fn a_query_registered_on_one_replica_runs_by_hash_on_the_other_with_redis() {
    let replicas = spawn_replicas(2, |s| {
        s.redis_url = Some(redis_url().parse().expect("URL"));
    })
    .await;
    let (a, b) = (&replicas[0], &replicas[1]);
    let variables = json!({ "id": "3" });
    let by_hash = json!({ "variables": variables, "extensions": persisted(&hash(QUERY)) });

    // Unknown on both: the client is asked for the full query.
    let miss: Value = post(b, by_hash.clone(), None).await.json().await.unwrap();
    assert_eq!(miss["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(
        miss["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );

    let full =
        json!({ "query": QUERY, "variables": variables, "extensions": persisted(&hash(QUERY)) });
    let registered: Value = post(a, full, None).await.json().await.unwrap();
    assert_eq!(registered["data"]["hotel"]["id"], "3");

    let answered: Value = post(b, by_hash, None).await.json().await.unwrap();
    assert_eq!(answered["data"], registered["data"]);
}

#[tokio::test]
async fn persisted_queries_work_by_get_and_refuse_a_wrong_hash() {
    let app = spawn_app().await;
    let wrong = json!({ "query": QUERY, "variables": { "id": "3" }, "extensions": persisted(&hash("{ other }")) });
    let refused = post(&app, wrong, None).await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["message"],
        "provided sha does not match query"
    );

    let full = json!({ "query": QUERY, "variables": { "id": "3" }, "extensions": persisted(&hash(QUERY)) });
    post(&app, full, None).await;
    let extensions = persisted(&hash(QUERY)).to_string();
    let variables = json!({ "id": "3" }).to_string();
    let response = app
        .client
        .get(app.url("/graphql"))
        .query(&[
            ("extensions", extensions.as_str()),
            ("variables", variables.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["hotel"]["id"], "3", "{body}");

    let version_two =
        json!({ "extensions": { "persistedQuery": { "version": 2, "sha256Hash": hash(QUERY) } } });
    assert_eq!(post(&app, version_two, None).await.status(), 400);
}

fn cache_control(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn public_reads_are_cacheable_and_mutations_internal_fields_and_errors_are_not() {
    let app = spawn_app().await;
    let admin = app.admin();

    let public = post(
        &app,
        json!({ "query": QUERY, "variables": { "id": "3" } }),
        None,
    )
    .await;
    assert_eq!(cache_control(&public), "public, max-age=60");

    let internal = post(
        &app,
        json!({ "query": "{ hotel(id: \"3\") { id version } }" }),
        Some(&admin),
    )
    .await;
    assert_eq!(internal.status(), 200);
    assert_eq!(cache_control(&internal), "no-store");

    let mutation = post(
        &app,
        json!({ "query": "mutation { resetMainImage(input: { hotelId: \"3\" }) { userErrors { code } } }" }),
        Some(&admin),
    )
    .await;
    assert_eq!(mutation.status(), 200);
    assert_eq!(cache_control(&mutation), "no-store");

    let failed = post(
        &app,
        json!({ "query": "{ hotel(id: \"3\") { nope } }" }),
        None,
    )
    .await;
    assert_eq!(cache_control(&failed), "no-store");

    let refused = post(
        &app,
        json!({ "query": "{ hotel(id: \"3\") { version } }" }),
        None,
    )
    .await;
    assert_eq!(cache_control(&refused), "no-store");
}
