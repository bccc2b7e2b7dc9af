//! The GraphQL schema: types, the query root, request-scoped loaders, federation entities,
//! limits and error mapping. It knows nothing of HTTP: the transport hands it a request and an
//! [`Actor`], nothing else.
//!
//! # Layout
//! - [`query`]: the `Query` root and the entity resolvers behind `_entities`.
//! - [`admin`]: the admin tool's queries: the audit log, hotels without a main image.
//! - [`mutation`]: the `Mutation` root, its inputs and payloads.
//! - [`ingest`]: the inputs, payloads and resolvers of `importImages` and `upsertPartner`.
//! - [`payload`]: what every mutation shares: `UserError`, input ID parsing, the caller, the
//!   services, and sorting a use case's outcome into user errors and top-level errors.
//! - [`types`]: `Hotel`, `Image`, `Partner` and their value types.
//! - [`connection`]: Relay connections and cursors.
//! - [`loader`]: request-scoped batched loading.
//! - [`limits`]: per-document limits checked right after parsing.
//! - [`plan`]: compiled plans for the hot read operations (the executor's fast path).
//! - [`sdl`]: the federation SDL as published, with the router's directives, and `_service`.
//! - [`observe`]: operation latency and error metrics.
//! - [`error`]: how failures reach clients.

pub mod admin;
pub mod connection;
pub mod documents;
pub mod error;
pub mod ingest;
pub mod limits;
pub mod loader;
pub mod mutation;
pub mod observe;
pub mod payload;
pub mod plan;
pub mod query;
pub mod sdl;
pub mod types;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::{EmptySubscription, SDLExportOptions, Schema, SchemaBuilder};

use crate::service::auth::Actor;
use crate::service::catalog::Catalog;
use crate::service::ingest::Ingestor;
use crate::service::manage::Manager;
use crate::service::process::Processor;
use crate::service::purge::Purger;
use crate::service::upload::Uploader;
use crate::telemetry::Metrics;
pub use mutation::Mutation;
pub use payload::RequestId;
pub use query::Query;
pub use types::Media;

pub type AppSchema = Schema<Query, Mutation, EmptySubscription>;

/// The roots and federation: all the published SDL depends on.
fn schema_builder() -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query, Mutation, EmptySubscription).enable_federation()
}

/// What the schema needs from the process.
pub struct SchemaDeps {
    pub catalog: Catalog,
    pub manager: Manager,
    /// The use cases on the object store (absent in a schema built only to export the SDL).
    pub stored: StoredUseCases,
    pub ingestor: Ingestor,
    pub media: Media,
    /// How long a loader batch waits for more keys.
    pub loader_delay: Duration,
    pub limits: QueryLimits,
    /// Who may introspect the schema.
    pub introspection: Introspection,
    /// Where operation latency, errors and loader batch sizes are recorded.
    pub metrics: Metrics,
    /// Whether plan-able operations are answered by their compiled plans ([`plan`]); off, every
    /// operation goes through the executor (the plans' analysis still feeds its loaders).
    pub compiled_plans: bool,
}

/// The use cases that work on the object store. A schema built without them (`export-schema`,
/// or with no store) answers their mutations with an internal error.
#[derive(Default)]
pub struct StoredUseCases {
    /// `uploadImage` and `removeUpload`.
    pub uploader: Option<Uploader>,
    /// `purgeImage`.
    pub purger: Option<Purger>,
    /// `retryImageProcessing`: whether or not this process runs workers, a retry turns images
    /// PENDING for whichever worker of the deployment is free.
    pub processor: Option<Processor>,
}

/// Limits on one operation.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub max_depth: usize,
    /// Complexity counts a field as 1 and a list field as its page size times its children.
    pub max_complexity: usize,
    /// Directives at one location.
    pub max_directives: usize,
    pub document: limits::DocumentLimits,
}

/// Who may introspect the schema (and get field suggestions in error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Introspection {
    /// Everyone: the embedded default, for GraphiQL.
    Everyone,
    /// Admin tokens only: production. Suggestions are off for everyone.
    AdminsOnly,
}

/// Builds each request's loaders (kept in the schema's data).
struct LoaderFactory {
    catalog: Catalog,
    metrics: Metrics,
    delay: Duration,
}

/// The schema; fails when the published SDL cannot be made (a field of the directive table is
/// missing from the schema).
pub fn build_schema(deps: SchemaDeps) -> Result<AppSchema, sdl::SdlError> {
    let limits = deps.limits;
    let media = Arc::new(deps.media);
    // The SDL depends on the types only: a bare schema exports the same text.
    let bare = schema_builder().finish();
    let sdl = sdl::ServePublishedSdl::new(
        bare.sdl_with_options(SDLExportOptions::new().federation().compose_directive()),
        published_sdl(&bare)?,
    );
    let mut builder = schema_builder()
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .limit_directives(limits.max_directives)
        .data(AroundExecution {
            limits: limits.document,
            max_complexity: limits.max_complexity,
            sdl,
            metrics: deps.metrics.clone(),
            plans: plan::Plans::default(),
            compiled_plans: deps.compiled_plans,
            media: media.clone(),
        })
        .data(media)
        .data(deps.catalog.clone())
        .data(deps.manager)
        .data(deps.ingestor)
        .data(deps.introspection)
        .data(deps.metrics.clone())
        .data(LoaderFactory {
            catalog: deps.catalog,
            metrics: deps.metrics,
            delay: deps.loader_delay,
        });
    let StoredUseCases {
        uploader,
        purger,
        processor,
    } = deps.stored;
    if let Some(uploader) = uploader {
        builder = builder.data(uploader);
    }
    if let Some(purger) = purger {
        builder = builder.data(purger);
    }
    if let Some(processor) = processor {
        builder = builder.data(processor);
    }
    if deps.introspection == Introspection::AdminsOnly {
        builder = builder.disable_suggestions();
    }
    Ok(builder.finish())
}

/// What [`execute`] does around the library's execution (kept in the schema's data).
struct AroundExecution {
    limits: limits::DocumentLimits,
    /// The schema's complexity limit, which a plan must be sure to respect.
    max_complexity: usize,
    sdl: sdl::ServePublishedSdl,
    metrics: Metrics,
    /// Compiled plans of the documents that ran and passed validation.
    plans: plan::Plans,
    compiled_plans: bool,
    media: Arc<Media>,
}

/// The answer to one request: the executor's, or a plan's JSON (which carries no errors: a plan
/// that would answer one declines).
pub enum Answer {
    Executed(async_graphql::Response),
    /// The whole JSON body of the response (`{"data":...}`).
    Planned(Vec<u8>),
}

/// The answers to a request or a batch.
pub enum BatchAnswer {
    Single(Answer),
    Batch(Vec<Answer>),
}

impl From<async_graphql::BatchResponse> for BatchAnswer {
    fn from(response: async_graphql::BatchResponse) -> Self {
        match response {
            async_graphql::BatchResponse::Single(r) => Self::Single(Answer::Executed(r)),
            async_graphql::BatchResponse::Batch(rs) => {
                Self::Batch(rs.into_iter().map(Answer::Executed).collect())
            }
        }
    }
}

impl Answer {
    /// What `Cache-Control` the answer allows: a plan shows public fields only, which carry no
    /// hints (the library's default).
    pub fn cache_control(&self) -> async_graphql::CacheControl {
        match self {
            Answer::Executed(response) => response.cache_control,
            Answer::Planned(_) => async_graphql::CacheControl::default(),
        }
    }

    pub fn is_ok(&self) -> bool {
        match self {
            Answer::Executed(response) => response.is_ok(),
            Answer::Planned(_) => true,
        }
    }

    /// The executor's response; `None` for a plan's answer (which ran, passed validation and
    /// has no errors).
    pub fn executed(&self) -> Option<&async_graphql::Response> {
        match self {
            Answer::Executed(response) => Some(response),
            Answer::Planned(_) => None,
        }
    }

    /// Appends the answer's JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Answer::Executed(response) => serde_json::to_writer(out, response),
            Answer::Planned(body) => {
                out.extend_from_slice(body);
                Ok(())
            }
        }
    }
}

impl BatchAnswer {
    pub fn answers(&self) -> &[Answer] {
        match self {
            BatchAnswer::Single(answer) => std::slice::from_ref(answer),
            BatchAnswer::Batch(answers) => answers,
        }
    }

    /// Whether the schema's cache hints let shared caches keep the answers: every answer is
    /// public and none is `no_cache` (what `BatchResponse::cache_control` merges to).
    pub fn publicly_cacheable(&self) -> bool {
        self.answers().iter().all(|answer| {
            let hints = answer.cache_control();
            hints.public && hints.max_age != -1
        })
    }

    pub fn is_ok(&self) -> bool {
        self.answers().iter().all(Answer::is_ok)
    }

    /// The JSON body: one answer, or an array of them.
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(4096);
        match self {
            BatchAnswer::Single(answer) => answer.write_json(&mut out)?,
            BatchAnswer::Batch(answers) => {
                out.push(b'[');
                for (i, answer) in answers.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    answer.write_json(&mut out)?;
                }
                out.push(b']');
            }
        }
        Ok(out)
    }
}

/// Executes one request (prepared with [`prepare`]) with the library's executor only: see
/// [`answer`].
pub async fn execute(
    schema: &AppSchema,
    request: async_graphql::Request,
) -> async_graphql::Response {
    match run(schema, request, false).await {
        Answer::Executed(response) => response,
        // (Not reached: plans are not allowed here.)
        Answer::Planned(_) => {
            async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(
                "internal server error",
                None,
            )])
        }
    }
}

/// Answers one request (prepared with [`prepare`]): the document limits right after parsing,
/// then the compiled plan of a document that ran before and is plan-able, else the library's
/// validation and execution; the published SDL in `_service`, and the operation's metrics.
///
/// These run around `Schema::execute` rather than as async-graphql extensions: with any
/// extension installed, the library resolves every field through the extension chain (a boxed
/// future per extension and two registry lookups per field), a sizeable share of the CPU of a
/// search page (see BENCHMARKS.md).
pub async fn answer(schema: &AppSchema, request: async_graphql::Request) -> Answer {
    run(schema, request, true).await
}

async fn run(
    schema: &AppSchema,
    mut request: async_graphql::Request,
    plans_allowed: bool,
) -> Answer {
    let Some(around) = schema.data::<AroundExecution>() else {
        return Answer::Executed(schema.execute(request).await);
    };
    let started = Instant::now();
    let mut operation = request.operation_name.clone();
    // (The document borrows the request mutably: the variables step aside meanwhile.)
    let variables = std::mem::take(&mut request.variables);
    let checked = request.parsed_query().map(|document| {
        if operation.is_none() {
            operation = observe::only_operation_name(document);
        }
        limits::check(document, &variables, &around.limits)
    });
    request.variables = variables;
    let (response, parse_failed) = match checked {
        // The library reports the syntax error.
        Err(_) => (schema.execute(request).await, true),
        Ok(Err(error)) => (async_graphql::Response::from_errors(vec![error]), false),
        Ok(Ok(())) => match planned_or_executed(schema, around, request, plans_allowed).await {
            Answer::Planned(body) => {
                around
                    .metrics
                    .operation(operation.as_deref(), started.elapsed());
                around.metrics.planned_answer();
                return Answer::Planned(body);
            }
            Answer::Executed(response) => (response, false),
        },
    };
    observe::record(
        &around.metrics,
        operation.as_deref(),
        started.elapsed(),
        &response,
        parse_failed,
    );
    Answer::Executed(response)
}

/// A document within the limits: its plan's answer when it has one that does not decline,
/// else the executor's, with the request's loaders fed from the plan's analysis. A plan is
/// compiled on a document's first run and kept once the executor shows it passed validation.
async fn planned_or_executed(
    schema: &AppSchema,
    around: &AroundExecution,
    mut request: async_graphql::Request,
    plans_allowed: bool,
) -> Answer {
    let operation = request.operation_name.clone();
    let cached = around.plans.get(&request.query, operation.as_deref());
    let catalog = schema.data::<Catalog>();
    if let (Some(Some(plan)), Some(catalog)) = (&cached, catalog)
        && plans_allowed
        && around.compiled_plans
        && let Ok(loaded) = plan.load(catalog, &request.variables).await
        && let Ok(body) = plan.write(&loaded, &request.variables, &around.media)
    {
        return Answer::Planned(body);
    }
    let compiled = match &cached {
        Some(plan) => plan.clone(),
        None => match request.parsed_query() {
            Ok(document) => plan::compile(document, operation.as_deref(), around.max_complexity),
            Err(_) => None,
        },
    };
    if let Some(factory) = schema.data::<LoaderFactory>() {
        let loaders = loader::loaders(
            factory.catalog.clone(),
            factory.metrics.clone(),
            factory.delay,
        );
        // Failures are left to the resolvers, which load again and report them.
        if let Some(plan) = &compiled
            && let Ok(loaded) = plan.load(&factory.catalog, &request.variables).await
        {
            loaded.feed(&loaders).await;
        }
        request = request.data(loaders);
    }
    let query = cached.is_none().then(|| request.query.clone());
    let asks_for_sdl = sdl::ServePublishedSdl::concerns(&request.query);
    let mut response = schema.execute(request).await;
    if asks_for_sdl {
        around.sdl.patch(&mut response);
    }
    if let Some(query) = query
        && passed_validation(&response)
    {
        around.plans.keep(&query, operation.as_deref(), compiled);
    }
    Answer::Executed(response)
}

/// Whether `response` ran, i.e. its document passed the limits and validation: it has data,
/// or errors of fields (a refusal before execution has neither).
pub fn passed_validation(response: &async_graphql::Response) -> bool {
    response.data != async_graphql::Value::Null
        || response.errors.iter().any(|error| !error.path.is_empty())
}

/// Executes a batch with the library's executor: each request through [`execute`], one after
/// the other (as the library's `execute_batch` does).
pub async fn execute_batch(
    schema: &AppSchema,
    batch: async_graphql::BatchRequest,
) -> async_graphql::BatchResponse {
    match batch {
        async_graphql::BatchRequest::Single(request) => {
            async_graphql::BatchResponse::Single(execute(schema, request).await)
        }
        async_graphql::BatchRequest::Batch(requests) => {
            let mut responses = Vec::with_capacity(requests.len());
            for request in requests {
                responses.push(execute(schema, request).await);
            }
            async_graphql::BatchResponse::Batch(responses)
        }
    }
}

/// Answers a batch: each request through [`answer`], one after the other.
pub async fn answer_batch(schema: &AppSchema, batch: async_graphql::BatchRequest) -> BatchAnswer {
    match batch {
        async_graphql::BatchRequest::Single(request) => {
            BatchAnswer::Single(answer(schema, request).await)
        }
        async_graphql::BatchRequest::Batch(requests) => {
            let mut answers = Vec::with_capacity(requests.len());
            for request in requests {
                answers.push(answer(schema, request).await);
            }
            BatchAnswer::Batch(answers)
        }
    }
}

/// Attaches what one request needs: its caller and whether it may introspect ([`execute`]
/// gives it its own loaders, never shared between requests).
pub fn prepare(
    schema: &AppSchema,
    request: async_graphql::Request,
    actor: Actor,
    request_id: Option<String>,
) -> async_graphql::Request {
    let introspection_allowed =
        actor.is_admin() || schema.data::<Introspection>() == Some(&Introspection::Everyone);
    let mut request = request.data(actor).data(RequestId(request_id));
    if !introspection_allowed {
        request = request.disable_introspection();
    }
    request
}

/// The federation SDL as published to the schema registry (and committed as `schema.graphql`),
/// the same text `_service { sdl }` answers.
pub fn published_sdl(schema: &AppSchema) -> Result<String, sdl::SdlError> {
    sdl::publishable(&schema.sdl_with_options(SDLExportOptions::new().federation()))
}
