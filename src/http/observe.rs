//! What the HTTP layer tells operators about each request: its request ID, the W3C trace
//! context the router sent, a span holding both, one log line when it is answered, and the
//! request counter of `/metrics`.
//!
//! - `x-request-id`: a well-formed incoming ID is kept (the router's, so logs line up across
//!   services), anything else is replaced by a fresh UUID; the answer carries the ID back.
//! - `traceparent`: parsed as the W3C Trace Context says; its trace ID goes into the span. An
//!   invalid header is ignored, as the spec asks.
//! - The span holds the method, the path (never the query string: a GET query may hold
//!   variables) and these two IDs; no header is logged, so neither is a token.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Response, header::HeaderName};
use axum::middleware::Next;
use axum::response::Response as AxumResponse;
use tower_http::request_id::RequestId;
use tower_http::trace::{MakeSpan, OnResponse};
use tracing::Span;

use crate::telemetry::Metrics;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Longest incoming request ID kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The `route` label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Whether an incoming request ID is kept: 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII
/// characters other than quotes and backslashes, so that it shows as is in any log format.
pub fn is_acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\'))
}

/// Drops an unacceptable `x-request-id` before the request ID layer, which then makes a new
/// one.
pub async fn drop_bad_request_id(mut request: Request) -> Request {
    let bad = request
        .headers()
        .get(REQUEST_ID)
        .is_some_and(|value| !is_acceptable_request_id(value));
    if bad {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

/// The fields of a W3C `traceparent` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent<'a> {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: &'a str,
    /// 16 lowercase hex digits, not all zero: the caller's span.
    pub parent_id: &'a str,
    pub sampled: bool,
}

/// Parses `version-traceid-parentid-flags` (W3C Trace Context, level 1). Version `00` has
/// exactly these four fields; a later version may append more after a `-`, which are ignored.
/// Version `ff`, upper-case hex and all-zero IDs are invalid.
pub fn parse_traceparent(value: &str) -> Option<TraceParent<'_>> {
    let (head, rest) = value.split_at_checked(55)?;
    let mut fields = head.split('-');
    let version = fields.next()?;
    let trace_id = fields.next()?;
    let parent_id = fields.next()?;
    let flags = fields.next()?;
    let well_formed = is_lower_hex(version, 2)
        && version != "ff"
        && is_lower_hex(trace_id, 32)
        && is_lower_hex(parent_id, 16)
        && is_lower_hex(flags, 2)
        && fields.next().is_none();
    let tail_ok = if version == "00" {
        rest.is_empty()
    } else {
        rest.is_empty() || rest.starts_with('-')
    };
    if !well_formed || !tail_ok || is_all_zero(trace_id) || is_all_zero(parent_id) {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(TraceParent {
        trace_id,
        parent_id,
        sampled: flags & 1 == 1,
    })
}

fn is_lower_hex(field: &str, len: usize) -> bool {
    field.len() == len
        && field
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_all_zero(field: &str) -> bool {
    field.bytes().all(|b| b == b'0')
}

/// Paths of health checks and scrapes: their request lines are logged at debug level, so that
/// probes every few seconds do not drown the log.
pub const PROBE_PATHS: &[&str] = &["/health/live", "/health/ready", "/metrics"];

/// The span of one request, `request{method, path, request_id, trace_id}`; named `probe`
/// instead for [`PROBE_PATHS`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        let method = request.method();
        let path = request.uri().path();
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("");
        let span = if PROBE_PATHS.contains(&path) {
            tracing::info_span!(
                PROBE_SPAN,
                %method,
                path,
                request_id,
                trace_id = tracing::field::Empty,
            )
        } else {
            tracing::info_span!(
                "request",
                %method,
                path,
                request_id,
                trace_id = tracing::field::Empty,
            )
        };
        let trace_id = request
            .headers()
            .get(TRACEPARENT)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_traceparent)
            .map(|parent| parent.trace_id);
        if let Some(trace_id) = trace_id {
            span.record("trace_id", trace_id);
        }
        span
    }
}

const PROBE_SPAN: &str = "probe";

/// One line per answered request, in its span: status and latency (at debug level for probes,
/// warn for 5xx, info otherwise).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestLine;

impl<B> OnResponse<B> for RequestLine {
    fn on_response(self, response: &Response<B>, latency: Duration, span: &Span) {
        let status = response.status().as_u16();
        let latency_ms = latency.as_secs_f64() * 1000.0;
        let probe = span.metadata().is_some_and(|m| m.name() == PROBE_SPAN);
        if probe {
            tracing::debug!(status, latency_ms, "answered");
        } else if response.status().is_server_error() {
            tracing::warn!(status, latency_ms, "answered");
        } else {
            tracing::info!(status, latency_ms, "answered");
        }
    }
}

/// Counts each answered request by route pattern and status.
pub async fn count_requests(
    State(metrics): State<Metrics>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> AxumResponse {
    let response = next.run(request).await;
    let route = matched
        .as_ref()
        .map(MatchedPath::as_str)
        .unwrap_or(UNMATCHED_ROUTE);
    metrics.http_request(route, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_headers_are_parsed_as_w3c_trace_context_says() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            parse_traceparent(valid),
            Some(TraceParent {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
                parent_id: "00f067aa0ba902b7",
                sampled: true,
            })
        );
        let future_version = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
        assert_eq!(
            parse_traceparent(future_version).map(|p| (p.trace_id, p.sampled)),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", false))
        );
        let invalid = [
            "",
            "00",
            // Version ff is forbidden.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Upper-case hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // All-zero trace and parent IDs.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Wrong lengths.
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-011",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-0f067aa0ba902b7-01",
            // Version 00 has nothing after the flags.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // A later version appends with a dash only.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01extra",
            // Not hex; wrong separators; multibyte characters.
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
        ];
        for header in invalid {
            assert_eq!(parse_traceparent(header), None, "{header:?}");
        }
    }

    #[test]
    fn request_ids_are_kept_only_when_short_and_printable() {
        let cases = [
            ("3f1c2a9e-7d4b-4c1e-9a51-0c6f2d8b7e10", true),
            ("router:abc/123+x=", true),
            ("", false),
            ("has space", false),
            ("quote\"d", false),
            ("tab\there", false),
        ];
        for (id, kept) in cases {
            let value = HeaderValue::from_str(id).unwrap();
            assert_eq!(is_acceptable_request_id(&value), kept, "{id:?}");
        }
        let long = HeaderValue::from_str(&"a".repeat(MAX_REQUEST_ID_LEN + 1)).unwrap();
        assert!(!is_acceptable_request_id(&long));
    }
}
