//! `workforce-coordinator`: schedules plans and records every decision in its event log.

use std::process::ExitCode;

use clap::Parser;
use workforce_coordinator::{Coordinator, CoordinatorArgs};

/// The Workforce coordinator: schedules submitted plans deterministically, publishes
/// assignments to NATS JetStream, and records every input and decision in a redb event log
/// in its data directory. Configuration: defaults, then --config FILE, then WORKFORCE_*
/// environment variables, then flags. Logs go to stderr; set WORKFORCE_LOG (e.g. "debug").
#[derive(Debug, Parser)]
#[command(name = "workforce-coordinator", version)]
struct Cli {
    #[command(flatten)]
    args: CoordinatorArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("workforce-coordinator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.args.resolve()?;
    let coordinator = Coordinator::open(config).await?;
    coordinator.run(shutdown_signal()).await?;
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WORKFORCE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the coordinator");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutdown requested");
}
