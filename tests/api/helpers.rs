//! Spawning the real application for a test: its own database (a SQLite file, or a fresh
//! PostgreSQL/MySQL database created on the server named by `TEST_DATABASE_URL`), migrated and
//! seeded the real way, served on port 0, spoken to over HTTP.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use images_subgraph::app::{Application, Core};
use images_subgraph::cache::Cache;
use images_subgraph::config::Settings;
use images_subgraph::http::auth::{Claims, mint};
use images_subgraph::store::StatementCounter;
use images_subgraph::store::stream::EventBus;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

pub const JWT_SECRET: &str = "test-secret";

/// A running application and a client for it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// Statements the server's pool has executed.
    pub statements: StatementCounter,
    /// A second handle on the same database, for direct checks and changes.
    pub core: Core,
    pub settings: Settings,
    /// The running app's own cache (for tests that pause or inspect it).
    pub cache: Cache,
    /// The in-process event bus the relay publishes to (no Redis, relay on).
    pub events: Option<EventBus>,
    /// Shared by replicas (see [`spawn_replicas`]).
    _db: Arc<TestDatabase>,
    /// The object store directory of uploads, shared by replicas.
    _media: Arc<tempfile::TempDir>,
}

/// How a test's database was made; keeps a SQLite file's directory alive, and drops a server
/// database when the test is over (a MariaDB test database takes about 50 MB on disk: a full
/// run left behind fills the disk).
enum TestDatabase {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Server { server: String, name: String },
}

impl TestDatabase {
    /// `DROP DATABASE` on the server, cutting off connections still open. PostgreSQL refuses
    /// to drop a database in use (`FORCE` ends its sessions); MariaDB waits for the metadata
    /// locks of open transactions, and a test's app may hold one in a task that cannot run
    /// while the test's runtime waits here: its connections are killed first, and the drop
    /// gives up after a few seconds rather than wait forever (`.ci/run` drops leftovers).
    async fn drop_on_server(server: &str, name: &str) -> Result<(), sea_orm::DbErr> {
        let admin = Database::connect(server).await?;
        let force = if server.starts_with("postgres") {
            " WITH (FORCE)"
        } else {
            admin
                .execute_unprepared("SET SESSION lock_wait_timeout = 10")
                .await?;
            let sessions = admin
                .query_all_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::MySql,
                    format!("SELECT id FROM information_schema.processlist WHERE db = '{name}'"),
                ))
                .await?;
            for session in sessions {
                let id: i64 = session.try_get_by_index(0)?;
                // Gone already, or ended between the two statements: nothing to kill.
                let _ = admin.execute_unprepared(&format!("KILL {id}")).await;
            }
            ""
        };
        let dropped = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}{force}"))
            .await;
        admin.close().await.ok();
        dropped.map(drop)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let TestDatabase::Server { server, name } = self else {
            return;
        };
        let (server, name) = (server.clone(), name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own
        // with its own runtime does the work, and the test waits for it.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(TestDatabase::drop_on_server(&server, &name))
                .map_err(|e| format!("{name}: {e}"))
        })
        .join();
        if let Ok(Err(e)) = dropped {
            // `.ci/run` drops what is left before and after the run.
            eprintln!("could not drop the test database {e}");
        }
    }
}

/// Creates an empty database for one test and returns its URL.
async fn test_database() -> (String, TestDatabase) {
    match std::env::var("TEST_DATABASE_URL") {
        Err(_) => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
            (url, TestDatabase::Sqlite(dir))
        }
        Ok(server) => {
            let name = format!("isg_t_{}", uuid::Uuid::new_v4().simple());
            let admin = Database::connect(&server)
                .await
                .expect("connect to the test server");
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create the test database");
            admin.close().await.ok();
            let mut url = url::Url::parse(&server).expect("TEST_DATABASE_URL is a URL");
            url.set_path(&format!("/{name}"));
            (url.to_string(), TestDatabase::Server { server, name })
        }
    }
}

/// An empty database of the engine under test (not migrated), kept while this lives.
pub struct ScratchDatabase {
    pub url: String,
    _db: TestDatabase,
}

impl ScratchDatabase {
    pub async fn new() -> Self {
        let (url, db) = test_database().await;
        Self { url, _db: db }
    }

    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }

    /// Drops the database and creates it again, empty, under the same URL (as an operator
    /// re-creating a catalog would). Nothing may be connected to it any more.
    pub async fn recreate(&self) {
        match &self._db {
            TestDatabase::Sqlite(dir) => {
                for file in ["test.db", "test.db-wal", "test.db-shm"] {
                    let _ = std::fs::remove_file(dir.path().join(file));
                }
            }
            TestDatabase::Server { server, name } => {
                TestDatabase::drop_on_server(server, name)
                    .await
                    .expect("drop the test database");
                let admin = Database::connect(server)
                    .await
                    .expect("connect to the test server");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create the test database");
                admin.close().await.ok();
            }
        }
    }
}

/// The app with the demo catalog (500 hotels, IDs 1..=500).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The app with settings changed by `configure` (demo seeding is on unless turned off).
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    start(configure, std::future::pending()).await.0
}

/// An app that stops when told to.
pub struct StoppableApp {
    pub app: TestApp,
    /// Send to trigger the shutdown (as SIGTERM would).
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// Ends when the server has stopped.
    pub server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The app with settings changed by `configure`, stopped by [`StoppableApp::stop`].
pub async fn spawn_stoppable_app_with(configure: impl FnOnce(&mut Settings)) -> StoppableApp {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (app, server) = start(configure, async move {
        // A dropped sender stops the app too.
        let _ = stopped.await;
    })
    .await;
    StoppableApp { app, stop, server }
}

/// `n` replicas: apps sharing one database (created once, seeded by the first), one Redis
/// prefix and one object store, each with its own pool, caches and relay, as in production.
/// `configure` applies to each.
pub async fn spawn_replicas(n: usize, configure: impl Fn(&mut Settings)) -> Vec<TestApp> {
    let shared = Shared::fresh().await;
    let mut apps = Vec::with_capacity(n);
    // One after the other: the first migrates and seeds, the others find it done.
    for _ in 0..n {
        let (app, _server) = launch(&shared, &configure, std::future::pending()).await;
        apps.push(app);
    }
    apps
}

/// One more replica of `app`: its settings, database, Redis and object store (not seeded
/// again), with a pool, caches and relay of its own.
pub async fn spawn_replica_of(app: &TestApp) -> TestApp {
    spawn_replica_of_with(app, |_| {}).await
}

/// [`spawn_replica_of`] with its settings changed by `configure`.
pub async fn spawn_replica_of_with(
    app: &TestApp,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let shared = Shared {
        url: app.settings.database_url(),
        db: app._db.clone(),
        media: app._media.clone(),
        redis_prefix: app.settings.redis_prefix.clone(),
    };
    let mut settings = app.settings.clone();
    configure(&mut settings);
    launch(&shared, |s| *s = settings, std::future::pending())
        .await
        .0
}

/// The Redis every Redis test uses (CI exports it; a developer's machine has it here).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL_FOR_TESTS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The local Redis Cluster the cluster tests use (`.ci/run` starts it: three masters on
/// 127.0.0.1:7001..7003).
pub fn redis_cluster_url() -> String {
    std::env::var("TEST_REDIS_CLUSTER_URL").unwrap_or_else(|_| {
        "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".to_owned()
    })
}

/// What replicas share.
struct Shared {
    url: String,
    db: Arc<TestDatabase>,
    media: Arc<tempfile::TempDir>,
    redis_prefix: String,
}

impl Shared {
    /// A database, an object store and a Redis prefix of this test only.
    async fn fresh() -> Self {
        let (url, db) = test_database().await;
        Self {
            url,
            db: Arc::new(db),
            media: Arc::new(tempfile::tempdir().expect("temp dir")),
            // Keys, channels and streams of this test only, on a shared Redis.
            redis_prefix: format!("isg_t_{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

async fn start(
    configure: impl FnOnce(&mut Settings),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (TestApp, tokio::task::JoinHandle<anyhow::Result<()>>) {
    launch(&Shared::fresh().await, configure, shutdown).await
}

async fn launch(
    shared: &Shared,
    configure: impl FnOnce(&mut Settings),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> (TestApp, tokio::task::JoinHandle<anyhow::Result<()>>) {
    if std::env::var_os("TEST_LOG").is_some() {
        // The apps' logs on stderr (`TEST_LOG=1 RUST_LOG=warn cargo test ... -- --nocapture`).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let mut settings = Settings::for_database(&shared.url);
    settings.listen = "127.0.0.1:0".parse().expect("address");
    settings.jwt_secret = Some(JWT_SECRET.parse().expect("secret"));
    settings.seed_demo = Some(true);
    // The demo catalog without its pictures: drawing some 10,000 of them for every test would
    // take most of the run (`tests/api/seed.rs` seeds a small catalog with pictures).
    settings.seed_demo_pictures = Some(false);
    settings.database_max_connections = 4;
    settings.object_store_url = Some(
        url::Url::from_directory_path(shared.media.path())
            .expect("a URL")
            .to_string(),
    );
    settings.serve_media = Some(true);
    // No processing workers unless a test asks for them (`tests/api/processing.rs`): the
    // partner URLs of the other tests are not served anywhere.
    settings.process_workers = 0;
    if let Ok(redis) = std::env::var("TEST_REDIS_URL") {
        settings.redis_url = Some(redis.parse().expect("TEST_REDIS_URL"));
    }
    settings.redis_prefix = shared.redis_prefix.clone();
    configure(&mut settings);
    let app = Application::build(&settings).await.expect("the app builds");
    let addr = app.local_addr().expect("bound");
    let statements = app.core().statements.clone();
    let events = app.event_bus();
    let cache = app.core().cache.clone();
    let server = tokio::spawn(app.run_until(shutdown));
    // Shares the app's cache, so that changes made through it are seen by the app at once.
    let core = Core::open_with_cache(&settings, cache.clone())
        .await
        .expect("second handle");
    let app = TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        statements,
        core,
        cache,
        settings,
        events,
        _db: shared.db.clone(),
        _media: shared.media.clone(),
    };
    (app, server)
}

/// A GraphQL answer.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// The `extensions.code` of every error.
    pub fn error_codes(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Panics with the body when the answer has errors.
    pub fn ok(self) -> Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {:#}",
            self.body
        );
        assert_eq!(self.status, StatusCode::OK, "{:#}", self.body);
        self.body["data"].clone()
    }
}

impl TestApp {
    /// The name of the app's Redis event stream (it carries the catalog's identity).
    pub fn event_stream(&self) -> String {
        self.core.redis_names(&self.settings).event_stream()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn graphql(&self, query: &str, variables: Value) -> Answer {
        self.graphql_with(query, variables, None).await
    }

    pub async fn graphql_as(&self, token: &str, query: &str, variables: Value) -> Answer {
        self.graphql_with(query, variables, Some(token)).await
    }

    pub async fn graphql_with(&self, query: &str, variables: Value, token: Option<&str>) -> Answer {
        let mut request = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        answer(request.send().await.expect("request sent")).await
    }

    /// A mutation request of `token` with the header `Idempotency-Key: key`.
    pub async fn graphql_keyed(
        &self,
        token: &str,
        key: &str,
        query: &str,
        variables: Value,
    ) -> Answer {
        let request = self
            .client
            .post(self.url("/graphql"))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&json!({ "query": query, "variables": variables }));
        answer(request.send().await.expect("request sent")).await
    }

    /// Runs `f` and returns how many SQL statements the server executed meanwhile.
    pub async fn count_statements<T>(&self, f: impl std::future::Future<Output = T>) -> (T, u64) {
        let before = self.statements.get();
        let out = f.await;
        (out, self.statements.get() - before)
    }

    pub fn token(&self, scope: &str, hotel_ids: &[i64]) -> String {
        mint(
            JWT_SECRET.as_bytes(),
            &Claims {
                sub: format!("test:{scope}"),
                exp: jsonwebtoken::get_current_timestamp() + 600,
                scope: scope.to_owned(),
                hotel_ids: hotel_ids.iter().map(|id| json!(id)).collect(),
                partner_id: None,
            },
        )
        .expect("token")
    }

    pub fn admin(&self) -> String {
        self.token("images:admin", &[])
    }

    /// The single integer `sql` answers (e.g. a `COUNT(*)`), read directly from the database.
    pub async fn scalar(&self, sql: &str) -> i64 {
        self.cell(sql).await
    }

    /// The text of the first column of the first row of `sql`.
    pub async fn text(&self, sql: &str) -> String {
        self.cell(sql).await
    }

    async fn cell<T: sea_orm::TryGetable>(&self, sql: &str) -> T {
        let backend = self.core.db.get_database_backend();
        let row = self
            .core
            .db
            .query_one_raw(sea_orm::Statement::from_string(backend, sql.to_owned()))
            .await
            .expect("query")
            .expect("a row");
        row.try_get_by_index::<T>(0)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A token of the partner-ingestion pipeline for `partner`.
    pub fn importer(&self, partner: i64) -> String {
        mint(
            JWT_SECRET.as_bytes(),
            &Claims {
                sub: format!("test:importer:{partner}"),
                exp: jsonwebtoken::get_current_timestamp() + 600,
                scope: "images:import".to_owned(),
                hotel_ids: Vec::new(),
                partner_id: Some(json!(partner)),
            },
        )
        .expect("token")
    }

    /// Whether the count `sql` reads falls to 0 within `polls` looks, 50 ms apart.
    pub async fn eventually_zero(&self, sql: &str, polls: u32) -> bool {
        for _ in 0..polls {
            if self.scalar(sql).await == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Waits until the app's background workers left no image PENDING (at most 15 s).
    pub async fn drained(&self) {
        let pending = "SELECT COUNT(*) FROM image WHERE processing_state = 'PENDING'";
        assert!(
            self.eventually_zero(pending, 300).await,
            "images still PENDING after 15 s"
        );
    }

    /// Processes every due PENDING image now, one after the other, as the `process` command
    /// does (with this app's settings); returns how many it processed.
    pub async fn process_due(&self) -> usize {
        let objects = images_subgraph::store::objects::Objects::open(
            &self
                .settings
                .object_store_url()
                .expect("an object store URL"),
        )
        .expect("the object store");
        let processor = images_subgraph::app::processor(&self.settings, &self.core, objects)
            .expect("a processor");
        let mut processed = 0;
        while processor.step().await.expect("processing").is_some() {
            processed += 1;
        }
        processed
    }

    /// The text served at `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("scraped");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("metrics text")
    }

    /// Asserts that no hotel or image loader batch has run in this app (its records were all
    /// read before execution).
    pub async fn assert_no_record_loader_batches(&self) {
        let metrics = self.metrics().await;
        for kind in ["hotel", "image"] {
            let series = format!(r#"dataloader_batch_size_count{{kind="{kind}"}}"#);
            assert_eq!(
                sample(&metrics, &series),
                None,
                "{kind} batches ran: {metrics}"
            );
        }
    }

    /// A request whose body arrives slowly: it holds its slot until `hold` has passed.
    pub fn slow_request(&self, hold: Duration) -> tokio::task::JoinHandle<Option<StatusCode>> {
        let request = self
            .client
            .post(self.url("/graphql"))
            .header("content-type", "application/json");
        tokio::spawn(async move {
            let chunks = futures::stream::iter([
                Ok::<_, std::io::Error>(r#"{"query":"{ hotel(id: 1) "#.to_owned()),
                Ok("{ id } }\"}".to_owned()),
            ])
            .then(move |chunk| async move {
                tokio::time::sleep(hold / 2).await;
                chunk
            });
            let response = request
                .body(reqwest::Body::wrap_stream(chunks))
                .send()
                .await
                .ok()?;
            Some(response.status())
        })
    }
}

/// The value of the sample `series` (name and labels exactly as rendered) in a Prometheus
/// text exposition, if it is there.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// The image IDs of `hotel`'s public gallery (its first 100), in order.
pub async fn gallery(app: &TestApp, hotel: i64) -> Vec<String> {
    let data = app
        .graphql(
            "query($id: ID!) { hotel(id: $id) { gallery(first: 100) { nodes { id } } } }",
            json!({ "id": hotel.to_string() }),
        )
        .await
        .ok();
    data["hotel"]["gallery"]["nodes"]
        .as_array()
        .expect("a gallery")
        .iter()
        .map(|n| n["id"].as_str().expect("an image ID").to_owned())
        .collect()
}

/// A local partner image server: every path answers a JPEG (640x480) of its own file name, the
/// path's last segment: `/a/face.jpg` and `/b/face.jpg` are the same bytes, `/a/pool.jpg`
/// another picture. For tests whose imported images must be fetched and turn READY. Returns
/// its base URL (`http://127.0.0.1:PORT`); the app must be allowed to fetch from it
/// (`fetch_allow_hosts = ["127.0.0.1"]`).
pub async fn picture_server() -> String {
    use axum::http::header::CONTENT_TYPE;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let app = axum::Router::new().fallback(|uri: axum::http::Uri| async move {
        let name = uri.path().rsplit('/').next().unwrap_or_default();
        let seed = name
            .bytes()
            .fold(17u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        (
            [(CONTENT_TYPE, "image/jpeg")],
            images_subgraph::domain::upload::samples::jpeg(640, 480, seed),
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// The ID of `hotel`'s main image, as an anonymous client reads it.
pub async fn main_image(app: &TestApp, hotel: i64) -> Option<String> {
    let data = app
        .graphql(
            "query($id: ID!) { hotel(id: $id) { mainImage { id } } }",
            json!({ "id": hotel.to_string() }),
        )
        .await
        .ok();
    data["hotel"]["mainImage"]["id"].as_str().map(str::to_owned)
}

/// Sends `query` as a GraphQL multipart request with `bytes` as a PNG file in
/// `variables.input.file` (`input` carries `"file": null` for it), with `token`.
pub async fn upload_png(
    app: &TestApp,
    token: &str,
    query: &str,
    input: Value,
    bytes: Vec<u8>,
) -> Answer {
    upload_png_keyed(app, token, None, query, input, bytes).await
}

/// [`upload_png`] with an `Idempotency-Key` header when `key` is given.
pub async fn upload_png_keyed(
    app: &TestApp,
    token: &str,
    key: Option<&str>,
    query: &str,
    input: Value,
    bytes: Vec<u8>,
) -> Answer {
    use reqwest::multipart::{Form, Part};
    let operations = json!({ "query": query, "variables": { "input": input } });
    let form = Form::new()
        .text("operations", operations.to_string())
        .text("map", json!({ "0": ["variables.input.file"] }).to_string())
        .part(
            "0",
            Part::bytes(bytes)
                .file_name("terrace.png")
                .mime_str("image/png")
                .expect("a valid MIME type"),
        );
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .multipart(form);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    answer(request.send().await.expect("sent")).await
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
    Answer {
        status,
        content_type,
        headers,
        body,
    }
}

/// A consumer operation from `schema/operations/`.
pub fn operation(path: &str) -> String {
    let full = format!("{}/schema/operations/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}
