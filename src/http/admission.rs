//! Admission: what a request must pass once its documents are parsed and before any of them
//! runs, and what it may leave behind once it ran.
//!
//! Before: each document is parsed once (or taken from the parsed-document cache), the whole
//! request is costed against one budget (the sum over a batch's operations, with `_entities`
//! counted per representation: see [`crate::graphql::limits::cost`]), and `_service` is refused
//! to anonymous callers when introspection is for admins only and no router secret guards the
//! endpoint. A refusal is one error for the whole request, before anything is read.
//!
//! After: a parsed document is cached, and a persisted query registered, only when its response
//! shows that it passed the limits and the library's validation. A document refused with
//! `LIMIT_EXCEEDED` or a validation error leaves nothing behind: anonymous clients cannot fill
//! either cache with texts that never run.

use async_graphql::BatchRequest;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use axum::http::StatusCode;
use axum::response::Response;

use super::AppState;
use super::refusal::error_response;
use crate::graphql::limits::{self, LIMIT_EXCEEDED};
use crate::graphql::{Answer, BatchAnswer, Introspection, passed_validation};
use crate::service::auth::{Actor, Refused};
use crate::telemetry::Metrics;

/// A request whose documents are parsed and attached, and which may run.
pub(super) struct Admitted {
    pub batch: BatchRequest,
    /// Whether an operation that would run is a mutation (refused over GET).
    pub mutation: bool,
    pub documents: PendingDocuments,
}

/// Per request of a batch: the parsed document to cache if its response shows that it was
/// valid (`None`: cached already, too large, or not parsed).
pub(super) struct PendingDocuments(Vec<Option<(String, ExecutableDocument)>>);

/// Why a request may not run.
pub(super) enum Refusal {
    TooCostly {
        cost: usize,
        budget: usize,
    },
    /// `_service` refused: `UNAUTHENTICATED` without a token, `FORBIDDEN` with one.
    Service(Refused),
}

impl Refusal {
    pub fn respond(&self, metrics: &Metrics, media_type: &'static str) -> Response {
        match self {
            Refusal::TooCostly { cost, budget } => error_response(
                metrics,
                StatusCode::BAD_REQUEST,
                &format!(
                    "the request would cost {cost} (each `_entities` representation and each operation of a batch counts); at most {budget} is allowed"
                ),
                LIMIT_EXCEEDED,
                media_type,
            ),
            Refusal::Service(Refused::Unauthenticated) => error_response(
                metrics,
                StatusCode::UNAUTHORIZED,
                "`_service` is served to the router and to admins only: authentication required",
                "UNAUTHENTICATED",
                media_type,
            ),
            Refusal::Service(Refused::Forbidden) => error_response(
                metrics,
                StatusCode::FORBIDDEN,
                "`_service` is served to the router and to admins only",
                "FORBIDDEN",
                media_type,
            ),
        }
    }
}

/// Parses and costs every request of `batch` for `actor`.
pub(super) fn admit(
    state: &AppState,
    batch: BatchRequest,
    actor: &Actor,
) -> Result<Admitted, Refusal> {
    let (single, requests) = match batch {
        BatchRequest::Single(request) => (true, vec![request]),
        BatchRequest::Batch(requests) => (false, requests),
    };
    let protection = &state.protection;
    let mut admitted = Vec::with_capacity(requests.len());
    let mut to_keep = Vec::with_capacity(requests.len());
    let (mut cost, mut mutation, mut asks_for_service) = (0usize, false, false);
    for mut request in requests {
        let Some(parsed) = state.documents.parse(&request.query) else {
            // The executor reports the syntax error.
            to_keep.push(None);
            admitted.push(request);
            continue;
        };
        let document = &parsed.document;
        let operation = request.operation_name.as_deref();
        // The per-document limits are checked once, by the executor (`graphql::execute`): a
        // document over them gets a response without data or field errors, so
        // `keep_valid` does not cache it.
        cost = cost.saturating_add(limits::cost(document, operation, &request.variables));
        mutation |= is_mutation(document, operation);
        asks_for_service |= limits::selects_root_field(document, "_service");
        to_keep.push(parsed.attach(&mut request));
        admitted.push(request);
    }
    if cost > protection.max_cost {
        return Err(Refusal::TooCostly {
            cost,
            budget: protection.max_cost,
        });
    }
    if asks_for_service && !may_read_service(state, actor) {
        return Err(Refusal::Service(Refused::of(actor)));
    }
    let batch = match (single, admitted.pop()) {
        (true, Some(request)) if admitted.is_empty() => BatchRequest::Single(request),
        (_, last) => {
            admitted.extend(last);
            BatchRequest::Batch(admitted)
        }
    };
    Ok(Admitted {
        batch,
        mutation,
        documents: PendingDocuments(to_keep),
    })
}

/// `_service { sdl }` shows the whole schema, internal fields included, so it follows
/// introspection: open when introspection is; otherwise for admins, and for every caller
/// when a router secret guards `/graphql` (then every caller is the router, which composes
/// the supergraph from it). `disable_introspection` does not cover it.
fn may_read_service(state: &AppState, actor: &Actor) -> bool {
    state.schema.data::<Introspection>() != Some(&Introspection::AdminsOnly)
        || state.protection.router_secret.is_some()
        || actor.is_admin()
}

/// Whether the operation a request would run is a mutation.
fn is_mutation(document: &ExecutableDocument, wanted: Option<&str>) -> bool {
    match &document.operations {
        DocumentOperations::Single(op) => op.node.ty == OperationType::Mutation,
        DocumentOperations::Multiple(ops) => ops.iter().any(|(name, op)| {
            wanted.is_none_or(|w| w == name.as_str()) && op.node.ty == OperationType::Mutation
        }),
    }
}

/// Whether an answer ran, i.e. its document passed the limits and validation (a plan's
/// answer always did).
pub(super) fn ran(answer: &Answer) -> bool {
    answer.executed().is_none_or(passed_validation)
}

impl PendingDocuments {
    /// Caches the parsed documents whose responses show they were valid.
    pub fn keep_valid(self, state: &AppState, response: &BatchAnswer) {
        for (to_keep, answer) in self.0.into_iter().zip(response.answers()) {
            if ran(answer) {
                state.documents.keep(to_keep);
            }
        }
    }
}
