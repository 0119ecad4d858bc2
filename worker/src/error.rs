//! [`WorkerError`]: why a worker could not start or had to stop.

use workforce_shared::jetstream::TransportError;
use workforce_shared::runtime::ConnectError;
use workforce_shared::{Instance, WorkerId};

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error(
        "no capabilities to serve: pass --serve CAPABILITY=COMMAND, add [capabilities.NAME] \
         with a command to the config file, or register a Handler"
    )]
    NoCapabilities,
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Declaring streams or consumers failed: is JetStream enabled on the server?
    #[error("cannot set up JetStream (is JetStream enabled on the server?): {0}")]
    JetStream(#[from] TransportError),
    #[error("cannot subscribe to {subject}")]
    Subscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
    /// Another process serves as the same worker and started first: this one stopped (before
    /// taking work if `at_start`, else after draining).
    #[error(
        "another process is already running as worker {worker} (instance {other}, started \
         {}); this one stopped. Give each worker process its own --id",
        started(*.other_started_ms)
    )]
    DuplicateId {
        worker: WorkerId,
        other: Instance,
        other_started_ms: u64,
        at_start: bool,
    },
    /// A pull loop died (a bug): the worker drained and stopped.
    #[error("the pull loop for capability {capability} stopped unexpectedly: {reason}")]
    Intake { capability: String, reason: String },
}

impl WorkerError {
    /// Whether starting again later could succeed (the broker may come back); configuration
    /// mistakes need a change first.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NoCapabilities | Self::Config(_) | Self::DuplicateId { .. } => false,
            Self::Connect(error) => error.is_retryable(),
            Self::JetStream(_) | Self::Subscribe { .. } | Self::Intake { .. } => true,
        }
    }
}

/// A heartbeat's `started_ms` as a UTC time.
fn started(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}
