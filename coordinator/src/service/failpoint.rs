//! Crash points for fault tests, compiled only with the `failpoints` feature (the tests turn
//! it on; release binaries built by `just build` do not have it).
//!
//! `WORKFORCE_FAILPOINT=<point>:<n>` makes the coordinator abort (no unwinding, no flushing:
//! as close to SIGKILL as a process can do to itself) the n-th time it reaches `<point>`.
//! Points: `before_commit` (a batch applied, not committed: its results are not acked),
//! `after_commit` (committed, nothing published), `after_publish` (published, results not
//! acked).

pub(super) const BEFORE_COMMIT: &str = "before_commit";
pub(super) const AFTER_COMMIT: &str = "after_commit";
pub(super) const AFTER_PUBLISH: &str = "after_publish";

#[cfg(feature = "failpoints")]
#[derive(Debug, Default)]
pub(super) struct Failpoint {
    armed: Option<(String, u32)>,
    hits: u32,
}

#[cfg(feature = "failpoints")]
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
                tracing::error!(point, hit = self.hits, "failpoint reached: aborting");
                std::process::abort();
            }
        }
    }
}

/// Without the feature: no failpoints, and nothing reads the environment for them.
#[cfg(not(feature = "failpoints"))]
#[derive(Debug, Default)]
pub(super) struct Failpoint;

#[cfg(not(feature = "failpoints"))]
impl Failpoint {
    pub(super) fn from_env() -> Self {
        Self
    }

    #[inline(always)]
    pub(super) fn check(&mut self, _point: &str) {}
}
