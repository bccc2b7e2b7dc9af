//! The commands: `serve` (default), `migrate`, `seed`, `recompute`, `export-schema`, `token`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::{Application, Core, jwt_secret, schema};
use crate::config::{Cli, Command, RecomputeArgs, SeedArgs, Settings, TokenArgs};
use crate::graphql::published_sdl;
use crate::http::auth::{Claims, mint};
use crate::service::curation::RecomputePlan;
use crate::telemetry::Metrics;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&settings).await,
        Command::Migrate => {
            Core::open(&settings).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Seed(args) => seed(&settings, &args).await,
        Command::Recompute(args) => recompute(&settings, &args).await,
        Command::ExportSchema => export_schema(&settings).await,
        Command::Token(args) => token(&settings, &args),
    }
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

async fn export_schema(settings: &Settings) -> anyhow::Result<()> {
    // The SDL does not depend on data: an in-memory database serves.
    let mut settings = settings.clone();
    settings.database_url = Some("sqlite::memory:".parse().context("cannot build a URL")?);
    let core = Core::open(&settings).await?;
    print!(
        "{}",
        published_sdl(&schema(&settings, core.catalog, None, Metrics::new())?)?
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
    println!("{}", mint(&secret, &claims)?);
    Ok(())
}
