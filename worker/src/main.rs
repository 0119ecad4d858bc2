//! `workforce-worker`: serves capabilities by running shell commands. See `--help`.

use anyhow::Context;
use clap::Parser;
use workforce_shared::runtime;
use workforce_worker::{Worker, WorkerArgs};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = WorkerArgs::parse();
    runtime::init_logging();

    let config = args
        .load()
        .context("cannot load the worker configuration")?;
    if args.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    let handlers = config.command_handlers();

    let shutdown = runtime::shutdown_signal()?;
    tokio::pin!(shutdown);
    let worker = tokio::select! {
        worker = Worker::connect(config, handlers) => worker.context("cannot start the worker")?,
        () = &mut shutdown => return Ok(()),
    };
    worker.run(shutdown).await.context("the worker failed")?;
    Ok(())
}
