//! The HTTP surface: `/graphql` (GraphQL over HTTP), GraphiQL, health checks, and the
//! protections in front of them.
//!
//! A thin transport: it authenticates the caller, refuses what is too big or too deep before
//! any parsing, hands the request to the schema and writes the answer with the content type
//! the client asked for. It knows no GraphQL types.
//!
//! # Layout
//! - [`auth`]: the `Authorization` header to an `Actor`.
//! - [`scan`]: the pre-parse nesting, size and token scan.
//! - [`graphql`]: the `/graphql` handler.

pub mod auth;
pub mod graphql;
pub mod scan;

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{BoxError, Json, Router};
use sha2::{Digest, Sha256};
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;

use crate::graphql::AppSchema;
use crate::service::catalog::Catalog;
use auth::Authenticator;

/// The header that carries the router's shared secret.
pub const ROUTER_SECRET_HEADER: &str = "x-router-secret";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    /// For readiness checks.
    pub catalog: Catalog,
    pub auth: Authenticator,
    /// Serve GraphiQL at `/` (the embedded default, or when enabled).
    pub graphiql: bool,
    pub protection: Protection,
}

/// Limits applied before a request reaches the schema.
#[derive(Clone, Debug)]
pub struct Protection {
    /// Largest accepted `/graphql` body, in bytes.
    pub body_limit: usize,
    /// Nesting, size and token limits of a document, checked before parsing.
    pub scan: scan::ScanLimits,
    /// Most operations in one batched request.
    pub max_batch: usize,
    pub request_timeout: Duration,
    /// Requests served at once; the rest get 503 immediately.
    pub max_concurrent_requests: usize,
    /// When set, `/graphql` requires [`ROUTER_SECRET_HEADER`] with this value.
    pub router_secret: Option<String>,
}

/// The application's routes; tests drive it directly or over a real listener.
pub fn router(state: AppState) -> Router {
    let protection = &state.protection;
    let graphql = Router::new()
        .route("/graphql", get(graphql::handle).post(graphql::handle))
        // async-graphql-axum reads the body itself, so axum's default limit does not apply:
        // this layer does.
        .layer(RequestBodyLimitLayer::new(protection.body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_router_secret,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded_or_timed_out))
                .load_shed()
                .concurrency_limit(protection.max_concurrent_requests.max(1))
                .timeout(protection.request_timeout),
        );
    let mut router = Router::new()
        .merge(graphql)
        .route("/health/live", get(live))
        .route("/health/ready", get(ready));
    if state.graphiql {
        router = router.route("/", get(graphiql));
    }
    router.with_state(state)
}

/// Load shedding and timeouts answer at once with a JSON error instead of queueing.
async fn overloaded_or_timed_out(error: BoxError) -> Response {
    let (status, message, code) = if error.is::<tower::load_shed::error::Overloaded>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is at capacity, retry shortly",
            "OVERLOADED",
        )
    } else if error.is::<tower::timeout::error::Elapsed>() {
        (
            StatusCode::GATEWAY_TIMEOUT,
            "the request took too long",
            "TIMEOUT",
        )
    } else {
        tracing::error!(error = %error, "request failed in a middleware");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error",
            "INTERNAL_SERVER_ERROR",
        )
    };
    graphql::error_response(status, message, code, graphql::JSON)
}

/// Refuses requests without the router's shared secret, when one is configured.
async fn require_router_secret(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &state.protection.router_secret else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(ROUTER_SECRET_HEADER)
        .map(|v| v.as_bytes());
    // Compare digests so the comparison takes the same time wherever the texts differ.
    let matches = given.is_some_and(|g| Sha256::digest(g) == Sha256::digest(expected.as_bytes()));
    if matches {
        next.run(request).await
    } else {
        graphql::error_response(
            StatusCode::FORBIDDEN,
            "this endpoint is only served to the router",
            "FORBIDDEN",
            graphql::JSON,
        )
    }
}

async fn graphiql() -> Html<String> {
    Html(
        async_graphql::http::GraphiQLSource::build()
            .endpoint("/graphql")
            .title("images-subgraph")
            .finish(),
    )
}

async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "live" }))
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.catalog.ready().await {
        Ok(()) => Json(serde_json::json!({ "status": "ready", "database": "up" })).into_response(),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "unavailable", "database": "down" })),
            )
                .into_response()
        }
    }
}
