//! [`StopSignal`]: how a handler learns that the coordinator asked to stop its attempt (it no
//! longer counts it: it timed it out, or an operator canceled it), and how long it has to stop cleanly before the
//! worker drops it.

use std::fmt;
use std::time::Duration;

use tokio::sync::watch;

/// Default of [`WorkerConfig::stop_grace`](crate::WorkerConfig::stop_grace).
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// Raised once when the attempt is to stop; every clone sees it.
///
/// A handler that holds resources worth releasing cleanly watches it
/// ([`requested`](Self::requested) in a `select!`, or [`is_requested`](Self::is_requested)
/// between steps) and returns within [`grace`](Self::grace); what it returns is discarded. One
/// that does not is dropped a little after the grace. A [`CommandHandler`](crate::CommandHandler)
/// sends SIGTERM to its command's process group, and SIGKILL after the grace.
#[derive(Clone)]
pub struct StopSignal {
    raised: watch::Receiver<bool>,
    grace: Duration,
}

/// Raises its [`StopSignal`]. Dropping it without [`request`](Self::request)ing leaves the
/// signal lowered for good.
#[derive(Debug)]
pub struct StopRequester(watch::Sender<bool>);

impl StopSignal {
    /// A signal, lowered, and what raises it. `grace` is how long a handler has to stop once
    /// it is raised.
    pub fn channel(grace: Duration) -> (StopRequester, Self) {
        let (sender, raised) = watch::channel(false);
        (StopRequester(sender), Self { raised, grace })
    }

    /// A signal that is never raised.
    pub fn never() -> Self {
        Self::channel(DEFAULT_STOP_GRACE).1
    }

    pub fn is_requested(&self) -> bool {
        *self.raised.borrow()
    }

    /// Resolves once a stop is requested (at once if it already was); never, if it never is.
    pub async fn requested(&self) {
        let mut raised = self.raised.clone();
        if raised.wait_for(|raised| *raised).await.is_err() {
            // Lowered for good: the requester is gone.
            std::future::pending::<()>().await;
        }
    }

    /// How long, from the request, a handler has to stop before the worker drops it.
    pub fn grace(&self) -> Duration {
        self.grace
    }
}

impl StopRequester {
    /// Raises the signal; asking again changes nothing.
    pub fn request(&self) {
        self.0.send_replace(true);
    }
}

impl Default for StopSignal {
    fn default() -> Self {
        Self::never()
    }
}

impl fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopSignal")
            .field("requested", &self.is_requested())
            .field("grace", &self.grace)
            .finish()
    }
}

impl PartialEq for StopSignal {
    fn eq(&self, other: &Self) -> bool {
        self.is_requested() == other.is_requested() && self.grace == other.grace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_request_reaches_every_clone_and_stays_raised() {
        let (requester, signal) = StopSignal::channel(Duration::from_millis(300));
        let clone = signal.clone();
        assert!(!signal.is_requested());
        let waiting = tokio::spawn(async move { clone.requested().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        requester.request();
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the clone saw the request")
            .expect("no panic");
        assert!(signal.is_requested());
        drop(requester);
        // Raised before the requester went: still raised, and `requested` returns at once.
        assert!(signal.is_requested());
        tokio::time::timeout(Duration::from_secs(1), signal.requested())
            .await
            .expect("already requested");
        assert_eq!(signal.grace(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_never_raised_never_resolves() {
        let never = StopSignal::never();
        assert!(!never.is_requested());
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), never.requested())
                .await
                .is_err()
        );
        let (requester, signal) = StopSignal::channel(DEFAULT_STOP_GRACE);
        drop(requester);
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), signal.requested())
                .await
                .is_err()
        );
        assert_eq!(never, signal);
    }
}
