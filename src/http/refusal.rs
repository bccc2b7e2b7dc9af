//! How the HTTP layer answers a request it refuses before (or instead of) execution: one
//! GraphQL error with a stable `extensions.code`, never cached, counted in the error metrics.
//! Every refusal (limits, authentication, the router secret, draining, the cost budget) answers
//! through here, so they all look the same to a client.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::telemetry::Metrics;

/// `Cache-Control` of every answer that must not be cached.
pub(super) const NO_STORE: &str = "no-store";

/// A refusal before or instead of execution: one error with `code`, counted in the metrics.
pub(super) fn error_response(
    metrics: &Metrics,
    status: StatusCode,
    message: &str,
    code: &str,
    media_type: &'static str,
) -> Response {
    metrics.graphql_error(code);
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    });
    (
        status,
        [
            (CONTENT_TYPE, HeaderValue::from_static(media_type)),
            (CACHE_CONTROL, HeaderValue::from_static(NO_STORE)),
        ],
        body.to_string(),
    )
        .into_response()
}
