//! Faults (issue 20): replicas started together on an empty database, a database that stalls
//! or restarts under the app, a Redis restarted with less data than the relay published, one
//! slow Redis call, an import killed between batches, and keep-alive clients at shutdown.
//!
//! The database tests put a TCP proxy (`proxy.rs`) between the app and the server, so they
//! run on PostgreSQL and MySQL/MariaDB only (a SQLite file has no network to break); the Redis
//! tests use the local Redis whatever the engine, each on its own key prefix.

use std::io::{Cursor, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use images_subgraph::app::{Application, Core};
use images_subgraph::config::Settings;
use images_subgraph::domain::catalog::PartnerId;
use images_subgraph::domain::ingest::Outcome;
use images_subgraph::import::{Format, ImportOptions, Observer, Progress, import_feed};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ScratchDatabase, TestApp, main_image, operation, redis_url, sample, spawn_app, spawn_app_with,
    spawn_stoppable_app_with,
};
use crate::proxy::Proxy;

// ---------------------------------------------------------------------------------------------
// 1. Replicas started together on an empty database.

/// Settings of a replica on `url` that touches nothing but the database.
fn replica_settings(url: &str, media: &tempfile::TempDir) -> Settings {
    let mut settings = Settings::for_database(url);
    settings.listen = "127.0.0.1:0".parse().expect("address");
    settings.object_store_url = Some(
        url::Url::from_directory_path(media.path())
            .expect("a URL")
            .to_string(),
    );
    settings
}

#[tokio::test]
async fn replicas_started_at_once_on_an_empty_database_all_migrate_and_start() {
    // Several rounds, each on a new empty database: without a lock, one round in two or three
    // already lost a replica.
    for round in 0..3 {
        let db = ScratchDatabase::new().await;
        let media = tempfile::tempdir().expect("temp dir");
        let settings = replica_settings(&db.url, &media);
        let apps = (0..3).map(|_| async {
            Application::build(&settings)
                .await
                .map(|app| app.core().db.clone())
        });
        // ... and a `migrate` command started with them.
        let migrate = Core::open(&settings);
        let (apps, migrated) = tokio::join!(futures::future::join_all(apps), migrate);
        let mut dbs = Vec::new();
        for (replica, started) in apps.into_iter().enumerate() {
            match started {
                Ok(db) => dbs.push(db),
                Err(error) => panic!("round {round}: replica {replica} failed: {error:#}"),
            }
        }
        let core = migrated.unwrap_or_else(|e| panic!("round {round}: migrate failed: {e:#}"));
        let applied = scalar(&core, "SELECT COUNT(*) FROM seaql_migrations").await;
        let expected = <migration::Migrator as migration::MigratorTrait>::migrations().len();
        assert_eq!(applied, expected as i64, "round {round}");
    }
}

async fn scalar(core: &Core, sql: &str) -> i64 {
    use sea_orm::ConnectionTrait as _;
    let backend = core.db.get_database_backend();
    core.db
        .query_one_raw(sea_orm::Statement::from_string(backend, sql.to_owned()))
        .await
        .expect("query")
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("an integer")
}

// ---------------------------------------------------------------------------------------------
// 2. A database that black-holes, or restarts.

/// A proxy in front of the database server of `TEST_DATABASE_URL`; `None` on SQLite.
pub(crate) async fn database_proxy() -> Option<Proxy> {
    let server = std::env::var("TEST_DATABASE_URL").ok()?;
    let url = url::Url::parse(&server).expect("TEST_DATABASE_URL is a URL");
    let host = url.host_str().expect("a host").to_owned();
    let port = url.port_or_known_default().unwrap_or(match url.scheme() {
        "postgres" | "postgresql" => 5432,
        _ => 3306,
    });
    Some(Proxy::start(format!("{host}:{port}")).await)
}

/// Sends the app's database connections through `proxy`.
pub(crate) fn through(proxy: &Proxy, settings: &mut Settings) {
    let mut url = url::Url::parse(&settings.database_url()).expect("a URL");
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(proxy.addr.port())).expect("port");
    settings.database_url = Some(url.to_string().parse().expect("URL"));
}

/// A query the cache never answers: every one needs the database.
const UNCACHED: &str = "{ partners { id } }";
const CACHED: &str = "{ hotel(id: \"1\") { id mainImage { id } } }";

/// A client that gives up on its own, so that a hung server fails the test instead of hanging it.
fn patient_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

#[tokio::test]
async fn while_the_database_stalls_readiness_and_requests_fail_fast_and_cached_reads_go_on() {
    let Some(proxy) = database_proxy().await else {
        eprintln!("skipped: needs a database server (TEST_DATABASE_URL)");
        return;
    };
    let app = spawn_app_with(|s| {
        through(&proxy, s);
        s.database_max_connections = 4;
    })
    .await;
    let client = patient_client();
    app.graphql(CACHED, json!({})).await.ok();
    app.graphql(UNCACHED, json!({})).await.ok();

    proxy.stall();
    let started = Instant::now();
    let readiness = {
        let request = client.get(app.url("/health/ready"));
        async move {
            let answer = tokio::time::timeout(Duration::from_secs(15), request.send()).await;
            let status = answer.ok().and_then(Result::ok).map(|r| r.status());
            (status, started.elapsed())
        }
    };
    // More requests than the pool has connections.
    let requests = (0..10).map(|_| {
        let request = client
            .post(app.url("/graphql"))
            .json(&json!({ "query": UNCACHED }));
        async move {
            let answer = request.send().await.expect("answered");
            let status = answer.status();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            (status, body, started.elapsed())
        }
    });
    let ((ready_status, ready_took), answers) =
        tokio::join!(readiness, futures::future::join_all(requests));
    let cached_started = Instant::now();
    let cached = app.graphql(CACHED, json!({})).await;
    let cached_took = cached_started.elapsed();
    proxy.resume();

    let took: Vec<u128> = answers.iter().map(|(_, _, t)| t.as_millis()).collect();
    eprintln!(
        "database stalled: readiness {ready_status:?} after {ready_took:?}; requests answered after {took:?} ms; a cached read took {cached_took:?}"
    );
    assert_eq!(ready_status, Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(
        ready_took < Duration::from_secs(3),
        "readiness took {ready_took:?}"
    );
    for (status, body, _) in &answers {
        let failed = body["errors"].is_array() || !status.is_success();
        assert!(failed, "answered {status} {body} from a stalled database");
    }
    // Requests that found every connection busy give up on the pool well before the request
    // timeout; the few that were already waiting on a stalled connection end at the timeout.
    let fast = answers
        .iter()
        .filter(|(_, _, t)| *t < Duration::from_secs(5))
        .count();
    assert!(fast >= 10 - 4, "only {fast} of 10 failed fast: {took:?} ms");
    assert!(answers.iter().all(|(_, _, t)| *t < Duration::from_secs(14)));
    assert!(cached.body.get("errors").is_none(), "{:#}", cached.body);
    assert!(
        cached_took < Duration::from_secs(2),
        "a cached read took {cached_took:?}"
    );
}

#[tokio::test]
async fn after_the_database_restarted_no_request_fails_on_a_dead_pooled_connection() {
    let Some(proxy) = database_proxy().await else {
        eprintln!("skipped: needs a database server (TEST_DATABASE_URL)");
        return;
    };
    let app = spawn_app_with(|s| {
        through(&proxy, s);
        s.database_max_connections = 4;
    })
    .await;
    // Fill the pool: several connections wait in it.
    let warm = (0..8).map(|_| app.graphql(UNCACHED, json!({})));
    for answer in futures::future::join_all(warm).await {
        answer.ok();
    }
    // The server goes away (every connection is closed) and comes back a moment later.
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    proxy.restore();

    let mut failed = Vec::new();
    for attempt in 0..8 {
        let answer = app.graphql(UNCACHED, json!({})).await;
        if answer.body.get("errors").is_some() || answer.status != StatusCode::OK {
            failed.push((attempt, answer.body));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 8 requests failed after the restart: {failed:?}",
        failed.len()
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Redis loses the end of the event stream.

fn redis_connection_url() -> String {
    std::env::var("REDIS_URL_FOR_TESTS")
        .or_else(|_| std::env::var("TEST_REDIS_URL"))
        .unwrap_or_else(|_| redis_url())
}

async fn redis() -> images_subgraph::redis_link::Connection {
    images_subgraph::redis_link::Target::parse(&redis_connection_url())
        .expect("Redis URL")
        .connect_now(Duration::from_secs(5))
        .await
        .expect("Redis is up")
}

/// The keys of the app's event stream (the stream and whatever the relay keeps beside it).
async fn event_keys(stream: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{stream}*"))
        .query_async(&mut redis().await)
        .await
        .expect("KEYS");
    keys.sort();
    keys
}

/// What a Redis snapshot (RDB) of the event keys holds: each key and its `DUMP`.
async fn snapshot(stream: &str) -> Vec<(String, Vec<u8>)> {
    let mut connection = redis().await;
    let mut dumped = Vec::new();
    for key in event_keys(stream).await {
        let bytes: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .expect("DUMP");
        dumped.push((key, bytes));
    }
    dumped
}

/// Redis restarts with `snapshot` (empty: with no data at all).
async fn restart_redis_with(stream: &str, snapshot: &[(String, Vec<u8>)]) {
    let mut connection = redis().await;
    for key in event_keys(stream).await {
        let _: () = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("DEL");
    }
    for (key, bytes) in snapshot {
        let _: () = redis::cmd("RESTORE")
            .arg(key)
            .arg(0)
            .arg(bytes.as_slice())
            .arg("REPLACE")
            .query_async(&mut connection)
            .await
            .expect("RESTORE");
    }
}

/// Event IDs in the stream, in stream order.
async fn streamed_ids(stream: &str) -> Vec<String> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut redis().await)
        .await
        .expect("XRANGE");
    reply
        .ids
        .iter()
        .map(|entry| entry.get::<String>("id").expect("an id field"))
        .collect()
}

async fn outbox_ids(app: &TestApp) -> Vec<String> {
    use sea_orm::ConnectionTrait as _;
    let backend = app.core.db.get_database_backend();
    app.core
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            backend,
            "SELECT id FROM outbox ORDER BY seq",
        ))
        .await
        .expect("outbox")
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("id"))
        .collect()
}

async fn until_published(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = app
            .scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
            .await;
        if left == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{left} events still unpublished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Outbox events the stream does not hold.
async fn missing_from_stream(app: &TestApp) -> Vec<String> {
    let streamed: std::collections::HashSet<String> = streamed_ids(&app.event_stream())
        .await
        .into_iter()
        .collect();
    outbox_ids(app)
        .await
        .into_iter()
        .filter(|id| !streamed.contains(id))
        .collect()
}

/// Waits until the stream holds every outbox event; fails with the missing ones.
async fn until_streamed(app: &TestApp, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let missing = missing_from_stream(app).await;
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: {} outbox events are not in the stream",
            missing.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sets hotel `hotel`'s main image to another of its gallery images (a change with events).
async fn change_main_image(app: &TestApp, hotel: i64, pick: usize) {
    let data = app
        .graphql(
            "query($id: ID!) { hotel(id: $id) { gallery(first: 3) { nodes { id } } } }",
            json!({ "id": hotel.to_string() }),
        )
        .await
        .ok();
    let image = data["hotel"]["gallery"]["nodes"][pick % 3]["id"]
        .as_str()
        .expect("a gallery image")
        .to_owned();
    let body = app
        .graphql_as(
            &app.admin(),
            &operation("studio/SetMainImage.graphql"),
            json!({ "input": { "hotelId": hotel.to_string(), "imageId": image } }),
        )
        .await
        .ok();
    assert_eq!(body["setMainImage"]["userErrors"], json!([]), "{body}");
}

#[tokio::test]
async fn events_a_redis_restart_lost_are_published_again() {
    let redis = redis_connection_url();
    let app = spawn_app_with(|s| {
        s.redis_url = Some(redis.parse().expect("Redis URL"));
        s.outbox_poll_ms = 50;
    })
    .await;
    let stream = app.event_stream();
    for hotel in 1..=3 {
        change_main_image(&app, hotel, 1).await;
    }
    until_published(&app).await;
    until_streamed(&app, "before any fault").await;
    let saved = snapshot(&stream).await;

    // More events, then Redis restarts from the snapshot taken before them (RDB, or a replica
    // that lagged): the stream lost its tail, and the outbox has it marked published.
    for hotel in 4..=6 {
        change_main_image(&app, hotel, 1).await;
    }
    until_published(&app).await;
    let published = outbox_ids(&app).await.len();
    restart_redis_with(&stream, &saved).await;
    assert!(!missing_from_stream(&app).await.is_empty());
    change_main_image(&app, 7, 1).await;
    until_published(&app).await;
    until_streamed(&app, "after a restart from an older snapshot").await;

    // Redis restarts with no data at all; no change follows.
    restart_redis_with(&stream, &[]).await;
    until_streamed(&app, "after a restart with no data").await;
    eprintln!(
        "{published} events before the first restart; the stream now holds {} entries for {} events",
        streamed_ids(&stream).await.len(),
        outbox_ids(&app).await.len()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. One slow Redis call.

async fn ready_status(app: &TestApp) -> Value {
    app.client
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON")
}

fn representations(hotels: std::ops::RangeInclusive<i64>) -> Value {
    json!({
        "representations": hotels
            .map(|id| json!({ "__typename": "Hotel", "id": id.to_string() }))
            .collect::<Vec<_>>()
    })
}

#[tokio::test]
async fn one_slow_redis_call_keeps_the_in_process_cache() {
    let target = redis_connection_url()
        .trim_start_matches("redis://")
        .to_owned();
    let proxy = Proxy::start(target).await;
    let app = spawn_app_with(|s| {
        s.redis_url = Some(proxy.url().parse().expect("URL"));
        s.redis_timeout_ms = 50;
        // Nothing but the cache talks to Redis: the slow call is the cache's.
        s.outbox_relay = false;
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready_status(&app).await["status"] != "ready" {
        assert!(Instant::now() < deadline, "Redis never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let search = operation("frontend/SearchResultsMainImages.graphql");
    let page = || app.graphql(&search, representations(1..=50));
    let warm = page().await.ok();
    let (again, statements) = app.count_statements(page()).await;
    assert_eq!(again.ok(), warm);
    assert_eq!(statements, 0);

    // One call takes six times its budget: a miss asks Redis, and Redis is slow this once.
    proxy.delay_next(Duration::from_millis(300));
    app.graphql("{ hotel(id: \"300\") { id } }", json!({}))
        .await
        .ok();
    let metrics = app.metrics().await;
    assert!(
        sample(&metrics, "cache_redis_errors_total").unwrap_or(0.0) >= 1.0,
        "the slow call counts as a failure: {metrics}"
    );

    let (still, statements) = app.count_statements(page()).await;
    assert_eq!(still.ok(), warm);
    let metrics = app.metrics().await;
    assert_eq!(
        statements,
        0,
        "one slow call emptied the in-process cache (degradations: {:?})",
        sample(&metrics, "cache_degradations_total")
    );
    assert_eq!(ready_status(&app).await["status"], "ready");
    assert_eq!(sample(&metrics, "cache_degradations_total"), Some(0.0));
}

// ---------------------------------------------------------------------------------------------
// 6. Two processes on one catalog without Redis.

#[tokio::test]
async fn without_redis_a_change_on_one_process_reaches_the_other_s_cache_within_a_poll() {
    let apps = crate::helpers::spawn_replicas(2, |s| {
        s.redis_url = None;
        s.outbox_poll_ms = 50;
    })
    .await;
    let (a, b) = (&apps[0], &apps[1]);
    let hotel = 8;
    for pick in [1, 2, 1] {
        // B holds the current main image in its cache.
        let before = main_image(b, hotel).await;
        assert_eq!(main_image(b, hotel).await, before);
        change_main_image(a, hotel, pick).await;
        let now = main_image(a, hotel).await;
        assert_ne!(now, before);
        let changed = Instant::now();
        while main_image(b, hotel).await != now {
            assert!(
                changed.elapsed() < Duration::from_secs(3),
                "B still serves the main image of before the change"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("visible on B after {:?}", changed.elapsed());
    }
}

// ---------------------------------------------------------------------------------------------
// 7. The import's rejects file, and keep-alive connections at shutdown.

/// A file that keeps only what was flushed: what a killed process leaves on disk.
#[derive(Clone, Default)]
struct FlushedOnly {
    buffered: Arc<Mutex<Vec<u8>>>,
    on_disk: Arc<Mutex<Vec<u8>>>,
}

impl Write for FlushedOnly {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffered.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut buffered = self.buffered.lock().expect("lock");
        self.on_disk.lock().expect("lock").append(&mut buffered);
        Ok(())
    }
}

impl FlushedOnly {
    fn lines_on_disk(&self) -> usize {
        self.on_disk
            .lock()
            .expect("lock")
            .iter()
            .filter(|b| **b == b'\n')
            .count()
    }
}

/// After each batch: the lines rejected so far, and the rejects on disk.
struct AfterEachBatch {
    file: FlushedOnly,
    rejected: usize,
    seen: Vec<(usize, usize)>,
}

impl Observer for AfterEachBatch {
    fn line(&mut self, _line: u64, outcome: Outcome) {
        if outcome == Outcome::Rejected {
            self.rejected += 1;
        }
    }

    fn progress(&mut self, _progress: Progress) {
        self.seen.push((self.rejected, self.file.lines_on_disk()));
    }
}

#[tokio::test]
async fn the_rejects_of_every_committed_batch_are_on_disk_before_the_next_batch() {
    let app = spawn_app().await;
    let good = |n: u32| {
        json!({ "hotel_id": 1, "url": format!("https://cdn.example.com/faults/{n}.jpg"),
                "width": 1600, "height": 1067 })
        .to_string()
    };
    // Batches of two lines: [bad, good], [good, bad], [bad, bad].
    let feed = [
        "not json".to_owned(),
        good(1),
        good(2),
        "{\"hotel_id\": -5}".to_owned(),
        "still not json".to_owned(),
        "[]".to_owned(),
    ]
    .join("\n");
    let file = FlushedOnly::default();
    let mut observer = AfterEachBatch {
        file: file.clone(),
        rejected: 0,
        seen: Vec::new(),
    };
    let options = ImportOptions {
        partner: PartnerId::new(1),
        format: Format::Jsonl,
        snapshot: false,
        batch_size: 2,
    };
    let summary = import_feed(
        &app.core.ingestor,
        Cursor::new(feed.into_bytes()),
        &options,
        &mut file.clone(),
        &mut observer,
    )
    .await
    .expect("the import runs");
    assert_eq!(summary.count(Outcome::Rejected), 4);
    assert_eq!(
        observer.seen,
        [(1, 1), (2, 2), (4, 4)],
        "(rejected so far, rejects on disk) after each batch"
    );
}

#[tokio::test]
async fn during_the_shutdown_delay_answers_tell_clients_to_close_their_connection() {
    let stoppable = spawn_stoppable_app_with(|s| {
        s.shutdown_delay_ms = 2_000;
        s.shutdown_drain_ms = 1_000;
    })
    .await;
    let app = &stoppable.app;
    let connection = |response: &reqwest::Response| {
        response
            .headers()
            .get(reqwest::header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    let before = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(before.status(), StatusCode::OK);
    assert_ne!(connection(&before).as_deref(), Some("close"));

    stoppable.stop.send(()).expect("the app runs");
    tokio::time::sleep(Duration::from_millis(100)).await;
    for path in ["/health/live", "/graphql?query=%7B__typename%7D"] {
        let during = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            connection(&during).as_deref(),
            Some("close"),
            "{path} during the shutdown delay"
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), stoppable.server).await;
}
