//! Settings: command-line flags with environment fallbacks, and defaults that make the
//! embedded mode (SQLite file, in-process cache, demo data, GraphiQL) work with nothing set.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::domain::catalog::PartnerId;
use crate::domain::media::{ImageSize, Imgproxy, SizeTable};

pub use crate::secret::Secret;

/// The SQLite file of the embedded default, in the working directory.
pub const EMBEDDED_DATABASE_FILE: &str = "images-subgraph.db";

#[derive(Debug, Parser)]
#[command(
    name = "images-subgraph",
    version,
    about = "Federated GraphQL subgraph for hotel images"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate, then serve the subgraph (the default).
    Serve,
    /// Apply pending migrations and exit (prints the catalog's identity and event stream).
    Migrate,
    /// Give the catalog a new identity, after restoring its database from a backup, so that no
    /// replica reads what Redis holds of the newer state. Stop every replica first.
    NewCatalogIdentity,
    /// Generate a catalog of `--hotels` hotels (IDs 1..N) into an empty database.
    Seed(SeedArgs),
    /// Recompute the curation of every hotel (after a rule change).
    Recompute(RecomputeArgs),
    /// Import a partner feed file (JSON Lines or CSV), in batches; safe to re-run.
    Import(ImportArgs),
    /// Write every hotel's published state as `HotelSnapshot` events to the outbox (for a new
    /// consumer to bootstrap from); resumes an unfinished run.
    Republish(RepublishArgs),
    /// Delete published outbox events older than `--older-than-hours`, in small batches.
    PruneOutbox(PruneOutboxArgs),
    /// Print the federation SDL (what `schema.graphql` holds).
    ExportSchema,
    /// Mint a token for the configured secret, to try internal fields and mutations.
    Token(TokenArgs),
    /// Request the CDN URLs of hotels' main and first gallery images, to fill the CDN's cache.
    Warmup(WarmupArgs),
    /// Process PENDING partner images (fetch, measure, store) until none is due, with a
    /// progress bar and a summary by outcome; safe to run beside serving replicas.
    Process(ProcessArgs),
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    #[arg(long, default_value_t = 500)]
    pub hotels: u64,
    #[arg(long, default_value_t = 20)]
    pub images_per_hotel: u32,
    /// Hotels per transaction.
    #[arg(long, default_value_t = 1_000)]
    pub chunk: u64,
}

#[derive(Debug, Args)]
pub struct RecomputeArgs {
    /// Hotels per transaction.
    #[arg(long, default_value_t = 500)]
    pub chunk: u64,
    /// Transactions in flight at once.
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
}

#[derive(Debug, Args)]
pub struct RepublishArgs {
    /// Hotels per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
    /// Most hotels per second (0: no limit).
    #[arg(long, default_value_t = 2_000)]
    pub rate: u32,
    /// Start a new run even when an unfinished one could be resumed.
    #[arg(long)]
    pub restart: bool,
}

#[derive(Debug, Args)]
pub struct PruneOutboxArgs {
    /// Delete events published longer ago than this many hours (default:
    /// `OUTBOX_RETENTION_HOURS`, else 168, a week); 1 to 87,600.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=87_600))]
    pub older_than_hours: Option<u64>,
    /// Rows per delete statement.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=50_000))]
    pub batch: u64,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The partner delivering the feed. Lines may name their own with `partner_id` (a feed
    /// of several partners needs no flag); a line naming another partner is rejected.
    #[arg(long)]
    pub partner_id: Option<i64>,
    /// The file's format. Default: CSV for a `.csv` file, JSON Lines otherwise.
    #[arg(long, value_enum)]
    pub format: Option<crate::import::Format>,
    /// The file is the partner's complete set: afterwards, retire the partner's sources it
    /// does not contain (needs --partner-id).
    #[arg(long)]
    pub snapshot: bool,
    /// Write each rejected line's number and reason here, as JSON Lines.
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Lines per batch: one transaction each, curating the hotels it touched (at most 15000;
    /// default 10000, on MySQL/MariaDB 3000).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// The feed file.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ProcessArgs {
    /// Images processed at once (on SQLite they fetch and measure side by side and take turns
    /// writing).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Also wait for retries due within this many seconds before stopping (0: stop as soon as
    /// nothing is due).
    #[arg(long, default_value_t = 0)]
    pub wait_retries_secs: u64,
}

#[derive(Debug, Clone, Args)]
pub struct WarmupArgs {
    /// Hotels to warm, comma-separated; every hotel when not given.
    #[arg(long, value_delimiter = ',')]
    pub hotel_ids: Vec<i64>,
    /// Gallery images per hotel besides the main image (the gallery's first ones).
    #[arg(long, default_value_t = 10)]
    pub gallery: usize,
    /// Sizes each image is requested at, comma-separated (the consumer operations use
    /// thumbnail, small, large and xlarge).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_values_t = [WarmupSize::Thumbnail, WarmupSize::Small, WarmupSize::Large, WarmupSize::Xlarge]
    )]
    pub sizes: Vec<WarmupSize>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// How long one request may take, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

/// A feature turned `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// An image size as `warmup --sizes` names it (`Image.url(size:)`'s sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WarmupSize {
    Thumbnail,
    Small,
    Medium,
    Large,
    Xlarge,
    Original,
}

impl From<WarmupSize> for ImageSize {
    fn from(size: WarmupSize) -> Self {
        match size {
            WarmupSize::Thumbnail => ImageSize::Thumbnail,
            WarmupSize::Small => ImageSize::Small,
            WarmupSize::Medium => ImageSize::Medium,
            WarmupSize::Large => ImageSize::Large,
            WarmupSize::Xlarge => ImageSize::Xlarge,
            WarmupSize::Original => ImageSize::Original,
        }
    }
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Space-separated scopes, e.g. "images:admin" or "images:hotelier".
    #[arg(long, default_value = "images:admin")]
    pub scope: String,
    /// Hotels a hotelier token speaks for, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub hotel_ids: Vec<i64>,
    #[arg(long)]
    pub partner_id: Option<i64>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    #[arg(long, default_value = "dev")]
    pub subject: String,
}

/// Process settings. Each flag falls back to the environment variable named beside it.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on. Port 0 picks a free port (tests).
    #[arg(
        long = "listen",
        env = "LISTEN_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Database URL (`sqlite:`, `postgres:`, `mysql:`). Unset: the embedded default, a SQLite
    /// file in the working directory, seeded with demo data.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<Secret>,

    /// Database connections per replica.
    #[arg(
        long,
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub database_max_connections: u32,

    /// Longest a statement of the service may run (PostgreSQL), in milliseconds. The batch
    /// commands (`seed`, `import`, `recompute`) run without this limit.
    #[arg(
        long,
        env = "DATABASE_STATEMENT_TIMEOUT_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub database_statement_timeout_ms: u64,

    /// Redis URL for the shared cache, invalidation bus, event stream and persisted queries:
    /// `redis://` (or `rediss://`) for one server, `redis+cluster://host:port,host:port,...`
    /// (or `rediss+cluster://`) for a Redis Cluster's seed nodes. Unset: in-process only.
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<Secret>,

    /// Prefix of every Redis key, channel and stream this service uses (no `{` or `}`). The
    /// catalog's identity follows it in every name of catalog data, so catalogs sharing one
    /// Redis are kept apart even on the same prefix.
    #[arg(long, env = "REDIS_PREFIX", default_value = "isg", global = true)]
    pub redis_prefix: String,

    /// In-process cache (L1) entries per kind (hotels, images); 0 turns L1 off.
    #[arg(
        long,
        env = "CACHE_L1_ENTRIES",
        default_value_t = 200_000,
        global = true
    )]
    pub cache_l1_entries: u64,

    /// Time to live of cached hotels and images, in seconds (plus up to 10% jitter). Only a
    /// backstop: changes invalidate their entries at once.
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = 300, global = true)]
    pub cache_ttl_secs: u64,

    /// Budget of one Redis call, in milliseconds. A call that takes longer counts as a
    /// failure: reads fall through to the database and the cache turns degraded.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 50, global = true)]
    pub redis_timeout_ms: u64,

    /// How often a degraded cache retries Redis, in milliseconds.
    #[arg(long, env = "REDIS_RETRY_MS", default_value_t = 250, global = true)]
    pub redis_retry_ms: u64,

    /// `Cache-Control: public, max-age` of public query responses, in seconds; 0 sends
    /// `no-store` for everything.
    #[arg(
        long,
        env = "CACHE_CONTROL_MAX_AGE",
        default_value_t = 60,
        global = true
    )]
    pub cache_control_max_age: u32,

    /// How long an `Idempotency-Key` of a mutation request and its answer are kept, in
    /// seconds: a retry within this time gets the first answer; after it, the key is new.
    #[arg(
        long,
        env = "IDEMPOTENCY_TTL_SECS",
        default_value_t = 24 * 3600,
        global = true
    )]
    pub idempotency_ttl_secs: u64,

    /// How often `serve` refreshes the `catalog_*` gauges (business figures: hotels by main
    /// image, images by status, unclassified backlog, import outcomes), in seconds; 0 turns
    /// the refresh off. Each refresh runs a few statements that scan `hotel` and `image`.
    #[arg(
        long,
        env = "CATALOG_STATS_INTERVAL_SECS",
        default_value_t = 60,
        global = true
    )]
    pub catalog_stats_interval_secs: u64,

    /// How long a registered persisted query (APQ) is kept, in seconds.
    #[arg(long, env = "APQ_TTL_SECS", default_value_t = 7 * 24 * 3600, global = true)]
    pub apq_ttl_secs: u64,
    /// Run the built-in outbox relay (`on`/`off`). Turn it off when Debezium's outbox event
    /// router reads the `outbox` table instead (see the README, "Events").
    #[arg(
        long,
        env = "OUTBOX_RELAY",
        default_value = "on",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set,
        global = true
    )]
    pub outbox_relay: bool,

    /// How often the relay looks for unpublished events when no commit woke it, in
    /// milliseconds (events written by another replica or by the `import` command).
    #[arg(
        long,
        env = "OUTBOX_POLL_MS",
        default_value_t = 200,
        value_parser = clap::value_parser!(u64).range(1..=60_000),
        global = true
    )]
    pub outbox_poll_ms: u64,

    /// When set, `serve` deletes published outbox events older than this many hours, every
    /// `OUTBOX_RETENTION_INTERVAL_SECS`, in small batches (never an unpublished one). Unset:
    /// events are kept (prune them with the `prune-outbox` command).
    #[arg(long, env = "OUTBOX_RETENTION_HOURS", value_parser = clap::value_parser!(u64).range(1..=87_600), global = true)]
    pub outbox_retention_hours: Option<u64>,

    /// How often the periodic outbox retention runs, in seconds.
    #[arg(
        long,
        env = "OUTBOX_RETENTION_INTERVAL_SECS",
        default_value_t = 600,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub outbox_retention_interval_secs: u64,

    /// Most events the relay publishes in one round (one sink call, one transaction).
    #[arg(
        long,
        env = "OUTBOX_BATCH_SIZE",
        default_value_t = 500,
        value_parser = clap::value_parser!(u64).range(1..=10_000),
        global = true
    )]
    pub outbox_batch_size: u64,

    /// Approximate length the Redis event stream `{REDIS_PREFIX}:events` is trimmed to
    /// (`XADD ... MAXLEN ~`): consumers further behind than this lose the oldest entries.
    #[arg(
        long,
        env = "OUTBOX_STREAM_MAXLEN",
        default_value_t = 1_000_000,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub outbox_stream_maxlen: u64,

    /// How long Redis may take to accept a batch of events, in milliseconds; past it the batch
    /// counts as failed and is published again later.
    #[arg(
        long,
        env = "OUTBOX_PUBLISH_TIMEOUT_MS",
        default_value_t = 500,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub outbox_publish_timeout_ms: u64,

    /// Base URL of the image CDN; `url(size)` is `{base}/{size}/{storage key}`. Default: this
    /// server's `/media` in the embedded default, else `https://images.example.com`.
    #[arg(long, env = "CDN_BASE_URL", global = true)]
    pub cdn_base_url: Option<String>,

    /// Where uploaded files are stored: `file:///abs/dir`, or `s3://bucket/prefix` and
    /// `gs://bucket/prefix` (built with the `cloud-storage` feature). Default: the directory
    /// `images-subgraph-media` in the working directory.
    #[arg(long, env = "OBJECT_STORE_URL", global = true)]
    pub object_store_url: Option<String>,

    /// Largest accepted upload in bytes.
    #[arg(long, env = "UPLOAD_MAX_BYTES", default_value_t = 20 * 1024 * 1024, global = true)]
    pub upload_max_bytes: usize,

    /// Most pixels (width x height) an image may have; a larger one is refused from its
    /// header, before it is decoded (a small file may claim a huge picture). Each side is
    /// also at most 20,000 px.
    #[arg(
        long,
        env = "IMAGE_MAX_PIXELS",
        default_value_t = 50_000_000,
        global = true
    )]
    pub image_max_pixels: u64,

    /// Host names, as written in partner URLs, that fetching may reach whatever they resolve
    /// to (comma-separated). DANGEROUS: for tests and local setups only; every other host
    /// must resolve to public addresses (see `src/fetch.rs`). Empty by default.
    #[arg(long, env = "FETCH_ALLOW_HOSTS", value_delimiter = ',', global = true)]
    pub fetch_allow_hosts: Vec<String>,

    /// Longest time one fetch of a partner image may take, in milliseconds: every redirect and
    /// the body (then `TIMEOUT`, retried later).
    #[arg(long, env = "FETCH_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub fetch_timeout_ms: u64,

    /// Processing workers in `serve` (fetch, measure and store PENDING partner images); 0
    /// turns them off (another replica, or the `process` command, does the work). On SQLite
    /// the workers fetch and measure side by side and take turns writing (one writer).
    #[arg(long, env = "PROCESS_WORKERS", default_value_t = 2, global = true)]
    pub process_workers: usize,

    /// Attempts before an image that keeps failing (timeouts, 5xx, 429) is FAILED.
    #[arg(long, env = "PROCESS_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub process_max_attempts: u32,

    /// Seconds a worker holds a claimed image; a worker that dies leaves it due again after.
    #[arg(long, env = "PROCESS_LEASE_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub process_lease_secs: u64,

    /// Fetches running at once against one partner host, per process.
    #[arg(long, env = "PROCESS_PER_HOST", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub process_per_host: u64,

    /// Wait before the first retry of a failed fetch, in milliseconds; each further retry
    /// doubles it (with jitter), up to six hours. A `Retry-After` of the server wins.
    #[arg(
        long,
        env = "PROCESS_RETRY_BASE_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub process_retry_base_ms: u64,

    /// How often an idle worker looks for due images, in milliseconds.
    #[arg(long, env = "PROCESS_POLL_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub process_poll_ms: u64,

    /// The HOTELIER partner uploads are credited to (created when missing).
    #[arg(long, env = "UPLOAD_PARTNER_ID", default_value_t = 4, global = true)]
    pub upload_partner_id: i64,

    /// Serve stored uploads at `/media/...` (a local object store). Default: in the embedded
    /// default only.
    #[arg(long, env = "SERVE_MEDIA", global = true)]
    pub serve_media: Option<bool>,

    /// Pixel sizes of THUMBNAIL (square), SMALL, MEDIUM, LARGE and XLARGE, comma-separated.
    #[arg(
        long,
        env = "IMAGE_SIZES",
        default_value = "160,320,640,1024,1600",
        value_delimiter = ',',
        global = true
    )]
    pub image_sizes: Vec<u32>,

    /// Base URL of the imgproxy server behind `transformUrl`.
    #[arg(
        long,
        env = "IMGPROXY_URL",
        default_value = "https://imgproxy.example.com",
        global = true
    )]
    pub imgproxy_url: String,

    /// imgproxy signing key, hex (as IMGPROXY_KEY of imgproxy). Unset: `transformUrl` is null.
    #[arg(long, env = "IMGPROXY_KEY", global = true)]
    pub imgproxy_key: Option<Secret>,

    /// imgproxy signing salt, hex (as IMGPROXY_SALT of imgproxy).
    #[arg(long, env = "IMGPROXY_SALT", global = true)]
    pub imgproxy_salt: Option<Secret>,

    /// HS256 secret for bearer tokens. Unset: the embedded default keeps a development secret
    /// beside its SQLite file; any other deployment accepts no token.
    #[arg(long, env = "JWT_SECRET", global = true)]
    pub jwt_secret: Option<Secret>,

    /// RS256 public key (PEM text) for bearer tokens; takes the place of `JWT_SECRET`.
    #[arg(long, env = "JWT_PUBLIC_KEY", global = true)]
    pub jwt_public_key: Option<Secret>,

    /// Required `iss` of tokens, when set.
    #[arg(long, env = "JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of tokens, when set.
    #[arg(long, env = "JWT_AUDIENCE", global = true)]
    pub jwt_audience: Option<String>,

    /// Serve GraphiQL at `/`. Default: on in the embedded default only.
    #[arg(long, env = "GRAPHIQL", global = true)]
    pub graphiql: Option<bool>,

    /// Largest `/graphql` body in bytes.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 1 << 20, global = true)]
    pub body_limit_bytes: usize,

    /// How long a loader batch waits for more keys, in microseconds.
    #[arg(long, env = "LOADER_DELAY_US", default_value_t = 500, global = true)]
    pub loader_delay_us: u64,

    /// Answer the hot read operations with their compiled plans (`on`), or send every
    /// operation through async-graphql's executor (`off`): an escape hatch, and the reference
    /// the plans are compared with.
    #[arg(
        long,
        env = "COMPILED_PLANS",
        value_enum,
        default_value_t = Switch::On,
        global = true
    )]
    pub compiled_plans: Switch,

    /// Smallest short side (px) of a gallery image.
    #[arg(
        long,
        env = "CURATION_MIN_SHORT_SIDE",
        default_value_t = 300,
        global = true
    )]
    pub curation_min_short_side: u32,

    /// Most images in a gallery.
    #[arg(
        long,
        env = "CURATION_GALLERY_SIZE",
        default_value_t = 50,
        global = true
    )]
    pub curation_gallery_size: usize,

    /// Seed the demo catalog when the database is empty (default: in the embedded mode).
    #[arg(long, env = "SEED_DEMO", global = true)]
    pub seed_demo: Option<bool>,

    /// Draw a picture for each demo image into the object store when seeding the demo catalog,
    /// the rows saying what measuring it found (default: on). Off: the rows declare sizes and
    /// nothing is stored (the tests' demo catalog).
    #[arg(long, env = "SEED_DEMO_PICTURES", global = true)]
    pub seed_demo_pictures: Option<bool>,

    /// Deepest selection nesting an operation may have.
    #[arg(long, env = "QUERY_MAX_DEPTH", default_value_t = 12, global = true)]
    pub query_max_depth: usize,

    /// Highest complexity of an operation (a field counts 1, a list its page size times its
    /// children).
    #[arg(
        long,
        env = "QUERY_MAX_COMPLEXITY",
        default_value_t = 5_000,
        global = true
    )]
    pub query_max_complexity: usize,

    /// Most directives at one location.
    #[arg(long, env = "QUERY_MAX_DIRECTIVES", default_value_t = 5, global = true)]
    pub query_max_directives: usize,

    /// Most aliases in one document.
    #[arg(long, env = "QUERY_MAX_ALIASES", default_value_t = 30, global = true)]
    pub query_max_aliases: usize,

    /// Most root fields in one operation.
    #[arg(
        long,
        env = "QUERY_MAX_ROOT_FIELDS",
        default_value_t = 20,
        global = true
    )]
    pub query_max_root_fields: usize,

    /// Most representations in one `_entities` call.
    #[arg(long, env = "QUERY_MAX_ENTITIES", default_value_t = 500, global = true)]
    pub query_max_entities: usize,

    /// Deepest bracket nesting of a document, checked before parsing (the parser has no limit
    /// of its own on nested values and would overflow its stack).
    #[arg(long, env = "QUERY_MAX_NESTING", default_value_t = 64, global = true)]
    pub query_max_nesting: usize,

    /// Longest document in bytes.
    #[arg(long, env = "QUERY_MAX_BYTES", default_value_t = 64 * 1024, global = true)]
    pub query_max_bytes: usize,

    /// Most tokens in one document.
    #[arg(
        long,
        env = "QUERY_MAX_TOKENS",
        default_value_t = 10_000,
        global = true
    )]
    pub query_max_tokens: usize,

    /// Most operations in one batched request (the gateway may batch).
    #[arg(long, env = "MAX_BATCH", default_value_t = 10, global = true)]
    pub max_batch: usize,

    /// Longest a request may take, in milliseconds.
    #[arg(
        long,
        env = "REQUEST_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub request_timeout_ms: u64,

    /// Requests served at once; beyond it requests get 503 at once instead of queueing.
    #[arg(
        long,
        env = "MAX_CONCURRENT_REQUESTS",
        default_value_t = 1_024,
        global = true
    )]
    pub max_concurrent_requests: usize,

    /// The router's response-cache invalidation endpoint (Apollo Router `response_cache`
    /// `invalidation`, e.g. `http://router:4000/invalidation`). When set, the relay asks it to
    /// drop the cached entries of every hotel and image whose events it publishes.
    #[arg(long, env = "ROUTER_INVALIDATION_URL", global = true)]
    pub router_invalidation_url: Option<String>,

    /// The `shared_key` the router's invalidation endpoint expects for this subgraph (sent as
    /// the `Authorization` header).
    #[arg(long, env = "ROUTER_INVALIDATION_KEY", global = true)]
    pub router_invalidation_key: Option<Secret>,

    /// This subgraph's name in the supergraph (the `subgraphs` of invalidation requests).
    #[arg(
        long,
        env = "ROUTER_SUBGRAPH_NAME",
        default_value = "images",
        global = true
    )]
    pub router_subgraph_name: String,
    /// The CDN's purge endpoint: `purgeImage` queues a `POST` of `{"urls": [...],
    /// "surrogateKeys": [...]}` to it, sent after the commit and retried until it answers 2xx.
    /// Unset: no CDN purge is asked for.
    #[arg(long, env = "CDN_PURGE_URL", global = true)]
    pub cdn_purge_url: Option<String>,

    /// Bearer token sent with every CDN purge (`Authorization: Bearer ...`), when set.
    #[arg(long, env = "CDN_PURGE_TOKEN", global = true)]
    pub cdn_purge_token: Option<Secret>,

    /// Shared secret only the router knows; when set, `/graphql` without the header
    /// `x-router-secret` carrying it is refused with 403.
    #[arg(long, env = "ROUTER_SECRET", global = true)]
    pub router_secret: Option<Secret>,

    /// Allow introspection for everyone. Default: in the embedded default only; elsewhere
    /// admins only, and field suggestions are off.
    #[arg(long, env = "INTROSPECTION", global = true)]
    pub introspection: Option<bool>,

    /// After the stop signal (SIGTERM, ctrl-c), how long to keep accepting requests with
    /// readiness already false, in milliseconds, so that load balancers and the router stop
    /// sending before the listener closes. 0 closes it at once (a Kubernetes `preStop` sleep
    /// does the same job).
    #[arg(long, env = "SHUTDOWN_DELAY_MS", default_value_t = 0, global = true)]
    pub shutdown_delay_ms: u64,

    /// Once the listener is closed, how long requests in flight may take to finish, in
    /// milliseconds; those still running then are answered 503 and the server stops anyway.
    #[arg(
        long,
        env = "SHUTDOWN_DRAIN_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub shutdown_drain_ms: u64,

    /// Log as JSON lines (default: human-readable).
    #[arg(long, env = "LOG_JSON", default_value_t = false, global = true)]
    pub log_json: bool,

    // ---- Connections and the budgets of anonymous input (issue 19); one block on purpose. ----
    /// How long a client may take to send a request's headers, in milliseconds. hyper starts
    /// this clock whenever a connection waits for a request: on a new connection and, after
    /// each answer, on a keep-alive connection; so it is also how long an idle keep-alive
    /// connection is kept. Past it the connection is closed. Keep it above the idle timeout
    /// of the router's connection pool (Apollo Router: 5 s).
    #[arg(
        long,
        env = "HTTP_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub http_header_read_timeout_ms: u64,

    /// Connections this process serves at once; further ones wait in the listen backlog
    /// until one closes. Each costs a task and buffers even when it sends nothing.
    #[arg(
        long,
        env = "HTTP_MAX_CONNECTIONS",
        default_value_t = 4_096,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub http_max_connections: u64,

    /// Bytes of persisted-query (APQ) texts kept in this process.
    #[arg(long, env = "APQ_MAX_BYTES", default_value_t = 16 << 20, global = true)]
    pub apq_max_bytes: u64,

    /// Bytes of persisted-query texts all replicas together may register in Redis per
    /// `APQ_TTL_SECS` (so at most twice this is kept at any time); past it a registration is
    /// kept in process only.
    #[arg(long, env = "APQ_REDIS_MAX_BYTES", default_value_t = 64 << 20, global = true)]
    pub apq_redis_max_bytes: u64,
}

/// What start-up derives from several flags, checked by [`Settings::check`] before any command
/// connects to anything: a wrong value stops the process at once, with a message naming the
/// flag, instead of half-way through start-up.
#[derive(Debug, Clone)]
pub struct Checked {
    /// `IMAGE_SIZES`: the pixel sizes of the CDN's fixed image sizes.
    pub image_sizes: SizeTable,
    /// `IMGPROXY_KEY` and `IMGPROXY_SALT` (both or neither): the signer of `transformUrl`.
    pub imgproxy: Option<Imgproxy>,
    /// `UPLOAD_PARTNER_ID`: the partner hotelier uploads are credited to.
    pub upload_partner: PartnerId,
}

impl Settings {
    /// Checks the flags that must agree with each other or parse into richer values (see
    /// [`Checked`]). Cheap and pure: callers that need a checked value may call it again.
    pub fn check(&self) -> anyhow::Result<Checked> {
        let image_sizes = match self.image_sizes.as_slice() {
            &[thumbnail, small, medium, large, xlarge] => SizeTable {
                thumbnail,
                small,
                medium,
                large,
                xlarge,
            },
            _ => anyhow::bail!(
                "IMAGE_SIZES needs five pixel sizes: thumbnail,small,medium,large,xlarge"
            ),
        };
        let imgproxy = match (&self.imgproxy_key, &self.imgproxy_salt) {
            (Some(key), Some(salt)) => Some(
                Imgproxy::from_hex(&self.imgproxy_url, key.expose(), salt.expose())
                    .context("invalid IMGPROXY_KEY or IMGPROXY_SALT")?,
            ),
            (None, None) => None,
            _ => anyhow::bail!("IMGPROXY_KEY and IMGPROXY_SALT must be set together"),
        };
        if let Some(url) = &self.cdn_purge_url {
            let parsed = url::Url::parse(url).context("invalid CDN_PURGE_URL")?;
            anyhow::ensure!(
                matches!(parsed.scheme(), "http" | "https"),
                "CDN_PURGE_URL must be an http or https URL"
            );
        }
        let upload_partner = PartnerId::new(self.upload_partner_id)
            .context("UPLOAD_PARTNER_ID must be a positive partner ID")?;
        crate::redis_link::check_prefix(&self.redis_prefix).map_err(anyhow::Error::msg)?;
        // A key must outlive the run it guards: a key expiring while its first request still
        // holds it would be taken over, and a retry would apply the changes again.
        anyhow::ensure!(
            u128::from(self.idempotency_ttl_secs) * 1000 > u128::from(self.request_timeout_ms),
            "IDEMPOTENCY_TTL_SECS must be longer than REQUEST_TIMEOUT_MS"
        );
        Ok(Checked {
            image_sizes,
            imgproxy,
            upload_partner,
        })
    }

    /// Settings with every default and the given database: what tests start from.
    pub fn for_database(database_url: &str) -> Self {
        let mut settings = Cli::parse_from(["images-subgraph"]).settings;
        settings.database_url = Some(Secret::new(database_url));
        settings
    }

    /// The settings of a batch command (`seed`, `import`, `recompute`): no statement timeout.
    /// The timeout keeps a slow query from holding the service's pool; a batch command's
    /// bulk statements (a `COPY` of a chunk, a batch's curation) may legitimately run longer,
    /// and a timeout would only make it fail half-way on a busy server.
    pub fn for_batch_job(&self) -> Self {
        Self {
            database_statement_timeout_ms: 0,
            ..self.clone()
        }
    }

    /// True when no database is configured: SQLite file, demo data, GraphiQL, dev secret.
    pub fn is_embedded(&self) -> bool {
        self.database_url.is_none()
    }

    /// The read cache's settings.
    pub fn cache(&self) -> crate::cache::CacheSettings {
        crate::cache::CacheSettings {
            local_entries: self.cache_l1_entries,
            ttl: std::time::Duration::from_secs(self.cache_ttl_secs),
            redis_url: self.redis_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            redis_timeout: std::time::Duration::from_millis(self.redis_timeout_ms),
            retry_interval: std::time::Duration::from_millis(self.redis_retry_ms),
        }
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => format!("sqlite://{EMBEDDED_DATABASE_FILE}?mode=rwc"),
        }
    }

    /// Where the embedded default keeps its development JWT secret.
    pub fn dev_secret_path(&self) -> PathBuf {
        PathBuf::from(format!("{EMBEDDED_DATABASE_FILE}.jwt-secret"))
    }

    pub fn graphiql_enabled(&self) -> bool {
        self.graphiql.unwrap_or(self.is_embedded())
    }

    pub fn introspection_for_everyone(&self) -> bool {
        self.introspection.unwrap_or(self.is_embedded())
    }

    pub fn cdn_base_url(&self) -> String {
        match &self.cdn_base_url {
            Some(url) => url.clone(),
            None if self.is_embedded() => format!("http://{}/media", self.listen),
            None => "https://images.example.com".to_owned(),
        }
    }

    pub fn object_store_url(&self) -> anyhow::Result<String> {
        match &self.object_store_url {
            Some(url) => Ok(url.clone()),
            None => {
                let dir = std::env::current_dir()?.join("images-subgraph-media");
                Ok(url::Url::from_directory_path(&dir)
                    .map_err(|()| anyhow::anyhow!("cannot make a URL of {}", dir.display()))?
                    .to_string())
            }
        }
    }

    /// The limits of fetching partner images: the defaults, with `FETCH_ALLOW_HOSTS`, and
    /// no body larger than an upload may be.
    pub fn fetch_settings(&self) -> crate::fetch::FetchSettings {
        crate::fetch::FetchSettings {
            max_bytes: self.upload_max_bytes,
            allow_hosts: self.fetch_allow_hosts.clone(),
            total_timeout: std::time::Duration::from_millis(self.fetch_timeout_ms),
            ..crate::fetch::FetchSettings::default()
        }
    }

    /// How the processing workers run (`PROCESS_*`).
    pub fn process_settings(&self) -> crate::service::process::ProcessSettings {
        crate::service::process::ProcessSettings {
            workers: self.process_workers,
            max_attempts: self.process_max_attempts,
            lease: std::time::Duration::from_secs(self.process_lease_secs),
            per_host: usize::try_from(self.process_per_host).unwrap_or(usize::MAX),
            retry_base: std::time::Duration::from_millis(self.process_retry_base_ms),
            poll: std::time::Duration::from_millis(self.process_poll_ms),
            ..crate::service::process::ProcessSettings::default()
        }
    }

    pub fn serve_media_enabled(&self) -> bool {
        self.serve_media.unwrap_or(self.is_embedded())
    }

    pub fn seed_demo_pictures_enabled(&self) -> bool {
        self.seed_demo_pictures.unwrap_or(true)
    }

    pub fn seed_demo_enabled(&self) -> bool {
        self.seed_demo.unwrap_or(self.is_embedded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Settings {
        let mut argv = vec!["images-subgraph"];
        argv.extend_from_slice(args);
        Cli::parse_from(argv).settings
    }

    #[test]
    fn the_defaults_pass_the_check() {
        let checked = settings(&[]).check().expect("defaults are valid");
        assert!(checked.imgproxy.is_none());
        assert_eq!(
            checked.upload_partner.get(),
            settings(&[]).upload_partner_id
        );
    }

    #[test]
    fn an_idempotency_key_must_outlive_a_request_and_retention_has_bounds() {
        let short = settings(&[
            "--idempotency-ttl-secs",
            "10",
            "--request-timeout-ms",
            "10000",
        ]);
        assert!(
            short.check().is_err(),
            "a TTL no longer than the request timeout"
        );
        let fine = settings(&[
            "--idempotency-ttl-secs",
            "11",
            "--request-timeout-ms",
            "10000",
        ]);
        assert!(fine.check().is_ok());
        for hours in ["0", "87601"] {
            let parsed =
                Cli::try_parse_from(["images-subgraph", "--outbox-retention-hours", hours]);
            assert!(parsed.is_err(), "retention of {hours} hours");
        }
    }

    #[test]
    fn fetching_allows_no_host_unless_listed() {
        assert!(settings(&[]).fetch_settings().allow_hosts.is_empty());
        let listed = settings(&["--fetch-allow-hosts", "127.0.0.1,images.test"]);
        assert_eq!(
            listed.fetch_settings().allow_hosts,
            ["127.0.0.1", "images.test"]
        );
        assert_eq!(listed.fetch_settings().max_bytes, listed.upload_max_bytes);
    }

    #[test]
    fn settings_that_disagree_are_refused_with_the_flag_named() {
        let cases: &[(&[&str], &str)] = &[
            (&["--image-sizes", "100,200"], "IMAGE_SIZES"),
            (
                &["--imgproxy-key", "00ff"],
                "IMGPROXY_KEY and IMGPROXY_SALT",
            ),
            (
                &["--imgproxy-key", "not hex", "--imgproxy-salt", "00ff"],
                "IMGPROXY_KEY",
            ),
            (&["--upload-partner-id", "0"], "UPLOAD_PARTNER_ID"),
        ];
        for (args, named) in cases {
            let error = settings(args).check().expect_err("refused");
            assert!(format!("{error:#}").contains(named), "{args:?}: {error:#}");
        }
    }

    #[test]
    fn secrets_stay_hidden_in_the_settings_debug_output() {
        let settings = settings(&[
            "--redis-url",
            "redis://:hunter2@cache:6379",
            "--router-secret",
            "s3cret",
        ]);
        let shown = format!("{settings:?} {:?}", settings.cache());
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
