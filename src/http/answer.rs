//! What a GraphQL answer is sent as (GraphQL over HTTP): the media type the client accepts, and
//! the status that goes with it. Executed answers, replayed ones (idempotent mutations) and
//! refusals all use it.

use axum::http::header::ACCEPT;
use axum::http::{HeaderMap, StatusCode};

/// The GraphQL-over-HTTP media type.
pub(super) const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
/// The classic media type, for clients that do not ask for the other.
pub(super) const JSON: &str = "application/json";

/// The media type of the answer to a request with `headers`.
pub(super) fn response_media_type(headers: &HeaderMap) -> &'static str {
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

/// The HTTP status of an executed answer: under the GraphQL-over-HTTP media type, a single
/// request that failed before execution (no data, only errors) is a 400; everything else a 200.
pub(super) fn answer_status(media_type: &str, failed_before_execution: bool) -> StatusCode {
    if media_type == GRAPHQL_RESPONSE_JSON && failed_before_execution {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}
