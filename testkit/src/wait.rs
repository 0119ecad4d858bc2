//! Waiting on a condition against a deadline: tests never sleep to wait.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

/// How often [`eventually`] checks again.
const POLL: Duration = Duration::from_millis(100);

/// Polls `check` until it yields a value or `within` has passed. An error from `check` does
/// not end the wait (the thing checked may not be up yet); the last one is reported if the
/// deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(e) => bail!("{what}: not true within {within:?}; last error: {e:#}"),
                None => bail!("{what}: not true within {within:?}"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
