//! What can stop the coordinator.

use crate::log::LogError;
use crate::recovery::RecoveryError;
use workforce_shared::jetstream::TransportError;

use super::intake::IntakeError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the event log cannot be recovered: {0}")]
    Recovery(#[from] RecoveryError),
    #[error("the NATS server list: {0}")]
    Servers(#[from] workforce_shared::runtime::ServersError),
    #[error(transparent)]
    Connect(#[from] workforce_shared::runtime::ConnectError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("an intake task failed: {0}")]
    Intake(#[from] IntakeError),
    #[error("an intake stream ended")]
    IntakeEnded,
    #[error("an intake task panicked or was aborted: {0}")]
    IntakeJoin(#[from] tokio::task::JoinError),
}

impl CoordinatorError {
    /// Whether starting again later may succeed (the broker may come back) rather than
    /// needing the operator to change something (a locked or damaged log, a bad setting).
    pub fn is_retryable(&self) -> bool {
        match self {
            CoordinatorError::Connect(e) => e.is_retryable(),
            CoordinatorError::Transport(_)
            | CoordinatorError::Intake(_)
            | CoordinatorError::IntakeEnded => true,
            CoordinatorError::Config(_)
            | CoordinatorError::Servers(_)
            | CoordinatorError::Log(_)
            | CoordinatorError::Recovery(_)
            | CoordinatorError::IntakeJoin(_) => false,
        }
    }
}
