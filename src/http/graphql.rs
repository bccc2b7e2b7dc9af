//! `/graphql`: GraphQL over HTTP.
//!
//! - POST with a JSON body (one request, or an array: a batch) or a GraphQL multipart request
//!   (uploads, read by [`super::multipart`] with a limit per part), and GET with query
//!   parameters; a mutation sent with GET is refused with 405, as the GraphQL-over-HTTP spec
//!   asks.
//! - The answer is `application/json` unless the client accepts
//!   `application/graphql-response+json`; with the latter, a request that failed before
//!   execution (no `data`) is answered 400.
//! - A bad token is a 401 with an `UNAUTHENTICATED` error, never an anonymous request.
//! - Before anything is parsed, each document is scanned for nesting, size and tokens, and a
//!   batch may hold at most a few operations: violations are a 400 with `LIMIT_EXCEEDED`.
//! - Then each document is parsed once, and the request is admitted or refused as a whole
//!   (cost of a batch against one budget, `_service` for the router and admins only; see
//!   [`super::admission`]).
//! - Automatic persisted queries (Apollo's APQ): a request may carry the SHA-256 of its query
//!   instead of the query; an unknown hash answers `PersistedQueryNotFound`, and a request with
//!   both registers the query for every replica once it ran (passed limits and validation).
//! - A mutation request with an `Idempotency-Key` header runs at most once per caller and key;
//!   a retry gets the first answer (see [`super::idempotent`]).
//! - `Cache-Control`: a successful query of public fields only is `public, max-age=N`
//!   (`CACHE_CONTROL_MAX_AGE`); mutations, internal fields, errors and refusals are `no-store`.

use async_graphql::BatchRequest;
use async_graphql::ParseRequestError;
use async_graphql_axum::rejection::GraphQLRejection;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use sha2::{Digest as _, Sha256};

use super::admission::{admit, ran};
use super::answer::{answer_status, response_media_type};
use super::auth::AuthError;
use super::idempotent;
use super::multipart::GraphQLBody;
use super::refusal::{NO_STORE, error_response};
use super::scan::scan;
use super::{AppState, Protection};
use crate::cache::persisted::PersistedQueries;
use crate::graphql::limits::LIMIT_EXCEEDED;
use crate::graphql::{Answer, BatchAnswer, answer_batch, prepare};
use crate::telemetry::Metrics;

/// The request ID header (set by the router or by the request-ID layer).
const REQUEST_ID_HEADER: &str = "x-request-id";

pub async fn handle(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    request: Result<GraphQLBody, GraphQLRejection>,
) -> Response {
    let media_type = response_media_type(&headers);
    let mut batch = match request {
        Ok(GraphQLBody(batch)) => batch,
        Err(rejection) => return unreadable(&state.metrics, &rejection.0, media_type),
    };
    let actor = match state.auth.actor(&headers) {
        Ok(actor) => actor,
        Err(error) => return unauthenticated(&state.metrics, &error, media_type),
    };
    let registrations = match resolve_persisted(&state.persisted, &mut batch).await {
        Ok(registrations) => registrations,
        Err(refusal) => return refusal.respond(&state.metrics, media_type),
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
    let admitted = match admit(&state, batch, &actor) {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.respond(&state.metrics, media_type),
    };
    if method == Method::GET && admitted.mutation {
        return error_response(
            &state.metrics,
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations must be sent with POST",
            "METHOD_NOT_ALLOWED",
            media_type,
        );
    }
    let key = match idempotent::key(&state, &headers, &actor, admitted.mutation, media_type) {
        Ok(key) => key,
        Err(refusal) => return *refusal,
    };
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(64).collect::<String>());
    let prepared = match admitted.batch {
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
    let response = match key {
        None => answer_batch(&state.schema, prepared).await,
        Some(key) => match idempotent::run(&state, key, prepared, media_type).await {
            Ok(response) => BatchAnswer::from(response),
            Err(answer) => return *answer,
        },
    };
    register_valid(&state.persisted, registrations, &response).await;
    admitted.documents.keep_valid(&state, &response);
    respond(response, media_type, state.public_max_age)
}

/// Registers the persisted queries whose requests ran: a text that failed the limits or
/// validation is never stored (anyone may register, and it would only take memory).
async fn register_valid(
    persisted: &PersistedQueries,
    registrations: Vec<Registration>,
    response: &BatchAnswer,
) {
    for registration in registrations {
        if response.answers().get(registration.index).is_some_and(ran) {
            persisted.put(&registration.hash, &registration.query).await;
        }
    }
}

/// A query text sent with its hash: registered once its request has run.
struct Registration {
    /// The request's position in its batch.
    index: usize,
    hash: String,
    query: String,
}

/// The `persistedQuery` request extension of APQ.
#[derive(serde::Deserialize)]
struct PersistedQuery {
    version: i32,
    #[serde(rename = "sha256Hash")]
    sha256_hash: String,
}

/// Why a persisted-query request was refused.
enum PersistedRefusal {
    /// The client should send the full query (an expected step of the protocol).
    NotFound,
    Invalid(String),
}

impl PersistedRefusal {
    fn respond(self, metrics: &Metrics, media_type: &'static str) -> Response {
        match self {
            // 200, as Apollo's servers answer it: clients read the error and retry.
            PersistedRefusal::NotFound => error_response(
                metrics,
                StatusCode::OK,
                "PersistedQueryNotFound",
                "PERSISTED_QUERY_NOT_FOUND",
                media_type,
            ),
            PersistedRefusal::Invalid(message) => error_response(
                metrics,
                StatusCode::BAD_REQUEST,
                &message,
                "BAD_REQUEST",
                media_type,
            ),
        }
    }
}

/// Fills in the query of each request that sent only its hash, and returns the texts to
/// register once their requests have run.
async fn resolve_persisted(
    persisted: &PersistedQueries,
    batch: &mut BatchRequest,
) -> Result<Vec<Registration>, PersistedRefusal> {
    let mut registrations = Vec::new();
    // (`BatchRequest::iter_mut` is not `Send`, which a handler's future must be.)
    let requests: Vec<&mut async_graphql::Request> = match batch {
        BatchRequest::Single(request) => vec![request],
        BatchRequest::Batch(requests) => requests.iter_mut().collect(),
    };
    for (index, request) in requests.into_iter().enumerate() {
        let Some(extension) = request.extensions.remove("persistedQuery") else {
            continue;
        };
        let wanted: PersistedQuery = async_graphql::from_value(extension).map_err(|_| {
            PersistedRefusal::Invalid("invalid persistedQuery extension".to_owned())
        })?;
        if wanted.version != 1 {
            return Err(PersistedRefusal::Invalid(format!(
                "persisted query version {} is not supported (only 1)",
                wanted.version
            )));
        }
        let hash = wanted.sha256_hash.to_ascii_lowercase();
        if request.query.is_empty() {
            let query = persisted
                .get(&hash)
                .await
                .ok_or(PersistedRefusal::NotFound)?;
            request.query = query.to_string();
        } else if hex::encode(Sha256::digest(request.query.as_bytes())) == hash {
            registrations.push(Registration {
                index,
                hash,
                query: request.query.clone(),
            });
        } else {
            return Err(PersistedRefusal::Invalid(
                "provided sha does not match query".to_owned(),
            ));
        }
    }
    Ok(registrations)
}

/// The batch size and the pre-parse scan of every document.
fn check_before_parsing(batch: &BatchRequest, protection: &Protection) -> Result<(), String> {
    if let BatchRequest::Batch(requests) = batch
        && requests.len() > protection.max_batch
    {
        return Err(format!(
            "a batch may hold at most {} operations; this one has {}",
            protection.max_batch,
            requests.len()
        ));
    }
    batch
        .iter()
        .try_for_each(|request| scan(&request.query, &protection.scan))
        .map_err(|error| error.to_string())
}

/// `Cache-Control` of an executed request: shared caches may keep a successful query whose
/// fields are all public (internal fields and mutations are marked `no_cache` in the schema).
fn cache_policy(response: &BatchAnswer, public_max_age: u32) -> HeaderValue {
    let cacheable = response.is_ok() && response.publicly_cacheable() && public_max_age > 0;
    if cacheable {
        HeaderValue::from_str(&format!("public, max-age={public_max_age}"))
            .unwrap_or(HeaderValue::from_static(NO_STORE))
    } else {
        HeaderValue::from_static(NO_STORE)
    }
}

fn respond(response: BatchAnswer, media_type: &'static str, public_max_age: u32) -> Response {
    let failed_before_execution = match &response {
        BatchAnswer::Single(Answer::Executed(r)) => {
            r.data == async_graphql::Value::Null && r.is_err()
        }
        _ => false,
    };
    let status = answer_status(media_type, failed_before_execution);
    let cache_control = cache_policy(&response, public_max_age);
    let mut extra_headers = HeaderMap::new();
    if let BatchAnswer::Single(Answer::Executed(r)) = &response {
        extra_headers.extend(r.http_headers.clone());
    }
    let body = match response.to_json() {
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
    http.headers_mut().insert(CACHE_CONTROL, cache_control);
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
