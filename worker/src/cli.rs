//! [`WorkerArgs`]: the worker's command line, and the layering of its configuration: defaults
//! in code, then the TOML file, then `WORKFORCE_*` environment variables, then flags (clap
//! resolves a flag over its variable; both override the file).

use std::path::{Path, PathBuf};
use std::time::Duration;

use workforce_shared::runtime::{self, NatsServers, Overrides, set};
use workforce_shared::{Capability, Prefix, WorkerId};

use crate::config::{CommandSpec, ConfigError, WorkerConfig};

const LONG_ABOUT: &str = "\
Serves Workforce capabilities: pulls assignments from NATS JetStream and runs each one.

A capability served by a command runs `sh -c COMMAND` per attempt. The command reads the task as \
one JSON object on stdin ({\"run\",\"task\",\"attempt\",\"capability\",\"input\",\"upstream\"}), \
finds WORKFORCE_RUN, WORKFORCE_TASK, WORKFORCE_ATTEMPT and WORKFORCE_CAPABILITY in its \
environment, and writes its output on stdout (JSON, or else plain text). Exit 0 succeeds, exit \
100 fails permanently, anything else fails and may be retried.

Settings are layered: defaults, then the --config file, then WORKFORCE_* variables, then flags.
SIGTERM or SIGINT drains: no new tasks, running ones get --grace-period to finish, the rest are \
handed back to other workers. When the coordinator asks to stop a running task (it timed it out, \
say), its command's process group gets SIGTERM, then SIGKILL after --stop-grace.";

const AFTER_HELP: &str = "\
Example:
  workforce-worker --nats nats://nats:4222 --serve 'wc=wc -w' --serve 'review=./review.sh'

Config file (--config):
  nats_url = \"nats://127.0.0.1:4222\"
  concurrency = 8
  [capabilities.review]
  command = \"./review.sh\"
  workdir = \"/srv/review\"";

/// The `workforce-worker` command line. Every option also reads a `WORKFORCE_*` variable.
#[derive(Clone, Debug, Default, clap::Parser)]
#[command(
    name = "workforce-worker",
    version,
    about = "Serves Workforce capabilities by running shell commands.",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
pub struct WorkerArgs {
    /// TOML file with settings; variables and flags override what it says.
    #[arg(long, env = "WORKFORCE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// NATS server URL; several separated by commas fail over. [default: nats://127.0.0.1:4222]
    #[arg(long = "nats", env = "WORKFORCE_NATS_URL", value_name = "URL[,URL...]")]
    pub nats_url: Option<NatsServers>,

    /// First tokens of every subject, shared with the coordinator. [default: workforce]
    #[arg(long, env = "WORKFORCE_PREFIX")]
    pub prefix: Option<Prefix>,

    /// This worker's id, unique among live workers: a process started with an id in use
    /// refuses to start. [default: HOSTNAME-PID]
    #[arg(long, env = "WORKFORCE_WORKER_ID")]
    pub id: Option<WorkerId>,

    /// How many tasks run at once, over all capabilities. [default: 4]
    #[arg(long, env = "WORKFORCE_CONCURRENCY", value_name = "N")]
    pub concurrency: Option<u32>,

    /// How often to announce this worker, e.g. "2s". [default: 2s]
    #[arg(long, env = "WORKFORCE_HEARTBEAT_INTERVAL", value_name = "DURATION",
          value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Option<Duration>,

    /// How long JetStream waits for an ack before giving a task to another worker; running
    /// tasks extend it every third of it. [default: 30s]
    #[arg(long, env = "WORKFORCE_ACK_WAIT", value_name = "DURATION",
          value_parser = humantime::parse_duration)]
    pub ack_wait: Option<Duration>,

    /// On SIGTERM/SIGINT, how long running tasks may take to finish before they are killed and
    /// handed back. [default: 30s]
    #[arg(long, env = "WORKFORCE_GRACE_PERIOD", value_name = "DURATION",
          value_parser = humantime::parse_duration)]
    pub grace_period: Option<Duration>,

    /// When the coordinator asks to stop a running task (it timed it out, or an operator canceled it), how long its
    /// command has between SIGTERM and SIGKILL to its process group. [default: 10s]
    #[arg(long, env = "WORKFORCE_STOP_GRACE", value_name = "DURATION",
          value_parser = humantime::parse_duration)]
    pub stop_grace: Option<Duration>,

    /// Largest assignment decoded and largest result published. [default: 1048576]
    #[arg(long, env = "WORKFORCE_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,

    /// Largest stdout a command may write; more fails the task permanently. [default: 524288]
    #[arg(long, env = "WORKFORCE_MAX_OUTPUT_BYTES", value_name = "BYTES")]
    pub max_output_bytes: Option<usize>,

    /// Deliveries of one assignment before it is failed without running again: its earlier
    /// workers died or stalled on it (a poison task). [default: 3]
    #[arg(long, env = "WORKFORCE_MAX_DELIVERIES", value_name = "N")]
    pub max_deliveries: Option<u32>,

    /// Circuit breaker: after N consecutive failed attempts of one capability, pull none of
    /// its tasks for --breaker-cooldown (running ones finish), and say so in the heartbeat.
    /// 0 turns it off. [default: 0]
    #[arg(long, env = "WORKFORCE_BREAKER_FAILURES", value_name = "N")]
    pub breaker_failures: Option<u32>,

    /// How long a capability whose breaker opened is not pulled; then pulling resumes and
    /// failures are counted from 0. [default: 60s]
    #[arg(long, env = "WORKFORCE_BREAKER_COOLDOWN", value_name = "DURATION",
          value_parser = humantime::parse_duration)]
    pub breaker_cooldown: Option<Duration>,

    /// Working directory of commands whose capability names none. [default: the worker's]
    #[arg(long, env = "WORKFORCE_WORKDIR", value_name = "DIR")]
    pub workdir: Option<PathBuf>,

    /// Serve CAPABILITY by running `sh -c COMMAND`. Repeatable; replaces a capability of the
    /// same name from the config file. The variable holds one CAPABILITY=COMMAND.
    #[arg(
        long = "serve",
        env = "WORKFORCE_SERVE",
        value_name = "CAPABILITY=COMMAND"
    )]
    pub serve: Vec<String>,

    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl WorkerArgs {
    /// The layered configuration, validated, with every command working directory checked.
    pub fn load(&self) -> Result<WorkerConfig, ConfigError> {
        let config = runtime::load(self)?;
        check_workdirs(&config)?;
        Ok(config)
    }
}

impl Overrides for WorkerArgs {
    type Settings = WorkerConfig;

    fn config_file(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    fn apply(&self, config: &mut WorkerConfig) -> Result<(), ConfigError> {
        set(&mut config.nats_url, &self.nats_url);
        set(&mut config.prefix, &self.prefix);
        set(&mut config.id, &self.id);
        set(&mut config.concurrency, &self.concurrency);
        set(&mut config.heartbeat_interval, &self.heartbeat_interval);
        set(&mut config.ack_wait, &self.ack_wait);
        set(&mut config.grace_period, &self.grace_period);
        set(&mut config.stop_grace, &self.stop_grace);
        set(&mut config.max_message_bytes, &self.max_message_bytes);
        set(&mut config.max_output_bytes, &self.max_output_bytes);
        set(&mut config.max_deliveries, &self.max_deliveries);
        set(&mut config.breaker_failures, &self.breaker_failures);
        set(&mut config.breaker_cooldown, &self.breaker_cooldown);
        if let Some(dir) = &self.workdir {
            config.workdir = Some(dir.clone());
        }
        for serve in &self.serve {
            let (capability, spec) = parse_serve(serve)?;
            config.capabilities.insert(capability, spec);
        }
        Ok(())
    }
}

/// `CAPABILITY=COMMAND`; the command may itself contain '='.
fn parse_serve(value: &str) -> Result<(Capability, CommandSpec), ConfigError> {
    let syntax = || {
        ConfigError::invalid(
            "--serve",
            format!("{value:?}: expected CAPABILITY=COMMAND, e.g. --serve 'review=./review.sh'"),
        )
    };
    let Some((name, command)) = value.split_once('=') else {
        return Err(syntax());
    };
    if command.trim().is_empty() {
        return Err(syntax());
    }
    let capability = Capability::new(name.trim()).map_err(|source| ConfigError::Name {
        field: "--serve".to_owned(),
        value: value.to_owned(),
        source,
    })?;
    Ok((
        capability,
        CommandSpec {
            command: command.to_owned(),
            workdir: None,
        },
    ))
}

/// A missing directory would fail every task; refuse to start instead.
fn check_workdirs(config: &WorkerConfig) -> Result<(), ConfigError> {
    let dirs = config
        .workdir
        .iter()
        .map(|dir| ("workdir".to_owned(), dir))
        .chain(config.capabilities.iter().filter_map(|(capability, spec)| {
            spec.workdir
                .as_ref()
                .map(|dir| (format!("capabilities.{capability}.workdir"), dir))
        }));
    for (field, dir) in dirs {
        if !dir.is_dir() {
            return Err(ConfigError::invalid(
                field,
                format!("{} is not an existing directory", dir.display()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(argv: &[&str]) -> WorkerArgs {
        WorkerArgs::try_parse_from(std::iter::once("workforce-worker").chain(argv.iter().copied()))
            .expect("arguments parse")
    }

    /// The error and its causes, as the binary prints them.
    fn chain(err: ConfigError) -> String {
        format!("{:#}", anyhow::Error::from(err))
    }

    fn cap(name: &str) -> Capability {
        Capability::new(name).expect("valid capability")
    }

    fn write_config(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write config");
        file
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = write_config(&format!(
            r#"
            nats_url = "nats://file:4222"
            concurrency = 2
            ack_wait = "45s"
            [capabilities.review]
            command = "./review.sh"
            workdir = "{}"
            [capabilities.lint]
            command = "lint"
            "#,
            dir.path().display()
        ));
        let path = file.path().to_str().expect("utf-8 path");
        let config = args(&[
            "--config",
            path,
            "--concurrency",
            "8",
            "--grace-period",
            "1m",
            "--stop-grace",
            "2s 500ms",
            "--serve",
            "lint=cargo clippy -- -D warnings",
            "--serve",
            "wc=wc -w",
        ])
        .load()
        .expect("config loads");

        assert_eq!(
            config.nats_url.as_str(),
            "nats://file:4222",
            "file beats default"
        );
        assert_eq!(config.concurrency, 8, "flag beats file");
        assert_eq!(
            config.ack_wait,
            Duration::from_secs(45),
            "file beats default"
        );
        assert_eq!(
            config.grace_period,
            Duration::from_secs(60),
            "flag beats default"
        );
        assert_eq!(
            config.stop_grace,
            Duration::from_millis(2500),
            "flag beats default"
        );
        assert_eq!(
            config.heartbeat_interval,
            Duration::from_secs(2),
            "default kept"
        );
        assert_eq!(
            config.capabilities[&cap("review")].workdir.as_deref(),
            Some(dir.path())
        );
        assert_eq!(
            config.capabilities[&cap("lint")].command,
            "cargo clippy -- -D warnings",
            "--serve replaces the file's entry; '=' in the command is kept"
        );
        assert_eq!(config.capabilities[&cap("wc")].command, "wc -w");
        assert_eq!(config.capabilities.len(), 3);
    }

    #[test]
    fn nats_takes_a_server_list() {
        let config = args(&["--serve", "a=true", "--nats", "nats://a:1, nats://b:2"])
            .load()
            .expect("config loads");
        assert_eq!(config.nats_url.addrs().len(), 2);
        assert_eq!(config.nats_url.as_str(), "nats://a:1,nats://b:2");
    }

    #[test]
    fn without_a_file_defaults_apply() {
        let config = args(&["--serve", "echo=cat"]).load().expect("config loads");
        assert_eq!(config.nats_url.as_str(), "nats://127.0.0.1:4222");
        assert_eq!(config.prefix.as_str(), "workforce");
        assert_eq!(config.concurrency, 4);
        assert_eq!(config.max_output_bytes, 512 * 1024);
        assert_eq!(config.stop_grace, Duration::from_secs(10));
        assert_eq!(config.breaker_failures, 0, "the breaker is off");
        assert_eq!(config.breaker_cooldown, Duration::from_secs(60));
    }

    #[test]
    fn breaker_options_layer_like_the_others() {
        let file = write_config("breaker_failures = 5\nbreaker_cooldown = \"2m\"\n");
        let path = file.path().to_str().expect("utf-8 path");
        let config = args(&["--config", path, "--serve", "a=true"])
            .load()
            .expect("config loads");
        assert_eq!(config.breaker_failures, 5, "file beats default");
        assert_eq!(config.breaker_cooldown, Duration::from_secs(120));

        let config = args(&[
            "--config",
            path,
            "--serve",
            "a=true",
            "--breaker-failures",
            "2",
            "--breaker-cooldown",
            "1500ms",
        ])
        .load()
        .expect("config loads");
        assert_eq!(config.breaker_failures, 2, "flag beats file");
        assert_eq!(config.breaker_cooldown, Duration::from_millis(1500));

        let err = args(&["--serve", "a=true", "--breaker-cooldown", "0s"])
            .load()
            .expect_err("zero cool-down");
        assert!(err.to_string().contains("breaker_cooldown"), "{err}");
    }

    #[test]
    fn bad_serve_values_name_the_problem() {
        let err = args(&["--serve", "a.b=cat"]).load().expect_err("bad name");
        let text = chain(err);
        assert!(
            text.contains("a.b") && text.contains("capability"),
            "{text}"
        );

        let err = args(&["--serve", "cat"]).load().expect_err("no '='");
        assert!(err.to_string().contains("CAPABILITY=COMMAND"), "{err}");

        let err = args(&["--serve", "x="]).load().expect_err("no command");
        assert!(err.to_string().contains("CAPABILITY=COMMAND"), "{err}");
    }

    #[test]
    fn bad_prefix_and_durations_are_refused_by_the_parser() {
        for argv in [
            &["--prefix", "a..b"][..],
            &["--ack-wait", "soon"][..],
            &["--stop-grace", "-1s"][..],
            &["--breaker-failures", "-1"][..],
            &["--breaker-cooldown", "a while"][..],
            &["--id", "has space"][..],
            &["--nats", "http://a"][..],
            &["--nats", ","][..],
        ] {
            let parsed = WorkerArgs::try_parse_from(
                std::iter::once("workforce-worker").chain(argv.iter().copied()),
            );
            assert!(parsed.is_err(), "{argv:?} accepted");
        }
    }

    #[test]
    fn missing_workdirs_and_bad_files_are_refused() {
        let err = args(&["--serve", "a=true", "--workdir", "/definitely/not/here"])
            .load()
            .expect_err("missing dir");
        assert!(err.to_string().contains("/definitely/not/here"), "{err}");

        let file = write_config("ack_wait = \"forever\"");
        let path = file.path().to_str().expect("utf-8 path");
        let err = args(&["--config", path]).load().expect_err("bad duration");
        let text = chain(err);
        assert!(text.contains("forever") && text.contains(path), "{text}");

        let err = args(&["--config", "/no/such/file.toml"])
            .load()
            .expect_err("missing file");
        assert!(err.to_string().contains("/no/such/file.toml"), "{err}");
    }
}
