//! The GraphQL schema: types, the query root, request-scoped loaders, federation entities and
//! error mapping. It knows nothing of HTTP: the transport hands it a request, an [`Actor`] and
//! nothing else.
//!
//! # Layout
//! - [`query`]: the `Query` root and the entity resolvers behind `_entities`.
//! - [`types`]: `Hotel`, `Image`, `Partner` and their value types.
//! - [`connection`]: Relay connections and cursors.
//! - [`loader`]: request-scoped batched loading.
//! - [`error`]: how failures reach clients.

pub mod connection;
pub mod error;
pub mod loader;
pub mod query;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{EmptyMutation, EmptySubscription, SDLExportOptions, Schema};

use crate::service::auth::Actor;
use crate::service::catalog::Catalog;
pub use query::Query;
pub use types::Media;

pub type AppSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// What the schema needs from the process.
pub struct SchemaDeps {
    pub catalog: Catalog,
    pub media: Media,
    /// How long a loader batch waits for more keys.
    pub loader_delay: Duration,
}

/// Shared per-process state the schema reads from every request's context.
#[derive(Clone)]
struct LoaderFactory {
    catalog: Catalog,
    delay: Duration,
}

pub fn build_schema(deps: SchemaDeps) -> AppSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .data(Arc::new(deps.media))
        .data(deps.catalog.clone())
        .data(LoaderFactory {
            catalog: deps.catalog,
            delay: deps.loader_delay,
        })
        .finish()
}

/// Attaches what one request needs: its caller and its own (uncached across requests) loaders.
pub fn prepare(
    schema: &AppSchema,
    request: async_graphql::Request,
    actor: Actor,
) -> async_graphql::Request {
    let request = request.data(actor);
    match schema.data::<LoaderFactory>() {
        Some(factory) => request.data(loader::loaders(factory.catalog.clone(), factory.delay)),
        None => request,
    }
}

/// The federation SDL as published to the schema registry (and committed as `schema.graphql`).
pub fn sdl(schema: &AppSchema) -> String {
    schema.sdl_with_options(SDLExportOptions::new().federation())
}
