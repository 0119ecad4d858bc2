//! The coordinator's configuration: defaults in code, then a TOML file, then `WORKFORCE_*`
//! environment variables, then flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use workforce_shared::Prefix;
use workforce_shared::duration;
use workforce_shared::jetstream::StreamSettings;
use workforce_shared::runtime::{self, NatsServers, Overrides, ServersError, Settings, set};

pub use workforce_shared::runtime::ConfigError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Directory of the event log. One coordinator per directory.
    pub data: PathBuf,
    /// NATS servers, comma-separated; parsed by [`nats_servers`](Self::nats_servers).
    pub nats_url: String,
    /// First subject tokens; lets several deployments share one NATS.
    pub prefix: Prefix,
    /// A worker not heard from for this long is counted as gone.
    #[serde(with = "duration")]
    pub worker_timeout: Duration,
    /// Largest message the coordinator decodes.
    pub max_message_bytes: usize,
    /// Largest task `input` a plan may carry, as JSON.
    pub max_input_bytes: usize,
    /// How long the broker waits for the coordinator to ack a result before redelivering.
    #[serde(with = "duration")]
    pub results_ack_wait: Duration,
    /// How long past a task's timeout the coordinator waits for a result before it fails the
    /// attempt itself (the worker's own timeout normally reports first, with the stderr tail).
    #[serde(with = "duration")]
    pub attempt_grace: Duration,
    /// Most inputs committed in one write transaction.
    pub max_batch: usize,
    #[serde(with = "duration")]
    pub results_max_age: Duration,
    #[serde(with = "duration")]
    pub duplicate_window: Duration,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        let streams = StreamSettings::default();
        Self {
            data: PathBuf::from("workforce-data"),
            nats_url: runtime::servers::DEFAULT_SERVER.into(),
            prefix: Prefix::default(),
            worker_timeout: Duration::from_secs(10),
            max_message_bytes: 1024 * 1024,
            max_input_bytes: workforce_shared::plan::DEFAULT_MAX_INPUT_BYTES,
            results_ack_wait: Duration::from_secs(30),
            attempt_grace: Duration::from_secs(10),
            max_batch: 512,
            results_max_age: streams.results_max_age,
            duplicate_window: streams.duplicate_window,
        }
    }
}

impl CoordinatorConfig {
    /// Defaults overlaid with the TOML file at `path`, if any.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        match path {
            Some(path) => runtime::config::read_file(path),
            None => Ok(Self::default()),
        }
    }

    /// The servers `nats_url` lists (checked by [`validate`](Settings::validate)).
    pub fn nats_servers(&self) -> Result<NatsServers, ServersError> {
        NatsServers::parse(&self.nats_url)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        Settings::validate(self)
    }

    pub fn stream_settings(&self) -> StreamSettings {
        StreamSettings {
            results_max_age: self.results_max_age,
            duplicate_window: self.duplicate_window,
            ..StreamSettings::default()
        }
    }
}

impl Settings for CoordinatorConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.nats_servers()?;
        if self.worker_timeout < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "worker_timeout",
                "must be at least 1s",
            ));
        }
        if self.max_batch == 0 {
            return Err(ConfigError::invalid("max_batch", "must be at least 1"));
        }
        if self.max_message_bytes < 1024 {
            return Err(ConfigError::invalid(
                "max_message_bytes",
                "must be at least 1024",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_defaults_field_by_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "prefix = \"acme\"\nworker_timeout = \"20s\"\n").expect("write");
        let config = CoordinatorConfig::load(Some(&path)).expect("load");
        assert_eq!(config.prefix.as_str(), "acme");
        assert_eq!(config.worker_timeout, Duration::from_secs(20));
        assert_eq!(config.max_batch, CoordinatorConfig::default().max_batch);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "worker_timeot = \"20s\"\n").expect("write");
        let chain = |err: ConfigError| format!("{:#}", anyhow::Error::from(err));
        let err = CoordinatorConfig::load(Some(&path)).expect_err("typo");
        assert!(chain(err).contains("worker_timeot"));
        std::fs::write(&path, "prefix = \"a b\"\n").expect("write");
        let err = CoordinatorConfig::load(Some(&path)).expect_err("bad prefix");
        assert!(chain(err).contains("subject prefix"));
    }
}

/// Flags (and their `WORKFORCE_*` environment variables) that override the config file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CoordinatorArgs {
    /// TOML config file; its keys are those of the flags below, in snake_case.
    #[arg(long, env = "WORKFORCE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory holding the event log [default: workforce-data]
    #[arg(long, env = "WORKFORCE_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// NATS server URL; several separated by commas fail over [default: nats://127.0.0.1:4222]
    #[arg(long = "nats", env = "WORKFORCE_NATS_URL", value_name = "URL[,URL...]")]
    pub nats_url: Option<NatsServers>,
    /// Subject prefix, so several deployments can share one NATS [default: workforce]
    #[arg(long, env = "WORKFORCE_PREFIX")]
    pub prefix: Option<Prefix>,
    /// A worker silent this long is counted as gone [default: 10s]
    #[arg(long, env = "WORKFORCE_WORKER_TIMEOUT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub worker_timeout: Option<Duration>,
    /// Largest task input a plan may carry, as JSON bytes [default: 262144]
    #[arg(long, env = "WORKFORCE_MAX_INPUT_BYTES", value_name = "BYTES")]
    pub max_input_bytes: Option<usize>,
    /// Largest message the coordinator decodes [default: 1048576]
    #[arg(long, env = "WORKFORCE_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,
    /// How long past a task's timeout to wait for its result before failing the attempt [default: 10s]
    #[arg(long, env = "WORKFORCE_ATTEMPT_GRACE", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub attempt_grace: Option<Duration>,
    /// Most inputs committed in one write transaction [default: 512]
    #[arg(long, env = "WORKFORCE_MAX_BATCH", value_name = "N")]
    pub max_batch: Option<usize>,
    /// How long the results stream keeps results [default: 7days]
    #[arg(long, env = "WORKFORCE_RESULTS_MAX_AGE", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub results_max_age: Option<Duration>,
    /// Window in which the broker drops a repeated message id [default: 10m]
    #[arg(long, env = "WORKFORCE_DUPLICATE_WINDOW", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub duplicate_window: Option<Duration>,
    /// How long the broker waits for the coordinator's ack of a result [default: 30s]
    #[arg(long, env = "WORKFORCE_RESULTS_ACK_WAIT", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub results_ack_wait: Option<Duration>,
}

impl CoordinatorArgs {
    /// Defaults, then the config file, then these flags and environment variables; validated.
    pub fn resolve(self) -> Result<CoordinatorConfig, ConfigError> {
        runtime::load(&self)
    }
}

impl Overrides for CoordinatorArgs {
    type Settings = CoordinatorConfig;

    fn config_file(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    fn apply(&self, config: &mut CoordinatorConfig) -> Result<(), ConfigError> {
        set(&mut config.data, &self.data);
        set(
            &mut config.nats_url,
            &self.nats_url.as_ref().map(NatsServers::to_string),
        );
        set(&mut config.prefix, &self.prefix);
        set(&mut config.worker_timeout, &self.worker_timeout);
        set(&mut config.max_input_bytes, &self.max_input_bytes);
        set(&mut config.max_message_bytes, &self.max_message_bytes);
        set(&mut config.attempt_grace, &self.attempt_grace);
        set(&mut config.max_batch, &self.max_batch);
        set(&mut config.results_max_age, &self.results_max_age);
        set(&mut config.duplicate_window, &self.duplicate_window);
        set(&mut config.results_ack_wait, &self.results_ack_wait);
        Ok(())
    }
}

#[cfg(test)]
mod layering_tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "prefix = \"from-file\"\nnats_url = \"nats://file:4222\"\n",
        )
        .expect("write");
        let args = CoordinatorArgs {
            config: Some(path),
            prefix: Some(Prefix::new("from-flag").expect("prefix")),
            ..CoordinatorArgs::default()
        };
        let config = args.resolve().expect("resolve");
        assert_eq!(config.prefix.as_str(), "from-flag");
        assert_eq!(config.nats_url, "nats://file:4222");
    }

    #[test]
    fn nats_url_takes_a_server_list_and_refuses_bad_ones() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            args: CoordinatorArgs,
        }
        let cli = Cli::try_parse_from(["c", "--nats", "nats://a:4222, nats://b:4222"])
            .expect("a list parses");
        let config = cli.args.resolve().expect("resolve");
        assert_eq!(config.nats_url, "nats://a:4222,nats://b:4222");
        assert_eq!(config.nats_servers().expect("servers").addrs().len(), 2);
        assert!(Cli::try_parse_from(["c", "--nats", "http://a"]).is_err());

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "nats_url = \" , \"\n").expect("write");
        let err = CoordinatorArgs {
            config: Some(path),
            ..CoordinatorArgs::default()
        }
        .resolve()
        .expect_err("empty list");
        assert!(matches!(err, ConfigError::Servers(_)), "{err:?}");
    }
}
