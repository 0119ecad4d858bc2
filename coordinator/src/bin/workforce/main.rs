//! `workforce`: the operator CLI.

mod offline;
mod online;
mod render;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use workforce_coordinator::ApiClient;
use workforce_shared::{Prefix, RunId, Subjects};

/// Operate Workforce: validate and submit plans, follow runs, list workers, and replay or
/// simulate event logs. `validate`, `replay` and `simulate` work without NATS; the others ask
/// the coordinator over NATS request/reply.
#[derive(Debug, Parser)]
#[command(name = "workforce", version)]
struct Cli {
    /// NATS server URL
    #[arg(
        long = "nats",
        env = "WORKFORCE_NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true,
        value_name = "URL"
    )]
    nats_url: String,
    /// Subject prefix of the deployment to talk to
    #[arg(
        long,
        env = "WORKFORCE_PREFIX",
        default_value = "workforce",
        global = true
    )]
    prefix: Prefix,
    /// How long to wait for the coordinator's answer
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, global = true, value_name = "DURATION")]
    timeout: Duration,
    /// Print JSON instead of text, for scripts
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a plan file (TOML or JSON) and summarize its tasks
    Validate {
        plan: PathBuf,
        /// Largest task input allowed, as JSON bytes
        #[arg(long, default_value_t = workforce_shared::plan::DEFAULT_MAX_INPUT_BYTES)]
        max_input_bytes: usize,
    },
    /// Submit a plan; prints the run id
    Submit {
        plan: PathBuf,
        /// Follow the run to its end; exit non-zero unless it succeeds
        #[arg(long)]
        wait: bool,
    },
    /// Show a run's tasks and their statuses
    Status { run: RunId },
    /// Follow a run live, with a progress bar per task, until it ends
    Watch { run: RunId },
    /// List runs
    Runs,
    /// List live workers and the capabilities they serve
    Workers,
    /// Cancel a run: tasks not yet finished are canceled
    Cancel { run: RunId },
    /// Check an event log: every event decodes, the invariants hold, recovery succeeds, and
    /// every decision of a run under this build's rules is reproduced
    Replay {
        /// The coordinator's data directory, or an event log file (stop the coordinator
        /// first); the log is only read
        #[arg(long, value_name = "DIR|FILE")]
        data: PathBuf,
        /// Report on this run only (the whole log is still checked)
        #[arg(long)]
        run: Option<RunId>,
    },
    /// Run a plan against simulated workers in virtual time; print the log's digest
    Simulate {
        plan: PathBuf,
        /// Simulated workers, each serving every capability of the plan
        #[arg(long, default_value_t = 3)]
        workers: u32,
        /// Seed of task durations, failures and faults (one run)
        #[arg(long, default_value_t = 1, conflicts_with = "seeds")]
        seed: u64,
        /// Run one simulation per seed of an inclusive range (`1..1000` is 1,000 runs) and
        /// check every invariant of each recorded log; exits non-zero naming the first seed
        /// that breaks one
        #[arg(long, value_name = "A..B", conflicts_with = "data")]
        seeds: Option<offline::Seeds>,
        /// Inject faults: timeouts, permanent failures, workers leaving and joining, duplicate
        /// results, unpublishable assignments and coordinator restarts
        #[arg(long)]
        faults: bool,
        /// Probability that an attempt fails (retryably)
        #[arg(long, default_value_t = 0.0)]
        fail_rate: f64,
        /// Tasks each simulated worker runs at once
        #[arg(long, default_value_t = 1)]
        concurrency: u32,
        /// Keep the event log in this directory (default: a temporary one)
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("workforce: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    match cli.command {
        Command::Validate {
            plan,
            max_input_bytes,
        } => offline::validate(&plan, max_input_bytes, json),
        Command::Replay { data, run } => offline::replay(&data, run.as_ref(), json),
        Command::Simulate {
            plan,
            workers,
            seed,
            seeds,
            faults,
            fail_rate,
            concurrency,
            data,
        } => {
            let config = workforce_coordinator::simulate::SimConfig {
                workers,
                seed,
                fail_rate,
                concurrency,
                faults,
                ..Default::default()
            };
            match seeds {
                Some(seeds) => offline::simulate_seeds(&plan, config, seeds, json),
                None => offline::simulate(&plan, config, data.as_deref(), json),
            }
        }
        Command::Submit { plan, wait } => {
            online::submit(
                &connect(&cli.nats_url, cli.prefix, cli.timeout).await?,
                &plan,
                wait,
                json,
            )
            .await
        }
        Command::Status { run } => {
            online::status(
                &connect(&cli.nats_url, cli.prefix, cli.timeout).await?,
                &run,
                json,
            )
            .await
        }
        Command::Watch { run } => {
            watch::watch(
                &connect(&cli.nats_url, cli.prefix, cli.timeout).await?,
                &run,
                json,
            )
            .await
        }
        Command::Runs => {
            online::runs(
                &connect(&cli.nats_url, cli.prefix, cli.timeout).await?,
                json,
            )
            .await
        }
        Command::Workers => {
            online::workers(
                &connect(&cli.nats_url, cli.prefix, cli.timeout).await?,
                json,
            )
            .await
        }
        Command::Cancel { run } => {
            online::cancel(
                &connect(&cli.nats_url, cli.prefix, cli.timeout).await?,
                &run,
                json,
            )
            .await
        }
    }
}

async fn connect(url: &str, prefix: Prefix, timeout: Duration) -> anyhow::Result<ApiClient> {
    Ok(ApiClient::connect(url, Subjects::new(prefix), timeout).await?)
}
