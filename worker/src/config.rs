//! [`WorkerConfig`]: every setting of a worker, with defaults in code. The `cli` module layers
//! a TOML file, `WORKFORCE_*` environment variables and flags on top.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use workforce_shared::duration;
use workforce_shared::runtime::{NatsServers, Settings};
use workforce_shared::{Capability, Prefix, WorkerId};

pub use workforce_shared::runtime::ConfigError;

use crate::command::{CommandHandler, DEFAULT_MAX_OUTPUT_BYTES};
use crate::handler::Handler;
use crate::stop::DEFAULT_STOP_GRACE;

/// How long an open circuit breaker keeps a capability from being pulled, unless configured.
pub(crate) const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(60);

/// A worker's settings. As a TOML file:
///
/// ```toml
/// nats_url = "nats://127.0.0.1:4222"
/// prefix = "workforce"
/// id = "builder-1"              # default: "<hostname>-<pid>"
/// concurrency = 4               # tasks at once, over all capabilities
/// heartbeat_interval = "2s"
/// ack_wait = "30s"
/// grace_period = "30s"          # how long a drain waits for running tasks
/// stop_grace = "10s"            # how long a task asked to stop has between SIGTERM and SIGKILL
/// max_message_bytes = 1048576
/// max_output_bytes = 524288
/// max_deliveries = 3           # deliveries of one attempt before it is failed unrun
/// breaker_failures = 0          # consecutive failures of a capability that pause it; 0 = never
/// breaker_cooldown = "60s"      # how long a capability is paused once they have
/// workdir = "/srv/work"         # default working directory of commands
///
/// [capabilities.review]
/// command = "./review.sh"
/// workdir = "/srv/review"       # optional, overrides `workdir`
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// NATS server URL; several may be given separated by commas.
    pub nats_url: NatsServers,
    pub prefix: Prefix,
    pub id: WorkerId,
    /// How many tasks run at once, over all capabilities.
    pub concurrency: u32,
    #[serde(with = "duration")]
    pub heartbeat_interval: Duration,
    /// How long JetStream waits for an ack before redelivering an assignment. Running tasks
    /// report progress every third of it, so only a dead worker's tasks are redelivered.
    #[serde(with = "duration")]
    pub ack_wait: Duration,
    /// How long a drain (on shutdown) waits for running tasks before handing them back.
    #[serde(with = "duration")]
    pub grace_period: Duration,
    /// When the coordinator asks to stop a running task (it timed it out, or an operator canceled it): how long it
    /// has to stop cleanly. A command's process group gets SIGTERM, then SIGKILL after
    /// this; a Rust handler sees its [`StopSignal`](crate::StopSignal) and is dropped a
    /// little after this.
    #[serde(with = "duration")]
    pub stop_grace: Duration,
    /// Largest assignment the worker decodes and largest result it publishes.
    pub max_message_bytes: usize,
    /// Largest stdout a command may produce.
    pub max_output_bytes: usize,
    /// An assignment delivered more often than this (its earlier workers died or stalled
    /// running it: a poison task) is failed, retryably, without being run again.
    pub max_deliveries: u32,
    /// Circuit breaker: after this many consecutive failed attempts of one capability, pull
    /// none of its tasks for [`breaker_cooldown`](Self::breaker_cooldown). 0 turns it off.
    pub breaker_failures: u32,
    /// How long a capability whose breaker opened is not pulled; then it closes and counting
    /// starts again.
    #[serde(with = "duration")]
    pub breaker_cooldown: Duration,
    /// Working directory of commands whose capability names none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
    /// Capabilities served by shell commands.
    pub capabilities: BTreeMap<Capability, CommandSpec>,
}

/// How a capability is served by a shell command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// Run as `sh -c COMMAND`.
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            nats_url: NatsServers::default(),
            prefix: Prefix::default(),
            id: default_worker_id(),
            concurrency: 4,
            heartbeat_interval: Duration::from_secs(2),
            ack_wait: Duration::from_secs(30),
            grace_period: Duration::from_secs(30),
            stop_grace: DEFAULT_STOP_GRACE,
            max_message_bytes: 1024 * 1024,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_deliveries: 3,
            breaker_failures: 0,
            breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
            workdir: None,
            capabilities: BTreeMap::new(),
        }
    }
}

impl WorkerConfig {
    /// Checks what the types cannot: non-zero sizes and intervals, non-empty commands.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Settings::validate(self)
    }

    /// A [`CommandHandler`] for each capability in [`capabilities`](Self::capabilities).
    pub fn command_handlers(&self) -> BTreeMap<Capability, Arc<dyn Handler>> {
        self.capabilities
            .iter()
            .map(|(capability, spec)| {
                let handler: Arc<dyn Handler> = Arc::new(self.command_handler(spec));
                (capability.clone(), handler)
            })
            .collect()
    }

    /// The handler for one command capability: its own workdir, else the default one.
    pub fn command_handler(&self, spec: &CommandSpec) -> CommandHandler {
        let handler =
            CommandHandler::new(spec.command.clone()).max_output_bytes(self.max_output_bytes);
        match spec.workdir.as_ref().or(self.workdir.as_ref()) {
            Some(dir) => handler.workdir(dir.clone()),
            None => handler,
        }
    }

    /// The configuration as a TOML file would state it.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        Ok(toml::to_string(self)?)
    }
}

impl Settings for WorkerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: &str| Err(ConfigError::invalid(field, reason));
        if self.concurrency == 0 {
            return invalid("concurrency", "must be at least 1");
        }
        for (field, value) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("ack_wait", self.ack_wait),
            ("breaker_cooldown", self.breaker_cooldown),
        ] {
            if value.is_zero() {
                return invalid(field, "must be longer than zero");
            }
        }
        if self.max_message_bytes == 0 {
            return invalid("max_message_bytes", "must be at least 1");
        }
        if self.max_deliveries == 0 {
            return invalid("max_deliveries", "must be at least 1");
        }
        if self.max_output_bytes == 0 {
            return invalid("max_output_bytes", "must be at least 1");
        }
        for (capability, spec) in &self.capabilities {
            if spec.command.trim().is_empty() {
                return invalid(
                    &format!("capabilities.{capability}.command"),
                    "must not be empty",
                );
            }
        }
        Ok(())
    }
}

/// `<hostname>-<pid>`, made a valid id. The host name comes from `/etc/hostname`, else the
/// `HOSTNAME` variable, else is "worker".
pub fn default_worker_id() -> WorkerId {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "worker".to_owned());
    WorkerId::sanitized(&format!("{host}-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let config = WorkerConfig::default();
        config.validate().expect("defaults are valid");
        let text = config.to_toml().expect("render");
        assert!(text.contains("ack_wait = \"30s\""), "{text}");
        let back: WorkerConfig = toml::from_str(&text).expect("parse");
        assert_eq!(back, config);
    }

    #[test]
    fn default_worker_id_ends_with_the_pid() {
        let id = default_worker_id();
        assert!(
            id.as_str().ends_with(&format!("-{}", std::process::id())),
            "{id}"
        );
    }

    #[test]
    fn rejects_zero_concurrency_and_unknown_keys() {
        let config = WorkerConfig {
            concurrency: 0,
            ..WorkerConfig::default()
        };
        let err = config.validate().expect_err("zero concurrency");
        assert!(err.to_string().contains("concurrency"), "{err}");
        let err = toml::from_str::<WorkerConfig>("concurency = 3").expect_err("typo");
        assert!(err.to_string().contains("concurency"), "{err}");
    }

    #[test]
    fn command_handlers_inherit_the_default_workdir() {
        let text = r#"
            workdir = "/srv"
            max_output_bytes = 10
            [capabilities.a]
            command = "true"
            [capabilities.b]
            command = "true"
            workdir = "/opt"
        "#;
        let config: WorkerConfig = toml::from_str(text).expect("parse");
        let spec = |name: &str| &config.capabilities[&Capability::new(name).expect("cap")];
        assert_eq!(
            config.command_handler(spec("a")),
            CommandHandler::new("true")
                .max_output_bytes(10)
                .workdir("/srv")
        );
        assert_eq!(
            config.command_handler(spec("b")),
            CommandHandler::new("true")
                .max_output_bytes(10)
                .workdir("/opt")
        );
        assert_eq!(config.command_handlers().len(), 2);
    }
}
