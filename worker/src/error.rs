//! [`WorkerError`]: why a worker could not start or had to stop.

use workforce_shared::jetstream::TransportError;
use workforce_shared::runtime::ConnectError;

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
    /// A pull loop died (a bug): the worker drained and stopped.
    #[error("the pull loop for capability {capability} stopped unexpectedly: {reason}")]
    Intake { capability: String, reason: String },
}

impl WorkerError {
    /// Whether starting again later could succeed (the broker may come back); configuration
    /// mistakes need a change first.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NoCapabilities | Self::Config(_) => false,
            Self::Connect(error) => error.is_retryable(),
            Self::JetStream(_) | Self::Intake { .. } => true,
        }
    }
}
