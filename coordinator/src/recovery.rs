//! Recovery: rebuilds the coordinator's state from its event log, deciding nothing again.
//!
//! A pure function of the events read from the log: every recorded step is restored as it
//! was decided ([`Scheduler::restore`]), never decided again, so a newer build opens a log an
//! older one wrote and finishes its runs: what was decided stays as recorded, what is still to
//! decide is decided by this build's rules. What the log leaves owed comes back with the
//! state: the timers of attempts still running or backing off, and the publishes of decisions
//! whose effects were not marked done.

use std::collections::BTreeMap;

use workforce_shared::{Attempt, EventSeq, RunId, TaskId};

use crate::log::{Event, LogError, groups};
use crate::scheduler::{Decision, Effect, RestoreError, Scheduler, Timer};

/// When the timers that recovery re-arms fall due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadlineRule {
    /// Added to a task's timeout before its attempt is failed.
    pub grace_ms: u64,
    /// No deadline falls before this (now plus the results ack wait, in production): a result
    /// stored while the coordinator was down is redelivered by then, and must win.
    pub floor_ms: u64,
}

/// The state a log leaves, and what it still owes.
#[derive(Debug)]
pub struct Recovered {
    pub scheduler: Scheduler,
    /// Timers to arm, with when each falls due (the log's clock: Unix ms in production).
    pub timers: Vec<(u64, Timer)>,
    /// Publishes owed by decisions recorded after the effects marker, in log order.
    pub owed: Vec<Effect>,
    /// Steps (inputs) restored.
    pub steps: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the event log cannot be restored at event {seq}: {source}")]
    Restore {
        seq: EventSeq,
        #[source]
        source: RestoreError,
    },
}

type Key = (RunId, TaskId, Attempt);

/// Restores every step of `events`, then lists the timers and publishes still owed.
pub fn recover(
    events: &[(EventSeq, Event)],
    effects_done: EventSeq,
    rule: DeadlineRule,
) -> Result<Recovered, RecoveryError> {
    let mut scheduler = Scheduler::default();
    // The latest dispatch and retry of each attempt, with when they were recorded.
    let mut dispatched: BTreeMap<Key, (u64, EventSeq, Decision)> = BTreeMap::new();
    let mut retries: BTreeMap<Key, u64> = BTreeMap::new();
    let mut letters: Vec<(EventSeq, Decision)> = Vec::new();
    // When each run was accepted, for its deadline.
    let mut accepted: BTreeMap<RunId, u64> = BTreeMap::new();
    let steps = groups(events)?;
    for group in &steps {
        let decisions = group.decisions();
        scheduler
            .restore(group.input, &decisions)
            .map_err(|source| RecoveryError::Restore {
                seq: group.seq,
                source,
            })?;
        for (seq, decision) in &group.decisions {
            match decision {
                Decision::Dispatch {
                    run,
                    task,
                    attempt,
                    timeout_ms,
                    ..
                } => {
                    let due = group
                        .at_ms
                        .saturating_add(*timeout_ms)
                        .saturating_add(rule.grace_ms);
                    let key = (run.clone(), task.clone(), *attempt);
                    dispatched.insert(key, (due, *seq, (*decision).clone()));
                }
                Decision::RetryScheduled {
                    run,
                    task,
                    attempt,
                    delay_ms,
                } => {
                    let key = (run.clone(), task.clone(), *attempt);
                    retries.insert(key, group.at_ms.saturating_add(*delay_ms));
                }
                Decision::RunAccepted { run, .. } => {
                    accepted.insert(run.clone(), group.at_ms);
                }
                Decision::DeadLettered { .. } if *seq > effects_done => {
                    letters.push((*seq, (*decision).clone()));
                }
                _ => {}
            }
        }
    }

    let mut timers = Vec::new();
    let mut owed: Vec<(EventSeq, Effect)> = Vec::new();
    for key in scheduler.running() {
        let Some((due, seq, decision)) = dispatched.get(&key) else {
            continue;
        };
        if *seq > effects_done
            && let Some(effect) = scheduler.owed_effect(decision)
        {
            owed.push((*seq, effect));
        }
        let (run, task, attempt) = key;
        timers.push((
            (*due).max(rule.floor_ms),
            Timer::Deadline { run, task, attempt },
        ));
    }
    for key in scheduler.backing_off() {
        let due = retries.get(&key).copied().unwrap_or(rule.floor_ms);
        let (run, task, attempt) = key;
        timers.push((due, Timer::RetryDue { run, task, attempt }));
    }
    for (run, deadline_ms) in scheduler.run_deadlines() {
        let since = accepted.get(&run).copied().unwrap_or(rule.floor_ms);
        timers.push((
            since.saturating_add(deadline_ms),
            Timer::RunDeadline { run },
        ));
    }
    for (seq, decision) in letters {
        if let Some(effect) = scheduler.owed_effect(&decision) {
            owed.push((seq, effect));
        }
    }
    owed.sort_by_key(|(seq, _)| *seq);
    timers.sort();
    Ok(Recovered {
        scheduler,
        timers,
        owed: owed.into_iter().map(|(_, effect)| effect).collect(),
        steps: steps.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{Input, RunStatus};
    use workforce_shared::{Outcome, PROTOCOL_VERSION, Plan, PlanFormat, PlanLimits, TaskResult};

    const PLAN: &str = "[[tasks]]\nid = \"a\"\ncapability = \"c\"\ntimeout = \"10s\"\nretry = { max_attempts = 2, initial_backoff = \"2s\" }\n[[tasks]]\nid = \"b\"\ncapability = \"c\"\ntimeout = \"10s\"\n[[tasks]]\nid = \"c\"\ncapability = \"c\"\nneeds = [\"b\"]\nretry = { max_attempts = 1 }\n";

    fn id<T: std::str::FromStr>(s: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        s.parse().expect("id")
    }

    fn result(task: &str, outcome: Outcome) -> Input {
        Input::ResultReceived {
            result: TaskResult {
                v: PROTOCOL_VERSION,
                run: id("r"),
                task: id(task),
                attempt: Attempt(1),
                worker: id("w"),
                outcome,
                duration_ms: 0,
                usage: None,
            },
        }
    }

    /// Steps the inputs at 1000 ms apart, as the service records them.
    fn record(inputs: Vec<Input>) -> (Scheduler, Vec<(EventSeq, Event)>) {
        let mut scheduler = Scheduler::default();
        let mut events = Vec::new();
        for (n, input) in inputs.into_iter().enumerate() {
            let step = scheduler.step(input);
            events.extend(Event::of_step(n as u64 * 1000, step.input, step.decisions));
        }
        let events = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| (EventSeq(i as u64 + 1), e))
            .collect();
        (scheduler, events)
    }

    fn inputs() -> Vec<Input> {
        vec![
            Input::WorkerJoined {
                worker: id("w"),
                capabilities: vec![id("c")],
                concurrency: 2,
            },
            Input::RunSubmitted {
                run: id("r"),
                plan: Plan::parse(PLAN, PlanFormat::Toml, &PlanLimits::default()).expect("plan"),
            },
            // a fails and backs off 2 s; b is still running.
            result(
                "a",
                Outcome::Failed {
                    error: "flaky".into(),
                    permanent: false,
                },
            ),
        ]
    }

    #[test]
    fn recovery_rebuilds_the_state_the_steps_left() {
        let (live, events) = record(inputs());
        let rule = DeadlineRule {
            grace_ms: 500,
            floor_ms: 0,
        };
        let recovered = recover(&events, EventSeq(u64::MAX), rule).expect("recover");
        assert_eq!(recovered.scheduler.runs(), live.runs());
        assert_eq!(
            recovered.scheduler.run_view(&id("r")),
            live.run_view(&id("r"))
        );
        assert_eq!(recovered.scheduler.running(), live.running());
        assert_eq!(recovered.steps, 3);
        // b's deadline: dispatched at 1000 ms, 10 s timeout, 500 ms grace. a's retry: failed
        // at 2000 ms, 2 s backoff.
        assert_eq!(
            recovered.timers,
            vec![
                (
                    4000,
                    Timer::RetryDue {
                        run: id("r"),
                        task: id("a"),
                        attempt: Attempt(2)
                    }
                ),
                (
                    11_500,
                    Timer::Deadline {
                        run: id("r"),
                        task: id("b"),
                        attempt: Attempt(1)
                    }
                ),
            ]
        );
        assert!(recovered.owed.is_empty(), "every effect was marked done");
    }

    #[test]
    fn deadlines_wait_for_the_floor_and_unmarked_publishes_are_owed() {
        let (_, events) = record(inputs());
        let rule = DeadlineRule {
            grace_ms: 500,
            floor_ms: 60_000,
        };
        let recovered = recover(&events, EventSeq(0), rule).expect("recover");
        let deadline = recovered
            .timers
            .iter()
            .find(|(_, t)| matches!(t, Timer::Deadline { .. }))
            .expect("deadline");
        assert_eq!(deadline.0, 60_000);
        // a's first attempt ended; only b's assignment is still owed.
        match recovered.owed.as_slice() {
            [Effect::Assign(a)] => assert_eq!(a.task.as_str(), "b"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unmarked_dead_letters_are_owed_and_the_run_stays_finished() {
        let mut all = inputs();
        all.push(result(
            "b",
            Outcome::Failed {
                error: "bad".into(),
                permanent: true,
            },
        ));
        let (live, events) = record(all);
        let recovered = recover(
            &events,
            EventSeq(0),
            DeadlineRule {
                grace_ms: 0,
                floor_ms: 0,
            },
        )
        .expect("recover");
        assert!(
            recovered
                .owed
                .iter()
                .any(|e| matches!(e, Effect::DeadLetter(d) if d.task.as_str() == "b" && d.errors[0].error == "permanent failure: bad"))
        );
        assert_eq!(recovered.scheduler.runs(), live.runs());
        assert_ne!(live.runs()[0].status, RunStatus::Succeeded);
    }

    #[test]
    fn a_damaged_log_is_refused_naming_the_event() {
        let (_, mut events) = record(inputs());
        // Drop the run's acceptance: its dispatches name a run the log never accepted.
        events.retain(|(_, e)| {
            !matches!(
                e.entry,
                crate::log::Entry::Decision(Decision::RunAccepted { .. })
            )
        });
        let err = recover(
            &events,
            EventSeq(0),
            DeadlineRule {
                grace_ms: 0,
                floor_ms: 0,
            },
        )
        .expect_err("damaged");
        assert!(
            matches!(
                err,
                RecoveryError::Restore {
                    source: RestoreError::UnknownRun { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_runs_deadline_is_rearmed_from_when_it_was_accepted() {
        let plan = format!("[limits]\ndeadline = \"1m\"\n{PLAN}");
        let mut all = inputs();
        all[1] = Input::RunSubmitted {
            run: id("r"),
            plan: Plan::parse(&plan, PlanFormat::Toml, &PlanLimits::default()).expect("plan"),
        };
        let (_, events) = record(all);
        let rule = DeadlineRule {
            grace_ms: 0,
            floor_ms: 0,
        };
        let recovered = recover(&events, EventSeq(u64::MAX), rule).expect("recover");
        // Accepted at 1000 ms (the second step), a deadline of one minute.
        assert!(
            recovered
                .timers
                .contains(&(61_000, Timer::RunDeadline { run: id("r") })),
            "{:?}",
            recovered.timers
        );
    }
}
