//! Crash points for fault tests. `WORKFORCE_FAILPOINT=<point>:<n>` makes the coordinator abort
//! (no unwinding, no flushing: as close to SIGKILL as a process can do to itself) the n-th
//! time it reaches `<point>`. Unset, every check is a no-op.
//!
//! Points: `before_commit` (a batch applied, not committed: its results are not acked),
//! `after_commit` (committed, nothing published), `after_publish` (published, results not
//! acked).

use tracing::error;

pub(super) const BEFORE_COMMIT: &str = "before_commit";
pub(super) const AFTER_COMMIT: &str = "after_commit";
pub(super) const AFTER_PUBLISH: &str = "after_publish";

#[derive(Debug, Default)]
pub(super) struct Failpoint {
    armed: Option<(String, u32)>,
    hits: u32,
}

impl Failpoint {
    pub(super) fn from_env() -> Self {
        let armed = std::env::var("WORKFORCE_FAILPOINT").ok().and_then(|spec| {
            let (point, n) = spec.split_once(':')?;
            Some((point.to_owned(), n.parse().ok()?))
        });
        Self { armed, hits: 0 }
    }

    pub(super) fn check(&mut self, point: &str) {
        let Some((armed, n)) = &self.armed else {
            return;
        };
        if armed == point {
            self.hits += 1;
            if self.hits == *n {
                error!(point, hit = self.hits, "failpoint reached: aborting");
                std::process::abort();
            }
        }
    }
}
