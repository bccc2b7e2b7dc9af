//! Security, round two (issue 19): what an attacker without a token could still do. Each test
//! sends the attack over HTTP (or raw TCP) to the real app and checks it is refused, and that
//! the legitimate use next to it still works.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{
    JWT_SECRET, TestApp, redis_url, sample, spawn_app, spawn_app_with, spawn_replicas,
};

// ---- 1. Token claims ---------------------------------------------------------------------

const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "images-subgraph";

/// An HS256 token of the test secret with exactly `claims`.
fn token_of(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("token")
}

fn admin_claims(extra: Value) -> Value {
    let mut claims = json!({
        "sub": "attacker",
        "exp": jsonwebtoken::get_current_timestamp() + 600,
        "scope": "images:admin",
    });
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    claims
}

/// The status of an internal read made with `token`.
/// The consumers' search page for `hotels` hotels; it must succeed.
async fn search_page(app: &TestApp, hotels: usize) {
    let page = crate::helpers::operation("frontend/SearchResultsMainImages.graphql");
    app.graphql(
        &page,
        json!({ "representations": hotel_representations(hotels) }),
    )
    .await
    .ok();
}

async fn status_with(app: &TestApp, token: &str) -> StatusCode {
    app.graphql_as(token, "{ hotel(id: 1) { id version } }", json!({}))
        .await
        .status
}

#[tokio::test]
async fn tokens_without_the_configured_issuer_or_audience_are_refused() {
    let app = spawn_app_with(|s| {
        s.jwt_issuer = Some(ISSUER.to_owned());
        s.jwt_audience = Some(AUDIENCE.to_owned());
    })
    .await;
    let cases = [
        ("neither", json!({}), StatusCode::UNAUTHORIZED),
        (
            "issuer only",
            json!({ "iss": ISSUER }),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "audience only",
            json!({ "aud": AUDIENCE }),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong issuer",
            json!({ "iss": "https://evil.example.com", "aud": AUDIENCE }),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "both",
            json!({ "iss": ISSUER, "aud": AUDIENCE }),
            StatusCode::OK,
        ),
    ];
    for (case, extra, want) in cases {
        let token = token_of(admin_claims(extra));
        assert_eq!(status_with(&app, &token).await, want, "{case}");
    }
}

#[tokio::test]
async fn a_token_that_is_not_valid_yet_is_refused() {
    let app = spawn_app().await;
    let now = jsonwebtoken::get_current_timestamp();
    let later = token_of(admin_claims(json!({ "nbf": now + 3600 })));
    assert_eq!(status_with(&app, &later).await, StatusCode::UNAUTHORIZED);
    let already = token_of(admin_claims(json!({ "nbf": now - 10 })));
    assert_eq!(status_with(&app, &already).await, StatusCode::OK);
}

#[tokio::test]
async fn the_token_command_writes_the_configured_issuer_and_audience() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_images-subgraph"))
        .args(["token", "--scope", "images:admin"])
        .current_dir(dir.path())
        .env("DATABASE_URL", "sqlite::memory:")
        .env("JWT_SECRET", JWT_SECRET)
        .env("JWT_ISSUER", ISSUER)
        .env("JWT_AUDIENCE", AUDIENCE)
        .env_remove("JWT_PUBLIC_KEY")
        .output()
        .expect("the token command runs");
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).expect("UTF-8");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let decoded = jsonwebtoken::decode::<Value>(
        token.trim(),
        &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &validation,
    );
    assert!(decoded.is_ok(), "the token lacks iss or aud: {decoded:?}");

    let app = spawn_app_with(|s| {
        s.jwt_issuer = Some(ISSUER.to_owned());
        s.jwt_audience = Some(AUDIENCE.to_owned());
    })
    .await;
    assert_eq!(status_with(&app, token.trim()).await, StatusCode::OK);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let response = app
            .client
            .post(app.url("/graphql"))
            .header("authorization", format!("{scheme} {}", app.admin()))
            .json(&json!({ "query": "{ hotel(id: 1) { id version } }" }))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
}

// ---- 2. Refused documents and APQ registrations cost nothing that stays ------------------------

fn hash(query: &str) -> String {
    hex::encode(Sha256::digest(query.as_bytes()))
}

async fn post(app: &TestApp, body: Value) -> Value {
    app.client
        .post(app.url("/graphql"))
        .json(&body)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON")
}

fn by_hash(query: &str) -> Value {
    json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash(query) } } })
}

fn with_text(query: &str) -> Value {
    json!({ "query": query, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash(query) } } })
}

/// Whether `app` runs `query` by its hash alone.
async fn known_by_hash(app: &TestApp, query: &str) -> bool {
    let answer = post(app, by_hash(query)).await;
    answer["errors"][0]["extensions"]["code"] != "PERSISTED_QUERY_NOT_FOUND"
}

#[tokio::test]
async fn only_queries_that_pass_the_limits_and_validation_are_registered_as_persisted() {
    let app = spawn_app().await;
    let too_many_aliases = format!(
        "{{ {} }}",
        (0..31)
            .map(|i| format!("a{i}: hotel(id: {i}) {{ id }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let invalid = "{ hotel(id: 1) { nope } }";
    let good = "{ hotel(id: 1) { id } }";
    for query in [too_many_aliases.as_str(), invalid, good] {
        post(&app, with_text(query)).await;
    }
    assert!(
        !known_by_hash(&app, &too_many_aliases).await,
        "a document refused with LIMIT_EXCEEDED was registered"
    );
    assert!(
        !known_by_hash(&app, invalid).await,
        "a document that fails validation was registered"
    );
    assert!(known_by_hash(&app, good).await);
}

/// A valid query of about `bytes` bytes, distinct per `n` (padding in a comment).
fn padded_query(n: usize, bytes: usize) -> String {
    let head = format!("query Q{n} {{ hotel(id: 1) {{ id }} }}\n# ");
    format!("{head}{}", "x".repeat(bytes.saturating_sub(head.len())))
}

#[tokio::test]
async fn persisted_queries_kept_in_process_stay_within_their_byte_budget() {
    // In process only: with Redis, the texts would be found there (its own budget is tested
    // below).
    let app = spawn_app_with(|s| {
        s.apq_max_bytes = 8 * 1024;
        s.redis_url = None;
    })
    .await;
    let queries: Vec<String> = (0..20).map(|n| padded_query(n, 2 * 1024)).collect();
    for query in &queries {
        assert!(post(&app, with_text(query)).await["errors"].is_null());
    }
    let mut known = 0;
    for query in &queries {
        known += usize::from(known_by_hash(&app, query).await);
    }
    assert!(
        known <= 4,
        "{known} texts of 2 KiB kept in a budget of 8 KiB"
    );
}

#[tokio::test]
async fn persisted_queries_registered_in_redis_stay_within_their_byte_budget() {
    let replicas = spawn_replicas(2, |s| {
        s.redis_url = Some(redis_url().parse().expect("URL"));
        s.apq_redis_max_bytes = 8 * 1024;
    })
    .await;
    let (a, b) = (&replicas[0], &replicas[1]);
    let queries: Vec<String> = (0..20).map(|n| padded_query(n, 2 * 1024)).collect();
    for query in &queries {
        assert!(post(a, with_text(query)).await["errors"].is_null());
    }
    let mut known = 0;
    for query in &queries {
        known += usize::from(known_by_hash(b, query).await);
    }
    assert!(
        known <= 4,
        "{known} texts of 2 KiB shared in a budget of 8 KiB"
    );
    assert!(known >= 1, "the budget admits some");
}

// ---- 6. `_entities` and batches against one cost budget ------------------------------------

fn hotel_representations(n: usize) -> Value {
    Value::Array(
        (1..=n)
            .map(|id| json!({ "__typename": "Hotel", "id": id.to_string() }))
            .collect(),
    )
}

#[tokio::test]
async fn entities_cost_is_counted_per_representation_and_refused_before_execution() {
    let app = spawn_app().await;
    let query = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Hotel { gallery(first: 100) { nodes { id } } } } }";
    let (refused, statements) = app
        .count_statements(app.graphql(query, json!({ "r": hotel_representations(200) })))
        .await;
    assert_eq!(
        refused.error_codes(),
        ["LIMIT_EXCEEDED"],
        "{:#}",
        refused.body
    );
    assert!(refused.data().is_null());
    assert_eq!(statements, 0, "nothing was read for a refused request");

    // The search page of the consumers, at its largest, still passes.
    search_page(&app, 500).await;
}

#[tokio::test]
async fn a_batch_is_counted_as_the_sum_of_its_operations() {
    let app = spawn_app().await;
    let one = "{ a: hotel(id: 1) { gallery(first: 100) { nodes { id width height category caption } } } b: hotel(id: 2) { gallery(first: 100) { nodes { id width height category caption } } } }";
    let alone = app.graphql(one, json!({})).await;
    assert!(
        alone.body["errors"].is_null(),
        "one is within the budget: {:#}",
        alone.body
    );

    let batch: Vec<Value> = (0..10).map(|_| json!({ "query": one })).collect();
    let response = app
        .client
        .post(app.url("/graphql"))
        .json(&batch)
        .send()
        .await
        .expect("sent");
    let refused = crate::helpers::answer(response).await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{:#}",
        refused.body
    );
    assert_eq!(refused.error_codes(), ["LIMIT_EXCEEDED"]);

    let small: Vec<Value> = (0..3).map(|_| json!({ "query": one })).collect();
    let answered: Value = app
        .client
        .post(app.url("/graphql"))
        .json(&small)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answered.as_array().map(Vec::len), Some(3), "{answered:#}");
}

// ---- 7. Connections: header-read and idle timeouts, a cap per process ----------------------

/// Waits until the server closes `stream` (EOF or reset), at most `limit`; true if it did.
async fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

fn address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

const LIVE: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n";

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let app = spawn_app_with(|s| s.http_header_read_timeout_ms = 300).await;
    let mut silent = TcpStream::connect(address(&app)).await.expect("connected");
    assert!(
        closed_by_server(&mut silent, Duration::from_secs(10)).await,
        "a silent connection is still open after 10 s"
    );
}

#[tokio::test]
async fn a_connection_trickling_header_lines_is_closed() {
    let app = spawn_app_with(|s| s.http_header_read_timeout_ms = 300).await;
    let mut slow = TcpStream::connect(address(&app)).await.expect("connected");
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: test\r\n")
        .await
        .expect("written");
    let mut closed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow.write_all(b"X-Slow: yes\r\n").await.is_err() {
            closed = true;
            break;
        }
        let mut buffer = [0u8; 1024];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buffer)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "headers trickled for 10 s on one open connection");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn_app_with(|s| s.http_header_read_timeout_ms = 300).await;
    let mut stream = TcpStream::connect(address(&app)).await.expect("connected");
    stream.write_all(LIVE).await.expect("written");
    let mut buffer = vec![0u8; 4096];
    let read = stream.read(&mut buffer).await.expect("an answer");
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
    assert!(
        closed_by_server(&mut stream, Duration::from_secs(10)).await,
        "an idle keep-alive connection is still open after 10 s"
    );
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let app = spawn_app_with(|s| {
        s.http_max_connections = 1;
        s.http_header_read_timeout_ms = 60_000;
    })
    .await;
    let holder = TcpStream::connect(address(&app)).await.expect("connected");
    // Give the server the moment it needs to take the first connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut waiting = TcpStream::connect(address(&app))
        .await
        .expect("in the backlog");
    waiting.write_all(LIVE).await.expect("written");
    let mut buffer = vec![0u8; 4096];
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut buffer)).await;
    assert!(
        early.is_err(),
        "a second connection was served past a cap of one"
    );
    drop(holder);
    let read = tokio::time::timeout(Duration::from_secs(10), waiting.read(&mut buffer))
        .await
        .expect("served once the first closed")
        .expect("read");
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));
}

// ---- 9. Smaller ones -------------------------------------------------------------------------

#[tokio::test]
async fn the_service_sdl_is_for_admins_or_the_router_when_introspection_is_for_admins() {
    let query = "{ _service { sdl } }";
    let app = spawn_app_with(|s| s.introspection = Some(false)).await;
    let anonymous = app.graphql(query, json!({})).await;
    assert_eq!(
        anonymous.error_codes(),
        ["UNAUTHENTICATED"],
        "{:#}",
        anonymous.body
    );
    assert!(anonymous.body["data"]["_service"].is_null());
    let aliased = app
        .graphql("{ ... on Query { s: _service { sdl } } }", json!({}))
        .await;
    assert_eq!(
        aliased.error_codes(),
        ["UNAUTHENTICATED"],
        "{:#}",
        aliased.body
    );
    let hotelier = app
        .graphql_as(&app.token("images:hotelier", &[1]), query, json!({}))
        .await;
    assert_eq!(hotelier.error_codes(), ["FORBIDDEN"], "{:#}", hotelier.body);
    let admin = app.graphql_as(&app.admin(), query, json!({})).await.ok();
    assert!(admin["_service"]["sdl"].as_str().is_some());

    // Behind a router secret, the router may compose without a token.
    let routed = spawn_app_with(|s| {
        s.introspection = Some(false);
        s.router_secret = Some("s3cret".parse().expect("secret"));
    })
    .await;
    let answer: Value = routed
        .client
        .post(routed.url("/graphql"))
        .header("x-router-secret", "s3cret")
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert!(
        answer["data"]["_service"]["sdl"].as_str().is_some(),
        "{answer:#}"
    );
}

/// The object store directory of `app`.
fn media_dir(app: &TestApp) -> std::path::PathBuf {
    let url = app.settings.object_store_url.as_deref().expect("a store");
    url::Url::parse(url)
        .expect("URL")
        .to_file_path()
        .expect("a file URL")
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\nnot really";

#[tokio::test]
async fn media_answers_tell_browsers_not_to_sniff() {
    let app = spawn_app().await;
    let dir = media_dir(&app).join("sniff");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("a.png"), PNG).expect("written");
    let response = app
        .client
        .get(app.url("/media/original/sniff/a.png"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
}

#[cfg(unix)]
#[tokio::test]
async fn media_does_not_follow_symlinks_out_of_the_store() {
    let app = spawn_app().await;
    let outside = tempfile::tempdir().expect("temp dir");
    std::fs::write(outside.path().join("secret.png"), b"the secret").expect("written");
    let dir = media_dir(&app).join("links");
    std::fs::create_dir_all(&dir).expect("dir");
    std::os::unix::fs::symlink(outside.path().join("secret.png"), dir.join("file.png"))
        .expect("file link");
    std::os::unix::fs::symlink(outside.path(), dir.join("out")).expect("directory link");
    // A link that stays inside the store is fine.
    std::fs::write(dir.join("real.png"), PNG).expect("written");
    std::os::unix::fs::symlink(dir.join("real.png"), dir.join("inside.png")).expect("link");

    for path in ["links/file.png", "links/out/secret.png"] {
        let response = app
            .client
            .get(app.url(&format!("/media/original/{path}")))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let inside = app
        .client
        .get(app.url("/media/original/links/inside.png"))
        .send()
        .await
        .expect("sent");
    assert_eq!(inside.status(), StatusCode::OK);
}

#[tokio::test]
async fn made_up_operation_names_do_not_crowd_out_the_known_operations_in_metrics() {
    let app = spawn_app().await;
    for round in 0..55 {
        let batch: Vec<Value> = (0..10)
            .map(|i| json!({ "query": format!("query Bogus{round}x{i} {{ __typename }}") }))
            .collect();
        app.client
            .post(app.url("/graphql"))
            .json(&batch)
            .send()
            .await
            .expect("sent");
    }
    search_page(&app, 2).await;
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"graphql_operation_duration_seconds_count{operation="SearchResultsMainImages"}"#
        ),
        Some(1.0),
        "the known operation lost its label"
    );
    let labels = metrics
        .lines()
        .filter(|line| line.starts_with("graphql_operation_duration_seconds_count"))
        .count();
    assert!(labels <= 20, "{labels} operation labels");
}
