//! Start-up: settings → database (migrated, demo-seeded in the embedded mode) → schema →
//! router → listener, and the orderly stop: [`Application::run_until`] serves until its
//! shutdown future completes, then drains.
//!
//! [`Application::build`] binds its own listener so that tests can use port 0 and learn the
//! address; `run_until` takes the shutdown signal as an input so that tests can trigger it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::cache::Cache;
use crate::cache::persisted::{ApqBudget, PersistedQueries};
use crate::config::Settings;
use crate::domain::catalog::CatalogId;
use crate::domain::curation::Rules;
use crate::domain::measure::MeasureLimits;
use crate::domain::media::Cdn;
use crate::graphql::documents::Documents;
use crate::graphql::limits::DocumentLimits;
use crate::graphql::{
    AppSchema, Introspection, Media, QueryLimits, SchemaDeps, StoredUseCases, build_schema,
};
use crate::http::auth::{Authenticator, TokenKey};
use crate::http::lifecycle::Draining;
use crate::http::media::MediaFiles;
use crate::http::scan::ScanLimits;
use crate::http::serve::{ConnectionLimits, serve};
use crate::http::{AppState, Protection, Shared, router};
use crate::redis_link::{Namespace, Target};
use crate::service::catalog::Catalog;
use crate::service::curation::Curator;
use crate::service::freshness::{self, Freshness, Replaying};
use crate::service::idempotency::Idempotency;
use crate::service::ingest::Ingestor;
use crate::service::manage::Manager;
use crate::service::purge::{CdnPurgeSettings, CdnPurges, Purger};
use crate::service::relay::{Relay, RelaySettings, STOP_DRAIN, holder_name};
use crate::service::retention::{self, Retention};
use crate::service::router_cache::{RouterInvalidation, RouterInvalidationSettings};
use crate::service::upload::Uploader;
use crate::service::write::Writer;
use crate::store::objects::Objects;
use crate::store::stream::{EventBus, EventSink, RedisStream};
use crate::store::{StatementCounter, Store, connect, pool_figures};
use crate::telemetry::Metrics;

/// How often recorded histogram samples are folded into their buckets between scrapes.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);
/// How long connections may take to close after the requests still in flight were cut off.
const CUT_OFF_GRACE: Duration = Duration::from_secs(1);
/// How long start-up waits for Redis before serving with the cache degraded.
const CACHE_SETTLE: Duration = Duration::from_secs(2);
/// How long closing the database pool may take: it waits for connections still checked out.
const POOL_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The database and the services built on it: what every command needs.
pub struct Core {
    pub db: DatabaseConnection,
    /// The catalog's identity, which names everything kept in Redis.
    pub catalog_id: CatalogId,
    pub store: Store,
    /// The read cache (also reached through `catalog`), told of every committed change.
    pub cache: Cache,
    pub catalog: Catalog,
    pub curator: Curator,
    /// Partner imports (the `import` command).
    pub ingestor: Ingestor,
    /// Statements executed so far (metrics, and the statement-count tests).
    pub statements: StatementCounter,
    /// What every committed change tells: the cache, and this process's outbox relay.
    pub freshness: Freshness,
    /// Opens the changes of every write use case (the write kernel).
    pub writer: Writer,
}

impl Core {
    /// Feeds the database figures (statements, pool) to `metrics` at every scrape.
    pub fn report_to(&self, metrics: &Metrics) {
        let db = self.db.clone();
        let statements = self.statements.clone();
        let cache = self.cache.clone();
        metrics.on_scrape(move |metrics| {
            metrics.set_cache(cache.figures());
            metrics.set_db_statements(statements.get());
            if let Some(pool) = pool_figures(&db) {
                metrics.set_db_pool(pool.open, pool.idle, pool.max);
            }
        });
    }

    /// Connects and migrates, with a cache of its own (named after the catalog's identity).
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        let (db, statements, catalog_id) = Self::migrated(settings).await?;
        let cache =
            Cache::start(&settings.cache(), catalog_id).context("invalid cache settings")?;
        Ok(Self::assemble(settings, db, statements, catalog_id, cache))
    }

    /// Connects and migrates, sharing `cache` (a second handle on a running app's data).
    pub async fn open_with_cache(settings: &Settings, cache: Cache) -> anyhow::Result<Self> {
        let (db, statements, catalog_id) = Self::migrated(settings).await?;
        Ok(Self::assemble(settings, db, statements, catalog_id, cache))
    }

    /// The pool on the migrated database, and the catalog's identity.
    async fn migrated(
        settings: &Settings,
    ) -> anyhow::Result<(DatabaseConnection, StatementCounter, CatalogId)> {
        let (db, statements) = connect(
            &settings.database_url(),
            settings.database_max_connections,
            Duration::from_millis(settings.database_statement_timeout_ms),
        )
        .await
        .context("cannot connect to the database")?;
        crate::store::connect::migrate(&db, &settings.database_url())
            .await
            .context("cannot migrate the database")?;
        let catalog_id = crate::store::identity::catalog_id(&db)
            .await
            .context("cannot read the catalog's identity")?;
        Ok((db, statements, catalog_id))
    }

    fn assemble(
        settings: &Settings,
        db: DatabaseConnection,
        statements: StatementCounter,
        catalog_id: CatalogId,
        cache: Cache,
    ) -> Self {
        let store = Store::new(db.clone()).counting(statements.clone());
        let freshness = Freshness::new(cache.clone(), Arc::new(Notify::new()));
        let writer = Writer::new(store.clone(), curation_rules(settings), freshness.clone());
        Self {
            catalog: Catalog::new(store.clone(), cache.clone()),
            curator: Curator::new(writer.clone()),
            ingestor: Ingestor::new(writer.clone()).allowing_hosts(&settings.fetch_allow_hosts),
            cache,
            store,
            db,
            catalog_id,
            statements,
            freshness,
            writer,
        }
    }

    /// The names of this catalog's things in Redis under `settings`' prefix.
    pub fn redis_names(&self, settings: &Settings) -> Namespace {
        Namespace::new(&settings.redis_prefix, self.catalog_id)
    }
}

pub fn curation_rules(settings: &Settings) -> Rules {
    Rules {
        min_short_side: settings.curation_min_short_side,
        gallery_size: settings.curation_gallery_size,
        ..Rules::default()
    }
}

/// Image URL settings.
pub fn media(settings: &Settings) -> anyhow::Result<Media> {
    let checked = settings.check()?;
    Ok(Media {
        cdn: Cdn::new(&settings.cdn_base_url(), checked.image_sizes),
        imgproxy: checked.imgproxy,
    })
}

/// The processing use case (issue 16): fetches, measures and stores PENDING partner images
/// into `objects`, the store uploads use too.
pub fn processor(
    settings: &Settings,
    core: &Core,
    objects: Objects,
) -> anyhow::Result<crate::service::process::Processor> {
    let fetcher = crate::fetch::Fetcher::new(settings.fetch_settings())
        .context("cannot build the fetching client")?;
    Ok(crate::service::process::Processor::new(
        core.writer.clone(),
        fetcher,
        objects,
        measure_limits(settings),
        settings.process_settings(),
    ))
}

/// What images are decoded within (uploads, processing, `/media`): `IMAGE_MAX_PIXELS`.
fn measure_limits(settings: &Settings) -> MeasureLimits {
    MeasureLimits {
        max_pixels: settings.image_max_pixels,
        ..MeasureLimits::default()
    }
}

/// `purgeImage`, and the worker that sends its CDN purges when `CDN_PURGE_URL` is set.
fn purges(
    settings: &Settings,
    core: &Core,
    objects: Objects,
) -> anyhow::Result<(Purger, Option<CdnPurges>)> {
    let wake = Arc::new(Notify::new());
    let worker = match &settings.cdn_purge_url {
        Some(url) => Some(CdnPurges::new(
            core.store.clone(),
            CdnPurgeSettings {
                url: url.clone(),
                token: settings.cdn_purge_token.clone(),
                poll: Duration::from_secs(1),
            },
            wake.clone(),
        )?),
        None => None,
    };
    let cdn = media(settings)?.cdn;
    let purger = Purger::new(
        core.writer.clone(),
        objects,
        cdn,
        worker.as_ref().map(|_| wake),
    );
    Ok((purger, worker))
}

/// The schema for `settings` (also used by `export-schema`, without uploads or takedowns).
pub fn schema(
    settings: &Settings,
    catalog: Catalog,
    freshness: Freshness,
    stored: StoredUseCases,
    metrics: Metrics,
) -> anyhow::Result<AppSchema> {
    let writer = Writer::new(catalog.store().clone(), curation_rules(settings), freshness);
    build_schema(SchemaDeps {
        manager: Manager::new(writer.clone()),
        stored,
        ingestor: Ingestor::new(writer).allowing_hosts(&settings.fetch_allow_hosts),
        catalog,
        media: media(settings)?,
        loader_delay: Duration::from_micros(settings.loader_delay_us),
        compiled_plans: settings.compiled_plans == crate::config::Switch::On,
        limits: QueryLimits {
            max_depth: settings.query_max_depth,
            max_complexity: settings.query_max_complexity,
            max_directives: settings.query_max_directives,
            document: document_limits(settings),
        },
        introspection: if settings.introspection_for_everyone() {
            Introspection::Everyone
        } else {
            Introspection::AdminsOnly
        },
        metrics,
    })
    .context("cannot build the schema")
}

/// The secret tokens are verified with: configured, or in the embedded default a development
/// secret kept beside the SQLite file (created on first start).
pub fn jwt_secret(settings: &Settings) -> anyhow::Result<Option<Vec<u8>>> {
    if let Some(secret) = &settings.jwt_secret {
        return Ok(Some(secret.expose().as_bytes().to_vec()));
    }
    if !settings.is_embedded() {
        return Ok(None);
    }
    let path = settings.dev_secret_path();
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(Some(existing.trim().as_bytes().to_vec()));
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    std::fs::write(&path, &secret)
        .with_context(|| format!("cannot write the development secret to {}", path.display()))?;
    Ok(Some(secret.into_bytes()))
}

/// Token verification: RS256 with `JWT_PUBLIC_KEY`, else HS256 with the secret of
/// [`jwt_secret`], else no token is accepted.
pub fn authenticator(settings: &Settings) -> anyhow::Result<Authenticator> {
    let secret = jwt_secret(settings)?;
    let key = match (&settings.jwt_public_key, &secret) {
        (Some(pem), _) => Some(TokenKey::Rs256PublicKey(pem.expose().as_bytes())),
        (None, Some(secret)) => Some(TokenKey::Hs256Secret(secret)),
        (None, None) => None,
    };
    Authenticator::new(
        key,
        settings.jwt_issuer.as_deref(),
        settings.jwt_audience.as_deref(),
    )
    .context("invalid JWT_PUBLIC_KEY")
}

/// The event sink for `settings`: the Redis stream of catalog `names` when `REDIS_URL` is
/// set, else the in-process bus (returned too, for in-process subscribers).
pub fn event_sink(
    settings: &Settings,
    names: &Namespace,
) -> anyhow::Result<(Arc<dyn EventSink>, Option<EventBus>)> {
    match redis_target(settings)? {
        Some(target) => {
            let stream = RedisStream::new(
                &target,
                names,
                settings.outbox_stream_maxlen,
                Duration::from_millis(settings.outbox_publish_timeout_ms),
            )
            .context("invalid REDIS_URL")?;
            Ok((Arc::new(stream), None))
        }
        None => {
            let bus = EventBus::new();
            Ok((Arc::new(bus.clone()), Some(bus)))
        }
    }
}

/// The Redis `REDIS_URL` names (one server or a cluster), if any.
fn redis_target(settings: &Settings) -> anyhow::Result<Option<Target>> {
    settings
        .redis_url
        .as_ref()
        .map(|url| Target::parse(url.expose()))
        .transpose()
        .context("invalid REDIS_URL")
}

/// The outbox relay of this replica (unless `OUTBOX_RELAY=off`), on a pool of its own (one
/// connection for its rounds, one for the cache replay's reads), its figures fed to `metrics`.
/// With Redis, it also replays the cache invalidations a Redis outage made fail, and the cache
/// waits for that replay before it is used again (see [`crate::service::freshness`]).
async fn outbox_relay(
    settings: &Settings,
    core: &Core,
    sink: Arc<dyn EventSink>,
    metrics: &Metrics,
) -> anyhow::Result<Option<Relay>> {
    if !settings.outbox_relay {
        return Ok(None);
    }
    let (db, _) = connect(
        &settings.database_url(),
        2,
        Duration::from_millis(settings.database_statement_timeout_ms),
    )
    .await
    .context("cannot connect the outbox relay to the database")?;
    let sink: Arc<dyn EventSink> = if core.cache.is_shared() {
        let store = Store::new(db.clone());
        core.cache
            .set_recovery_check(freshness::recovery_check(store.clone()));
        Arc::new(Replaying::new(sink, core.cache.clone(), store))
    } else {
        sink
    };
    // Faults (issue 20, item 6): without Redis, nothing else tells this process's cache of
    // changes made by other processes on the same catalog.
    let follower = (!core.cache.is_shared())
        .then(|| freshness::OutboxFollower::new(core.cache.clone(), Store::new(db.clone())));
    let relay = Relay::new(
        db,
        sink,
        core.freshness.outbox_wake(),
        RelaySettings {
            batch_size: settings.outbox_batch_size,
            poll: Duration::from_millis(settings.outbox_poll_ms),
            holder: holder_name(),
        },
    );
    let relay = match follower {
        Some(follower) => relay.following(follower),
        None => relay,
    };
    let relay = match router_invalidation(settings)? {
        Some(router) => relay.invalidating(router),
        None => relay,
    };
    let figures = relay.figures();
    metrics.on_scrape(move |metrics| {
        metrics.set_outbox(figures.lag_seconds(chrono::Utc::now()), figures.published());
    });
    Ok(Some(relay))
}

/// The router's response-cache invalidation, when `ROUTER_INVALIDATION_URL` is set.
fn router_invalidation(settings: &Settings) -> anyhow::Result<Option<RouterInvalidation>> {
    let Some(url) = &settings.router_invalidation_url else {
        return Ok(None);
    };
    let shared_key = settings
        .router_invalidation_key
        .clone()
        .context("ROUTER_INVALIDATION_URL is set but ROUTER_INVALIDATION_KEY is not")?;
    let router = RouterInvalidation::new(RouterInvalidationSettings {
        url: url.clone(),
        shared_key,
        subgraph: settings.router_subgraph_name.clone(),
    })
    .context("cannot build the router invalidation client")?;
    Ok(Some(router))
}

/// A running subgraph: its listener and routes.
pub struct Application {
    listener: TcpListener,
    /// How often the catalog gauges are refreshed (`None`: never).
    catalog_stats: Option<Duration>,
    state: AppState,
    core: Core,
    stopping: Stopping,
    /// Publishes the outbox's events while the server runs (none with `OUTBOX_RELAY=off`).
    relay: Option<Relay>,
    /// Sends the queued CDN purges while the server runs (none without `CDN_PURGE_URL`).
    cdn_purges: Option<CdnPurges>,
    /// Processes PENDING images while the server runs (none with `PROCESS_WORKERS=0`).
    processor: Option<crate::service::process::Processor>,
    /// Outbox retention while the server runs: its settings and interval (none without
    /// `OUTBOX_RETENTION_HOURS`).
    retention: Option<(Retention, Duration)>,
    /// The in-process event bus of a deployment without Redis.
    events: Option<EventBus>,
}

/// How the server stops once told to.
#[derive(Debug, Clone, Copy)]
struct Stopping {
    /// Readiness is false but the listener still accepts, so that balancers notice.
    delay: Duration,
    /// Requests in flight may finish; those still running then are cut off.
    drain: Duration,
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let core = Core::open(settings).await?;
        let objects =
            Objects::open(&settings.object_store_url()?).context("cannot open the object store")?;
        if settings.seed_demo_enabled() && core.curator.hotel_count().await? == 0 {
            let pictures = settings
                .seed_demo_pictures_enabled()
                .then(|| objects.clone());
            crate::seed::demo(&core.db, core.curator.rules(), pictures)
                .await
                .context("cannot seed the demo catalog")?;
        }
        let metrics = Metrics::new();
        metrics.label_only_operations(crate::http::known::operation_names());
        core.report_to(&metrics);
        let names = core.redis_names(settings);
        if settings.redis_url.is_some() {
            tracing::info!(
                catalog = %core.catalog_id,
                event_stream = %names.event_stream(),
                "catalog identity: Redis keys, channel and stream are named after it"
            );
        }
        let (sink, events) = event_sink(settings, &names)?;
        let relay = outbox_relay(settings, &core, sink, &metrics).await?;
        if !core.cache.settle(CACHE_SETTLE).await {
            tracing::warn!("Redis is not reachable yet: serving from the database until it is");
        }
        let uploader = Uploader::new(
            core.writer.clone(),
            objects.clone(),
            settings.upload_max_bytes,
            measure_limits(settings),
            settings.check()?.upload_partner,
        );
        let (purger, cdn_purges) = purges(settings, &core, objects.clone())?;
        let processor =
            processor(settings, &core, objects.clone())?.observed_by(Arc::new(metrics.clone()));
        let state = AppState::new(Shared {
            schema: schema(
                settings,
                core.catalog.clone(),
                core.freshness.clone(),
                StoredUseCases {
                    uploader: Some(uploader),
                    purger: Some(purger),
                    processor: Some(processor.clone()),
                },
                metrics.clone(),
            )?,
            media: if settings.serve_media_enabled() {
                Some(MediaFiles::new(
                    objects,
                    settings.check()?.image_sizes,
                    measure_limits(settings),
                )?)
            } else {
                None
            },
            catalog: core.catalog.clone(),
            auth: authenticator(settings)?,
            graphiql: settings.graphiql_enabled(),
            protection: Protection {
                body_limit: settings.body_limit_bytes,
                upload_limit: settings.upload_max_bytes + settings.body_limit_bytes,
                scan: ScanLimits {
                    max_depth: settings.query_max_nesting,
                    max_bytes: settings.query_max_bytes,
                    max_tokens: settings.query_max_tokens,
                },
                max_batch: settings.max_batch,
                request_timeout: Duration::from_millis(settings.request_timeout_ms),
                max_concurrent_requests: settings.max_concurrent_requests,
                router_secret: settings.router_secret.clone(),
                max_cost: settings.query_max_complexity,
                connections: connection_limits(settings),
            },
            metrics,
            draining: Draining::default(),
            persisted: PersistedQueries::new(
                redis_target(settings)?.as_ref(),
                &settings.redis_prefix,
                Duration::from_secs(settings.apq_ttl_secs),
                Duration::from_millis(settings.redis_timeout_ms),
                apq_budget(settings),
            )
            .context("invalid REDIS_URL")?,
            public_max_age: settings.cache_control_max_age,
            documents: Documents::default(),
            idempotency: Idempotency::new(
                core.store.clone(),
                Duration::from_secs(settings.idempotency_ttl_secs),
                Duration::from_millis(settings.request_timeout_ms),
            ),
        });
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        Ok(Self {
            listener,
            catalog_stats: (settings.catalog_stats_interval_secs > 0)
                .then(|| Duration::from_secs(settings.catalog_stats_interval_secs)),
            state,
            core,
            stopping: Stopping {
                delay: Duration::from_millis(settings.shutdown_delay_ms),
                drain: Duration::from_millis(settings.shutdown_drain_ms),
            },
            relay,
            cdn_purges,
            processor: (processor.settings().workers > 0).then_some(processor),
            retention: settings.outbox_retention_hours.map(|hours| {
                let retention = Retention {
                    age: Retention::hours(hours),
                    batch: 1_000,
                    pause: Duration::from_millis(50),
                };
                (
                    retention,
                    Duration::from_secs(settings.outbox_retention_interval_secs),
                )
            }),
            events: events.filter(|_| settings.outbox_relay),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The in-process event bus the relay publishes to when there is no Redis (`None` with
    /// Redis, or with the relay off).
    pub fn event_bus(&self) -> Option<EventBus> {
        self.events.clone()
    }

    /// Serves until `shutdown` completes, then stops in order: readiness turns false at once;
    /// the listener keeps accepting for the shutdown delay, then closes; requests in flight get
    /// the drain timeout to finish, after which they are cut off (503); then the outbox relay
    /// publishes what is left and stops; last, the database pool closes.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            catalog_stats,
            state,
            core,
            stopping,
            relay,
            cdn_purges,
            processor,
            retention,
            events: _,
        } = self;
        let draining = state.draining.clone();
        let upkeep = tokio::spawn(state.metrics.clone().run_upkeep(METRICS_UPKEEP));
        let gauges = catalog_stats.map(|every| {
            tokio::spawn(crate::service::stats::refresh_gauges(
                core.catalog.clone(),
                state.metrics.clone(),
                every,
            ))
        });
        let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
        let relay = relay.map(|relay| {
            tokio::spawn(relay.run(async move {
                let _ = relay_stopped.await;
            }))
        });
        let (stop_cdn_purges, cdn_purges_stopped) = tokio::sync::oneshot::channel::<()>();
        let cdn_purges = cdn_purges.map(|worker| {
            tokio::spawn(worker.run(async move {
                let _ = cdn_purges_stopped.await;
            }))
        });
        let (stop_processing, processing_stopped) = tokio::sync::oneshot::channel::<()>();
        let processor = processor.map(|processor| {
            tokio::spawn(processor.run(async move {
                let _ = processing_stopped.await;
            }))
        });
        let retention = retention.map(|(retention, interval)| {
            tokio::spawn(retention::run_periodically(
                core.store.clone(),
                retention,
                interval,
            ))
        });
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        let close_listener = {
            let draining = draining.clone();
            async move {
                shutdown.await;
                draining.start();
                tracing::info!(
                    delay_ms = millis(stopping.delay),
                    drain_ms = millis(stopping.drain),
                    "stopping: readiness is false; requests in flight are drained"
                );
                tokio::time::sleep(stopping.delay).await;
                let _ = closed_tx.send(());
            }
        };
        let connections = state.protection.connections;
        let server = serve(listener, router(state), connections, close_listener);
        let served = drain(server, closed_rx, &draining, stopping.drain).await;
        upkeep.abort();
        if let Some(gauges) = gauges {
            gauges.abort();
        }
        if let Some(retention) = retention {
            retention.abort();
        }
        let _ = stop_relay.send(());
        let _ = stop_cdn_purges.send(());
        let _ = stop_processing.send(());
        if let Some(workers) = processor {
            // A job cut off keeps its lease and is processed again when the lease ends.
            let _ = tokio::time::timeout(POOL_CLOSE_TIMEOUT, workers).await;
        }
        if let Some(worker) = cdn_purges {
            // Requests it did not send stay queued for the next start (or another replica).
            let _ = tokio::time::timeout(POOL_CLOSE_TIMEOUT, worker).await;
        }
        if let Some(relay) = relay {
            // The relay bounds its last drain itself; this only guards against a hang.
            let _ = tokio::time::timeout(STOP_DRAIN + POOL_CLOSE_TIMEOUT, relay).await;
        }
        served.context("server failed")?;
        match tokio::time::timeout(POOL_CLOSE_TIMEOUT, core.db.close()).await {
            Ok(closed) => closed.context("cannot close the database pool")?,
            Err(_) => tracing::warn!("the database pool did not close in time"),
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Runs `server` to its end, but once the listener is closed (`listener_closed`), for at most
/// `timeout`: then the requests still in flight are cut off, and their connections get a
/// moment to close before the server is left behind.
async fn drain(
    server: impl Future<Output = std::io::Result<()>>,
    listener_closed: tokio::sync::oneshot::Receiver<()>,
    draining: &Draining,
    timeout: Duration,
) -> std::io::Result<()> {
    let mut server = std::pin::pin!(server);
    let deadline = async {
        if listener_closed.await.is_err() {
            // The server ended without a stop signal: no deadline.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(timeout).await;
    };
    tokio::select! {
        served = &mut server => return served,
        () = deadline => {}
    }
    tracing::warn!(
        drain_ms = millis(timeout),
        "the drain timeout passed: cutting off the requests still in flight"
    );
    draining.cut_off();
    match tokio::time::timeout(CUT_OFF_GRACE, &mut server).await {
        Ok(served) => served,
        Err(_) => {
            tracing::warn!("connections are still open after the cut-off: stopping anyway");
            Ok(())
        }
    }
}

/// Milliseconds as a number the log formats as one (a `u128` would become a string).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

// ---- Issue 19 (security, round two): limits built from the settings, kept in one place. ----

/// The per-document limits the schema checks after parsing.
fn document_limits(settings: &Settings) -> DocumentLimits {
    DocumentLimits {
        max_aliases: settings.query_max_aliases,
        max_root_fields: settings.query_max_root_fields,
        max_entities: settings.query_max_entities,
        ..DocumentLimits::default()
    }
}

/// The accept loop's header-read timeout and connection cap.
fn connection_limits(settings: &Settings) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_millis(settings.http_header_read_timeout_ms),
        max_connections: usize::try_from(settings.http_max_connections).unwrap_or(usize::MAX),
    }
}

/// Bytes of persisted-query texts kept in process and registered in Redis.
fn apq_budget(settings: &Settings) -> ApqBudget {
    ApqBudget {
        local_bytes: settings.apq_max_bytes,
        shared_bytes: settings.apq_redis_max_bytes,
    }
}
