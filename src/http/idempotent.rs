//! The `Idempotency-Key` header of mutation requests (rules in
//! [`crate::service::idempotency`]).
//!
//! A key covers one HTTP request: its one operation, or every operation of a batch, with all
//! their mutation fields; the request is fingerprinted (SHA-256 of each operation's text, name,
//! variables (object keys sorted) and uploaded files) so that the same key with another request is refused.
//! Queries ignore the header, and so do anonymous callers (who may not change anything).
//!
//! A keyed request runs in a task of its own: a client that hangs up (or a request timeout)
//! does not cut it short between its commit and keeping its answer, so the retry finds the
//! answer. The task is not bounded by the request timeout, so it bounds itself: its operations
//! stop when the key's hold (the lease, as long as the request timeout) ends, before a retry
//! could take the key over. An operation cut short rolls its transaction back; the key is then
//! forgotten, or, when earlier fields of the request committed, reported lost. So at most one
//! run per key is ever at work, and none outlives its lease.

use async_graphql::{BatchRequest, BatchResponse};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use super::AppState;
use super::refusal::{NO_STORE, error_response};
use crate::graphql::error::INTERNAL_SERVER_ERROR;
use crate::graphql::execute_batch;
use crate::service::auth::Actor;
use crate::service::idempotency::{Admission, Claim, INVALID_KEY, IdempotencyKey};
use crate::telemetry::Metrics;

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on an answer sent again for a retry (`from_static` is checked when compiling).
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The key a request runs under: `Ok(None)` when it has none, or when it does not apply (a
/// query, an anonymous caller); `Err` with the refusal of a malformed one.
pub(super) fn key(
    state: &AppState,
    headers: &HeaderMap,
    actor: &Actor,
    mutation: bool,
    media_type: &'static str,
) -> Result<Option<CallerKey>, Box<Response>> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let Some(caller) = actor.subject.clone().filter(|_| mutation) else {
        return Ok(None);
    };
    match raw.to_str().ok().and_then(IdempotencyKey::parse) {
        Some(key) => Ok(Some(CallerKey { caller, key })),
        None => Err(Box::new(error_response(
            &state.metrics,
            StatusCode::BAD_REQUEST,
            INVALID_KEY,
            "IDEMPOTENCY_KEY_INVALID",
            media_type,
        ))),
    }
}

/// A caller's idempotency key.
pub(super) struct CallerKey {
    /// The token's subject.
    caller: String,
    key: IdempotencyKey,
}

/// Runs a keyed request in a task of its own, from holding its key to keeping its answer (a
/// client that hangs up cuts nothing short); `Err` with the answer sent instead of running it:
/// the first answer again, or a refusal.
pub(super) async fn run(
    state: &AppState,
    key: CallerKey,
    batch: BatchRequest,
    media_type: &'static str,
) -> Result<BatchResponse, Box<Response>> {
    let state_for_task = state.clone();
    let task = tokio::spawn(async move {
        let state = state_for_task;
        // The hold ends one lease after it is taken, which is after this instant.
        let deadline = tokio::time::Instant::now() + state.idempotency.lease();
        let claim = admit(&state, &key, &batch, media_type).await?;
        let batch = match batch {
            BatchRequest::Single(request) => BatchRequest::Single(request.data(claim.clone())),
            BatchRequest::Batch(requests) => BatchRequest::Batch(
                requests
                    .into_iter()
                    .map(|request| request.data(claim.clone()))
                    .collect(),
            ),
        };
        let Ok(response) =
            tokio::time::timeout_at(deadline, execute_batch(&state.schema, batch)).await
        else {
            state.idempotency.finish(&claim, None).await;
            return Err(Box::new(error_response(
                &state.metrics,
                StatusCode::GATEWAY_TIMEOUT,
                "the request took too long",
                "TIMEOUT",
                media_type,
            )));
        };
        let answer = serde_json::to_value(&response)
            .ok()
            .filter(|value| !has_unexpected_failure(value))
            .map(|value| value.to_string());
        state.idempotency.finish(&claim, answer.as_deref()).await;
        Ok(response)
    });
    task.await.unwrap_or_else(|error| {
        tracing::error!(error = %error, "an idempotent request's task failed");
        Err(Box::new(internal(&state.metrics)))
    })
}

/// Holds the key for this request, or says what to answer instead.
async fn admit(
    state: &AppState,
    key: &CallerKey,
    batch: &BatchRequest,
    media_type: &'static str,
) -> Result<Claim, Box<Response>> {
    let refuse = |status, message: &str, code| {
        error_response(&state.metrics, status, message, code, media_type)
    };
    let unexpected = |error: &(dyn std::error::Error + 'static)| {
        crate::graphql::error::log_unexpected(error);
        Box::new(internal(&state.metrics))
    };
    let fingerprint = fingerprint(batch)
        .await
        .map_err(|error| unexpected(&error))?;
    let admission = state
        .idempotency
        .admit(&key.caller, &key.key, &fingerprint)
        .await
        .map_err(|error| unexpected(&error))?;
    let answer = match admission {
        Admission::Run(claim) => return Ok(claim),
        Admission::Replay(body) => replay(body, media_type),
        Admission::Reused => refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this Idempotency-Key was used with another request; use a new key for a new request",
            "IDEMPOTENCY_KEY_REUSED",
        ),
        Admission::InUse { retry_after } => {
            let mut answer = refuse(
                StatusCode::CONFLICT,
                "a request with this Idempotency-Key is still running; retry after a while",
                "IDEMPOTENCY_KEY_IN_USE",
            );
            let seconds = retry_after.as_secs_f64().ceil() as u64;
            answer
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
            answer
        }
        Admission::Lost => refuse(
            StatusCode::CONFLICT,
            "the request with this Idempotency-Key was applied, but its answer was lost; do not send it again, read the current state instead",
            "IDEMPOTENCY_ANSWER_LOST",
        ),
    };
    Err(Box::new(answer))
}

fn internal(metrics: &Metrics) -> Response {
    error_response(
        metrics,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal server error",
        INTERNAL_SERVER_ERROR,
        super::answer::JSON,
    )
}

/// The kept answer, as it was first sent (with the status it was first sent with).
fn replay(body: String, media_type: &'static str) -> Response {
    let failed_before_execution = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|answer| {
            let single = answer.as_object()?;
            let no_data = single.get("data").is_none_or(serde_json::Value::is_null);
            let errors = single
                .get("errors")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|errors| !errors.is_empty());
            Some(no_data && errors)
        })
        .unwrap_or(false);
    (
        super::answer::answer_status(media_type, failed_before_execution),
        [
            (CONTENT_TYPE, HeaderValue::from_static(media_type)),
            (CACHE_CONTROL, HeaderValue::from_static(NO_STORE)),
            (REPLAYED, HeaderValue::from_static("true")),
        ],
        body,
    )
        .into_response()
}

/// Whether a serialized answer (one response or a batch's) carries an unexpected failure.
fn has_unexpected_failure(answer: &serde_json::Value) -> bool {
    let responses = match answer {
        serde_json::Value::Array(responses) => responses.iter().collect(),
        single => vec![single],
    };
    responses
        .iter()
        .filter_map(|response| response["errors"].as_array())
        .flatten()
        .any(|error| error["extensions"]["code"] == INTERNAL_SERVER_ERROR)
}

/// SHA-256 of a request: each operation's text, name and variables (object keys sorted, so
/// that a client re-encoding the same variables sends the same request), and the bytes of its
/// uploaded files (temporary files, read by position on a blocking thread: up to
/// `UPLOAD_MAX_BYTES` for each of the request's at most 10 files).
async fn fingerprint(batch: &BatchRequest) -> std::io::Result<String> {
    let requests: Vec<&async_graphql::Request> = match batch {
        BatchRequest::Single(request) => vec![request],
        BatchRequest::Batch(requests) => requests.iter().collect(),
    };
    let is_batch = matches!(batch, BatchRequest::Batch(_));
    let mut parts = Vec::with_capacity(requests.len());
    for request in requests {
        let variables = serde_json::to_value(&request.variables).unwrap_or_default();
        let text = serde_json::json!([request.query, request.operation_name, sorted(variables)]);
        // Uploaded files are part of the request: another file is another request.
        let files = request
            .uploads
            .iter()
            .map(|upload| upload.content.try_clone())
            .collect::<std::io::Result<Vec<_>>>()?;
        parts.push((text.to_string(), files));
    }
    tokio::task::spawn_blocking(move || {
        let mut hash = Sha256::new();
        if is_batch {
            hash.update(b"batch\0");
        }
        for (text, files) in parts {
            hash.update(text.as_bytes());
            hash.update(b"\0");
            for file in &files {
                hash.update(hash_file(file)?);
            }
        }
        Ok(hex::encode(hash.finalize()))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// SHA-256 of a file's bytes, read by position: the upload's reader still starts at its
/// beginning afterwards.
fn hash_file(file: &std::fs::File) -> std::io::Result<[u8; 32]> {
    use std::os::unix::fs::FileExt as _;
    let mut hash = Sha256::new();
    let mut block = vec![0; 256 * 1024];
    let mut offset = 0;
    loop {
        let read = file.read_at(&mut block, offset)?;
        if read == 0 {
            return Ok(hash.finalize().into());
        }
        hash.update(&block[..read]);
        offset += read as u64;
    }
}

/// `value` with the keys of every object in order.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            // Always wrapped: an object and an array of pairs never hash alike.
            let pairs: Vec<_> = entries
                .into_iter()
                .map(|(k, v)| serde_json::json!([k, sorted(v)]))
                .collect();
            serde_json::json!({ "object": pairs })
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}
