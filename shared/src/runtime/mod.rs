//! What both binaries do the same way at their edges: layer their configuration, set up
//! logging, wait for a shutdown signal and connect to NATS.
//!
//! [`servers`] and [`config`] are pure (apart from reading the config file); [`logging`],
//! [`signal`] and [`connect`] touch the process and the network.

pub mod config;
pub mod connect;
pub mod logging;
pub mod servers;
pub mod signal;

pub use config::{ConfigError, Overrides, Settings, load, set};
pub use connect::{ConnectError, connect, connect_once};
pub use logging::init_logging;
pub use servers::{NatsServers, ServersError};
pub use signal::{SignalError, shutdown_signal};
