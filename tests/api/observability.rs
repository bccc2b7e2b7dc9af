//! What the service tells operators: `/metrics`, request IDs and trace context in the logs,
//! and unexpected errors logged once, with their cause, never with a token.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::helpers::{TestApp, answer, sample, spawn_app};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn metrics_count_requests_operations_errors_loader_batches_and_the_database() {
    let app = spawn_app().await;
    // One batch of three hotels, in a named operation (`partners` keeps it off the compiled
    // plans, whose reads are no loader batches).
    app.graphql(
        "query ThreeHotels { hotels(ids: [1, 2, 3]) { id } partners { id } }",
        json!({}),
    )
    .await
    .ok();
    // Anonymous, and no loader involved.
    app.graphql("{ partners { id } }", json!({})).await.ok();
    // A syntax error, and a refusal before the schema.
    app.graphql("{ hotel(id: 1) {", json!({})).await;
    let refused = app
        .graphql_as("not-a-token", "{ partners { id } }", json!({}))
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let missing = app.client.get(app.url("/nowhere")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
    );
    let text = response.text().await.unwrap();
    let value = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}: {text}"));

    assert_eq!(
        value(r#"http_requests_total{route="/graphql",status="200"}"#),
        3.0
    );
    assert_eq!(
        value(r#"http_requests_total{route="/graphql",status="401"}"#),
        1.0
    );
    assert_eq!(
        value(r#"http_requests_total{route="unmatched",status="404"}"#),
        1.0
    );
    assert!(text.contains("# TYPE graphql_operation_duration_seconds histogram"));
    assert_eq!(
        // Not an operation of `schema/operations/`: counted as `other` (issue 19).
        value(r#"graphql_operation_duration_seconds_count{operation="other"}"#),
        1.0
    );
    assert_eq!(
        value(r#"graphql_operation_duration_seconds_count{operation="unknown"}"#),
        2.0
    );
    assert_eq!(
        value(r#"graphql_errors_total{code="GRAPHQL_PARSE_FAILED"}"#),
        1.0
    );
    assert_eq!(
        value(r#"graphql_errors_total{code="UNAUTHENTICATED"}"#),
        1.0
    );
    assert_eq!(value(r#"dataloader_batch_size_count{kind="hotel"}"#), 1.0);
    assert_eq!(value(r#"dataloader_batch_size_sum{kind="hotel"}"#), 3.0);
    let statements = value("db_statements_total");
    assert!(statements >= 1.0 && statements <= app.statements.get() as f64);
    assert!(value("db_pool_connections") >= 1.0);
    assert!(value("db_pool_idle_connections") >= 0.0);
}

#[tokio::test]
async fn each_app_counts_only_its_own_requests() {
    let (busy, idle) = (spawn_app().await, spawn_app().await);
    busy.graphql("{ partners { id } }", json!({})).await.ok();
    let busy_text = busy.metrics().await;
    assert_eq!(
        sample(
            &busy_text,
            r#"http_requests_total{route="/graphql",status="200"}"#
        ),
        Some(1.0)
    );
    let idle_text = idle.metrics().await;
    assert_eq!(
        sample(
            &idle_text,
            r#"http_requests_total{route="/graphql",status="200"}"#
        ),
        None,
        "{idle_text}"
    );
}

/// The log lines of the current thread while it lives. The test's runtime runs on one thread,
/// the app's tasks included, so these are the lines of this test's app.
///
/// One global JSON subscriber writes every thread's lines to that thread's capture, if any. (A
/// scoped subscriber per test is not enough: while other tests' threads hit a log statement
/// for the first time, `tracing` may cache it as disabled.)
struct CapturedLogs {
    buffer: Arc<Mutex<Vec<u8>>>,
}

thread_local! {
    static CAPTURE: RefCell<Option<Arc<Mutex<Vec<u8>>>>> = const { RefCell::new(None) };
}

/// Writes to the current thread's capture; drops the bytes when there is none.
struct ThreadCapture;

impl Write for ThreadCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(buffer) = &*capture.borrow() {
                buffer.lock().unwrap().extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    fn start() -> Self {
        static GLOBAL: Once = Once::new();
        GLOBAL.call_once(|| {
            tracing_subscriber::fmt()
                .json()
                .with_max_level(tracing::Level::INFO)
                .with_writer(|| ThreadCapture)
                .try_init()
                .expect("the only global subscriber");
        });
        let buffer = Arc::new(Mutex::new(Vec::new()));
        CAPTURE.with(|capture| *capture.borrow_mut() = Some(buffer.clone()));
        Self { buffer }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }

    fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON log line"))
            .collect()
    }

    /// The `answered` line of the request with `request_id`.
    fn answered(&self, request_id: &str) -> Value {
        self.lines()
            .into_iter()
            .find(|line| {
                line["fields"]["message"] == "answered" && line["span"]["request_id"] == request_id
            })
            .unwrap_or_else(|| panic!("no line for {request_id}: {}", self.text()))
    }
}

impl Drop for CapturedLogs {
    fn drop(&mut self) {
        CAPTURE.with(|capture| capture.borrow_mut().take());
    }
}

async fn post(app: &TestApp, headers: &[(&str, &str)], query: &str) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": query }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("sent")
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn each_request_has_an_id_and_the_routers_trace_id_in_its_log_line() {
    let logs = CapturedLogs::start();
    let app = spawn_app().await;
    let token = app.admin();
    let bearer = format!("Bearer {token}");
    let query = "{ hotel(id: 1) { id } }";

    // The router's request ID and trace context are kept.
    let given = post(
        &app,
        &[
            ("x-request-id", "router-req-42"),
            ("traceparent", TRACEPARENT),
            ("authorization", &bearer),
        ],
        query,
    )
    .await;
    assert_eq!(given.status(), StatusCode::OK);
    assert_eq!(request_id(&given), "router-req-42");
    let line = logs.answered("router-req-42");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["status"], 200);
    assert!(line["fields"]["latency_ms"].is_number());
    assert_eq!(line["span"]["trace_id"], TRACE_ID);
    assert_eq!(line["span"]["method"], "POST");
    assert_eq!(line["span"]["path"], "/graphql");

    // Without one, or with one unfit for a log, a fresh ID; an invalid traceparent is ignored.
    for headers in [
        vec![],
        vec![
            ("x-request-id", "two words"),
            ("traceparent", "00-not-a-trace-01"),
        ],
    ] {
        let response = post(&app, &headers, query).await;
        let id = request_id(&response);
        assert_eq!(id.len(), 36, "a UUID: {id}");
        assert_ne!(id, "two words");
        let line = logs.answered(&id);
        assert!(line["span"].get("trace_id").is_none(), "{line}");
    }

    assert!(!logs.text().contains(&token), "a token reached the log");
}

#[tokio::test]
async fn an_unexpected_error_is_logged_once_with_its_cause_and_never_with_the_token() {
    let logs = CapturedLogs::start();
    let app = spawn_app().await;
    let token = app.admin();
    app.core
        .db
        .execute_unprepared("ALTER TABLE hotel RENAME TO hotel_gone")
        .await
        .expect("table renamed");

    // Two fields wait on one loader batch, which fails.
    let response = post(
        &app,
        &[("authorization", &format!("Bearer {token}"))],
        "{ a: hotel(id: 1) { id } b: hotel(id: 2) { id } }",
    )
    .await;
    let id = request_id(&response);
    let failed = answer(response).await;
    assert_eq!(
        failed.error_codes(),
        ["INTERNAL_SERVER_ERROR", "INTERNAL_SERVER_ERROR"]
    );
    let text = failed.body.to_string();
    assert!(!text.contains("hotel_gone") && !text.to_lowercase().contains("sql"));

    let errors: Vec<Value> = logs
        .lines()
        .into_iter()
        .filter(|line| line["level"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 1, "logged once: {}", logs.text());
    let error = &errors[0];
    assert_eq!(error["fields"]["message"], "request failed");
    let chain = error["fields"]["error"].as_str().unwrap();
    assert!(
        chain.starts_with("unexpected failure: database error: ") && chain.contains("hotel"),
        "{chain}"
    );
    assert_eq!(
        error["span"]["request_id"], id,
        "in the request's span: {error}"
    );
    assert!(!logs.text().contains(&token), "a token reached the log");

    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"graphql_errors_total{code="INTERNAL_SERVER_ERROR"}"#
        ),
        Some(2.0)
    );
}
