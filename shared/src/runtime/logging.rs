//! Log output for both binaries: to stderr, filtered by `WORKFORCE_LOG` (an `EnvFilter`, e.g.
//! `debug` or `info,workforce_worker=debug`; `info` when unset or invalid), coloured only on a
//! terminal and only without `NO_COLOR`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The variable holding the log filter.
pub const LOG_ENV: &str = "WORKFORCE_LOG";

/// Installs the global subscriber. A second call (a test harness got there first) is a no-op.
pub fn init_logging() {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .try_init();
}
