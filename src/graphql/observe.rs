//! Operation metrics: how long each GraphQL operation takes, by operation name, and which
//! errors its response carries, by `extensions.code`.
//!
//! An extension sees every request of the schema, batched or not, from the start of parsing to
//! the finished response. The operation's name is the one async-graphql executes (the
//! request's `operationName`, or the name of the document's only operation); when execution is
//! never reached, the request's `operationName`. The library's own parse and validation errors
//! carry no code: they are counted as `GRAPHQL_PARSE_FAILED` and `GRAPHQL_VALIDATION_FAILED`
//! (the codes Apollo uses), any other error without a code as `UNCODED`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextRequest, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, Response, ServerError, ServerResult, ValidationResult, Variables};

use crate::telemetry::Metrics;

pub const GRAPHQL_PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
pub const GRAPHQL_VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
pub const UNCODED: &str = "UNCODED";

/// Builds each request's [`Observed`].
pub struct OperationMetrics(pub Metrics);

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Observed {
            metrics: self.0.clone(),
            state: Mutex::new(State::default()),
        })
    }
}

/// One request's observation.
struct Observed {
    metrics: Metrics,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The name to label the operation with, once known.
    operation: Option<String>,
    /// The code for errors without one: which phase failed.
    failed_phase: Option<&'static str>,
}

impl Observed {
    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Observed {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let elapsed = started.elapsed();
        let state = std::mem::take(&mut *self.state.lock().unwrap_or_else(PoisonError::into_inner));
        self.metrics.operation(state.operation.as_deref(), elapsed);
        for error in &response.errors {
            self.metrics
                .graphql_error(code_of(error).unwrap_or(state.failed_phase.unwrap_or(UNCODED)));
        }
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Some(name) = &request.operation_name {
            let name = name.clone();
            self.update(|state| state.operation = Some(name));
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let parsed = next.run(ctx, query, variables).await;
        if parsed.is_err() {
            self.update(|state| state.failed_phase = Some(GRAPHQL_PARSE_FAILED));
        }
        parsed
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let validated = next.run(ctx).await;
        if validated.is_err() {
            self.update(|state| state.failed_phase = Some(GRAPHQL_VALIDATION_FAILED));
        }
        validated
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let Some(name) = operation_name {
            let name = name.to_owned();
            self.update(|state| state.operation = Some(name));
        }
        next.run(ctx, operation_name).await
    }
}

/// An error's `extensions.code`, when it has one.
fn code_of(error: &ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code),
        async_graphql::Value::Enum(code) => Some(code.as_str()),
        _ => None,
    }
}
