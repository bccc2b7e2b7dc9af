//! The accept loop: connections served with hyper, with the limits `axum::serve` does not set.
//!
//! - **Header-read timeout** (`HTTP_HEADER_READ_TIMEOUT_MS`): hyper closes a connection that
//!   has not sent a complete request head in time. It starts this clock whenever it waits for
//!   a head, on a new connection and again after each answer on a keep-alive connection, so
//!   the same timeout closes connections that send nothing, that trickle header lines, and
//!   idle keep-alive connections. (Without a timer hyper has no timeout at all: such sockets
//!   stayed open for good.) The request timeout only starts once the head is complete.
//! - **Connection cap** (`HTTP_MAX_CONNECTIONS`): a permit per connection, taken before
//!   accepting; past the cap, new connections wait in the kernel's listen backlog until one
//!   closes, instead of each costing a task and buffers here.
//! - HTTP/1.1 only, as before (axum is built without `http2`; a router speaks HTTP/1.1 to
//!   subgraphs unless told otherwise).
//!
//! Shutdown keeps `axum::serve`'s contract, which [`crate::app`] drains around: when
//! `shutdown` completes the listener closes, every connection is told to finish its request
//! in flight and close, and the future ends once all are closed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// How connections are limited.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest wait for a complete request head (new and keep-alive connections).
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// How long to wait before accepting again after an error such as "too many open files".
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown` completes and every connection is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // `stop` tells connections to finish; `open` counts them (each task holds a receiver).
    let (stop, stopping) = watch::channel(false);
    let (open, connection) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    if !is_connection_error(&error) {
                        tracing::error!(error = %error, "cannot accept connections");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        tokio::spawn(serve_connection(
            stream,
            router.clone(),
            limits,
            permit,
            stopping.clone(),
            connection.clone(),
        ));
    }
    drop(listener);
    stop.send_replace(true);
    drop(connection);
    open.closed().await;
    Ok(())
}

/// Errors of one connection (the peer gave up before it was accepted): accept the next.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    _permit: OwnedSemaphorePermit,
    mut stopping: watch::Receiver<bool>,
    _open: watch::Receiver<()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => return log_end(served),
        // An error means the server is gone: finish as on shutdown.
        _ = stopping.wait_for(|&stop| stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    log_end(connection.await);
}

/// A connection ends with an error when the client misbehaved or left (a header timeout, a
/// reset): routine, so at debug level.
fn log_end(served: Result<(), hyper::Error>) {
    if let Err(error) = served {
        tracing::debug!(error = %error, "connection closed with an error");
    }
}
