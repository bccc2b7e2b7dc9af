//! The commands: `serve` (default), `migrate`, `new-catalog-identity`, `seed`, `recompute`,
//! `import`, `republish`, `prune-outbox`, `export-schema`, `token`, `warmup`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::{Application, Core, jwt_secret, media, schema};
use crate::config::{
    Cli, Command, ImportArgs, ProcessArgs, PruneOutboxArgs, RecomputeArgs, RepublishArgs, SeedArgs,
    Settings, TokenArgs, WarmupArgs,
};
use crate::graphql::published_sdl;
use crate::http::auth::{Claims, mint_for};
use crate::service::curation::RecomputePlan;
use crate::service::republish::{RepublishPlan, Republisher};
use crate::service::retention::{self, Retention};
use crate::telemetry::Metrics;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings;
    // Fail fast: a wrong setting stops every command before it connects to anything.
    settings.check()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&settings).await,
        Command::Migrate => {
            let core = Core::open(&settings).await?;
            tracing::info!("migrations applied");
            print_identity(&settings, &core);
            Ok(())
        }
        Command::NewCatalogIdentity => {
            let mut core = Core::open(&settings).await?;
            core.catalog_id = crate::store::identity::renew_catalog_id(&core.db)
                .await
                .context("cannot renew the catalog's identity")?;
            print_identity(&settings, &core);
            Ok(())
        }
        Command::Seed(args) => seed(&settings.for_batch_job(), &args).await,
        Command::Recompute(args) => recompute(&settings.for_batch_job(), &args).await,
        Command::Import(args) => import(&settings.for_batch_job(), &args).await,
        Command::Republish(args) => republish(&settings.for_batch_job(), &args).await,
        Command::PruneOutbox(args) => prune_outbox(&settings.for_batch_job(), &args).await,
        Command::ExportSchema => export_schema(&settings).await,
        Command::Token(args) => token(&settings, &args),
        Command::Process(args) => process(&settings.for_batch_job(), &args).await,
        Command::Warmup(args) => {
            let bar = progress_bar(0, "warmup");
            let summary = warmup(&settings.for_batch_job(), &args, &bar).await?;
            bar.finish();
            println!("warmed {summary}");
            Ok(())
        }
    }
}

/// Warms the CDN as `args` say (see [`crate::warmup`]), advancing `bar` per request.
pub async fn warmup(
    settings: &Settings,
    args: &WarmupArgs,
    bar: &ProgressBar,
) -> anyhow::Result<crate::warmup::Summary> {
    let hotels = if args.hotel_ids.is_empty() {
        None
    } else {
        let ids = args.hotel_ids.iter().map(|&id| {
            crate::domain::catalog::HotelId::new(id)
                .with_context(|| format!("--hotel-ids: {id} is not a hotel ID"))
        });
        Some(ids.collect::<anyhow::Result<Vec<_>>>()?)
    };
    let plan = crate::warmup::Plan {
        hotels,
        gallery: args.gallery,
        sizes: args.sizes.iter().map(|&size| size.into()).collect(),
        concurrency: args.concurrency,
        timeout: Duration::from_millis(args.timeout_ms),
    };
    anyhow::ensure!(plan.concurrency >= 1, "--concurrency must be at least 1");
    let cdn = media(settings)?.cdn;
    let core = Core::open(settings).await?;
    crate::warmup::warm(&core.catalog, &cdn, &plan, bar).await
}

/// The catalog's identity and the name of its event stream (consumers read it).
fn print_identity(settings: &Settings, core: &Core) {
    println!(
        "catalog {}; event stream {}",
        core.catalog_id,
        core.redis_names(settings).event_stream()
    );
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let addr = app.local_addr()?;
    if settings.graphiql_enabled() {
        tracing::info!("GraphiQL: http://{addr}/");
        println!(
            "images-subgraph is serving GraphiQL at http://{addr}/ (GraphQL at http://{addr}/graphql)"
        );
    }
    tracing::info!(%addr, "listening");
    app.run_until(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template = format!("{what} {{bar:40}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

async fn seed(settings: &Settings, args: &SeedArgs) -> anyhow::Result<()> {
    let core = Core::open(settings).await?;
    anyhow::ensure!(
        core.curator.hotel_count().await? == 0,
        "the database already holds hotels: seed only an empty catalog"
    );
    let bar = progress_bar(args.hotels, "seed");
    let plan = crate::seed::Plan::uniform(args.hotels, args.images_per_hotel, args.chunk);
    let report =
        crate::seed::generate(&core.db, core.curator.rules(), &plan, |done| bar.inc(done)).await?;
    bar.finish();
    println!("{report}");
    Ok(())
}

async fn recompute(settings: &Settings, args: &RecomputeArgs) -> anyhow::Result<()> {
    let core = Core::open(settings).await?;
    let total = core.curator.hotel_count().await?;
    let bar = progress_bar(total, "recompute");
    let started = Instant::now();
    let plan = RecomputePlan {
        chunk_size: args.chunk,
        parallelism: args.parallelism,
    };
    let changed = core
        .curator
        .recompute_all(plan, |done| bar.inc(done))
        .await?;
    bar.finish();
    println!(
        "recomputed {total} hotels in {:.1}s; {changed} changed",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn republish(settings: &Settings, args: &RepublishArgs) -> anyhow::Result<()> {
    let core = Core::open(settings).await?;
    let total = core.curator.hotel_count().await?;
    let bar = progress_bar(total, "republish");
    let started = Instant::now();
    let plan = RepublishPlan {
        batch: args.batch,
        rate: args.rate,
        restart: args.restart,
    };
    let report = Republisher::new(core.writer.clone())
        .run(plan, |done| bar.inc(done))
        .await?;
    bar.finish();
    println!(
        "run {}: {} HotelSnapshot events written in {:.1}s{}",
        report.run,
        report.hotels,
        started.elapsed().as_secs_f64(),
        if report.resumed_after > 0 {
            format!(" (resumed after {} hotels)", report.resumed_after)
        } else {
            String::new()
        }
    );
    Ok(())
}

async fn prune_outbox(settings: &Settings, args: &PruneOutboxArgs) -> anyhow::Result<()> {
    let core = Core::open(settings).await?;
    let hours = args
        .older_than_hours
        .or(settings.outbox_retention_hours)
        .unwrap_or(DEFAULT_RETENTION_HOURS);
    let retention = Retention {
        age: Retention::hours(hours),
        batch: args.batch,
        pause: Duration::from_millis(10),
    };
    let bar = ProgressBar::new_spinner();
    let deleted = retention::prune(&core.store, retention, |n| bar.inc(n)).await?;
    bar.finish_and_clear();
    println!("deleted {deleted} outbox events published more than {hours} hours ago");
    Ok(())
}

/// Retention of `prune-outbox` when neither the flag nor `OUTBOX_RETENTION_HOURS` is set.
const DEFAULT_RETENTION_HOURS: u64 = 168;

/// Lines per batch of `import` when `--batch-size` is not given. On MariaDB, batches of 3,000
/// were faster than 10,000 while statements grew with the batch (4,247 against 2,944 lines/s);
/// since rows travel as one JSON parameter the two are even (5,707 against 5,558, see
/// BENCHMARKS.md), and the smaller batch holds its locks for less time. The other engines gain
/// from larger batches.
fn default_batch_size(database_url: &str) -> usize {
    if database_url.starts_with("mysql:") || database_url.starts_with("mariadb:") {
        3_000
    } else {
        10_000
    }
}

async fn import(settings: &Settings, args: &ImportArgs) -> anyhow::Result<()> {
    use crate::import::{Format, ImportOptions, import_feed};
    let partner = args
        .partner_id
        .map(|id| {
            crate::domain::catalog::PartnerId::new(id).context("--partner-id must be positive")
        })
        .transpose()?;
    let options = ImportOptions {
        partner,
        format: args.format.unwrap_or_else(|| Format::of_path(&args.file)),
        snapshot: args.snapshot,
        batch_size: args
            .batch_size
            .unwrap_or_else(|| default_batch_size(&settings.database_url())),
    };
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut rejects: Box<dyn std::io::Write> = match &args.rejects {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::sink()),
    };
    let core = Core::open(settings).await?;
    let bar = progress_bar(size, "import");
    if let Ok(style) = ProgressStyle::with_template(
        "import {bar:40} {binary_bytes}/{binary_total_bytes} {msg} eta {eta}",
    ) {
        bar.set_style(style);
    }
    let mut observer = BarObserver {
        bar: bar.clone(),
        started: Instant::now(),
    };
    let summary = import_feed(&core.ingestor, file, &options, &mut rejects, &mut observer).await?;
    bar.finish();
    println!("imported {summary}");
    if let (Some(path), true) = (
        &args.rejects,
        summary.count(crate::domain::ingest::Outcome::Rejected) > 0,
    ) {
        println!("rejected lines and why: {}", path.display());
    }
    Ok(())
}

/// Processes PENDING images until none is due (see [`ProcessArgs`]), with a progress bar and a
/// summary by outcome.
async fn process(settings: &Settings, args: &ProcessArgs) -> anyhow::Result<()> {
    use crate::service::process::Outcome;
    use std::collections::BTreeMap;
    let core = Core::open(settings).await?;
    let objects = crate::store::objects::Objects::open(&settings.object_store_url()?)
        .context("cannot open the object store")?;
    let concurrency = args.concurrency.max(1);
    // A claim takes a job for each worker of the command.
    let mut settings = settings.clone();
    settings.process_workers = concurrency;
    let processor = crate::app::processor(&settings, &core, objects)?;
    let pending =
        crate::store::processing::queue_figures(core.store.connection(), chrono::Utc::now())
            .await?
            .by_state
            .iter()
            .find(|(state, _)| *state == crate::domain::catalog::ProcessingState::Pending)
            .map_or(0, |(_, n)| *n);
    let bar = progress_bar(u64::try_from(pending).unwrap_or(0), "process");
    let wait_limit = Duration::from_secs(args.wait_retries_secs);
    let outcomes: std::sync::Mutex<BTreeMap<String, u64>> = std::sync::Mutex::default();
    let worker = || async {
        loop {
            match processor.step().await? {
                Some(outcome) => {
                    if !matches!(outcome, Outcome::Deferred) {
                        bar.inc(1);
                    }
                    *outcomes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .entry(outcome.label())
                        .or_default() += 1;
                }
                None => {
                    // Nothing due: wait for a retry due soon enough, else stop.
                    let next = processor.next_due_at().await?;
                    let wait = next.and_then(|at| (at - chrono::Utc::now()).to_std().ok());
                    match (next, wait) {
                        (None, _) => return Ok::<_, anyhow::Error>(()),
                        (Some(_), Some(wait)) if wait > wait_limit => return Ok(()),
                        (Some(_), wait) => {
                            tokio::time::sleep(
                                wait.unwrap_or_default().max(Duration::from_millis(50)),
                            )
                            .await
                        }
                    }
                }
            }
        }
    };
    futures::future::try_join_all((0..concurrency).map(|_| worker())).await?;
    bar.finish();
    let outcomes = outcomes
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let summary: Vec<String> = outcomes.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    println!(
        "processed {}",
        if summary.is_empty() {
            "nothing".to_owned()
        } else {
            summary.join(", ")
        }
    );
    Ok(())
}

/// Shows an import's progress: bytes of the file, lines and lines per second.
struct BarObserver {
    bar: ProgressBar,
    started: Instant,
}

impl crate::import::Observer for BarObserver {
    fn progress(&mut self, progress: crate::import::Progress) {
        self.bar.set_position(progress.bytes);
        let rate = progress.lines as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar
            .set_message(format!("{} lines, {rate:.0} lines/s", progress.lines));
    }
}

async fn export_schema(settings: &Settings) -> anyhow::Result<()> {
    // The SDL does not depend on data: an in-memory database serves.
    let mut settings = settings.clone();
    settings.database_url = Some("sqlite::memory:".parse().context("cannot build a URL")?);
    let core = Core::open(&settings).await?;
    print!(
        "{}",
        published_sdl(&schema(
            &settings,
            core.catalog,
            core.freshness,
            Default::default(),
            Metrics::new()
        )?)?
    );
    Ok(())
}

fn token(settings: &Settings, args: &TokenArgs) -> anyhow::Result<()> {
    let secret = jwt_secret(settings)?.context(
        "no JWT_SECRET is configured (only the embedded default has a development secret)",
    )?;
    let claims = Claims {
        sub: args.subject.clone(),
        exp: jsonwebtoken::get_current_timestamp() + args.ttl,
        scope: args.scope.clone(),
        hotel_ids: args
            .hotel_ids
            .iter()
            .map(|&id| serde_json::json!(id))
            .collect(),
        partner_id: args.partner_id.map(|id| serde_json::json!(id)),
    };
    // A deployment that requires an issuer and an audience refuses tokens without them.
    let token = mint_for(
        &secret,
        &claims,
        settings.jwt_issuer.as_deref(),
        settings.jwt_audience.as_deref(),
    )?;
    println!("{token}");
    Ok(())
}
