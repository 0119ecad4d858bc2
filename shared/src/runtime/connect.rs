//! Connecting the long-running services to NATS: wait for the servers to come up, then fail
//! over between them and reconnect forever (async-nats does both once connected).

use std::time::Duration;

use super::servers::NatsServers;

/// How often to say so while waiting for the first connection.
const CONNECT_PATIENCE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[error("cannot connect to NATS at {servers}")]
    Connect {
        servers: NatsServers,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("the NATS client closed while connecting to {servers}")]
    Closed {
        servers: NatsServers,
        #[source]
        source: async_nats::client::FlushError,
    },
}

impl ConnectError {
    /// Whether trying again later could succeed: the servers may come back; bad credentials,
    /// TLS setup or an unparsable address need a change first.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { source, .. } => match source.kind() {
                async_nats::ConnectErrorKind::Dns
                | async_nats::ConnectErrorKind::TimedOut
                | async_nats::ConnectErrorKind::Io
                | async_nats::ConnectErrorKind::MaxReconnects => true,
                async_nats::ConnectErrorKind::ServerParse
                | async_nats::ConnectErrorKind::Authentication
                | async_nats::ConnectErrorKind::AuthorizationViolation
                | async_nats::ConnectErrorKind::Tls => false,
            },
            Self::Closed { .. } => true,
        }
    }
}

/// Connects to one of `servers` as `name` (shown by the server's monitoring), waiting for
/// NATS if it is not up yet and warning every few seconds while it waits. Returns once
/// connected.
pub async fn connect(
    servers: &NatsServers,
    name: &str,
) -> Result<async_nats::Client, ConnectError> {
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connect(servers)
        .await
        .map_err(|source| ConnectError::Connect {
            servers: servers.clone(),
            source,
        })?;
    // With retry_on_initial_connect the client comes back before it is connected; a flush
    // completes once it is.
    loop {
        match tokio::time::timeout(CONNECT_PATIENCE, client.flush()).await {
            Ok(Ok(())) => return Ok(client),
            Ok(Err(source)) => {
                return Err(ConnectError::Closed {
                    servers: servers.clone(),
                    source,
                });
            }
            Err(_) => {
                tracing::warn!(%servers, "NATS is not reachable yet; still trying to connect")
            }
        }
    }
}

/// Connects to one of `servers` once, giving up after `timeout`: for short-lived tools that
/// should fail fast rather than wait for NATS.
pub async fn connect_once(
    servers: &NatsServers,
    name: &str,
    timeout: Duration,
) -> Result<async_nats::Client, ConnectError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .connect(servers)
        .await
        .map_err(|source| ConnectError::Connect {
            servers: servers.clone(),
            source,
        })
}
