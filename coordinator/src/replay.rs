//! Replay: feed the recorded inputs through a fresh scheduler and check that every recorded
//! decision is reproduced, in order.

use std::collections::VecDeque;

use workforce_shared::{EventSeq, RunId};

use crate::log::{Entry, Event};
use crate::scheduler::{Decision, RunSummary, Scheduler};

/// What a replay found, when it found no divergence.
#[derive(Debug)]
pub struct ReplayReport {
    pub events: u64,
    pub inputs: u64,
    pub decisions: u64,
    /// Decisions that concern the run asked about (all, if none was).
    pub run_decisions: u64,
    pub runs: Vec<RunSummary>,
    /// The scheduler as the log leaves it.
    pub scheduler: Scheduler,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error(
        "divergence at event {seq}: the log records {recorded}, the replay produced {replayed}"
    )]
    Divergence {
        seq: EventSeq,
        recorded: String,
        replayed: String,
    },
    #[error("no run {0} in the log")]
    UnknownRun(RunId),
}

fn concerns(decision: &Decision, run: &RunId) -> bool {
    match decision {
        Decision::RunAccepted { run: r, .. }
        | Decision::Dispatch { run: r, .. }
        | Decision::TaskCompleted { run: r, .. }
        | Decision::RetryScheduled { run: r, .. }
        | Decision::DeadLettered { run: r, .. }
        | Decision::TaskCanceled { run: r, .. }
        | Decision::RunFinished { run: r, .. }
        | Decision::ResultIgnored { run: r, .. }
        | Decision::StopAttempt { run: r, .. } => r == run,
        Decision::InputRejected { .. } => false,
    }
}

fn describe<T: std::fmt::Debug>(value: Option<&T>) -> String {
    value.map_or_else(|| "nothing".to_owned(), |v| format!("{v:?}"))
}

/// Replays `events` (all of them: runs share capacity, so no run replays alone) and checks
/// every decision. `run` narrows the counts and the summary, not the check.
pub fn replay(
    events: &[(EventSeq, Event)],
    run: Option<&RunId>,
) -> Result<ReplayReport, ReplayError> {
    let mut scheduler = Scheduler::default();
    let mut expected: VecDeque<Decision> = VecDeque::new();
    let (mut inputs, mut decisions, mut run_decisions) = (0u64, 0u64, 0u64);
    let mut last_seq = EventSeq(0);
    for (seq, event) in events {
        last_seq = *seq;
        match &event.entry {
            Entry::Input(input) => {
                if let Some(extra) = expected.front() {
                    return Err(ReplayError::Divergence {
                        seq: *seq,
                        recorded: format!("input {input:?}"),
                        replayed: format!("{extra:?}"),
                    });
                }
                inputs += 1;
                expected = scheduler.apply(input).into();
            }
            Entry::Decision(recorded) => {
                let replayed = expected.pop_front();
                if replayed.as_ref() != Some(recorded) {
                    return Err(ReplayError::Divergence {
                        seq: *seq,
                        recorded: format!("{recorded:?}"),
                        replayed: describe(replayed.as_ref()),
                    });
                }
                decisions += 1;
                if run.is_none_or(|r| concerns(recorded, r)) {
                    run_decisions += 1;
                }
            }
        }
    }
    if let Some(extra) = expected.front() {
        return Err(ReplayError::Divergence {
            seq: EventSeq(last_seq.0 + 1),
            recorded: "the end of the log".into(),
            replayed: format!("{extra:?}"),
        });
    }
    let mut runs = scheduler.runs();
    if let Some(r) = run {
        runs.retain(|s| &s.run == r);
        if runs.is_empty() {
            return Err(ReplayError::UnknownRun(r.clone()));
        }
    }
    Ok(ReplayReport {
        events: events.len() as u64,
        inputs,
        decisions,
        run_decisions,
        runs,
        scheduler,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::Input;
    use workforce_shared::{Plan, PlanFormat, PlanLimits};

    fn recorded() -> Vec<(EventSeq, Event)> {
        let plan = Plan::parse(
            "[[tasks]]\nid = \"a\"\ncapability = \"c\"\n[[tasks]]\nid = \"b\"\ncapability = \"c\"\nneeds = [\"a\"]\n",
            PlanFormat::Toml,
            &PlanLimits::default(),
        )
        .expect("plan");
        let inputs = [
            Input::WorkerJoined {
                worker: "w".parse().expect("id"),
                capabilities: vec!["c".parse().expect("id")],
                concurrency: 1,
            },
            Input::RunSubmitted {
                run: "r".parse().expect("id"),
                plan,
            },
        ];
        let mut s = Scheduler::default();
        let mut events = Vec::new();
        for input in inputs {
            let decisions = s.apply(&input);
            events.push(Event {
                at_ms: 0,
                entry: Entry::Input(input),
            });
            events.extend(decisions.into_iter().map(|d| Event {
                at_ms: 0,
                entry: Entry::Decision(d),
            }));
        }
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| (EventSeq(i as u64 + 1), e))
            .collect()
    }

    #[test]
    fn a_faithful_log_replays() {
        let events = recorded();
        let report = replay(&events, None).expect("replay");
        assert_eq!((report.inputs, report.decisions), (2, 2));
        assert_eq!(report.runs.len(), 1);
    }

    #[test]
    fn a_changed_decision_is_named() {
        let mut events = recorded();
        let last = events.len() - 1;
        if let Entry::Decision(Decision::Dispatch { attempt, .. }) = &mut events[last].1.entry {
            attempt.0 = 7;
        } else {
            panic!("expected the dispatch last: {events:?}");
        }
        match replay(&events, None) {
            Err(ReplayError::Divergence { seq, recorded, .. }) => {
                assert_eq!(seq, EventSeq(4));
                assert!(recorded.contains("Attempt(7)"), "{recorded}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_decision_is_named() {
        let mut events = recorded();
        events.pop();
        assert!(matches!(
            replay(&events, None),
            Err(ReplayError::Divergence {
                seq: EventSeq(4),
                ..
            })
        ));
    }

    #[test]
    fn an_unknown_run_is_reported() {
        let events = recorded();
        let run: RunId = "other".parse().expect("id");
        assert!(matches!(
            replay(&events, Some(&run)),
            Err(ReplayError::UnknownRun(_))
        ));
    }
}
