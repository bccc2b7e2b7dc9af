//! The `images-subgraph` binary: settings → telemetry → command.

use clap::Parser;
use images_subgraph::{cli, config::Cli};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.settings.log_json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "failed");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
