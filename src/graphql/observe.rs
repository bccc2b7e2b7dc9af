//! Operation metrics: how long each GraphQL operation takes, by operation name, and which
//! errors its response carries, by `extensions.code`.
//!
//! [`super::execute`] observes every request, batched or not, from the start of parsing to the
//! finished response. The operation's name is the one async-graphql executes (the request's
//! `operationName`, or the name of the document's only operation); when the document does not
//! parse, the request's `operationName`. The library's own parse and validation errors carry no
//! code: they are counted as `GRAPHQL_PARSE_FAILED` and `GRAPHQL_VALIDATION_FAILED` (the codes
//! Apollo uses), any other error without a code as `UNCODED`. A response that failed before
//! execution (no data, and errors with no path and no code) failed validation.

use std::time::Duration;

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument};
use async_graphql::{Response, ServerError};

use crate::telemetry::Metrics;

pub const GRAPHQL_PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
pub const GRAPHQL_VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
pub const UNCODED: &str = "UNCODED";

/// The name of a document's only named operation (what async-graphql executes when the
/// request names none).
pub fn only_operation_name(document: &ExecutableDocument) -> Option<String> {
    match &document.operations {
        DocumentOperations::Multiple(operations) if operations.len() == 1 => {
            operations.keys().next().map(ToString::to_string)
        }
        _ => None,
    }
}

/// Records one finished request: its latency under `operation`, and each of its errors.
/// `parse_failed`: the document did not parse.
pub fn record(
    metrics: &Metrics,
    operation: Option<&str>,
    elapsed: Duration,
    response: &Response,
    parse_failed: bool,
) {
    metrics.operation(operation, elapsed);
    let uncoded = if parse_failed {
        GRAPHQL_PARSE_FAILED
    } else if failed_before_execution(response) {
        GRAPHQL_VALIDATION_FAILED
    } else {
        UNCODED
    };
    for error in &response.errors {
        metrics.graphql_error(code_of(error).unwrap_or(uncoded));
    }
}

/// No data and only errors that belong to no field and carry no code: the library refused the
/// document before executing it.
fn failed_before_execution(response: &Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response
            .errors
            .iter()
            .all(|error| error.path.is_empty() && code_of(error).is_none())
}

/// An error's `extensions.code`, when it has one.
fn code_of(error: &ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code),
        async_graphql::Value::Enum(code) => Some(code.as_str()),
        _ => None,
    }
}
