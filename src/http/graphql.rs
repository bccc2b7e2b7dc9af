//! `/graphql`: GraphQL over HTTP.
//!
//! - POST with a JSON body (one request, or an array: a batch) and GET with query parameters;
//!   a mutation sent with GET is refused with 405, as the GraphQL-over-HTTP spec asks.
//! - The answer is `application/json` unless the client accepts
//!   `application/graphql-response+json`; with the latter, a request that failed before
//!   execution (no `data`) is answered 400.
//! - A bad token is a 401 with an `UNAUTHENTICATED` error, never an anonymous request.
//! - Before anything is parsed, each document is scanned for nesting, size and tokens, and a
//!   batch may hold at most a few operations: violations are a 400 with `LIMIT_EXCEEDED`.

use async_graphql::ParseRequestError;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{BatchRequest, BatchResponse};
use async_graphql_axum::{GraphQLBatchRequest, rejection::GraphQLRejection};
use axum::extract::State;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth::AuthError;
use super::scan::scan;
use super::{AppState, Protection};
use crate::graphql::limits::LIMIT_EXCEEDED;
use crate::graphql::prepare;
use crate::telemetry::Metrics;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
pub(super) const JSON: &str = "application/json";
/// The request ID header (set by the router or by the request-ID layer).
const REQUEST_ID_HEADER: &str = "x-request-id";

pub async fn handle(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    request: Result<GraphQLBatchRequest, GraphQLRejection>,
) -> Response {
    let media_type = response_media_type(&headers);
    let batch = match request {
        Ok(request) => request.into_inner(),
        Err(rejection) => return unreadable(&state.metrics, &rejection.0, media_type),
    };
    let actor = match state.auth.actor(&headers) {
        Ok(actor) => actor,
        Err(error) => return unauthenticated(&state.metrics, &error, media_type),
    };
    if let Err(message) = check_before_parsing(&batch, &state.protection) {
        return error_response(
            &state.metrics,
            StatusCode::BAD_REQUEST,
            &message,
            LIMIT_EXCEEDED,
            media_type,
        );
    }
    if method == Method::GET && batch.iter().any(is_mutation) {
        return error_response(
            &state.metrics,
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations must be sent with POST",
            "METHOD_NOT_ALLOWED",
            media_type,
        );
    }
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(64).collect::<String>());
    let prepared = match batch {
        BatchRequest::Single(request) => {
            BatchRequest::Single(prepare(&state.schema, request, actor, request_id))
        }
        BatchRequest::Batch(requests) => BatchRequest::Batch(
            requests
                .into_iter()
                .map(|request| prepare(&state.schema, request, actor.clone(), request_id.clone()))
                .collect(),
        ),
    };
    let response = state.schema.execute_batch(prepared).await;
    respond(response, media_type)
}

/// The batch size and the pre-parse scan of every document.
fn check_before_parsing(batch: &BatchRequest, protection: &Protection) -> Result<(), String> {
    if let BatchRequest::Batch(requests) = batch {
        if requests.len() > protection.max_batch {
            return Err(format!(
                "a batch may hold at most {} operations; this one has {}",
                protection.max_batch,
                requests.len()
            ));
        }
    }
    batch
        .iter()
        .try_for_each(|request| scan(&request.query, &protection.scan))
        .map_err(|error| error.to_string())
}

/// Whether the operation a request would run is a mutation. A document that does not parse
/// is left to the executor, which reports the syntax error.
fn is_mutation(request: &async_graphql::Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let wanted = request.operation_name.as_deref();
    match &document.operations {
        DocumentOperations::Single(op) => op.node.ty == OperationType::Mutation,
        DocumentOperations::Multiple(ops) => ops.iter().any(|(name, op)| {
            wanted.is_none_or(|w| w == name.as_str()) && op.node.ty == OperationType::Mutation
        }),
    }
}

fn response_media_type(headers: &HeaderMap) -> &'static str {
    let accepts_graphql_response = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(GRAPHQL_RESPONSE_JSON));
    if accepts_graphql_response {
        GRAPHQL_RESPONSE_JSON
    } else {
        JSON
    }
}

fn respond(response: BatchResponse, media_type: &'static str) -> Response {
    let failed_before_execution = match &response {
        BatchResponse::Single(r) => r.data == async_graphql::Value::Null && r.is_err(),
        BatchResponse::Batch(_) => false,
    };
    let status = if media_type == GRAPHQL_RESPONSE_JSON && failed_before_execution {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let cache_control = response.cache_control().value();
    let mut extra_headers = HeaderMap::new();
    if let BatchResponse::Single(r) = &response {
        extra_headers.extend(r.http_headers.clone());
    }
    let body = match serde_json::to_vec(&response) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(error = %error, "could not serialize a GraphQL response");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut http = (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static(media_type))],
        body,
    )
        .into_response();
    http.headers_mut().extend(extra_headers);
    if let Some(value) = cache_control.and_then(|v| HeaderValue::from_str(&v).ok()) {
        http.headers_mut().insert(CACHE_CONTROL, value);
    }
    http
}

/// A body (or GET query string) that is not a GraphQL request: a JSON error like every other
/// answer, rather than the library's plain-text rejection.
fn unreadable(metrics: &Metrics, error: &ParseRequestError, media_type: &'static str) -> Response {
    match error {
        ParseRequestError::PayloadTooLarge => error_response(
            metrics,
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large",
            LIMIT_EXCEEDED,
            media_type,
        ),
        other => error_response(
            metrics,
            StatusCode::BAD_REQUEST,
            &format!("the request is not a GraphQL request: {other}"),
            "BAD_REQUEST",
            media_type,
        ),
    }
}

fn unauthenticated(metrics: &Metrics, error: &AuthError, media_type: &'static str) -> Response {
    error_response(
        metrics,
        StatusCode::UNAUTHORIZED,
        &error.to_string(),
        "UNAUTHENTICATED",
        media_type,
    )
}

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
        [(CONTENT_TYPE, HeaderValue::from_static(media_type))],
        body.to_string(),
    )
        .into_response()
}
