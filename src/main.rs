//! The `images-subgraph` binary: settings → telemetry → command.

// The future of `main` nests every command's futures (serve: the HTTP stack, the relay, the
// workers, ...); computing its layout in a release build passes the default query depth of
// 128 ("queries overflow the depth limit").
#![recursion_limit = "256"]

use clap::Parser;
use images_subgraph::{cli, config::Cli, telemetry};

/// mimalloc rather than the system allocator: a GraphQL response is built from many small
/// allocations, and glibc's spent a fifth of a search page's CPU (consolidating and unlinking
/// chunks); measured 14% less CPU per warm search page (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init_logs(cli.settings.log_json);
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "failed");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
