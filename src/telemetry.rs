//! What the process tells operators: log output, and the metrics of one application served in
//! the Prometheus text format at `/metrics`.
//!
//! # One recorder per application
//! The `metrics` crate's macros write to a process-wide recorder that can be installed only
//! once. Tests start many applications in one process, and each must count only its own
//! requests; so nothing is installed globally. Each `Application` builds its own
//! [`PrometheusRecorder`] and every layer records through [`Metrics`], a cheap-to-clone handle
//! on it. The price: a library that records through the global macros would not show up here
//! (none of ours does).
//!
//! # What is exported
//! | metric | kind | labels |
//! |---|---|---|
//! | `http_requests_total` | counter | `route` (the route's pattern, `unmatched` for 404s), `status` |
//! | `graphql_operation_duration_seconds` | histogram | `operation` (the operation's name; `unknown` when it has none; `other` for names outside [`Metrics::label_only_operations`] when set, or past 500 names) |
//! | `graphql_errors_total` | counter | `code` (`extensions.code`; `GRAPHQL_PARSE_FAILED`, `GRAPHQL_VALIDATION_FAILED` or `UNCODED` for the library's own errors) |
//! | `dataloader_batch_size` | histogram | `kind` (what the loader loads) |
//! | `db_statements_total` | counter | |
//! | `db_pool_connections`, `db_pool_idle_connections`, `db_pool_max_connections` | gauges | |
//! | `cache_requests_total` | counter | `level` (`l1`, `l2`), `result` (`hit`, `miss`) |
//! | `cache_redis_errors_total`, `cache_degradations_total` | counters | (Redis calls that failed or timed out; times the breaker opened) |
//! | `cache_degraded` | gauge | (1 while the breaker is open and reads bypass the cache) |
//! | `outbox_lag_seconds` | gauge | (age of the oldest unpublished outbox event; 0 when none) |
//! | `outbox_published_total` | counter | (events this replica's relay published) |
//! | `import_items_total` | counter | `outcome` (`CREATED`, `LINKED`, `DEDUPLICATED`, `UNCHANGED`, `REJECTED`: items of `importImages`) |
//! | `catalog_hotels` | gauge | `main_image` (`computed`, `hotelier`, `admin`, `none`) |
//! | `catalog_images` | gauge | `status` (`active`, `inactive`) |
//! | `catalog_unclassified_images` | gauge | (images without any tag) |
//! | `catalog_imported_items` | gauge | `partner`, `outcome`, `window` (`1d`, `7d`): items of import batches |
//! | `process_queue_images` | gauge | `state` (`PENDING`, `FAILED`: the queue's images by processing state, read every 15 s) |
//! | `process_oldest_due_seconds` | gauge | (age of the oldest due PENDING image: the queue's "iterator age") |
//! | `process_fetches_total` | counter | `outcome` (`OK` or the reason code: `HTTP_STATUS`, `TIMEOUT`, ...) |
//! | `process_fetched_bytes_total` | counter | (bytes of partner images fetched) |
//! | `process_host_failures_total` | counter | `host` (failed fetches by partner host; partner hosts are few) |
//! | `process_duration_seconds` | histogram | `outcome` (`READY`, `FAILED`, `RETRY`, ...: claim to outcome) |
//!
//! The `process_queue_*` gauges are set by the processing workers every poll interval (a
//! replica without workers does not export them).
//!
//! The `catalog_*` gauges are set every `CATALOG_STATS_INTERVAL_SECS` by the service's
//! `stats::refresh_gauges`, not at scrape time: their statements scan tables.
//!
//! Database figures are read when `/metrics` is scraped, through hooks the start-up code
//! registers with [`Metrics::on_scrape`], so this module knows nothing of the database.

use crate::cache::CacheFigures;
use crate::domain::ingest::Outcome;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use metrics::{
    Counter, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tracing_subscriber::EnvFilter;

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const OPERATION_DURATION: &str = "graphql_operation_duration_seconds";
pub const GRAPHQL_ERRORS: &str = "graphql_errors_total";
pub const LOADER_BATCH_SIZE: &str = "dataloader_batch_size";
pub const PLANNED_ANSWERS: &str = "graphql_planned_answers_total";
pub const DB_STATEMENTS: &str = "db_statements_total";
pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";
pub const DB_POOL_IDLE: &str = "db_pool_idle_connections";
pub const DB_POOL_MAX: &str = "db_pool_max_connections";
pub const CACHE_REQUESTS: &str = "cache_requests_total";
pub const CACHE_REDIS_ERRORS: &str = "cache_redis_errors_total";
pub const CACHE_DEGRADATIONS: &str = "cache_degradations_total";
pub const CACHE_DEGRADED: &str = "cache_degraded";
pub const OUTBOX_LAG: &str = "outbox_lag_seconds";
pub const OUTBOX_PUBLISHED: &str = "outbox_published_total";
pub const IMPORT_ITEMS: &str = "import_items_total";
pub const CATALOG_HOTELS: &str = "catalog_hotels";
pub const CATALOG_IMAGES: &str = "catalog_images";
pub const CATALOG_UNCLASSIFIED: &str = "catalog_unclassified_images";
pub const CATALOG_IMPORTED: &str = "catalog_imported_items";
pub const PROCESS_QUEUE: &str = "process_queue_images";
pub const PROCESS_OLDEST_DUE: &str = "process_oldest_due_seconds";
pub const PROCESS_FETCHES: &str = "process_fetches_total";
pub const PROCESS_FETCHED_BYTES: &str = "process_fetched_bytes_total";
pub const PROCESS_HOST_FAILURES: &str = "process_host_failures_total";
pub const PROCESS_DURATION: &str = "process_duration_seconds";

/// The `operation` label of an operation without a (usable) name.
pub const UNKNOWN_OPERATION: &str = "unknown";
/// The `operation` label once [`MAX_OPERATION_NAMES`] names have been seen.
pub const OTHER_OPERATIONS: &str = "other";
/// Distinct operation names kept as labels. Names come from clients: without a bound, a
/// client sending ever-new names would grow the registry (and every scrape) without end.
pub const MAX_OPERATION_NAMES: usize = 500;
/// Longest operation name kept as a label; longer ones are cut.
pub const MAX_OPERATION_NAME_LEN: usize = 64;

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds of the batch-size buckets, in keys (a batch holds at most 1,000).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// The recorder ignores metadata; one static value serves every registration.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The `kind` label of a loader's batch sizes, built at compile time so that recording a
/// batch allocates nothing.
pub struct LoaderKind([Label; 1]);

impl LoaderKind {
    pub const fn new(kind: &'static str) -> Self {
        Self([Label::from_static_parts("kind", kind)])
    }
}

/// Something to refresh right before a scrape (figures that are read, not counted).
type ScrapeHook = Box<dyn Fn(&Metrics) + Send + Sync>;

/// The metrics of one application. Clones share the same figures.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Request counters by route pattern and status: a pair seen before costs a read lock and
    /// no allocation. Both sets are small (the routes, the statuses the app answers with).
    requests: RwLock<HashMap<String, HashMap<u16, Counter>>>,
    /// Latency histograms by operation label: a name seen before costs a read lock and no
    /// allocation, and the number of names is bounded.
    operations: RwLock<HashMap<String, Histogram>>,
    /// When set, the only operation names labelled as such; every other name is `other`.
    /// Names come from anonymous clients: with this set (the known operations, see
    /// `crate::http::known`) made-up names cannot use up the labels the real ones need.
    known_operations: std::sync::OnceLock<std::collections::HashSet<String>>,
    scrape_hooks: Mutex<Vec<ScrapeHook>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // Only empty bucket lists are refused, and these are constants: the fallback (summaries
        // instead of histograms) cannot happen, and a unit test checks it.
        let builder = match builder
            .set_buckets_for_metric(Matcher::Full(OPERATION_DURATION.into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(LOADER_BATCH_SIZE.into()), BATCH_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(PROCESS_DURATION.into()), LATENCY_BUCKETS)
            }) {
            Ok(builder) => builder,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        describe(&recorder);
        Self(Arc::new(Inner {
            handle: recorder.handle(),
            recorder,
            requests: RwLock::new(HashMap::new()),
            operations: RwLock::new(HashMap::new()),
            known_operations: std::sync::OnceLock::new(),
            scrape_hooks: Mutex::new(Vec::new()),
        }))
    }

    /// One answered HTTP request. `route` is the route's pattern, never the raw path.
    pub fn http_request(&self, route: &str, status: u16) {
        let known = self
            .0
            .requests
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
            .and_then(|statuses| statuses.get(&status))
            .cloned();
        let counter = known.unwrap_or_else(|| {
            let key = Key::from_parts(
                HTTP_REQUESTS,
                vec![
                    Label::new("route", route.to_owned()),
                    Label::new("status", status.to_string()),
                ],
            );
            let counter = self.0.recorder.register_counter(&key, &METADATA);
            self.0
                .requests
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(route.to_owned())
                .or_default()
                .insert(status, counter.clone());
            counter
        });
        counter.increment(1);
    }

    /// One GraphQL operation, from the start of parsing to its response.
    pub fn operation(&self, name: Option<&str>, elapsed: Duration) {
        let label = match (operation_label(name), self.0.known_operations.get()) {
            (label, Some(known)) if label != UNKNOWN_OPERATION && !known.contains(label) => {
                OTHER_OPERATIONS
            }
            (label, _) => label,
        };
        self.operation_histogram(label)
            .record(elapsed.as_secs_f64());
    }

    /// Labels operation latency by these names only (the first call wins); others count as
    /// `other`.
    pub fn label_only_operations(&self, names: impl IntoIterator<Item = String>) {
        let _ = self.0.known_operations.set(names.into_iter().collect());
    }

    /// One error in a GraphQL response, by its `extensions.code`.
    pub fn graphql_error(&self, code: &str) {
        let key = Key::from_parts(GRAPHQL_ERRORS, vec![Label::new("code", code.to_owned())]);
        self.0
            .recorder
            .register_counter(&key, &METADATA)
            .increment(1);
    }

    /// One operation answered by its compiled plan (the others went through the executor).
    pub fn planned_answer(&self) {
        self.0
            .recorder
            .register_counter(&Key::from_static_name(PLANNED_ANSWERS), &METADATA)
            .increment(1);
    }

    /// One loader batch of `size` keys.
    pub fn loader_batch(&self, kind: &'static LoaderKind, size: usize) {
        let key = Key::from_static_parts(LOADER_BATCH_SIZE, &kind.0);
        self.0
            .recorder
            .register_histogram(&key, &METADATA)
            .record(size as f64);
    }

    /// Statements executed since start (read at scrape time).
    pub fn set_db_statements(&self, total: u64) {
        let key = Key::from_static_name(DB_STATEMENTS);
        self.0
            .recorder
            .register_counter(&key, &METADATA)
            .absolute(total);
    }

    /// Open, idle and maximum connections of the database pool (read at scrape time).
    pub fn set_db_pool(&self, open: u32, idle: usize, max: u32) {
        let recorder = &self.0.recorder;
        recorder
            .register_gauge(&Key::from_static_name(DB_POOL_CONNECTIONS), &METADATA)
            .set(open);
        recorder
            .register_gauge(&Key::from_static_name(DB_POOL_IDLE), &METADATA)
            .set(idle as f64);
        recorder
            .register_gauge(&Key::from_static_name(DB_POOL_MAX), &METADATA)
            .set(max);
    }

    /// `count` items of an import ended with `outcome`.
    pub fn import_items(&self, outcome: Outcome, count: u64) {
        let key = Key::from_parts(IMPORT_ITEMS, vec![Label::new("outcome", outcome.as_str())]);
        self.0
            .recorder
            .register_counter(&key, &METADATA)
            .increment(count);
    }

    /// The cache's totals (read at scrape time): lookups by level and result, Redis errors,
    /// and the breaker (`cache_degraded` is 1 while it is open).
    pub fn set_cache(&self, figures: CacheFigures) {
        let recorder = &self.0.recorder;
        let lookups = [
            ("l1", "hit", figures.local_hits),
            ("l1", "miss", figures.local_misses),
            ("l2", "hit", figures.shared_hits),
            ("l2", "miss", figures.shared_misses),
        ];
        for (level, result, total) in lookups {
            let key = Key::from_parts(
                CACHE_REQUESTS,
                vec![Label::new("level", level), Label::new("result", result)],
            );
            recorder.register_counter(&key, &METADATA).absolute(total);
        }
        recorder
            .register_counter(&Key::from_static_name(CACHE_REDIS_ERRORS), &METADATA)
            .absolute(figures.redis_errors);
        recorder
            .register_counter(&Key::from_static_name(CACHE_DEGRADATIONS), &METADATA)
            .absolute(figures.degradations);
        recorder
            .register_gauge(&Key::from_static_name(CACHE_DEGRADED), &METADATA)
            .set(f64::from(u8::from(figures.degraded)));
    }

    /// The outbox relay's figures (read at scrape time): the age of the oldest unpublished
    /// event in seconds, and the events published since start.
    pub fn set_outbox(&self, lag_seconds: f64, published: u64) {
        let recorder = &self.0.recorder;
        recorder
            .register_gauge(&Key::from_static_name(OUTBOX_LAG), &METADATA)
            .set(lag_seconds);
        recorder
            .register_counter(&Key::from_static_name(OUTBOX_PUBLISHED), &METADATA)
            .absolute(published);
    }

    /// Sets the gauge `name` with `labels` (figures refreshed by a task of their own).
    pub fn set_gauge(&self, name: &'static str, labels: &[(&'static str, String)], value: f64) {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(key, value)| Label::new(*key, value.clone()))
            .collect();
        self.0
            .recorder
            .register_gauge(&Key::from_parts(name, labels), &METADATA)
            .set(value);
    }

    /// Runs `hook` before every scrape, to refresh figures that are read rather than counted.
    pub fn on_scrape(&self, hook: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.0
            .scrape_hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(hook));
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let hooks = self
            .0
            .scrape_hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for hook in hooks.iter() {
            hook(self);
        }
        drop(hooks);
        self.0.handle.render()
    }

    /// Drains recorded histogram samples into their buckets every `period`, so that memory
    /// stays flat when nobody scrapes. Runs until dropped.
    pub async fn run_upkeep(self, period: Duration) {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            self.0.handle.run_upkeep();
        }
    }

    fn operation_histogram(&self, label: &str) -> Histogram {
        let known = self
            .0
            .operations
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(label)
            .cloned();
        if let Some(histogram) = known {
            return histogram;
        }
        let mut operations = self
            .0
            .operations
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let label = if operations.len() < MAX_OPERATION_NAMES || operations.contains_key(label) {
            label
        } else {
            OTHER_OPERATIONS
        };
        let recorder = &self.0.recorder;
        operations
            .entry(label.to_owned())
            .or_insert_with(|| {
                let key = Key::from_parts(
                    OPERATION_DURATION,
                    vec![Label::new("operation", label.to_owned())],
                );
                recorder.register_histogram(&key, &METADATA)
            })
            .clone()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl crate::service::process::ProcessObserver for Metrics {
    fn fetched(&self, host: &str, outcome: &str, bytes: usize) {
        let recorder = &self.0.recorder;
        let key = Key::from_parts(
            PROCESS_FETCHES,
            vec![Label::new("outcome", outcome.to_owned())],
        );
        recorder.register_counter(&key, &METADATA).increment(1);
        recorder
            .register_counter(&Key::from_static_name(PROCESS_FETCHED_BYTES), &METADATA)
            .increment(bytes as u64);
        if outcome != "OK" {
            let key = Key::from_parts(
                PROCESS_HOST_FAILURES,
                vec![Label::new("host", host.to_owned())],
            );
            recorder.register_counter(&key, &METADATA).increment(1);
        }
    }

    fn processed(&self, outcome: crate::service::process::Outcome, elapsed: Duration) {
        let label = outcome.label();
        let kind = label.split(' ').next().unwrap_or_default().to_owned();
        let key = Key::from_parts(PROCESS_DURATION, vec![Label::new("outcome", kind)]);
        self.0
            .recorder
            .register_histogram(&key, &METADATA)
            .record(elapsed.as_secs_f64());
    }

    fn queue(&self, figures: &crate::store::processing::QueueFigures) {
        for (state, count) in &figures.by_state {
            self.set_gauge(
                PROCESS_QUEUE,
                &[("state", state.as_str().to_owned())],
                *count as f64,
            );
        }
        self.set_gauge(PROCESS_OLDEST_DUE, &[], figures.oldest_due_secs);
    }
}

/// The `operation` label of a name: the name if it is a GraphQL name, cut to
/// [`MAX_OPERATION_NAME_LEN`]; [`UNKNOWN_OPERATION`] otherwise.
pub fn operation_label(name: Option<&str>) -> &str {
    let Some(name) = name else {
        return UNKNOWN_OPERATION;
    };
    let is_name = name
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    if name.is_empty() || !is_name {
        return UNKNOWN_OPERATION;
    }
    // All ASCII: any byte index is a character boundary.
    &name[..name.len().min(MAX_OPERATION_NAME_LEN)]
}

fn describe(recorder: &PrometheusRecorder) {
    let help = |text: &'static str| -> SharedString { text.into() };
    recorder.describe_counter(
        KeyName::from_const_str(HTTP_REQUESTS),
        None,
        help("HTTP requests answered, by route and status"),
    );
    recorder.describe_histogram(
        KeyName::from_const_str(OPERATION_DURATION),
        Some(Unit::Seconds),
        help("GraphQL operations from parsing to response, by operation name"),
    );
    recorder.describe_counter(
        KeyName::from_const_str(GRAPHQL_ERRORS),
        None,
        help("Errors in GraphQL responses, by extensions.code"),
    );
    recorder.describe_histogram(
        KeyName::from_const_str(LOADER_BATCH_SIZE),
        Some(Unit::Count),
        help("Keys per DataLoader batch, by key kind"),
    );
    recorder.describe_counter(
        KeyName::from_const_str(DB_STATEMENTS),
        None,
        help("SQL statements executed since start"),
    );
    recorder.describe_gauge(
        KeyName::from_const_str(DB_POOL_CONNECTIONS),
        None,
        help("Open connections of the database pool"),
    );
    recorder.describe_gauge(
        KeyName::from_const_str(DB_POOL_IDLE),
        None,
        help("Idle connections of the database pool"),
    );
    recorder.describe_counter(
        KeyName::from_const_str(CACHE_REQUESTS),
        None,
        help("Cache lookups by level (l1 in process, l2 Redis) and result (hit, miss)"),
    );
    recorder.describe_counter(
        KeyName::from_const_str(CACHE_REDIS_ERRORS),
        None,
        help("Redis calls of the cache that failed or timed out"),
    );
    recorder.describe_counter(
        KeyName::from_const_str(CACHE_DEGRADATIONS),
        None,
        help("Times the cache stopped using Redis (the breaker opened)"),
    );
    recorder.describe_gauge(
        KeyName::from_const_str(CACHE_DEGRADED),
        None,
        help("1 while the cache serves from the database because Redis failed"),
    );
    recorder.describe_gauge(
        KeyName::from_const_str(OUTBOX_LAG),
        Some(Unit::Seconds),
        help("Age of the oldest unpublished outbox event, 0 when none"),
    );
    recorder.describe_counter(
        KeyName::from_const_str(OUTBOX_PUBLISHED),
        None,
        help("Outbox events this replica's relay published"),
    );
    recorder.describe_gauge(
        KeyName::from_const_str(DB_POOL_MAX),
        None,
        help("Most connections the database pool opens"),
    );
    recorder.describe_counter(
        KeyName::from_const_str(IMPORT_ITEMS),
        None,
        help("Items of importImages, by outcome"),
    );
    for (name, text) in [
        (
            CATALOG_HOTELS,
            "Hotels by who chose their main image (none: no main image)",
        ),
        (CATALOG_IMAGES, "Images by status"),
        (CATALOG_UNCLASSIFIED, "Images without any tag"),
        (
            CATALOG_IMPORTED,
            "Items of import batches per partner and outcome over the last day (1d) or week (7d)",
        ),
    ] {
        recorder.describe_gauge(KeyName::from_const_str(name), None, help(text));
    }
}

/// Installs the process's log output on stderr: JSON lines when `json`, else human-readable;
/// the level comes from `RUST_LOG` (default `info`).
pub fn init_logs(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_labels_are_graphql_names_or_unknown() {
        let long = "A".repeat(100);
        let cases: &[(Option<&str>, &str)] = &[
            (None, "unknown"),
            (Some(""), "unknown"),
            (Some("HotelGallery"), "HotelGallery"),
            (Some("_private2"), "_private2"),
            (Some("2fast"), "unknown"),
            (Some("has space"), "unknown"),
            (Some("with\"quote"), "unknown"),
            (Some("Ünicode"), "unknown"),
            (Some(&long), &long[..64]),
        ];
        for (name, label) in cases {
            assert_eq!(operation_label(*name), *label, "{name:?}");
        }
    }

    #[test]
    fn histograms_render_with_buckets_and_names_are_bounded() {
        let metrics = Metrics::new();
        static HOTEL: LoaderKind = LoaderKind::new("hotel");
        metrics.loader_batch(&HOTEL, 7);
        metrics.operation(Some("First"), Duration::from_millis(3));
        for i in 0..MAX_OPERATION_NAMES + 10 {
            metrics.operation(Some(&format!("Op{i}")), Duration::from_millis(1));
        }
        let text = metrics.render();
        assert!(
            text.contains(r#"dataloader_batch_size_bucket{kind="hotel",le="10"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"graphql_operation_duration_seconds_bucket{operation="First",le="0.005"} 1"#
        ));
        assert!(text.contains(r#"operation="other""#));
        let names = metrics.0.operations.read().map(|o| o.len()).unwrap_or(0);
        assert_eq!(names, MAX_OPERATION_NAMES + 1, "the names plus `other`");
    }

    #[test]
    fn scrape_hooks_refresh_read_figures() {
        let metrics = Metrics::new();
        metrics.on_scrape(|m| {
            m.set_db_statements(42);
            m.set_db_pool(3, 2, 16);
        });
        let text = metrics.render();
        assert!(text.contains("db_statements_total 42"), "{text}");
        assert!(text.contains("db_pool_connections 3"), "{text}");
        assert!(text.contains("db_pool_idle_connections 2"), "{text}");
        assert!(text.contains("db_pool_max_connections 16"), "{text}");
    }
}
