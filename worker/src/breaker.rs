//! Circuit breakers, one per capability: after `failures` consecutive failed attempts of a
//! capability the worker pulls none of its tasks for a cool-down, then closes the breaker and
//! counts afresh. Pure: time comes in as an argument, and the run loop performs what changes.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use workforce_shared::{Breaker, Capability, Outcome};

/// How an attempt whose result this worker stored ended, as a breaker counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Succeeded,
    /// Permanent or not.
    Failed,
}

impl Verdict {
    pub(crate) fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Succeeded { .. } => Self::Succeeded,
            Outcome::Failed { .. } => Self::Failed,
        }
    }
}

/// A moment on both clocks: the monotonic one decides when a breaker closes, the wall clock
/// is what heartbeats announce.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now {
    pub(crate) at: Instant,
    /// Milliseconds since the Unix epoch.
    pub(crate) unix_ms: u64,
}

impl Now {
    pub(crate) fn read() -> Self {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            at: Instant::now(),
            unix_ms: u64::try_from(unix.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// A breaker that has just opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Opened {
    pub(crate) failures: u32,
    pub(crate) until: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    /// `until_ms` is fixed when it opens, so every heartbeat announces the same value.
    Open {
        failures: u32,
        until: Instant,
        until_ms: u64,
    },
}

/// The breakers of every capability that has had an attempt counted.
///
/// Invariant: a breaker leaves `Open` only through [`close_due`](Self::close_due), so the
/// caller, which resumes pulling when told, never misses a close. Outcomes recorded while a
/// breaker is open (attempts that were in flight when it opened) are not counted.
#[derive(Debug)]
pub(crate) struct Breakers {
    /// Consecutive failures that open a breaker; 0 means never.
    threshold: u32,
    cooldown: Duration,
    states: BTreeMap<Capability, State>,
}

impl Breakers {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            states: BTreeMap::new(),
        }
    }

    pub(crate) fn cooldown(&self) -> Duration {
        self.cooldown
    }

    /// Counts an attempt of `capability`. `Some` if this failure opens its breaker.
    pub(crate) fn record(
        &mut self,
        capability: &Capability,
        verdict: Verdict,
        now: Now,
    ) -> Option<Opened> {
        if self.threshold == 0 {
            return None;
        }
        let state = self
            .states
            .entry(capability.clone())
            .or_insert(State::Closed { failures: 0 });
        let failures = match (*state, verdict) {
            (State::Open { .. }, _) => return None,
            (State::Closed { .. }, Verdict::Succeeded) => 0,
            (State::Closed { failures }, Verdict::Failed) => failures.saturating_add(1),
        };
        if failures < self.threshold {
            *state = State::Closed { failures };
            return None;
        }
        let cooldown_ms = u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX);
        let until = now.at + self.cooldown;
        *state = State::Open {
            failures,
            until,
            until_ms: now.unix_ms.saturating_add(cooldown_ms),
        };
        Some(Opened { failures, until })
    }

    /// Whether `capability`'s breaker is open at `now`.
    pub(crate) fn is_open(&self, capability: &Capability, now: Instant) -> bool {
        matches!(
            self.states.get(capability),
            Some(State::Open { until, .. }) if now < *until
        )
    }

    /// Closes the breakers whose cool-down is over at `now`, their counts back at 0; returns
    /// their capabilities.
    pub(crate) fn close_due(&mut self, now: Instant) -> Vec<Capability> {
        let mut closed = Vec::new();
        for (capability, state) in &mut self.states {
            match *state {
                State::Open { until, .. } if until <= now => {
                    *state = State::Closed { failures: 0 };
                    closed.push(capability.clone());
                }
                State::Open { .. } | State::Closed { .. } => {}
            }
        }
        closed
    }

    /// When the next open breaker is due to close.
    pub(crate) fn next_close(&self) -> Option<Instant> {
        self.states
            .values()
            .filter_map(|state| match state {
                State::Open { until, .. } => Some(*until),
                State::Closed { .. } => None,
            })
            .min()
    }

    /// The breakers open at `now`, as a heartbeat lists them (ordered by capability).
    pub(crate) fn open(&self, now: Instant) -> Vec<Breaker> {
        self.states
            .iter()
            .filter_map(|(capability, state)| match *state {
                State::Open {
                    failures,
                    until,
                    until_ms,
                } if now < until => Some(Breaker {
                    capability: capability.clone(),
                    failures,
                    until_ms,
                }),
                State::Open { .. } | State::Closed { .. } => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(60);
    const EPOCH_MS: u64 = 1_767_225_600_000;

    fn cap(name: &str) -> Capability {
        Capability::new(name).expect("valid capability")
    }

    /// `secs` after a fixed start, on both clocks.
    struct Clock(Instant);

    impl Clock {
        fn new() -> Self {
            Self(Instant::now())
        }

        fn at(&self, secs: u64) -> Now {
            Now {
                at: self.0 + Duration::from_secs(secs),
                unix_ms: EPOCH_MS + secs * 1_000,
            }
        }
    }

    fn fail_times(breakers: &mut Breakers, capability: &Capability, n: u32, now: Now) {
        for _ in 0..n {
            assert_eq!(breakers.record(capability, Verdict::Failed, now), None);
        }
    }

    #[test]
    fn opens_at_the_nth_consecutive_failure_and_lists_it() {
        let clock = Clock::new();
        let mut breakers = Breakers::new(3, COOLDOWN);
        let review = cap("review");
        fail_times(&mut breakers, &review, 2, clock.at(0));
        assert!(!breakers.is_open(&review, clock.at(1).at));
        assert_eq!(breakers.open(clock.at(1).at), vec![]);

        let opened = breakers.record(&review, Verdict::Failed, clock.at(5));
        assert_eq!(
            opened,
            Some(Opened {
                failures: 3,
                until: clock.at(65).at,
            })
        );
        assert!(breakers.is_open(&review, clock.at(5).at));
        assert!(breakers.is_open(&review, clock.at(64).at));
        assert_eq!(
            breakers.open(clock.at(30).at),
            vec![Breaker {
                capability: review.clone(),
                failures: 3,
                until_ms: EPOCH_MS + 65_000,
            }]
        );
        assert_eq!(breakers.next_close(), Some(clock.at(65).at));
    }

    #[test]
    fn a_success_resets_the_count() {
        let clock = Clock::new();
        let mut breakers = Breakers::new(2, COOLDOWN);
        let review = cap("review");
        fail_times(&mut breakers, &review, 1, clock.at(0));
        assert_eq!(
            breakers.record(&review, Verdict::Succeeded, clock.at(1)),
            None
        );
        fail_times(&mut breakers, &review, 1, clock.at(2));
        assert!(!breakers.is_open(&review, clock.at(2).at));
        assert!(
            breakers
                .record(&review, Verdict::Failed, clock.at(3))
                .is_some(),
            "two failures in a row after the success"
        );
    }

    #[test]
    fn closes_after_the_cooldown_and_counts_afresh() {
        let clock = Clock::new();
        let mut breakers = Breakers::new(2, COOLDOWN);
        let review = cap("review");
        fail_times(&mut breakers, &review, 1, clock.at(0));
        assert!(
            breakers
                .record(&review, Verdict::Failed, clock.at(0))
                .is_some()
        );

        assert_eq!(
            breakers.close_due(clock.at(59).at),
            Vec::<Capability>::new()
        );
        assert!(breakers.is_open(&review, clock.at(59).at));
        // Due, though not yet closed: no longer open, and no longer listed.
        assert!(!breakers.is_open(&review, clock.at(60).at));
        assert_eq!(breakers.open(clock.at(60).at), vec![]);
        assert_eq!(breakers.close_due(clock.at(60).at), vec![review.clone()]);
        assert_eq!(
            breakers.close_due(clock.at(61).at),
            Vec::<Capability>::new()
        );
        assert_eq!(breakers.next_close(), None);

        // The count restarted at 0: one failure does not reopen it, a second does.
        fail_times(&mut breakers, &review, 1, clock.at(62));
        let reopened = breakers.record(&review, Verdict::Failed, clock.at(63));
        assert_eq!(
            reopened,
            Some(Opened {
                failures: 2,
                until: clock.at(123).at,
            })
        );
    }

    #[test]
    fn outcomes_while_open_are_not_counted() {
        let clock = Clock::new();
        let mut breakers = Breakers::new(1, COOLDOWN);
        let review = cap("review");
        assert!(
            breakers
                .record(&review, Verdict::Failed, clock.at(0))
                .is_some()
        );
        // Attempts in flight when it opened end while it is open, even after the cool-down
        // until the breaker is closed: they neither extend nor close it.
        fail_times(&mut breakers, &review, 3, clock.at(10));
        assert_eq!(
            breakers.record(&review, Verdict::Succeeded, clock.at(20)),
            None
        );
        fail_times(&mut breakers, &review, 1, clock.at(70));
        assert_eq!(breakers.next_close(), Some(clock.at(60).at));
        assert_eq!(
            breakers.open(clock.at(30).at),
            vec![Breaker {
                capability: review.clone(),
                failures: 1,
                until_ms: EPOCH_MS + 60_000,
            }]
        );
        assert_eq!(breakers.close_due(clock.at(70).at), vec![review]);
    }

    #[test]
    fn off_when_the_threshold_is_zero() {
        let clock = Clock::new();
        let mut breakers = Breakers::new(0, COOLDOWN);
        let review = cap("review");
        fail_times(&mut breakers, &review, 1_000, clock.at(0));
        assert!(!breakers.is_open(&review, clock.at(0).at));
        assert_eq!(breakers.open(clock.at(0).at), vec![]);
        assert_eq!(breakers.next_close(), None);
    }

    #[test]
    fn each_capability_has_its_own_breaker() {
        let clock = Clock::new();
        let mut breakers = Breakers::new(2, COOLDOWN);
        let (review, lint, tests) = (cap("review"), cap("lint"), cap("tests"));
        fail_times(&mut breakers, &review, 1, clock.at(0));
        fail_times(&mut breakers, &lint, 1, clock.at(1));
        // A success of another capability resets nothing here.
        assert_eq!(
            breakers.record(&tests, Verdict::Succeeded, clock.at(2)),
            None
        );
        assert!(
            breakers
                .record(&review, Verdict::Failed, clock.at(3))
                .is_some()
        );
        assert!(breakers.is_open(&review, clock.at(3).at));
        assert!(!breakers.is_open(&lint, clock.at(3).at));
        assert!(!breakers.is_open(&tests, clock.at(3).at));

        assert!(
            breakers
                .record(&lint, Verdict::Failed, clock.at(10))
                .is_some()
        );
        let listed: Vec<(String, u64)> = breakers
            .open(clock.at(10).at)
            .into_iter()
            .map(|b| (b.capability.to_string(), b.until_ms))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("lint".to_owned(), EPOCH_MS + 70_000),
                ("review".to_owned(), EPOCH_MS + 63_000),
            ],
            "ordered by capability"
        );
        assert_eq!(breakers.next_close(), Some(clock.at(63).at));
        assert_eq!(breakers.close_due(clock.at(63).at), vec![review.clone()]);
        assert!(!breakers.is_open(&review, clock.at(63).at));
        assert!(breakers.is_open(&lint, clock.at(63).at));
        assert_eq!(breakers.next_close(), Some(clock.at(70).at));
    }

    #[test]
    fn verdicts_of_outcomes() {
        assert_eq!(
            Verdict::of(&Outcome::succeeded(serde_json::json!(1))),
            Verdict::Succeeded
        );
        for permanent in [false, true] {
            let failed = Outcome::Failed {
                error: "boom".into(),
                permanent,
            };
            assert_eq!(Verdict::of(&failed), Verdict::Failed);
        }
    }
}
