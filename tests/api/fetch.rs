//! The fetcher of partner images against a local HTTP server: each outcome ends in its
//! documented reason, and no fetch reaches a non-public address unless its host name is
//! listed in `FETCH_ALLOW_HOSTS`.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use images_subgraph::domain::measure::Reason;
use images_subgraph::domain::upload::samples;
use images_subgraph::fetch::{FetchSettings, Fetcher};

/// Largest body the test fetcher takes.
const MAX_BYTES: usize = 64 * 1024;

/// A local server with one route per outcome; returns its port.
async fn partner_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let port = listener.local_addr().expect("an address").port();
    let image = samples::jpeg(64, 48, 1);
    let app = Router::new()
        .route(
            "/a.jpg",
            get(move || async move { ([(header::CONTENT_TYPE, "image/jpeg")], image) }),
        )
        .route("/404", get(|| async { StatusCode::NOT_FOUND }))
        .route("/500", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route(
            "/busy",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "7")],
                )
            }),
        )
        .route("/slow", get(|| async { slow_body() }))
        .route(
            "/big",
            get(|| async { Body::from_stream(chunks(MAX_BYTES / 1024 + 1)) }),
        )
        .route("/big-declared", get(|| async { vec![b'x'; MAX_BYTES + 1] }))
        .route(
            "/hop/{n}",
            get(|n: Path<u32>| async move {
                match n.0 {
                    0 => Redirect::to("/a.jpg"),
                    n => Redirect::to(&format!("/hop/{}", n - 1)),
                }
            }),
        )
        .route(
            "/to-localhost",
            get(move || async move { Redirect::to(&format!("http://localhost:{port}/a.jpg")) }),
        )
        .route(
            "/to-metadata",
            get(|| async { Redirect::to("http://169.254.169.254/latest/meta-data/") }),
        )
        .route(
            "/authorization",
            get(|headers: HeaderMap| async move {
                let sent = headers.get(header::AUTHORIZATION).is_some();
                if sent { "sent" } else { "none" }.into_response()
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// A body that starts and then stalls.
fn slow_body() -> Response {
    let first = futures::stream::iter([Ok::<_, std::io::Error>(vec![0u8; 16])]);
    Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending())).into_response()
}

/// `n` chunks of 1 KiB, with no `Content-Length`.
fn chunks(n: usize) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::iter((0..n).map(|_| Ok(vec![b'x'; 1024])))
}

fn fetcher(allow_hosts: &[&str]) -> Fetcher {
    Fetcher::new(FetchSettings {
        max_bytes: MAX_BYTES,
        max_redirects: 3,
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_secs(5),
        allow_hosts: allow_hosts.iter().map(|h| (*h).to_owned()).collect(),
    })
    .expect("a fetcher")
}

#[tokio::test]
async fn each_fetch_outcome_ends_in_its_reason() {
    let port = partner_server().await;
    let fetcher = fetcher(&["127.0.0.1"]);
    let at = |path: &str| format!("http://127.0.0.1:{port}{path}");

    let fetched = fetcher.fetch(&at("/a.jpg")).await.expect("fetched");
    assert_eq!(fetched.bytes, samples::jpeg(64, 48, 1));
    assert_eq!(fetched.content_type.as_deref(), Some("image/jpeg"));
    // Three redirects are allowed, each hop checked.
    let redirected = fetcher.fetch(&at("/hop/2")).await.expect("redirected");
    assert_eq!(redirected.url.path(), "/a.jpg");

    let cases = [
        ("/404", Reason::HttpStatus, Some(404)),
        ("/500", Reason::HttpStatus, Some(500)),
        ("/busy", Reason::HttpStatus, Some(503)),
        ("/slow", Reason::Timeout, None),
        ("/big", Reason::TooLarge, None),
        ("/big-declared", Reason::TooLarge, None),
        ("/hop/3", Reason::TooManyRedirects, None),
        ("/to-localhost", Reason::BlockedAddress, None),
        ("/to-metadata", Reason::BlockedAddress, None),
    ];
    for (path, reason, status) in cases {
        let error = fetcher.fetch(&at(path)).await.expect_err(path);
        assert_eq!(
            (error.reason, error.status),
            (reason, status),
            "{path}: {error}"
        );
    }
    let busy = fetcher.fetch(&at("/busy")).await.expect_err("busy");
    assert_eq!(busy.retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn non_public_hosts_are_refused_unless_listed_by_name() {
    let port = partner_server().await;
    let listed = fetcher(&["127.0.0.1"]);
    let unlisted = fetcher(&[]);

    // Listed: fetched (a host is compared as the URL parser writes it, so `2130706433` is
    // `127.0.0.1`). The same server by a name, or as an IPv6 address: refused.
    assert!(
        listed
            .fetch(&format!("http://127.0.0.1:{port}/a.jpg"))
            .await
            .is_ok()
    );
    let refused = [
        format!("http://localhost:{port}/a.jpg"),
        format!("http://[::ffff:127.0.0.1]:{port}/a.jpg"),
        format!("http://[::1]:{port}/a.jpg"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/a.jpg".to_owned(),
        "http://100.64.0.1/a.jpg".to_owned(),
        "http://[fd00::1]/a.jpg".to_owned(),
        "ftp://127.0.0.1/a.jpg".to_owned(),
        "file:///etc/passwd".to_owned(),
    ];
    for url in &refused {
        let error = listed.fetch(url).await.expect_err(url);
        assert_eq!(error.reason, Reason::BlockedAddress, "{url}: {error}");
    }
    let error = unlisted
        .fetch(&format!("http://127.0.0.1:{port}/a.jpg"))
        .await
        .expect_err("not listed");
    assert_eq!(error.reason, Reason::BlockedAddress);
}

#[tokio::test]
async fn credentials_in_a_url_are_never_sent() {
    let port = partner_server().await;
    let fetched = fetcher(&["127.0.0.1"])
        .fetch(&format!(
            "http://user:secret@127.0.0.1:{port}/authorization"
        ))
        .await
        .expect("fetched");
    assert_eq!(fetched.bytes, b"none");
}
