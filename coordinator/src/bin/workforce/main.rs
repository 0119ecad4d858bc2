//! `workforce`: the operator CLI.

mod offline;
mod online;
mod out;
mod render;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use workforce_coordinator::scheduler::PauseScope;
use workforce_coordinator::{ApiClient, ClientError};
use workforce_shared::runtime::NatsServers;
use workforce_shared::runtime::servers::DEFAULT_SERVER;
use workforce_shared::{Capability, ParamValues, Prefix, RunId, Subjects, TaskId};

/// The process's exit codes, as `--help` documents them.
mod exit {
    pub const SUCCESS: i32 = 0;
    /// The run failed; the plan is invalid; replay diverged.
    pub const RUN_FAILED: u8 = 1;
    /// Bad usage (clap's own code) or any other error.
    pub const ERROR: u8 = 2;
    pub const ERROR_CODE: i32 = ERROR as i32;
    /// No coordinator answered: the outcome of what was asked is unknown.
    pub const NO_COORDINATOR: u8 = 3;
    /// The run was canceled by an operator.
    pub const RUN_CANCELED: u8 = 4;
    /// A limit stopped the run: a budget, its attempts, its deadline.
    pub const RUN_STOPPED: u8 = 5;
}

const AFTER_HELP: &str = "\
Exit codes:
  0  success; for `submit --wait` and `watch`, the run succeeded
  1  the run failed (`submit --wait`, `watch`), the plan is invalid (`validate`), the log
     diverged or broke an invariant (`replay`), or a seed broke an invariant
     (`simulate --seeds`)
  2  bad usage, or another error (an unreadable file, a plan the coordinator refused)
  3  no coordinator answered (within --timeout, or for --reconnect-for while following a
     run): the run's outcome is unknown, it may still be running
  4  the run was canceled by an operator (`submit --wait`, `watch`)
  5  a limit stopped the run: a budget, its attempts or its deadline (`submit --wait`,
     `watch`)";

/// Operate Workforce: validate and submit plans, follow runs, list workers, and replay or
/// simulate event logs. `validate`, `replay` and `simulate` work without NATS; the others ask
/// the coordinator over NATS request/reply.
#[derive(Debug, Parser)]
#[command(name = "workforce", version, after_help = AFTER_HELP)]
struct Cli {
    /// Print JSON instead of text, for scripts
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Where the coordinator is: the options of every command that talks to it.
#[derive(Debug, Args)]
#[command(next_help_heading = "Coordinator")]
struct Coordinator {
    /// NATS server URL; several separated by commas fail over
    #[arg(
        long = "nats",
        env = "WORKFORCE_NATS_URL",
        default_value = DEFAULT_SERVER,
        value_name = "URL[,URL...]"
    )]
    nats: NatsServers,
    /// Subject prefix of the deployment to talk to
    #[arg(long, env = "WORKFORCE_PREFIX", default_value = "workforce")]
    prefix: Prefix,
    /// How long to wait for NATS, and for each answer of the coordinator
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    timeout: Duration,
}

impl Coordinator {
    async fn connect(&self) -> Result<ApiClient, ClientError> {
        ApiClient::connect(&self.nats, Subjects::new(self.prefix.clone()), self.timeout).await
    }
}

/// Values for a plan's `[params]`: the options of every command that reads a plan.
#[derive(Debug, Args)]
#[command(next_help_heading = "Plan parameters")]
struct Params {
    /// A value for the plan's parameter NAME; repeatable. VALUE is JSON when it parses as JSON
    /// (3, true, ["a","b"], {"k":1}, "quoted"), else plain text (repo=. or goal=find the leak);
    /// overrides the same name in --params
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = ParamValues::parse_assignment)]
    param: Vec<(String, serde_json::Value)>,
    /// A JSON file holding one object of parameter values, {"NAME": value, ...}
    #[arg(long = "params", value_name = "FILE.json")]
    params: Option<PathBuf>,
}

impl Params {
    /// Whether any value was given (even an empty --params file).
    fn given(&self) -> bool {
        !self.param.is_empty() || self.params.is_some()
    }

    /// The values: the --params file's, then each --param over them.
    fn values(&self) -> anyhow::Result<ParamValues> {
        let mut values = match &self.params {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the --params file {}", path.display()))?;
                ParamValues::from_json(&text)
                    .with_context(|| format!("--params {}", path.display()))?
            }
            None => ParamValues::new(),
        };
        values.extend(self.param.iter().cloned().collect());
        Ok(values)
    }
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead-lettered tasks: run, task, capability, attempts, redrives, last error
    List {
        /// Only this run's
        #[arg(long)]
        run: Option<RunId>,
        #[command(flatten)]
        coordinator: Coordinator,
    },
    /// Show a dead-lettered task: its input and every failed attempt with its worker, error
    /// and duration
    Show {
        run: RunId,
        task: TaskId,
        #[command(flatten)]
        coordinator: Coordinator,
    },
    /// Run a dead-lettered task again (or with --run and no task, all of a run's): a fresh
    /// attempt budget, attempt numbers going on; what its failure canceled or skipped waits
    /// again, and a finished run reopens. Past 3 redrives of a task, only with --force
    Redrive {
        /// The run (or give it with --run to redrive all its dead letters)
        #[arg(required_unless_present = "all_of")]
        run: Option<RunId>,
        /// The task; without it, every dead-lettered task of the run
        task: Option<TaskId>,
        /// Redrive every dead letter of this run
        #[arg(long = "run", value_name = "RUN", conflicts_with_all = ["run", "task", "input"])]
        all_of: Option<RunId>,
        /// A JSON file whose content becomes the task's input
        #[arg(long, value_name = "FILE", requires = "task")]
        input: Option<PathBuf>,
        /// Redrive past the limit of 3 redrives per task
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        coordinator: Coordinator,
    },
}

/// What `pause` and `resume` act on: a run, or a capability.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct PauseTarget {
    /// The run
    run: Option<RunId>,
    /// A capability, for every run (an agent CLI whose provider is down, say)
    #[arg(long)]
    capability: Option<Capability>,
}

impl PauseTarget {
    fn scope(self) -> anyhow::Result<PauseScope> {
        match (self.run, self.capability) {
            (Some(run), None) => Ok(PauseScope::Run { run }),
            (None, Some(capability)) => Ok(PauseScope::Capability { capability }),
            _ => anyhow::bail!("give a run or --capability, not both"),
        }
    }
}

/// How long to follow a run through a coordinator that does not answer.
#[derive(Debug, Args)]
struct Follow {
    /// While following the run, how long to keep asking a coordinator that does not answer
    /// (it may be restarting) before giving up with exit code 3
    #[arg(
        long,
        env = "WORKFORCE_RECONNECT_FOR",
        default_value = "60s",
        value_parser = humantime::parse_duration,
        value_name = "DURATION"
    )]
    reconnect_for: Duration,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a plan file (TOML or JSON) and summarize its tasks (with their trigger rules and
    /// what they may spawn), its limits and its parameters; given parameter values, also check
    /// that they fit and summarize the concrete plan
    Validate {
        plan: PathBuf,
        /// Largest task input allowed, as JSON bytes
        #[arg(long, default_value_t = workforce_shared::plan::DEFAULT_MAX_INPUT_BYTES)]
        max_input_bytes: usize,
        #[command(flatten)]
        params: Params,
    },
    /// Submit a plan with values for its parameters; prints the run id
    Submit {
        plan: PathBuf,
        /// Follow the run to its end; exit 0 if it succeeds, 1 if it fails, 4 if it was
        /// canceled, 5 if a limit stopped it
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        follow: Follow,
        #[command(flatten)]
        params: Params,
        #[command(flatten)]
        coordinator: Coordinator,
    },
    /// Show a run's tasks and their statuses (queued, running, blocked, completed, failed,
    /// canceled, skipped), with each spawned task's parent
    Status {
        run: RunId,
        #[command(flatten)]
        coordinator: Coordinator,
    },
    /// Follow a run live, with a progress bar per task, until it ends; exit 0 if it succeeds,
    /// 1 if it fails, 4 if it was canceled, 5 if a limit stopped it
    Watch {
        run: RunId,
        #[command(flatten)]
        follow: Follow,
        #[command(flatten)]
        coordinator: Coordinator,
    },
    /// List runs: their status, task counts and usage
    Runs {
        #[command(flatten)]
        coordinator: Coordinator,
    },
    /// List live workers: state, attempts in flight, completed and failed counts, success rate,
    /// last heartbeat, capabilities and open circuit breakers
    Workers {
        #[command(flatten)]
        coordinator: Coordinator,
    },
    /// Cancel a run: its unfinished tasks are canceled and their running attempts told to stop
    /// (the worker sends SIGTERM to a command's process group, SIGKILL after its --stop-grace).
    /// With --task, cancel only that task; what waits for it goes by its trigger rule
    Cancel {
        run: RunId,
        /// Cancel only this task of the run
        #[arg(long)]
        task: Option<TaskId>,
        /// A note recorded with the cancel and shown with the canceled run or task
        #[arg(long, visible_alias = "reason", value_name = "TEXT")]
        note: Option<String>,
        #[command(flatten)]
        coordinator: Coordinator,
    },
    /// Pause dispatch of a run (its running attempts finish; nothing more of it starts, retries
    /// that fall due wait), or with --capability, of one capability for every run
    Pause {
        #[command(flatten)]
        scope: PauseTarget,
        #[command(flatten)]
        coordinator: Coordinator,
    },
    /// Resume dispatch of a paused run, or with --capability, of a paused capability
    Resume {
        #[command(flatten)]
        scope: PauseTarget,
        #[command(flatten)]
        coordinator: Coordinator,
    },
    /// Dead letters: list them, show one, redrive them
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
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
    /// Run a plan against simulated workers in virtual time; print the log's digest. A task
    /// that declares `spawns` spawns 1, 4 or 10 tasks of those capabilities (some needing a
    /// sibling under any trigger rule, some spawning again) and sometimes branches
    Simulate {
        plan: PathBuf,
        /// Simulated workers, each serving every capability of the plan (and of its `spawns`)
        #[arg(long, default_value_t = 3)]
        workers: u32,
        /// Seed of task durations, failures and faults (one run)
        #[arg(long, default_value_t = 1, conflicts_with = "seeds")]
        seed: u64,
        /// Run one simulation per seed of an inclusive range (`1..1000` is 1,000 runs) and
        /// check every invariant of each recorded log; exits non-zero naming the first seed
        /// that breaks one, or if a task that declares `spawns` completed without spawning
        #[arg(long, value_name = "A..B", conflicts_with = "data")]
        seeds: Option<offline::Seeds>,
        /// Inject faults: timeouts, permanent failures, workers leaving and joining, duplicate
        /// results, unpublishable assignments, coordinator restarts, and operators canceling a
        /// task or the run and pausing (then resuming) the run or a capability
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
        #[command(flatten)]
        params: Params,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) if out::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("workforce: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// 3 when no coordinator answered (the outcome is unknown), else 2.
fn exit_code(error: &anyhow::Error) -> u8 {
    let no_coordinator = error.chain().any(|cause| {
        cause.is::<watch::LostContact>()
            || cause
                .downcast_ref::<ClientError>()
                .is_some_and(ClientError::is_retryable)
    });
    if no_coordinator {
        exit::NO_COORDINATOR
    } else {
        exit::ERROR
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    match cli.command {
        Command::Validate {
            plan,
            max_input_bytes,
            params,
        } => {
            let values = params.given().then(|| params.values()).transpose()?;
            offline::validate(&plan, max_input_bytes, values.as_ref(), json)
        }
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
            params,
        } => {
            let config = workforce_coordinator::simulate::SimConfig {
                workers,
                seed,
                fail_rate,
                concurrency,
                faults,
                ..Default::default()
            };
            let values = params.values()?;
            match seeds {
                Some(seeds) => offline::simulate_seeds(&plan, &values, config, seeds, json),
                None => offline::simulate(&plan, &values, config, data.as_deref(), json),
            }
        }
        Command::Submit {
            plan,
            params,
            wait,
            follow,
            coordinator,
        } => {
            let wait = wait.then_some(follow.reconnect_for);
            let values = params.values()?;
            let submission = online::Submission::read(&plan, values)?;
            online::submit(&coordinator.connect().await?, submission, wait, json).await
        }
        Command::Status { run, coordinator } => {
            online::status(&coordinator.connect().await?, &run, json).await
        }
        Command::Watch {
            run,
            follow,
            coordinator,
        } => {
            let api = coordinator.connect().await?;
            watch::watch(&api, &run, follow.reconnect_for, json).await
        }
        Command::Runs { coordinator } => online::runs(&coordinator.connect().await?, json).await,
        Command::Workers { coordinator } => {
            online::workers(&coordinator.connect().await?, json).await
        }
        Command::Cancel {
            run,
            task,
            note,
            coordinator,
        } => {
            let api = coordinator.connect().await?;
            online::cancel(&api, &run, task.as_ref(), note.as_deref(), json).await
        }
        Command::Dlq { command } => match command {
            DlqCommand::List { run, coordinator } => {
                online::dlq_list(&coordinator.connect().await?, run.as_ref(), json).await
            }
            DlqCommand::Show {
                run,
                task,
                coordinator,
            } => online::dlq_show(&coordinator.connect().await?, &run, &task, json).await,
            DlqCommand::Redrive {
                run,
                task,
                all_of,
                input,
                force,
                coordinator,
            } => {
                let with_input = match &input {
                    Some(path) => {
                        let text = std::fs::read_to_string(path).with_context(|| {
                            format!("cannot read the --input file {}", path.display())
                        })?;
                        Some(serde_json::from_str(&text).with_context(|| {
                            format!("the --input file {} is not JSON", path.display())
                        })?)
                    }
                    None => None,
                };
                let run = all_of.or(run).context("give a run")?;
                let api = coordinator.connect().await?;
                online::dlq_redrive(&api, &run, task.as_ref(), with_input, force, json).await
            }
        },
        Command::Pause { scope, coordinator } => {
            let api = coordinator.connect().await?;
            online::pause(&api, scope.scope()?, true, json).await
        }
        Command::Resume { scope, coordinator } => {
            let api = coordinator.connect().await?;
            online::pause(&api, scope.scope()?, false, json).await
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn options(command: &str) -> Vec<String> {
        let cli = Cli::command();
        let sub = cli.find_subcommand(command).expect("subcommand");
        sub.get_arguments()
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect()
    }

    #[test]
    fn network_options_are_only_on_commands_that_talk_to_the_coordinator() {
        for offline in ["validate", "replay", "simulate"] {
            let options = options(offline);
            for network in ["nats", "prefix", "timeout", "reconnect-for"] {
                assert!(
                    !options.iter().any(|o| o == network),
                    "{offline} has --{network}"
                );
            }
        }
        for online in ["submit", "status", "watch", "runs", "workers", "cancel"] {
            let options = options(online);
            for network in ["nats", "prefix", "timeout"] {
                assert!(
                    options.iter().any(|o| o == network),
                    "{online} lacks --{network}"
                );
            }
        }
        assert!(options("watch").iter().any(|o| o == "reconnect-for"));
        assert!(options("submit").iter().any(|o| o == "reconnect-for"));
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
