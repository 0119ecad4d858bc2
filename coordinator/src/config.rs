//! The coordinator's configuration: defaults in code, then a TOML file, then `WORKFORCE_*`
//! environment variables, then flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use workforce_shared::Prefix;
use workforce_shared::duration;
use workforce_shared::jetstream::StreamSettings;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Directory of the event log. One coordinator per directory.
    pub data: PathBuf,
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
            nats_url: "nats://127.0.0.1:4222".into(),
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

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{field} must be at least {min}")]
    TooSmall { field: &'static str, min: String },
}

impl CoordinatorConfig {
    /// Defaults overlaid with the TOML file at `path`, if any.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.worker_timeout < Duration::from_secs(1) {
            return Err(ConfigError::TooSmall {
                field: "worker_timeout",
                min: "1s".into(),
            });
        }
        if self.max_batch == 0 {
            return Err(ConfigError::TooSmall {
                field: "max_batch",
                min: "1".into(),
            });
        }
        if self.max_message_bytes < 1024 {
            return Err(ConfigError::TooSmall {
                field: "max_message_bytes",
                min: "1024".into(),
            });
        }
        Ok(())
    }

    pub fn stream_settings(&self) -> StreamSettings {
        StreamSettings {
            results_max_age: self.results_max_age,
            duplicate_window: self.duplicate_window,
            ..StreamSettings::default()
        }
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
        let err = CoordinatorConfig::load(Some(&path)).expect_err("typo");
        assert!(err.to_string().contains("worker_timeot"), "{err}");
        std::fs::write(&path, "prefix = \"a b\"\n").expect("write");
        let err = CoordinatorConfig::load(Some(&path)).expect_err("bad prefix");
        assert!(err.to_string().contains("subject prefix"), "{err}");
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
    /// NATS server URL [default: nats://127.0.0.1:4222]
    #[arg(long = "nats", env = "WORKFORCE_NATS_URL", value_name = "URL")]
    pub nats_url: Option<String>,
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
    /// Defaults, then the config file, then these flags and environment variables.
    pub fn resolve(self) -> Result<CoordinatorConfig, ConfigError> {
        let mut config = CoordinatorConfig::load(self.config.as_deref())?;
        if let Some(v) = self.data {
            config.data = v;
        }
        if let Some(v) = self.nats_url {
            config.nats_url = v;
        }
        if let Some(v) = self.prefix {
            config.prefix = v;
        }
        if let Some(v) = self.worker_timeout {
            config.worker_timeout = v;
        }
        if let Some(v) = self.max_input_bytes {
            config.max_input_bytes = v;
        }
        if let Some(v) = self.max_message_bytes {
            config.max_message_bytes = v;
        }
        if let Some(v) = self.attempt_grace {
            config.attempt_grace = v;
        }
        if let Some(v) = self.max_batch {
            config.max_batch = v;
        }
        if let Some(v) = self.results_max_age {
            config.results_max_age = v;
        }
        if let Some(v) = self.duplicate_window {
            config.duplicate_window = v;
        }
        if let Some(v) = self.results_ack_wait {
            config.results_ack_wait = v;
        }
        config.validate()?;
        Ok(config)
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
}
