//! The `warmup` command against a local stand-in for the CDN that records every request it
//! gets: the URLs are the ones `Image.url(size)` answers, each requested once, no more at once
//! than the concurrency limit, and the summary counts the answers by status.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{StatusCode, Uri};
use clap::Parser;
use images_subgraph::config::{Cli, Command, Settings, WarmupArgs};
use images_subgraph::warmup::Summary;
use indicatif::ProgressBar;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, spawn_app};

/// What the app's own URLs start with (tests run without the embedded default's `/media`).
const APP_CDN: &str = "https://images.example.com";

/// A CDN stand-in: answers 404 to thumbnails (`/c160/`), 200 with a few bytes otherwise, after
/// `delay`; records every path and the most requests it held at once.
struct FakeCdn {
    base: String,
    paths: Arc<Mutex<Vec<String>>>,
    most_at_once: Arc<AtomicUsize>,
}

impl FakeCdn {
    async fn start(delay: Duration) -> Self {
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (now, most_at_once) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (seen, held, most) = (paths.clone(), now, most_at_once.clone());
        let app = axum::Router::new().fallback(move |uri: Uri| {
            let (seen, held, most) = (seen.clone(), held.clone(), most.clone());
            async move {
                let at_once = held.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(at_once, Ordering::SeqCst);
                seen.lock().unwrap().push(uri.path().to_owned());
                tokio::time::sleep(delay).await;
                held.fetch_sub(1, Ordering::SeqCst);
                if uri.path().contains("/c160/") {
                    (StatusCode::NOT_FOUND, "no such rendition")
                } else {
                    (StatusCode::OK, "image bytes")
                }
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/cdn", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base,
            paths,
            most_at_once,
        }
    }

    fn paths(&self) -> Vec<String> {
        let mut paths = self.paths.lock().unwrap().clone();
        paths.sort();
        paths
    }
}

/// Runs `warmup` with `flags` (as typed after the command) against `cdn_base`.
async fn warmup(app: &TestApp, cdn_base: &str, flags: &[&str]) -> anyhow::Result<Summary> {
    let cli = Cli::try_parse_from(["images-subgraph", "warmup"].iter().chain(flags))?;
    let Some(Command::Warmup(args)) = cli.command else {
        panic!("not the warmup command")
    };
    let settings = Settings {
        cdn_base_url: Some(cdn_base.to_owned()),
        ..app.settings.clone()
    };
    run(&settings, &args).await
}

async fn run(settings: &Settings, args: &WarmupArgs) -> anyhow::Result<Summary> {
    images_subgraph::cli::warmup(settings, args, &ProgressBar::hidden()).await
}

/// The paths (under `/cdn`) of `hotel`'s main image and first `gallery` other gallery images,
/// at THUMBNAIL and LARGE, as the API answers them.
async fn api_paths(app: &TestApp, hotel: i64, gallery: usize) -> Vec<String> {
    let data = app
        .graphql(
            "query($id: ID!, $first: Int!) { hotel(id: $id) {
                mainImage { id t: url(size: THUMBNAIL) l: url(size: LARGE) }
                gallery(first: $first) { nodes { id t: url(size: THUMBNAIL) l: url(size: LARGE) } }
            } }",
            json!({ "id": hotel.to_string(), "first": gallery + 1 }),
        )
        .await
        .ok();
    let hotel = &data["hotel"];
    let main = &hotel["mainImage"];
    let others = hotel["gallery"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|node| node["id"] != main["id"])
        .take(gallery);
    std::iter::once(main)
        .chain(others)
        .flat_map(|image: &Value| [&image["t"], &image["l"]])
        .map(|url| url.as_str().unwrap().replacen(APP_CDN, "/cdn", 1))
        .collect()
}

#[tokio::test]
async fn warmup_requests_the_main_and_first_gallery_images_of_chosen_hotels_at_each_size() {
    let app = spawn_app().await;
    let cdn = FakeCdn::start(Duration::ZERO).await;
    let summary = warmup(
        &app,
        &cdn.base,
        &[
            "--hotel-ids",
            "1,2",
            "--gallery",
            "3",
            "--sizes",
            "thumbnail,large",
            "--concurrency",
            "4",
        ],
    )
    .await
    .unwrap();

    let mut expected = api_paths(&app, 1, 3).await;
    expected.extend(api_paths(&app, 2, 3).await);
    expected.sort();
    assert_eq!(expected.len(), 16, "2 hotels x 4 images x 2 sizes");
    assert_eq!(
        cdn.paths(),
        expected,
        "each URL of the API once, and nothing else"
    );
    assert_eq!(summary.hotels, 2);
    assert_eq!(summary.requests, 16);
    let by_status: Vec<(&str, u64)> = summary
        .by_status
        .iter()
        .map(|(status, n)| (status.as_str(), *n))
        .collect();
    assert_eq!(by_status, [("200", 8), ("404", 8)]);
    let printed = summary.to_string();
    assert!(printed.starts_with("16 URLs of 2 hotels"), "{printed}");
    assert!(printed.contains("404: 8"), "{printed}");
}

#[tokio::test]
async fn warmup_of_every_hotel_requests_each_main_image_once_within_the_concurrency_limit() {
    let app = spawn_app().await;
    let cdn = FakeCdn::start(Duration::from_millis(5)).await;
    let summary = warmup(
        &app,
        &cdn.base,
        &["--gallery", "0", "--sizes", "small", "--concurrency", "3"],
    )
    .await
    .unwrap();

    let with_main = app
        .scalar("SELECT COUNT(*) FROM hotel WHERE main_image_id IS NOT NULL")
        .await;
    let hotels = app.scalar("SELECT COUNT(*) FROM hotel").await;
    assert!(
        with_main > 400,
        "the demo catalog: {with_main} hotels with a main image"
    );
    let paths = cdn.paths();
    assert_eq!(paths.len() as i64, with_main);
    assert!(
        paths.iter().all(|p| p.starts_with("/cdn/w320/")),
        "SMALL only"
    );
    let mut distinct = paths.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), paths.len(), "no URL twice");
    assert_eq!(summary.hotels as i64, hotels);
    assert_eq!(
        summary.by_status.get("200").copied(),
        Some(with_main as u64)
    );
    let most = cdn.most_at_once.load(Ordering::SeqCst);
    assert!((2..=3).contains(&most), "{most} requests at once");
}

#[tokio::test]
async fn warmup_refuses_bad_flags_and_counts_unknown_hotels_and_unreachable_cdns() {
    let app = spawn_app().await;
    let cdn = FakeCdn::start(Duration::ZERO).await;
    let zero = warmup(&app, &cdn.base, &["--concurrency", "0"]).await;
    assert!(
        zero.unwrap_err().to_string().contains("--concurrency"),
        "a clear error"
    );
    let bad_id = warmup(&app, &cdn.base, &["--hotel-ids", "1,-4"]).await;
    assert!(bad_id.unwrap_err().to_string().contains("-4"));
    let bad_size = warmup(&app, &cdn.base, &["--sizes", "huge"]).await;
    assert!(bad_size.is_err());
    assert_eq!(cdn.paths(), Vec::<String>::new(), "nothing was requested");

    let unknown = warmup(
        &app,
        &cdn.base,
        &[
            "--hotel-ids",
            "999999,1",
            "--gallery",
            "0",
            "--sizes",
            "large",
        ],
    )
    .await
    .unwrap();
    assert_eq!((unknown.hotels, unknown.unknown_hotels), (1, 1));
    assert_eq!(cdn.paths().len(), 1);

    // Nothing listens there any more: every request fails, and says so.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("http://{}/cdn", closed.local_addr().unwrap());
    drop(closed);
    let down = warmup(&app, &gone, &["--hotel-ids", "1", "--gallery", "2"])
        .await
        .unwrap();
    assert_eq!(down.requests, 12, "3 images x 4 default sizes");
    assert_eq!(down.by_status.get("error").copied(), Some(12));
}
