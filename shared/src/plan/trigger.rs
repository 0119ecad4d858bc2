//! Trigger rules: when a task runs, given how the tasks it waits for ended.

use std::fmt;

use serde::{Deserialize, Serialize};

/// When a task runs, given how the tasks it waits for (its needs and everything they spawned)
/// ended. A task that waits for nothing runs at once, whatever its rule. A task whose rule can
/// no longer be met ends skipped, except under `all_success` and `none_failed`, where a failed
/// upstream cancels it ("upstream failed").
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Every upstream completed. A failed one cancels the task at once; a skipped one skips it
    /// once every upstream ended (a failure among the others cancels it instead).
    #[default]
    AllSuccess,
    /// Every upstream ended, however.
    AllDone,
    /// As soon as one upstream completed; skipped if none did.
    OneSuccess,
    /// As soon as one upstream failed; skipped if none did.
    OneFailed,
    /// Every upstream failed; skipped as soon as one completed or was skipped.
    AllFailed,
    /// Every upstream ended, none failed (skipped ones are fine). A failed one cancels the task.
    NoneFailed,
}

/// How the tasks a task waits for have ended so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    pub completed: usize,
    /// Dead-lettered, or canceled because a task they needed failed.
    pub failed: usize,
    pub skipped: usize,
    /// Not ended yet.
    pub unfinished: usize,
}

impl UpstreamCounts {
    pub fn total(&self) -> usize {
        self.completed + self.failed + self.skipped + self.unfinished
    }
}

/// What a trigger rule says of a waiting task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet: wait for more upstream tasks to end.
    Wait,
    Run,
    Skip,
    /// Cancel it: an upstream failed ("upstream failed").
    Cancel,
}

impl Trigger {
    pub const ALL: [Trigger; 6] = [
        Trigger::AllSuccess,
        Trigger::AllDone,
        Trigger::OneSuccess,
        Trigger::OneFailed,
        Trigger::AllFailed,
        Trigger::NoneFailed,
    ];

    pub fn is_default(&self) -> bool {
        *self == Trigger::AllSuccess
    }

    pub fn name(self) -> &'static str {
        match self {
            Trigger::AllSuccess => "all_success",
            Trigger::AllDone => "all_done",
            Trigger::OneSuccess => "one_success",
            Trigger::OneFailed => "one_failed",
            Trigger::AllFailed => "all_failed",
            Trigger::NoneFailed => "none_failed",
        }
    }

    /// The rule applied to what is known so far. Decides as early as the outcome is certain,
    /// never earlier: a rule is not judged unmet while an upstream that could meet it runs.
    ///
    /// A verdict other than `Wait` never changes as more upstream tasks end, so the order in
    /// which the ends of one step are taken in cannot change what is decided.
    pub fn verdict(self, n: UpstreamCounts) -> Verdict {
        if n.total() == 0 {
            return Verdict::Run;
        }
        let all_ended = n.unfinished == 0;
        match self {
            Trigger::AllSuccess if n.failed > 0 => Verdict::Cancel,
            Trigger::AllSuccess if n.skipped > 0 && all_ended => Verdict::Skip,
            Trigger::NoneFailed if n.failed > 0 => Verdict::Cancel,
            Trigger::AllSuccess | Trigger::NoneFailed | Trigger::AllDone if all_ended => {
                Verdict::Run
            }
            Trigger::OneSuccess if n.completed > 0 => Verdict::Run,
            Trigger::OneFailed if n.failed > 0 => Verdict::Run,
            Trigger::OneSuccess | Trigger::OneFailed if all_ended => Verdict::Skip,
            Trigger::AllFailed if n.completed > 0 || n.skipped > 0 => Verdict::Skip,
            Trigger::AllFailed if all_ended => Verdict::Run,
            _ => Verdict::Wait,
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(
        completed: usize,
        failed: usize,
        skipped: usize,
        unfinished: usize,
    ) -> UpstreamCounts {
        UpstreamCounts {
            completed,
            failed,
            skipped,
            unfinished,
        }
    }

    #[test]
    fn nothing_to_wait_for_runs_under_every_rule() {
        for rule in Trigger::ALL {
            assert_eq!(
                rule.verdict(UpstreamCounts::default()),
                Verdict::Run,
                "{rule}"
            );
        }
    }

    #[test]
    fn each_rule_decides_as_early_as_it_can_and_no_earlier() {
        use Verdict::*;
        // (rule, completed, failed, skipped, unfinished, verdict)
        let table = [
            (Trigger::AllSuccess, 1, 0, 0, 1, Wait),
            (Trigger::AllSuccess, 2, 0, 0, 0, Run),
            (Trigger::AllSuccess, 1, 1, 0, 1, Cancel),
            (Trigger::AllSuccess, 1, 0, 1, 1, Wait),
            (Trigger::AllSuccess, 1, 0, 1, 0, Skip),
            (Trigger::AllSuccess, 0, 1, 1, 0, Cancel),
            (Trigger::AllDone, 0, 1, 1, 1, Wait),
            (Trigger::AllDone, 0, 1, 1, 0, Run),
            (Trigger::OneSuccess, 0, 1, 0, 1, Wait),
            (Trigger::OneSuccess, 1, 0, 0, 3, Run),
            (Trigger::OneSuccess, 0, 1, 2, 0, Skip),
            (Trigger::OneFailed, 2, 0, 0, 1, Wait),
            (Trigger::OneFailed, 0, 1, 0, 2, Run),
            (Trigger::OneFailed, 2, 0, 1, 0, Skip),
            (Trigger::AllFailed, 0, 1, 0, 1, Wait),
            (Trigger::AllFailed, 0, 2, 0, 0, Run),
            (Trigger::AllFailed, 1, 1, 0, 1, Skip),
            (Trigger::AllFailed, 0, 1, 1, 1, Skip),
            (Trigger::NoneFailed, 1, 0, 1, 1, Wait),
            (Trigger::NoneFailed, 1, 0, 2, 0, Run),
            (Trigger::NoneFailed, 0, 0, 2, 0, Run),
            (Trigger::NoneFailed, 1, 1, 0, 1, Cancel),
        ];
        for (rule, c, f, s, u, expected) in table {
            assert_eq!(
                rule.verdict(counts(c, f, s, u)),
                expected,
                "{rule} with {c} completed, {f} failed, {s} skipped, {u} unfinished"
            );
        }
    }

    /// Whatever ends next, a decided verdict stays: the property that makes a step's
    /// decisions independent of the order its ends are taken in.
    #[test]
    fn a_decided_verdict_never_changes_as_more_upstream_ends() {
        for rule in Trigger::ALL {
            for total in 1..=4usize {
                for c in 0..=total {
                    for f in 0..=total - c {
                        for s in 0..=total - c - f {
                            let u = total - c - f - s;
                            let before = rule.verdict(counts(c, f, s, u));
                            if before == Verdict::Wait || u == 0 {
                                continue;
                            }
                            for next in [(1, 0, 0), (0, 1, 0), (0, 0, 1)] {
                                let after =
                                    rule.verdict(counts(c + next.0, f + next.1, s + next.2, u - 1));
                                assert_eq!(
                                    before, after,
                                    "{rule} with {c}/{f}/{s}/{u}, then one more {next:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn names_round_trip_through_serde() {
        for rule in Trigger::ALL {
            let json = serde_json::to_value(rule).expect("encode");
            assert_eq!(json, serde_json::json!(rule.name()));
            assert_eq!(
                serde_json::from_value::<Trigger>(json).expect("decode"),
                rule
            );
        }
    }
}
