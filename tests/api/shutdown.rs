//! Graceful shutdown: readiness turns false at once, requests in flight finish, the drain
//! timeout is kept, and then the server is gone.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, spawn_stoppable_app_with};

async fn readiness(app: &TestApp) -> (StatusCode, Value) {
    let response = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("the listener is still open");
    let status = response.status();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn on_shutdown_readiness_turns_false_and_requests_in_flight_finish() {
    let stoppable = spawn_stoppable_app_with(|s| {
        s.shutdown_delay_ms = 1_000;
        s.shutdown_drain_ms = 5_000;
    })
    .await;
    let app = &stoppable.app;
    assert_eq!(readiness(app).await.0, StatusCode::OK);

    let in_flight = app.slow_request(Duration::from_millis(1_200));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped_at = Instant::now();
    stoppable.stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let (status, body) = readiness(app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "draining");
    assert_eq!(in_flight.await.unwrap(), Some(StatusCode::OK));

    let stopped = tokio::time::timeout(Duration::from_secs(5), stoppable.server)
        .await
        .expect("the server stops within the drain timeout");
    stopped.unwrap().expect("a clean stop");
    assert!(
        stopped_at.elapsed() >= Duration::from_millis(1_000),
        "after the delay"
    );
    let refused = app.client.get(app.url("/health/live")).send().await;
    assert!(refused.is_err(), "nothing listens any more");
}

#[tokio::test]
async fn requests_still_running_at_the_drain_timeout_are_cut_off_and_the_server_stops() {
    let stoppable = spawn_stoppable_app_with(|s| {
        s.shutdown_delay_ms = 0;
        s.shutdown_drain_ms = 300;
    })
    .await;
    let app = &stoppable.app;
    let too_slow = app.slow_request(Duration::from_secs(6));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped_at = Instant::now();
    stoppable.stop.send(()).unwrap();

    let stopped = tokio::time::timeout(Duration::from_secs(3), stoppable.server)
        .await
        .expect("the server stops soon after the drain timeout");
    stopped.unwrap().expect("a clean stop");
    let took = stopped_at.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    // Answered 503 SHUTTING_DOWN, or the connection closed under a half-sent body.
    let outcome = too_slow.await.unwrap();
    assert!(
        matches!(outcome, None | Some(StatusCode::SERVICE_UNAVAILABLE)),
        "{outcome:?}"
    );
}
