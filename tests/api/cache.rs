//! The read cache: warm hot reads cost no SQL, a change is visible on every replica in the very
//! next request, a slow reader cannot store old data over a change, and Redis going away
//! costs neither answers nor freshness. Tests named `..._with_redis` use the local Redis
//! whatever the engine, `..._on_a_redis_cluster` the local Redis Cluster; the others run as the engine's suite is configured (the embedded
//! in-process cache on SQLite, Redis on the server engines).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use images_subgraph::cache::CacheKey;
use images_subgraph::config::Settings;
use images_subgraph::domain::catalog::HotelId;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::helpers::{
    TestApp, main_image, operation, redis_cluster_url, redis_url, sample, spawn_app,
    spawn_app_with, spawn_replica_of, spawn_replicas,
};
use crate::proxy::Proxy;

fn with_redis(settings: &mut Settings) {
    settings.redis_url = Some(redis_url().parse().expect("Redis URL"));
}

fn representations(hotels: std::ops::RangeInclusive<i64>) -> Value {
    json!({
        "representations": hotels
            .map(|id| json!({ "__typename": "Hotel", "id": id.to_string() }))
            .collect::<Vec<_>>()
    })
}

async fn search_page(app: &TestApp) -> Value {
    app.graphql(
        &operation("frontend/SearchResultsMainImages.graphql"),
        representations(1..=50),
    )
    .await
    .ok()
}

/// Two images of `hotel`'s gallery: both may be its main image.
pub(crate) async fn two_eligible_images(app: &TestApp, hotel: i64) -> (String, String) {
    let data = app
        .graphql(
            "query($id: ID!) { hotel(id: $id) { gallery(first: 2) { nodes { id } } } }",
            json!({ "id": hotel.to_string() }),
        )
        .await
        .ok();
    let nodes = data["hotel"]["gallery"]["nodes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(nodes.len(), 2, "hotel {hotel} has two gallery images");
    (
        nodes[0]["id"].as_str().unwrap().to_owned(),
        nodes[1]["id"].as_str().unwrap().to_owned(),
    )
}

pub(crate) async fn set_main(app: &TestApp, hotel: i64, image: &str) {
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

async fn ready_status(app: &TestApp) -> Value {
    app.client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn search_page_costs_no_sql_once_warm(app: &TestApp) {
    // A replica whose Redis was not reached within its start-up patience serves from the
    // database (nothing is filled) until the prober finds it.
    wait_until_ready(app).await;
    let cold = search_page(app).await;
    let (warm, statements) = app.count_statements(search_page(app)).await;
    assert_eq!(warm, cold);
    assert_eq!(statements, 0, "a warm search page sent SQL");
}

#[tokio::test]
async fn a_warm_search_page_of_fifty_hotels_and_a_warm_hotel_page_send_no_sql() {
    let app = spawn_app().await;
    search_page_costs_no_sql_once_warm(&app).await;
    let gallery = operation("frontend/HotelGallery.graphql");
    let hotel_page = || app.graphql(&gallery, json!({ "id": "2", "first": 30 }));
    let cold = hotel_page().await.ok();
    let (warm, statements) = app.count_statements(hotel_page()).await;
    assert_eq!(warm.ok(), cold);
    assert_eq!(statements, 0, "a warm hotel page sent SQL");
    let metrics = app.metrics().await;
    let hits = sample(&metrics, r#"cache_requests_total{level="l1",result="hit"}"#).unwrap();
    assert!(hits >= 50.0, "{hits} L1 hits");
}

#[tokio::test]
async fn a_search_page_warm_in_redis_alone_sends_no_sql_with_redis() {
    let app = spawn_app_with(|s| {
        with_redis(s);
        s.cache_l1_entries = 0;
    })
    .await;
    search_page_costs_no_sql_once_warm(&app).await;
    let metrics = app.metrics().await;
    let hits = sample(&metrics, r#"cache_requests_total{level="l2",result="hit"}"#).unwrap();
    assert!(hits >= 50.0, "{hits} L2 hits");
}

#[tokio::test]
async fn a_main_image_set_on_one_replica_shows_on_the_other_in_the_next_request_with_redis() {
    const ROUNDS: usize = 100;
    let replicas = spawn_replicas(2, with_redis).await;
    let (a, b) = (&replicas[0], &replicas[1]);
    let hotel = 1;
    let (first, second) = two_eligible_images(a, hotel).await;
    let mut visible_after = Vec::new();
    for round in 0..ROUNDS {
        let image = if round % 2 == 0 { &first } else { &second };
        // B has the current state cached (L1 and Redis).
        let before = main_image(b, hotel).await;
        let start = Instant::now();
        set_main(a, hotel, image).await;
        let seen = main_image(b, hotel).await;
        visible_after.push(start.elapsed());
        assert_eq!(
            seen.as_deref(),
            Some(image.as_str()),
            "round {round}, before {before:?}"
        );
    }
    visible_after.sort();
    let percentile = |p: usize| visible_after[(ROUNDS * p / 100).min(ROUNDS - 1)];
    eprintln!(
        "write on A to visible on B (mutation + next read): p50 {:?}, p99 {:?}",
        percentile(50),
        percentile(99)
    );
}

/// The local Redis Cluster, with a budget per Redis call that a loaded test machine keeps:
/// these tests check routing, tags and freshness, not how a slow call is handled (a batch's
/// fill is one script call per stripe on a cluster, and the first call of a client learns
/// the slot map).
fn on_the_cluster(settings: &mut Settings) {
    settings.redis_url = Some(redis_cluster_url().parse().expect("URL"));
    settings.redis_timeout_ms = 1_000;
}

/// A plain connection to each node of the local cluster, in the order of its URL.
async fn cluster_nodes() -> Vec<(String, redis::aio::MultiplexedConnection)> {
    let url = redis_cluster_url();
    let mut nodes = Vec::new();
    for address in url.trim_start_matches("redis+cluster://").split(',') {
        let connection = redis::Client::open(format!("redis://{address}"))
            .expect("a node URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the node is up");
        nodes.push((address.to_owned(), connection));
    }
    nodes
}

/// Keys of the app's catalog held by each node of the cluster (`SCAN` on every seed node).
async fn catalog_keys_per_node(app: &TestApp) -> Vec<usize> {
    let pattern = format!("{}:*{}*", app.settings.redis_prefix, app.core.catalog_id);
    let mut counts = Vec::new();
    for (_, mut connection) in cluster_nodes().await {
        let (mut cursor, mut count) = (0_u64, 0);
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .expect("SCAN");
            count += keys.len();
            if next == 0 {
                break;
            }
            cursor = next;
        }
        counts.push(count);
    }
    counts
}

#[tokio::test]
async fn a_catalog_spreads_over_every_master_and_stays_fresh_across_replicas_on_a_redis_cluster() {
    let replicas = spawn_replicas(2, on_the_cluster).await;
    let (a, b) = (&replicas[0], &replicas[1]);
    wait_until_ready(a).await;
    wait_until_ready(b).await;
    // A fills Redis (one script call per stripe); B reads the whole page from it: the MGET
    // over many slots is split per node by the client.
    search_page_costs_no_sql_once_warm(a).await;
    let (page, statements) = b.count_statements(search_page(b)).await;
    assert_eq!(page, search_page(a).await);
    assert_eq!(statements, 0, "B read the page from the cluster");

    // No master holds the whole catalog: only a key and its stripe's generation share a slot.
    let per_node = catalog_keys_per_node(a).await;
    assert!(
        per_node.iter().all(|&keys| keys > 0),
        "keys per node: {per_node:?}"
    );

    // A change on A is invalidated on the slots of its keys and published from there; B's
    // subscription (on a seed node) hears it before B's next read.
    let hotel = 1;
    let (first, second) = two_eligible_images(a, hotel).await;
    for image in [&second, &first, &second] {
        assert!(main_image(b, hotel).await.is_some());
        set_main(a, hotel, image).await;
        assert_eq!(main_image(b, hotel).await.as_deref(), Some(image.as_str()));
    }
}

async fn cluster(node: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> redis::Value {
    let mut command = redis::cmd("CLUSTER");
    for arg in args {
        command.arg(*arg);
    }
    command.query_async(node).await.expect("CLUSTER command")
}

fn text(value: redis::Value) -> String {
    redis::from_redis_value(value).expect("a string")
}

#[tokio::test]
async fn reads_and_changes_follow_a_slot_moving_to_another_master_on_a_redis_cluster() {
    let replicas = spawn_replicas(2, on_the_cluster).await;
    let (a, b) = (&replicas[0], &replicas[1]);
    wait_until_ready(a).await;
    wait_until_ready(b).await;
    let hotel = 1;
    let (first, second) = two_eligible_images(a, hotel).await;
    set_main(a, hotel, &first).await;
    assert_eq!(main_image(a, hotel).await.as_deref(), Some(first.as_str()));
    assert_eq!(main_image(b, hotel).await.as_deref(), Some(first.as_str()));

    // Where hotel 1's entry lives, and a master to move its slot to.
    let pattern = format!(
        "{}:{{{}:s*}}:h:{hotel}",
        a.settings.redis_prefix, a.core.catalog_id
    );
    let mut nodes = cluster_nodes().await;
    let mut found = None;
    for (index, (_, connection)) in nodes.iter_mut().enumerate() {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(connection)
            .await
            .expect("KEYS");
        if let Some(key) = keys.into_iter().next() {
            found = Some((index, key));
        }
    }
    let (from, key) = found.expect("hotel 1 is cached in the cluster");
    let to = (from + 1) % nodes.len();
    let slot = text(cluster(&mut nodes[from].1, &["KEYSLOT", &key]).await);
    let from_id = text(cluster(&mut nodes[from].1, &["MYID"]).await);
    let to_id = text(cluster(&mut nodes[to].1, &["MYID"]).await);
    let (to_host, to_port) = nodes[to].0.split_once(':').expect("host:port");
    let (to_host, to_port) = (to_host.to_owned(), to_port.to_owned());

    // The slot migrates as `redis-cli --cluster reshard` moves it: hotel 1's entry goes first,
    // so a reader that asks the old owner is sent on with ASK.
    cluster(&mut nodes[to].1, &["SETSLOT", &slot, "IMPORTING", &from_id]).await;
    cluster(&mut nodes[from].1, &["SETSLOT", &slot, "MIGRATING", &to_id]).await;
    let migrate = |keys: Vec<String>| {
        let mut command = redis::cmd("MIGRATE");
        command
            .arg(&to_host)
            .arg(&to_port)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(keys);
        command
    };
    let _: redis::Value = migrate(vec![key.clone()])
        .query_async(&mut nodes[from].1)
        .await
        .expect("MIGRATE");
    let fresh = spawn_replica_of(a).await;
    assert_eq!(
        main_image(&fresh, hotel).await.as_deref(),
        Some(first.as_str()),
        "a reader sent on with ASK"
    );

    // The rest of the slot moves, and every master learns its new owner: clients that still
    // ask the old one are sent on with MOVED.
    loop {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(&slot)
            .arg(1000)
            .query_async(&mut nodes[from].1)
            .await
            .expect("GETKEYSINSLOT");
        if keys.is_empty() {
            break;
        }
        let _: redis::Value = migrate(keys)
            .query_async(&mut nodes[from].1)
            .await
            .expect("MIGRATE");
    }
    for (_, connection) in nodes.iter_mut() {
        cluster(connection, &["SETSLOT", &slot, "NODE", &to_id]).await;
    }

    // A change on A: its invalidation script is sent to the old owner, follows MOVED (the
    // client refreshes its slot map), and B sees the change. When the redirect does not fit
    // in REDIS_TIMEOUT_MS (a loaded machine), the invalidation counts as failed: A degrades
    // and the relay's replay reaches B a poll later, which is what the wait allows for.
    set_main(a, hotel, &second).await;
    let changed = Instant::now();
    while main_image(b, hotel).await.as_deref() != Some(second.as_str()) {
        assert!(
            changed.elapsed() < Duration::from_secs(5),
            "B kept the old image"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("visible on B {:?} after the change", changed.elapsed());
    let cold = spawn_replica_of(a).await;
    assert_eq!(
        main_image(&cold, hotel).await.as_deref(),
        Some(second.as_str())
    );
    wait_until_ready(a).await;
}

/// A pause that holds the first batch reaching it until released, and says when one did.
struct OnePause {
    reached: Arc<Notify>,
    release: Arc<Notify>,
}

impl OnePause {
    fn install(app: &TestApp) -> Self {
        let reached = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let used = Arc::new(AtomicBool::new(false));
        let (r, l) = (reached.clone(), release.clone());
        app.cache.set_fill_pause(Some(Arc::new(move || {
            if used.swap(true, Ordering::SeqCst) {
                return async {}.boxed();
            }
            let (r, l) = (r.clone(), l.clone());
            async move {
                r.notify_one();
                l.notified().await;
            }
            .boxed()
        })));
        Self { reached, release }
    }
}

/// A reader loads the old main image, pauses before storing it; a writer changes the main
/// image meanwhile; the reader's fill must not land.
async fn a_paused_reader_cannot_store_the_old_main_image(app: TestApp) {
    let hotel = 9;
    let (first, second) = two_eligible_images(&app, hotel).await;
    set_main(&app, hotel, &first).await;
    // Cold, so that the reader's hotel batch reads the database, then pauses.
    app.cache
        .invalidate(&[CacheKey::Hotel(HotelId::new(hotel).unwrap())])
        .await;
    let pause = OnePause::install(&app);
    let reader = {
        let (client, url) = (app.client.clone(), app.url("/graphql"));
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({ "query": "{ hotel(id: \"9\") { mainImage { id } } }" }))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::timeout(Duration::from_secs(10), pause.reached.notified())
        .await
        .expect("the reader reached the pause");
    set_main(&app, hotel, &second).await;
    pause.release.notify_one();
    let old = reader.await.unwrap();
    assert_eq!(old["data"]["hotel"]["mainImage"]["id"], first.as_str());
    app.cache.set_fill_pause(None);
    for _ in 0..3 {
        assert_eq!(
            main_image(&app, hotel).await.as_deref(),
            Some(second.as_str())
        );
    }
}

#[tokio::test]
async fn a_paused_reader_cannot_store_the_old_main_image_in_process() {
    let app = spawn_app_with(|s| s.redis_url = None).await;
    a_paused_reader_cannot_store_the_old_main_image(app).await;
}

#[tokio::test]
async fn a_paused_reader_cannot_store_the_old_main_image_in_redis_with_redis() {
    // L1 off: only Redis's fill guard stands between the reader and a stale entry.
    let app = spawn_app_with(|s| {
        with_redis(s);
        s.cache_l1_entries = 0;
    })
    .await;
    a_paused_reader_cannot_store_the_old_main_image(app).await;
}

#[tokio::test]
async fn a_paused_reader_cannot_store_the_old_main_image_in_either_level_with_redis() {
    let app = spawn_app_with(with_redis).await;
    a_paused_reader_cannot_store_the_old_main_image(app).await;
}

async fn wait_until_ready(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = ready_status(app).await;
        if status["status"] == "ready" {
            return;
        }
        assert!(Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn reads_survive_redis_going_away_and_serve_nothing_stale_after_it_returns_with_redis() {
    let target = redis_url().trim_start_matches("redis://").to_owned();
    let proxy = Proxy::start(target).await;
    let replicas = spawn_replicas(2, |s| {
        s.redis_url = Some(proxy.url().parse().expect("URL"));
        s.redis_timeout_ms = 100;
        s.redis_retry_ms = 100;
    })
    .await;
    let (a, b) = (&replicas[0], &replicas[1]);
    wait_until_ready(a).await;
    wait_until_ready(b).await;
    let hotel = 4;
    let (first, second) = two_eligible_images(a, hotel).await;
    set_main(a, hotel, &first).await;
    // Both replicas and Redis hold the first image.
    assert_eq!(main_image(a, hotel).await.as_deref(), Some(first.as_str()));
    assert_eq!(main_image(b, hotel).await.as_deref(), Some(first.as_str()));
    let warm = search_page(b).await;

    proxy.cut();
    for app in [a, b] {
        let start = Instant::now();
        assert_eq!(search_page(app).await, warm);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "a read took {:?} without Redis",
            start.elapsed()
        );
    }
    // The change commits; its invalidation cannot reach Redis.
    set_main(a, hotel, &second).await;
    for app in [a, b] {
        assert_eq!(
            main_image(app, hotel).await.as_deref(),
            Some(second.as_str())
        );
        let status = ready_status(app).await;
        assert_eq!(status["status"], "degraded", "{status}");
        assert_eq!(status["cache"], "down");
    }
    let metrics = a.metrics().await;
    assert_eq!(sample(&metrics, "cache_degraded"), Some(1.0));
    assert!(sample(&metrics, "cache_redis_errors_total").unwrap() >= 1.0);

    proxy.restore();
    wait_until_ready(a).await;
    wait_until_ready(b).await;
    for app in [a, b] {
        assert_eq!(
            main_image(app, hotel).await.as_deref(),
            Some(second.as_str())
        );
        assert_eq!(
            main_image(app, hotel).await.as_deref(),
            Some(second.as_str())
        );
    }
    // And the cache works again: warm reads cost no SQL.
    search_page_costs_no_sql_once_warm(b).await;
}

#[tokio::test]
async fn an_invalidation_one_replica_could_not_send_is_replayed_from_the_outbox_with_redis() {
    // A reaches Redis through a proxy that is about to fail; B reaches it directly and keeps
    // serving from it. Without a replay, B would serve A's change stale until the TTL.
    let target = redis_url().trim_start_matches("redis://").to_owned();
    let proxy = Proxy::start(target).await;
    let spawned = std::sync::atomic::AtomicUsize::new(0);
    let replicas = spawn_replicas(2, |s| {
        with_redis(s);
        if spawned.fetch_add(1, Ordering::SeqCst) == 0 {
            s.redis_url = Some(proxy.url().parse().expect("URL"));
        }
        s.redis_timeout_ms = 100;
        s.redis_retry_ms = 100;
        s.outbox_poll_ms = 50;
    })
    .await;
    let (a, b) = (&replicas[0], &replicas[1]);
    wait_until_ready(a).await;
    wait_until_ready(b).await;
    let hotel = 6;
    let (first, second) = two_eligible_images(b, hotel).await;
    set_main(b, hotel, &first).await;
    // B's L1 and Redis hold the first image.
    assert_eq!(main_image(b, hotel).await.as_deref(), Some(first.as_str()));
    assert_eq!(main_image(b, hotel).await.as_deref(), Some(first.as_str()));

    proxy.cut();
    // The change commits on A; A's invalidation cannot reach Redis.
    set_main(a, hotel, &second).await;
    assert_eq!(ready_status(a).await["status"], "degraded");
    assert_eq!(ready_status(b).await["status"], "ready");
    // A relay publishes the change's event and invalidates its keys on the way.
    let deadline = Instant::now() + Duration::from_secs(10);
    while main_image(b, hotel).await.as_deref() != Some(second.as_str()) {
        assert!(
            Instant::now() < deadline,
            "B still serves the old main image"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.restore();
    wait_until_ready(a).await;
    for app in [a, b] {
        assert_eq!(
            main_image(app, hotel).await.as_deref(),
            Some(second.as_str())
        );
    }
}
