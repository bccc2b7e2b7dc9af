//! The HTTP surface: `/graphql` (GraphQL over HTTP), GraphiQL, health checks.
//!
//! A thin transport: it authenticates the caller, hands the request to the schema and writes
//! the answer with the content type the client asked for. It knows no GraphQL types.
//!
//! # Layout
//! - [`auth`]: the `Authorization` header to an `Actor`.
//! - [`graphql`]: the `/graphql` handler.

pub mod auth;
pub mod graphql;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;

use crate::graphql::AppSchema;
use crate::service::catalog::Catalog;
use auth::Authenticator;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub schema: AppSchema,
    /// For readiness checks.
    pub catalog: Catalog,
    pub auth: Authenticator,
    /// Serve GraphiQL at `/` (the embedded default, or when enabled).
    pub graphiql: bool,
    /// Largest accepted `/graphql` body, in bytes.
    pub body_limit: usize,
}

/// The application's routes; tests drive it directly or over a real listener.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route(
            "/graphql",
            get(graphql::handle)
                .post(graphql::handle)
                // async-graphql-axum reads the body itself, so axum's default limit does not
                // apply: this layer does.
                .layer(RequestBodyLimitLayer::new(state.body_limit)),
        )
        .route("/health/live", get(live))
        .route("/health/ready", get(ready));
    if state.graphiql {
        router = router.route("/", get(graphiql));
    }
    router.with_state(state)
}

async fn graphiql() -> Html<String> {
    Html(
        async_graphql::http::GraphiQLSource::build()
            .endpoint("/graphql")
            .title("images-subgraph")
            .finish(),
    )
}

async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "live" }))
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.catalog.ready().await {
        Ok(()) => Json(serde_json::json!({ "status": "ready", "database": "up" })).into_response(),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "status": "unavailable", "database": "down" })),
            )
                .into_response()
        }
    }
}
