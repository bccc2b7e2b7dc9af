//! Draining on shutdown, as the HTTP layer sees it.
//!
//! When the process is told to stop, start-up code calls [`Draining::start`]: from then on
//! `/health/ready` answers 503, so load balancers and the router stop sending traffic, while
//! requests in flight go on, and every answer asks its client to close its connection
//! (`Connection: close`). If some are still running when the drain timeout passes,
//! [`Draining::cut_off`] ends them with a 503 `SHUTTING_DOWN` answer, so that their
//! connections close and the server really stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Request, State};
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::watch;

use super::AppState;

/// The shared shutdown state of one application. Clones share it.
#[derive(Clone, Debug)]
pub struct Draining(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Set once the stop signal came: readiness is false from then on.
    started: AtomicBool,
    /// Becomes `true` when the drain timeout passes: requests still running are cut off.
    cut_off: watch::Sender<bool>,
}

impl Default for Draining {
    fn default() -> Self {
        Self(Arc::new(Inner {
            started: AtomicBool::new(false),
            cut_off: watch::Sender::new(false),
        }))
    }
}

impl Draining {
    /// Readiness turns false, for good.
    pub fn start(&self) {
        self.0.started.store(true, Ordering::SeqCst);
    }

    pub fn is_started(&self) -> bool {
        self.0.started.load(Ordering::SeqCst)
    }

    /// Ends the requests still in flight (the drain timeout passed).
    pub fn cut_off(&self) {
        self.start();
        self.0.cut_off.send_replace(true);
    }

    /// Completes when [`Draining::cut_off`] is called (at once if it was).
    pub async fn cut_off_signal(&self) {
        let mut cut_off = self.0.cut_off.subscribe();
        // An error means the sender is gone, which cannot happen while `self` holds it.
        let _ = cut_off.wait_for(|&cut| cut).await;
    }
}

/// Runs a request unless the drain timeout passes first; then answers 503 `SHUTTING_DOWN`.
/// Once draining has started, every answer carries `Connection: close`: the client opens a
/// new connection for its next request (which the balancer sends elsewhere) instead of
/// reusing one that the server is about to close under it (a broken pipe).
pub async fn cut_off_at_deadline(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = tokio::select! {
        response = next.run(request) => response,
        () = state.draining.cut_off_signal() => super::refusal::error_response(
            &state.metrics,
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down, retry on another replica",
            "SHUTTING_DOWN",
            super::answer::JSON,
        ),
    };
    if state.draining.is_started() {
        // HTTP/1.1: hyper closes the connection once this answer is written.
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
