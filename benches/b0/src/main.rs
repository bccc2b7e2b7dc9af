//! B0: `b0 ADDR RESPONSE_FILE` answers every request on `/graphql` with the bytes of
//! RESPONSE_FILE as `application/json`, with nothing else in the way: what one core can serve
//! at all, the ceiling the subgraph is compared with.

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::any;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:4200".to_owned());
    let file = args.next().ok_or("usage: b0 ADDR RESPONSE_FILE")?;
    let body: &'static [u8] = Box::leak(std::fs::read(file)?.into_boxed_slice());
    let app = Router::new().route(
        "/graphql",
        // The request body is read, as the subgraph reads it (and keep-alive needs it read).
        any(move |_request: axum::body::Bytes| async move {
            ([(CONTENT_TYPE, "application/json")], body)
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
