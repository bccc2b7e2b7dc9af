//! The HTTP surface: `/graphql` (GraphQL over HTTP), GraphiQL, health checks, `/metrics`, the
//! protections in front of them, and what each request tells operators.
//!
//! A thin transport: it authenticates the caller, refuses what is too big or too deep before
//! any parsing, hands the request to the schema and writes the answer with the content type
//! the client asked for. It knows no GraphQL types.
//!
//! # Layout
//! - [`auth`]: the `Authorization` header to an `Actor`.
//! - `admission`: parsing once, the cost budget of a request, what may be cached after it ran.
//! - [`scan`]: the pre-parse nesting, size and token scan.
//! - [`graphql`]: the `/graphql` handler.
//! - [`idempotent`]: the `Idempotency-Key` of mutation requests.
//! - [`known`]: the consumer operations' names, the only operation labels of `/metrics`.
//! - [`observe`]: request IDs, trace context, per-request spans, log lines and counts.
//! - `refusal`: the one shape of every answer refused before or instead of execution.
//! - [`lifecycle`]: draining on shutdown (readiness, and the cut-off at the drain timeout).
//! - [`media`]: `/media/{size}/{key}`, a local object store's files at the CDN's sizes.
//! - [`serve`]: the accept loop, with a header-read timeout and a connection cap.

mod admission;
mod answer;
pub mod auth;
pub mod graphql;
pub mod idempotent;
pub mod known;
pub mod lifecycle;
pub mod media;
mod multipart;
pub mod observe;
mod refusal;
pub mod scan;
pub mod serve;

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{BoxError, Json, Router};
use sha2::{Digest, Sha256};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::cache::persisted::PersistedQueries;
use crate::graphql::AppSchema;
use crate::graphql::documents::Documents;
use crate::secret::Secret;
use crate::service::auth::Refused;
use crate::service::catalog::Catalog;
use crate::service::idempotency::Idempotency;
use crate::telemetry::Metrics;
use auth::Authenticator;
use lifecycle::Draining;

/// The header that carries the router's shared secret.
pub const ROUTER_SECRET_HEADER: &str = "x-router-secret";

/// What every handler shares, behind one `Arc`: axum clones the state for every request and
/// every layer that extracts it, so a clone is one reference count (cloning the fields cost a
/// warm search page a fifth of its CPU, see BENCHMARKS.md).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`AppState`].
pub struct Shared {
    pub schema: AppSchema,
    /// For readiness checks.
    pub catalog: Catalog,
    pub auth: Authenticator,
    /// Serve GraphiQL at `/` (the embedded default, or when enabled).
    pub graphiql: bool,
    /// The local object store whose files `/media/...` serves (the embedded default); `None`:
    /// no route.
    pub media: Option<media::MediaFiles>,
    pub protection: Protection,
    /// Served at `/metrics`; also fed by the request counter and the refusals here.
    pub metrics: Metrics,
    /// Set on shutdown: readiness turns false, and later in-flight requests are cut off.
    pub draining: Draining,
    /// Query texts of automatic persisted queries, shared by every replica through Redis.
    pub persisted: PersistedQueries,
    /// `max-age` of cacheable (public, successful) query responses; 0: nothing is cacheable.
    pub public_max_age: u32,
    /// Parsed documents of recent queries.
    pub documents: Documents,
    /// Idempotency keys of mutation requests.
    pub idempotency: Idempotency,
}

/// Limits applied before a request reaches the schema.
#[derive(Clone, Debug)]
pub struct Protection {
    /// Largest accepted `/graphql` body, in bytes.
    pub body_limit: usize,
    /// Largest accepted multipart (upload) body, in bytes.
    pub upload_limit: usize,
    /// Nesting, size and token limits of a document, checked before parsing.
    pub scan: scan::ScanLimits,
    /// Most operations in one batched request.
    pub max_batch: usize,
    pub request_timeout: Duration,
    /// Requests served at once; the rest get 503 immediately.
    pub max_concurrent_requests: usize,
    /// When set, `/graphql` requires [`ROUTER_SECRET_HEADER`] with this value.
    pub router_secret: Option<Secret>,
    /// The cost one request may have, a batch's operations together (`QUERY_MAX_COMPLEXITY`).
    pub max_cost: usize,
    /// Header-read timeout and connection cap of the accept loop.
    pub connections: serve::ConnectionLimits,
}

/// The application's routes; tests drive it directly or over a real listener.
pub fn router(state: AppState) -> Router {
    let protection = &state.protection;
    let metrics = state.metrics.clone();
    let graphql = Router::new()
        .route("/graphql", get(graphql::handle).post(graphql::handle))
        // async-graphql-axum reads the body itself, so axum's default limit does not apply:
        // this middleware does, with the upload limit for multipart requests.
        .layer(middleware::from_fn_with_state(state.clone(), limit_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_router_secret,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |error: BoxError| {
                    let metrics = metrics.clone();
                    async move { overloaded_or_timed_out(&metrics, error) }
                }))
                .load_shed()
                .concurrency_limit(protection.max_concurrent_requests.max(1))
                .timeout(protection.request_timeout),
        );
    let mut router = Router::new()
        .merge(graphql)
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics_text));
    if state.media.is_some() {
        router = router.route("/media/{size}/{*key}", get(media::media));
    }
    if state.graphiql {
        router = router.route("/", get(graphiql));
    }
    // Outermost first: a request gets its ID, then its span (which logs the answer), then is
    // counted, and is cut off if the drain timeout passes while it runs.
    let observed = ServiceBuilder::new()
        .layer(middleware::map_request(observe::drop_bad_request_id))
        .layer(SetRequestIdLayer::new(observe::REQUEST_ID, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(observe::REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(observe::RequestSpan)
                .on_request(())
                .on_response(observe::RequestLine)
                .on_failure(()),
        )
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            observe::count_requests,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            lifecycle::cut_off_at_deadline,
        ));
    router.layer(observed).with_state(state)
}

/// Load shedding and timeouts answer at once with a JSON error instead of queueing.
fn overloaded_or_timed_out(metrics: &Metrics, error: BoxError) -> Response {
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
    refusal::error_response(metrics, status, message, code, answer::JSON)
}

/// Refuses bodies over the limit with 413: at once when `Content-Length` says so, otherwise
/// when the streamed body passes it. Multipart requests (uploads) have their own, larger limit,
/// and only callers who may upload get it: anyone else is refused (401 `UNAUTHENTICATED`, 403
/// `FORBIDDEN`) before a byte of the body is read.
async fn limit_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let multipart = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if multipart && let Some(refusal) = upload_refusal(&state, request.headers()) {
        return refusal;
    }
    let protection = &state.protection;
    let limit = if multipart {
        protection.upload_limit
    } else {
        protection.body_limit
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return refusal::error_response(
            &state.metrics,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {limit} bytes"),
            "PAYLOAD_TOO_LARGE",
            answer::JSON,
        );
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, limit));
    next.run(Request::from_parts(parts, body)).await
}

/// The answer a caller who may not upload gets (`None` when it may). The token is read again
/// when the request is handled (decoding it is cheap next to an upload).
fn upload_refusal(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let (status, message, code) = match state.auth.actor(headers) {
        Err(error) => (
            StatusCode::UNAUTHORIZED,
            error.to_string(),
            "UNAUTHENTICATED",
        ),
        Ok(actor) => match actor.require(actor.may_upload()) {
            Ok(()) => return None,
            Err(Refused::Unauthenticated) => (
                StatusCode::UNAUTHORIZED,
                "uploads need a token".to_owned(),
                "UNAUTHENTICATED",
            ),
            Err(Refused::Forbidden) => (
                StatusCode::FORBIDDEN,
                "this token may not upload".to_owned(),
                "FORBIDDEN",
            ),
        },
    };
    Some(refusal::error_response(
        &state.metrics,
        status,
        &message,
        code,
        answer::JSON,
    ))
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
    let expected = Sha256::digest(expected.expose().as_bytes());
    let matches = given.is_some_and(|g| Sha256::digest(g) == expected);
    if matches {
        next.run(request).await
    } else {
        refusal::error_response(
            &state.metrics,
            StatusCode::FORBIDDEN,
            "this endpoint is only served to the router",
            "FORBIDDEN",
            answer::JSON,
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

/// How long the readiness check waits for the database before it answers 503: a database
/// that stopped answering costs the probe this long, not a hang. Probes should allow more
/// (Kubernetes `timeoutSeconds: 2`), so that they always get the answer.
pub const READINESS_DEADLINE: Duration = Duration::from_millis(1_000);

/// Ready when the database answers within [`READINESS_DEADLINE`], and not once shutdown has
/// begun. A cache without Redis makes the answer `degraded` but still ready: reads are served
/// from the database.
async fn ready(State(state): State<AppState>) -> Response {
    if state.draining.is_started() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "draining" })),
        )
            .into_response();
    }
    let checked = match tokio::time::timeout(READINESS_DEADLINE, state.catalog.ready()).await {
        Ok(checked) => checked.map_err(|error| error.to_string()),
        Err(_) => Err(format!("no answer within {READINESS_DEADLINE:?}")),
    };
    match checked {
        Ok(()) => {
            let cache = state.catalog.cache();
            let (status, cache) = match (cache.is_shared(), cache.degraded()) {
                (false, _) => ("ready", "in-process"),
                (true, false) => ("ready", "up"),
                (true, true) => ("degraded", "down"),
            };
            Json(serde_json::json!({ "status": status, "database": "up", "cache": cache }))
                .into_response()
        }
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

/// Prometheus text exposition format, version 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics_text(State(state): State<AppState>) -> Response {
    ([(CONTENT_TYPE, PROMETHEUS_TEXT)], state.metrics.render()).into_response()
}
