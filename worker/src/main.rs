//! `workforce-worker`: serves capabilities by running shell commands. See `--help`.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use workforce_worker::{Worker, WorkerArgs};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = WorkerArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("WORKFORCE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();

    let config = args
        .load()
        .context("cannot load the worker configuration")?;
    if args.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    let handlers = config.command_handlers();

    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
        }
    };
    tokio::pin!(shutdown);

    let worker = tokio::select! {
        worker = Worker::connect(config, handlers) => worker.context("cannot start the worker")?,
        () = &mut shutdown => return Ok(()),
    };
    worker.run(shutdown).await.context("the worker failed")?;
    Ok(())
}
