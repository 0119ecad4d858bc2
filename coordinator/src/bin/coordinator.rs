//! `workforce-coordinator`: schedules plans and records every decision in its event log.

use std::process::ExitCode;

use clap::Parser;
use workforce_coordinator::{Coordinator, CoordinatorArgs};
use workforce_shared::runtime;

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
    runtime::init_logging();
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
    let shutdown = runtime::shutdown_signal()?;
    tokio::pin!(shutdown);
    // Opening waits for NATS; a signal meanwhile stops the coordinator before it serves.
    let coordinator = tokio::select! {
        coordinator = Coordinator::open(config) => coordinator?,
        () = &mut shutdown => return Ok(()),
    };
    coordinator.run(shutdown).await?;
    Ok(())
}
