//! Replay: feed the recorded inputs through a fresh scheduler and check that every recorded
//! decision is reproduced, in order.
//!
//! Only runs accepted under this build's rules ([`SEMANTICS_VERSION`]) can be re-decided. While
//! a run of older rules is unfinished, its steps (and those of every run beside it: runs share
//! capacity) are restored as recorded instead, and the runs concerned are listed as not
//! re-decided, with why. Once the older runs have finished, re-deciding resumes.

use std::collections::BTreeSet;

use workforce_shared::{EventSeq, RunId};

use crate::log::{Event, LogError, groups};
use crate::scheduler::{Decision, RestoreError, RunSummary, SEMANTICS_VERSION, Scheduler};

/// A run whose decisions were applied as recorded rather than re-decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotRedecided {
    pub run: RunId,
    pub semantics: u32,
    pub why: Why,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// Accepted under older rules than this build's.
    OlderRules,
    /// Accepted while a run of older rules was unfinished beside it.
    BesideOlderRun { older: RunId },
}

impl std::fmt::Display for NotRedecided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.why {
            Why::OlderRules => write!(
                f,
                "run {} was accepted under scheduling rules {}, and this build decides under {SEMANTICS_VERSION}: checked as recorded",
                self.run, self.semantics
            ),
            Why::BesideOlderRun { older } => write!(
                f,
                "run {} shared capacity with run {older} of older rules: checked as recorded",
                self.run
            ),
        }
    }
}

/// What a replay found, when it found no divergence.
#[derive(Debug)]
pub struct ReplayReport {
    pub events: u64,
    pub inputs: u64,
    pub decisions: u64,
    /// Decisions re-decided and compared.
    pub redecided: u64,
    /// Decisions that concern the run asked about (all, if none was).
    pub run_decisions: u64,
    pub runs: Vec<RunSummary>,
    pub not_redecided: Vec<NotRedecided>,
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
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the log cannot be restored at event {seq}: {source}")]
    Restore {
        seq: EventSeq,
        #[source]
        source: RestoreError,
    },
    #[error("no run {0} in the log")]
    UnknownRun(RunId),
}

fn describe<T: std::fmt::Debug>(value: Option<&T>) -> String {
    value.map_or_else(|| "nothing".to_owned(), |v| format!("{v:?}"))
}

/// Replays `events` (all of them: runs share capacity, so no run replays alone) and checks
/// every decision it can re-decide. `run` narrows the counts and the summary, not the check.
pub fn replay(
    events: &[(EventSeq, Event)],
    run: Option<&RunId>,
) -> Result<ReplayReport, ReplayError> {
    let mut scheduler = Scheduler::default();
    let (mut decisions, mut redecided, mut run_decisions) = (0u64, 0u64, 0u64);
    // Unfinished runs of older rules: while any is left, nothing is re-decided.
    let mut older: BTreeSet<RunId> = BTreeSet::new();
    let mut not_redecided = Vec::new();
    let steps = groups(events)?;
    for group in &steps {
        let recorded: Vec<&Decision> = group.decisions.iter().map(|(_, d)| *d).collect();
        let of_older_rules = recorded.iter().any(|d| {
            matches!(d, Decision::RunAccepted { semantics, .. } if *semantics != SEMANTICS_VERSION)
        });
        if older.is_empty() && !of_older_rules {
            let step = scheduler.step(group.input.clone());
            let next_seq = EventSeq(group.seq.0 + recorded.len() as u64 + 1);
            for index in 0..recorded.len().max(step.decisions.len()) {
                let (seq, recorded) = group
                    .decisions
                    .get(index)
                    .map_or((next_seq, None), |(seq, d)| (*seq, Some(*d)));
                let replayed = step.decisions.get(index);
                if recorded != replayed {
                    return Err(ReplayError::Divergence {
                        seq,
                        recorded: recorded.map_or_else(
                            || "nothing more for this input".to_owned(),
                            |d| format!("{d:?}"),
                        ),
                        replayed: describe(replayed),
                    });
                }
            }
            redecided += recorded.len() as u64;
        } else {
            scheduler
                .restore(group.input, &group.decisions())
                .map_err(|source| ReplayError::Restore {
                    seq: group.seq,
                    source,
                })?;
        }
        for decision in recorded {
            decisions += 1;
            if run.is_none_or(|r| decision.run() == Some(r)) {
                run_decisions += 1;
            }
            match decision {
                Decision::RunAccepted { run, semantics, .. } if *semantics != SEMANTICS_VERSION => {
                    older.insert(run.clone());
                    not_redecided.push(NotRedecided {
                        run: run.clone(),
                        semantics: *semantics,
                        why: Why::OlderRules,
                    });
                }
                Decision::RunAccepted { run, semantics, .. } => {
                    if let Some(first) = older.first() {
                        not_redecided.push(NotRedecided {
                            run: run.clone(),
                            semantics: *semantics,
                            why: Why::BesideOlderRun {
                                older: first.clone(),
                            },
                        });
                    }
                }
                Decision::RunFinished { run, .. } => {
                    older.remove(run);
                }
                _ => {}
            }
        }
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
        inputs: steps.len() as u64,
        decisions,
        redecided,
        run_decisions,
        runs,
        not_redecided,
        scheduler,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Entry;
    use crate::scheduler::Input;
    use workforce_shared::{Plan, PlanFormat, PlanLimits};

    fn plan() -> Plan {
        Plan::parse(
            "[[tasks]]\nid = \"a\"\ncapability = \"c\"\n[[tasks]]\nid = \"b\"\ncapability = \"c\"\nneeds = [\"a\"]\n",
            PlanFormat::Toml,
            &PlanLimits::default(),
        )
        .expect("plan")
    }

    fn recorded() -> Vec<(EventSeq, Event)> {
        let inputs = [
            Input::WorkerJoined {
                worker: "w".parse().expect("id"),
                capabilities: vec!["c".parse().expect("id")],
                concurrency: 1,
            },
            Input::RunSubmitted {
                run: "r".parse().expect("id"),
                plan: plan(),
            },
        ];
        let mut s = Scheduler::default();
        let mut events = Vec::new();
        for input in inputs {
            let step = s.step(input);
            events.extend(Event::of_step(0, step.input, step.decisions));
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
        // accepted, a ready, a dispatched
        assert_eq!(
            (report.inputs, report.decisions, report.redecided),
            (2, 3, 3)
        );
        assert_eq!(report.runs.len(), 1);
        assert!(report.not_redecided.is_empty());
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
                assert_eq!(seq, EventSeq(5));
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
                seq: EventSeq(5),
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

    #[test]
    fn runs_of_older_rules_are_restored_not_redecided() {
        // As if older rules had held task a back instead of dispatching it: these rules
        // would decide otherwise, so only a run accepted under them may be re-decided.
        let mut events = recorded();
        events.retain(|(_, e)| !matches!(e.entry, Entry::Decision(Decision::Dispatch { .. })));
        assert!(matches!(
            replay(&events, None),
            Err(ReplayError::Divergence { .. })
        ));
        for (_, event) in &mut events {
            if let Entry::Decision(Decision::RunAccepted { semantics, .. }) = &mut event.entry {
                *semantics = 0;
            }
        }
        let report = replay(&events, None).expect("restored as recorded");
        assert_eq!(report.redecided, 0);
        assert_eq!(
            report.not_redecided,
            vec![NotRedecided {
                run: "r".parse().expect("id"),
                semantics: 0,
                why: Why::OlderRules
            }]
        );
        assert!(
            report.scheduler.running().is_empty(),
            "a stays ready, as recorded"
        );
    }
}
