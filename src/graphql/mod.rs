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
pub mod query;
pub mod sdl;
pub mod types;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::{EmptySubscription, SDLExportOptions, Schema, SchemaBuilder};

use crate::domain::catalog::{HotelId, ImageId};
use crate::service::auth::Actor;
use crate::service::catalog::Catalog;
use crate::service::ingest::Ingestor;
use crate::service::manage::Manager;
use crate::service::purge::Purger;
use crate::service::upload::Uploader;
use crate::telemetry::Metrics;
use loader::Loaders;
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
    /// `None`: uploads are refused (no object store, e.g. `export-schema`).
    pub uploader: Option<Uploader>,
    /// `purgeImage` (absent in a schema built only to export the SDL).
    pub purger: Option<Purger>,
    pub ingestor: Ingestor,
    pub media: Media,
    /// How long a loader batch waits for more keys.
    pub loader_delay: Duration,
    pub limits: QueryLimits,
    /// Who may introspect the schema.
    pub introspection: Introspection,
    /// Where operation latency, errors and loader batch sizes are recorded.
    pub metrics: Metrics,
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
            sdl,
            metrics: deps.metrics.clone(),
        })
        .data(Arc::new(deps.media))
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
    if let Some(uploader) = deps.uploader {
        builder = builder.data(uploader);
    }
    if let Some(purger) = deps.purger {
        builder = builder.data(purger);
    }
    if deps.introspection == Introspection::AdminsOnly {
        builder = builder.disable_suggestions();
    }
    Ok(builder.finish())
}

/// What [`execute`] does around the library's execution (kept in the schema's data).
struct AroundExecution {
    limits: limits::DocumentLimits,
    sdl: sdl::ServePublishedSdl,
    metrics: Metrics,
}

/// Executes one request (prepared with [`prepare`]): the document limits right after parsing,
/// the library's validation and execution, the published SDL in `_service`, and the
/// operation's metrics.
///
/// These run around `Schema::execute` rather than as async-graphql extensions: with any
/// extension installed, the library resolves every field through the extension chain (a boxed
/// future per extension and two registry lookups per field), a sizeable share of the CPU of a
/// search page (see BENCHMARKS.md).
pub async fn execute(
    schema: &AppSchema,
    mut request: async_graphql::Request,
) -> async_graphql::Response {
    let Some(around) = schema.data::<AroundExecution>() else {
        return schema.execute(request).await;
    };
    let started = Instant::now();
    let factory = schema.data::<LoaderFactory>();
    let loaders = factory.map(|factory| {
        loader::loaders(
            factory.catalog.clone(),
            factory.metrics.clone(),
            factory.delay,
        )
    });
    if let Some(loaders) = &loaders {
        request = request.data(loaders.clone());
    }
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
        Ok(checked) => match checked {
            Err(error) => (async_graphql::Response::from_errors(vec![error]), false),
            Ok(()) => {
                if let (Some(factory), Some(loaders)) = (factory, &loaders) {
                    prime(&factory.catalog, loaders, &mut request).await;
                }
                let asks_for_sdl = sdl::ServePublishedSdl::concerns(&request.query);
                let mut response = schema.execute(request).await;
                if asks_for_sdl {
                    around.sdl.patch(&mut response);
                }
                (response, false)
            }
        },
    };
    observe::record(
        &around.metrics,
        operation.as_deref(),
        started.elapsed(),
        &response,
        parse_failed,
    );
    response
}

/// Executes a batch: each request through [`execute`], one after the other (as the library's
/// `execute_batch` does).
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

/// Loads, before execution, the records the frontend's two hot operations will ask for, and
/// feeds them into the request's loaders (with "not found" for hotels that do not exist):
/// - the search page (`_entities` of `Hotel` representations): the hotels, and their main
///   images when the document selects `mainImage`;
/// - the hotel page (`hotel(id:)`): the hotel, its main image when selected, and the images of
///   its curated gallery when the document selects `gallery`.
///
/// Each kind is one call to the catalog (one statement per table on a cache miss).
///
/// Executed field by field, the library registers these keys a few at a time: the selection
/// set of each entity yields back to the scheduler after its first poll, and the list of
/// entities yields after two such yields. Alone on a core a request is polled again at once
/// and its loaders still see every key in one batch; under load other requests run in
/// between, the batch delay elapses, and the batches split (measured: 23 statements per search
/// page at 32 connections instead of 2). Primed, the resolvers find every record in the
/// request's loader cache: no batch runs, so no field waits for the batch delay's timer
/// (which tokio rounds up to a whole millisecond, once per level of the page).
async fn prime(catalog: &Catalog, loaders: &Loaders, request: &mut async_graphql::Request) {
    let variables = std::mem::take(&mut request.variables);
    let operation_name = request.operation_name.clone();
    let roots = match request.parsed_query() {
        Ok(document) => requested_hotels(document, operation_name.as_deref(), &variables),
        Err(_) => RootHotels::default(),
    };
    request.variables = variables;
    let mut hotels: Vec<HotelId> = roots.entities.iter().chain(&roots.pages).copied().collect();
    if hotels.is_empty() {
        return;
    }
    hotels.sort_unstable();
    hotels.dedup();
    // Failures are left to the resolvers, which load again and report them.
    let Ok(found) = catalog.hotels(&hotels).await else {
        return;
    };
    let mut images: Vec<ImageId> = Vec::new();
    if request.query.contains("mainImage") {
        images.extend(
            found
                .values()
                .filter_map(|h| h.main.as_ref().map(|m| m.image_id)),
        );
    }
    if request.query.contains("gallery") {
        for id in &roots.pages {
            images.extend(found.get(id).iter().flat_map(|h| h.gallery.iter().copied()));
        }
    }
    loaders.feed_many(loader::every_key(&hotels, found)).await;
    if images.is_empty() {
        return;
    }
    images.sort_unstable();
    images.dedup();
    if let Ok(found) = catalog.images(&images).await {
        loaders.feed_many(loader::every_key(&images, found)).await;
    }
}

/// The hotels an operation asks for at its root.
#[derive(Debug, Default, PartialEq)]
struct RootHotels {
    /// Of the `Hotel` representations of `_entities`, given through a variable (as gateways
    /// send them).
    entities: Vec<HotelId>,
    /// Of `hotel(id:)`, a literal or a variable.
    pages: Vec<HotelId>,
}

/// The hotels the executed operation of `document` asks for at its root.
fn requested_hotels(
    document: &async_graphql::parser::types::ExecutableDocument,
    operation_name: Option<&str>,
    variables: &async_graphql::Variables,
) -> RootHotels {
    use async_graphql::parser::types::DocumentOperations;
    let mut hotels = RootHotels::default();
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => operation,
        (DocumentOperations::Multiple(operations), Some(name)) => match operations.get(name) {
            Some(operation) => operation,
            None => return hotels,
        },
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            match operations.values().next() {
                Some(operation) => operation,
                None => return hotels,
            }
        }
        _ => return hotels,
    };
    let mut roots = Vec::new();
    limits::root_fields(
        document,
        &operation.node.selection_set.node,
        &mut std::collections::HashSet::new(),
        &mut roots,
    );
    for field in roots {
        match field.name.node.as_str() {
            "_entities" => {
                for representation in limits::variable_representations(field, variables) {
                    let async_graphql::Value::Object(fields) = representation else {
                        continue;
                    };
                    let is_hotel = matches!(
                        fields.get("__typename"),
                        Some(async_graphql::Value::String(name)) if name == "Hotel"
                    );
                    if let (true, Some(id)) = (is_hotel, fields.get("id").and_then(hotel_id)) {
                        hotels.entities.push(id);
                    }
                }
            }
            "hotel" => {
                let id = field
                    .get_argument("id")
                    .and_then(|argument| match &argument.node {
                        async_graphql_value::Value::Variable(name) => variables.get(name).cloned(),
                        literal => literal.clone().into_const(),
                    });
                if let Some(id) = id.as_ref().and_then(hotel_id) {
                    hotels.pages.push(id);
                }
            }
            _ => {}
        }
    }
    hotels
}

/// A hotel ID given as a string or a number; `None` when malformed (the resolvers report it).
fn hotel_id(value: &async_graphql::Value) -> Option<HotelId> {
    match value {
        async_graphql::Value::String(id) => id.parse().ok(),
        async_graphql::Value::Number(id) => id.as_i64().and_then(HotelId::new),
        _ => None,
    }
}

/// The federation SDL as published to the schema registry (and committed as `schema.graphql`),
/// the same text `_service { sdl }` answers.
pub fn published_sdl(schema: &AppSchema) -> Result<String, sdl::SdlError> {
    sdl::publishable(&schema.sdl_with_options(SDLExportOptions::new().federation()))
}
