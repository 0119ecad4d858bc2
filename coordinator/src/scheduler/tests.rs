use serde_json::json;
use workforce_shared::{Outcome, PROTOCOL_VERSION, Plan, PlanFormat, PlanLimits};

use super::*;

/// Tests read decisions alone: a step's effects have tests of their own.
trait Apply {
    fn apply(&mut self, input: &Input) -> Vec<Decision>;
}

impl Apply for Scheduler {
    fn apply(&mut self, input: &Input) -> Vec<Decision> {
        self.step(input.clone()).decisions
    }
}

/// The decisions that are not bookkeeping of readiness.
fn acts(decisions: Vec<Decision>) -> Vec<Decision> {
    decisions
        .into_iter()
        .filter(|d| !matches!(d, Decision::TaskReady { .. }))
        .collect()
}

fn plan(source: &str) -> Plan {
    Plan::parse(source, PlanFormat::Toml, &PlanLimits::default()).expect("valid plan")
}

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("valid id")
}

fn run() -> RunId {
    id("r1")
}

fn join(s: &mut Scheduler, worker: &str, caps: &[&str], concurrency: u32) -> Vec<Decision> {
    s.apply(&Input::WorkerJoined {
        worker: id(worker),
        capabilities: caps.iter().map(|c| id(c)).collect(),
        concurrency,
    })
}

fn submit(s: &mut Scheduler, source: &str) -> Vec<Decision> {
    s.apply(&Input::RunSubmitted {
        run: run(),
        plan: plan(source),
    })
}

fn result(task: &str, attempt: u32, outcome: Outcome) -> Input {
    Input::ResultReceived {
        result: TaskResult {
            v: PROTOCOL_VERSION,
            run: run(),
            task: id(task),
            attempt: Attempt(attempt),
            worker: id("w1"),
            outcome,
            duration_ms: 1,
            usage: None,
        },
    }
}

fn ok(task: &str, attempt: u32) -> Input {
    result(task, attempt, Outcome::succeeded(json!({ "from": task })))
}

fn failed(task: &str, attempt: u32) -> Input {
    result(
        task,
        attempt,
        Outcome::Failed {
            error: format!("{task} broke"),
            permanent: false,
        },
    )
}

/// Task ids of the dispatch decisions, in order.
fn dispatched(decisions: &[Decision]) -> Vec<String> {
    decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Dispatch { task, .. } => Some(task.to_string()),
            _ => None,
        })
        .collect()
}

const DIAMOND: &str = r#"
[[tasks]]
id = "a"
capability = "c"
[[tasks]]
id = "b"
capability = "c"
needs = ["a"]
[[tasks]]
id = "x"
capability = "c"
needs = ["a"]
[[tasks]]
id = "d"
capability = "c"
needs = ["b", "x"]
"#;

#[test]
fn dispatches_in_dependency_order() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    let d = submit(&mut s, DIAMOND);
    assert_eq!(
        d[0],
        Decision::RunAccepted {
            run: run(),
            tasks: 4,
            semantics: SEMANTICS_VERSION,
        }
    );
    assert_eq!(dispatched(&d), ["a"]);
    assert_eq!(dispatched(&s.apply(&ok("a", 1))), ["b", "x"]);
    assert!(
        dispatched(&s.apply(&ok("b", 1))).is_empty(),
        "d still waits on x"
    );
    let d = s.apply(&ok("x", 1));
    assert_eq!(dispatched(&d), ["d"]);
    let assignment = s
        .assignment(&run(), &id("d"), Attempt(1))
        .expect("assignment");
    assert_eq!(assignment.timeout_ms, 600_000);
    assert_eq!(assignment.upstream.len(), 2);
    assert_eq!(
        assignment.upstream[&id::<TaskId>("x")],
        json!({"from": "x"})
    );
    let d = s.apply(&ok("d", 1));
    assert_eq!(
        d.last(),
        Some(&Decision::RunFinished {
            run: run(),
            outcome: RunOutcome::Succeeded
        })
    );
}

#[test]
fn dispatches_by_priority_then_plan_order_within_capacity() {
    let mut s = Scheduler::default();
    let src = r#"
[[tasks]]
id = "low1"
capability = "c"
[[tasks]]
id = "low2"
capability = "c"
[[tasks]]
id = "high"
capability = "c"
priority = 9
[[tasks]]
id = "mid"
capability = "c"
priority = 5
"#;
    let d = submit(&mut s, src);
    assert!(dispatched(&d).is_empty(), "no worker, no dispatch");
    let view = s.run_view(&run()).expect("view");
    assert_eq!(view.tasks[0].status, TaskStatus::Blocked);
    assert_eq!(
        view.tasks[0].detail.as_deref(),
        Some("no live worker serves capability c")
    );
    let d = join(&mut s, "w1", &["c"], 2);
    assert_eq!(dispatched(&d), ["high", "mid"]);
    assert_eq!(
        s.run_view(&run()).expect("view").tasks[0].status,
        TaskStatus::Queued
    );
    assert_eq!(dispatched(&s.apply(&ok("mid", 1))), ["low1"]);
    assert_eq!(dispatched(&s.apply(&ok("high", 1))), ["low2"]);
}

#[test]
fn capacity_is_per_capability_and_follows_workers() {
    let mut s = Scheduler::default();
    let mut src = String::new();
    for i in 0..5 {
        src.push_str(&format!(
            "[[tasks]]\nid = \"a{i}\"\ncapability = \"alpha\"\n"
        ));
        src.push_str(&format!(
            "[[tasks]]\nid = \"b{i}\"\ncapability = \"beta\"\n"
        ));
    }
    join(&mut s, "w1", &["alpha"], 1);
    join(&mut s, "w2", &["alpha", "beta"], 2);
    let d = submit(&mut s, &src);
    // alpha: 1 + 2 = 3 slots; beta: 2 slots.
    assert_eq!(dispatched(&d), ["a0", "a1", "a2", "b0", "b1"]);
    let d = s.apply(&Input::WorkerLeft {
        worker: id("w2"),
        reason: WorkerLeftReason::HeartbeatsStopped,
        attempts: Vec::new(),
    });
    assert!(dispatched(&d).is_empty());
    // Three alpha tasks still count against alpha's single remaining slot.
    assert!(dispatched(&s.apply(&ok("a0", 1))).is_empty());
    assert!(dispatched(&s.apply(&ok("a1", 1))).is_empty());
    assert_eq!(dispatched(&s.apply(&ok("a2", 1))), ["a3"]);
    let view = s.run_view(&run()).expect("view");
    let b2 = view
        .tasks
        .iter()
        .find(|t| t.task.as_str() == "b2")
        .expect("b2");
    assert_eq!(b2.status, TaskStatus::Blocked);
}

#[test]
fn retries_back_off_as_the_policy_says() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 1);
    submit(
        &mut s,
        r#"
[[tasks]]
id = "flaky"
capability = "c"
retry = { max_attempts = 4, initial_backoff = "1s", multiplier = 3.0, max_backoff = "5s" }
"#,
    );
    let mut delays = Vec::new();
    for attempt in 1..=3 {
        let d = s.apply(&failed("flaky", attempt));
        match d.as_slice() {
            [
                Decision::AttemptFailed { .. },
                Decision::RetryScheduled {
                    attempt: next,
                    delay_ms,
                    ..
                },
            ] => {
                assert_eq!(next.0, attempt + 1);
                delays.push(*delay_ms);
            }
            other => panic!("attempt {attempt}: {other:?}"),
        }
        assert_eq!(
            s.run_view(&run()).expect("view").tasks[0].status,
            TaskStatus::Queued
        );
        let d = s.apply(&Input::RetryDue {
            run: run(),
            task: id("flaky"),
            attempt: Attempt(attempt + 1),
        });
        assert_eq!(
            d,
            vec![
                Decision::TaskReady {
                    run: run(),
                    task: id("flaky"),
                    attempt: Attempt(attempt + 1),
                },
                Decision::Dispatch {
                    run: run(),
                    task: id("flaky"),
                    attempt: Attempt(attempt + 1),
                    capability: id("c"),
                    timeout_ms: 600_000,
                }
            ]
        );
    }
    assert_eq!(delays, [1_000, 3_000, 5_000]);
    let d = s.apply(&ok("flaky", 4));
    assert!(matches!(
        d[0],
        Decision::TaskCompleted {
            attempt: Attempt(4),
            ..
        }
    ));
}

#[test]
fn dead_letters_and_cancels_dependents_but_finishes_independent_work() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    let src = r#"
[[tasks]]
id = "bad"
capability = "c"
retry = { max_attempts = 2, initial_backoff = "10ms" }
[[tasks]]
id = "child"
capability = "c"
needs = ["bad"]
[[tasks]]
id = "grandchild"
capability = "c"
needs = ["child"]
[[tasks]]
id = "other"
capability = "c"
"#;
    assert_eq!(dispatched(&submit(&mut s, src)), ["bad", "other"]);
    s.apply(&failed("bad", 1));
    s.apply(&Input::RetryDue {
        run: run(),
        task: id("bad"),
        attempt: Attempt(2),
    });
    let d = s.apply(&failed("bad", 2));
    assert_eq!(
        d,
        vec![
            Decision::AttemptFailed {
                run: run(),
                task: id("bad"),
                attempt: Attempt(2),
                cause: FailureCause::Worker {
                    worker: id("w1"),
                    error: "bad broke".into(),
                    permanent: false,
                },
            },
            Decision::DeadLettered {
                run: run(),
                task: id("bad"),
                attempts: 2,
            },
            Decision::TaskCanceled {
                run: run(),
                task: id("child"),
                reason: CancelReason::UpstreamFailed { task: id("bad") },
            },
            Decision::TaskCanceled {
                run: run(),
                task: id("grandchild"),
                reason: CancelReason::UpstreamFailed { task: id("bad") },
            },
        ]
    );
    let letter = s.dead_letter(&run(), &id("bad")).expect("dead letter");
    assert_eq!(letter.errors.len(), 2);
    assert_eq!(letter.last_assignment.attempt, Attempt(2));
    let d = s.apply(&ok("other", 1));
    assert_eq!(
        d.last(),
        Some(&Decision::RunFinished {
            run: run(),
            outcome: RunOutcome::Failed { task: id("bad") }
        })
    );
    assert_eq!(
        s.run_view(&run()).expect("view").reason.as_deref(),
        Some("task bad dead-lettered after 2 attempt(s): bad broke")
    );
}

#[test]
fn permanent_failures_are_not_retried() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 1);
    submit(&mut s, "[[tasks]]\nid = \"t\"\ncapability = \"c\"\n");
    let d = s.apply(&result(
        "t",
        1,
        Outcome::Failed {
            error: "bad input".into(),
            permanent: true,
        },
    ));
    assert!(
        matches!(&d[..2], [Decision::AttemptFailed { cause, .. }, Decision::DeadLettered { attempts: 1, .. }] if cause.is_permanent()),
        "{d:?}"
    );
    let letter = s.dead_letter(&run(), &id("t")).expect("letter");
    assert_eq!(letter.errors[0].error, "permanent failure: bad input");
}

#[test]
fn stale_duplicate_and_unknown_results_change_nothing() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 1);
    submit(
        &mut s,
        "[[tasks]]\nid = \"t\"\ncapability = \"c\"\n[[tasks]]\nid = \"u\"\ncapability = \"c\"\nneeds = [\"t\"]\n",
    );
    let ignored = |d: Vec<Decision>| match d.as_slice() {
        [Decision::ResultIgnored { reason, .. }] => *reason,
        other => panic!("{other:?}"),
    };
    assert_eq!(ignored(s.apply(&ok("t", 2))), IgnoreReason::StaleAttempt);
    assert_eq!(ignored(s.apply(&ok("u", 1))), IgnoreReason::StaleAttempt);
    assert_eq!(ignored(s.apply(&ok("nope", 1))), IgnoreReason::UnknownTask);
    let mut other_run = ok("t", 1);
    if let Input::ResultReceived { result } = &mut other_run {
        result.run = id("r9");
    }
    assert_eq!(ignored(s.apply(&other_run)), IgnoreReason::UnknownRun);
    assert_eq!(dispatched(&s.apply(&ok("t", 1))), ["u"]);
    assert_eq!(ignored(s.apply(&ok("t", 1))), IgnoreReason::AlreadyFinished);
}

#[test]
fn cancel_finishes_the_run_and_frees_capacity() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 1);
    submit(&mut s, DIAMOND);
    let d = s.apply(&Input::CancelRequested {
        run: run(),
        task: None,
        note: None,
    });
    // Rules 2: the running attempt is told to stop before its task is canceled.
    assert_eq!(
        d[0],
        Decision::StopAttempt {
            run: run(),
            task: id("a"),
            attempt: Attempt(1)
        }
    );
    assert_eq!(
        d.len(),
        6,
        "a stop, four tasks canceled, then the run: {d:?}"
    );
    assert_eq!(
        d.last(),
        Some(&Decision::RunFinished {
            run: run(),
            outcome: RunOutcome::Canceled
        })
    );
    assert!(matches!(
        s.apply(&ok("a", 1)).as_slice(),
        [Decision::ResultIgnored {
            reason: IgnoreReason::AlreadyFinished,
            ..
        }]
    ));
    // The slot the canceled task held is free for the next run.
    let d = s.apply(&Input::RunSubmitted {
        run: id("r2"),
        plan: plan(DIAMOND),
    });
    assert_eq!(dispatched(&d), ["a"]);
    assert!(matches!(
        s.apply(&Input::CancelRequested {
            run: run(),
            task: None,
            note: None
        })
        .as_slice(),
        [Decision::InputRejected { .. }]
    ));
}

#[test]
fn a_second_submit_of_the_same_run_is_rejected() {
    let mut s = Scheduler::default();
    submit(&mut s, DIAMOND);
    assert!(matches!(
        submit(&mut s, DIAMOND).as_slice(),
        [Decision::InputRejected { .. }]
    ));
}

#[test]
fn earlier_runs_go_first_at_equal_priority() {
    let mut s = Scheduler::default();
    let one = "[[tasks]]\nid = \"t\"\ncapability = \"c\"\n";
    s.apply(&Input::RunSubmitted {
        run: id("zzz"),
        plan: plan(one),
    });
    s.apply(&Input::RunSubmitted {
        run: id("aaa"),
        plan: plan(one),
    });
    let d = join(&mut s, "w1", &["c"], 1);
    assert!(matches!(&d[0], Decision::Dispatch { run, .. } if run.as_str() == "zzz"));
}

/// A diamond run on one worker of concurrency 2, with one retry: every kind of step.
fn diamond_with_a_retry() -> Vec<Input> {
    vec![
        Input::WorkerJoined {
            worker: id("w1"),
            capabilities: vec![id("c")],
            concurrency: 2,
        },
        Input::RunSubmitted {
            run: run(),
            plan: plan(DIAMOND),
        },
        failed("a", 1),
        Input::RetryDue {
            run: run(),
            task: id("a"),
            attempt: Attempt(2),
        },
        ok("a", 2),
        ok("x", 1),
        ok("b", 1),
        ok("d", 1),
    ]
}

#[test]
fn the_same_inputs_give_the_same_decisions() {
    let inputs = diamond_with_a_retry();
    let decide = || {
        let mut s = Scheduler::default();
        inputs.iter().flat_map(|i| s.apply(i)).collect::<Vec<_>>()
    };
    let first = decide();
    assert_eq!(first, decide());
    assert!(matches!(
        first.last(),
        Some(Decision::RunFinished {
            outcome: RunOutcome::Succeeded,
            ..
        })
    ));
}

#[test]
fn a_timed_out_attempt_is_stopped_and_retried_and_its_late_result_ignored() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 1);
    submit(
        &mut s,
        "[[tasks]]\nid = \"slow\"\ncapability = \"c\"\ntimeout = \"1s\"\nretry = { max_attempts = 2, initial_backoff = \"100ms\" }\n",
    );
    let timed_out = |attempt| Input::AttemptTimedOut {
        run: run(),
        task: id("slow"),
        attempt: Attempt(attempt),
    };
    let d = s.apply(&timed_out(1));
    assert_eq!(
        d,
        vec![
            Decision::StopAttempt {
                run: run(),
                task: id("slow"),
                attempt: Attempt(1)
            },
            Decision::AttemptFailed {
                run: run(),
                task: id("slow"),
                attempt: Attempt(1),
                cause: FailureCause::TimedOut { timeout_ms: 1_000 },
            },
            Decision::RetryScheduled {
                run: run(),
                task: id("slow"),
                attempt: Attempt(2),
                delay_ms: 100
            },
        ]
    );
    // The slot is free again, and a stale timer or result for attempt 1 changes nothing.
    assert!(s.apply(&timed_out(1)).is_empty());
    assert!(matches!(
        s.apply(&ok("slow", 1)).as_slice(),
        [Decision::ResultIgnored {
            reason: IgnoreReason::StaleAttempt,
            ..
        }]
    ));
    s.apply(&Input::RetryDue {
        run: run(),
        task: id("slow"),
        attempt: Attempt(2),
    });
    let d = s.apply(&timed_out(2));
    assert!(
        matches!(&d[2], Decision::DeadLettered { attempts: 2, .. }),
        "{d:?}"
    );
    let letter = s.dead_letter(&run(), &id("slow")).expect("dead letter");
    assert_eq!(letter.errors[0].worker.as_str(), COORDINATOR);
}

#[test]
fn a_step_carries_every_effect_its_decisions_owe() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 1);
    let step = s.step(Input::RunSubmitted {
        run: run(),
        plan: plan(
            "[[tasks]]\nid = \"t\"\ncapability = \"c\"\ninput = { x = 1 }\ntimeout = \"2s\"\nretry = { max_attempts = 2, initial_backoff = \"1s\" }\n",
        ),
    });
    assert_eq!(step.fate, Fate::Applied);
    match step.effects.as_slice() {
        [Effect::Assign(a)] => {
            assert_eq!(
                (a.task.as_str(), a.attempt, a.timeout_ms),
                ("t", Attempt(1), 2_000)
            );
            assert_eq!(a.input, json!({ "x": 1 }));
        }
        other => panic!("{other:?}"),
    }
    let step = s.step(Input::AttemptTimedOut {
        run: run(),
        task: id("t"),
        attempt: Attempt(1),
    });
    assert!(
        matches!(
            step.effects.as_slice(),
            [
                Effect::Stop(stop),
                Effect::AttemptEnded { attempt: Attempt(1), .. },
                Effect::ArmRetry { attempt: Attempt(2), delay_ms: 1_000, .. },
            ] if stop.attempt == Attempt(1)
        ),
        "{:?}",
        step.effects
    );
    s.step(Input::RetryDue {
        run: run(),
        task: id("t"),
        attempt: Attempt(2),
    });
    let step = s.step(failed("t", 2));
    match step.effects.as_slice() {
        [Effect::AttemptEnded { .. }, Effect::DeadLetter(letter)] => {
            let errors: Vec<&str> = letter.errors.iter().map(|e| e.error.as_str()).collect();
            assert_eq!(
                errors,
                [
                    "timed out: no result within its timeout of 2000ms",
                    "t broke"
                ]
            );
            assert_eq!(letter.errors[0].worker.as_str(), COORDINATOR);
            assert_eq!(letter.last_assignment.attempt, Attempt(2));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn fates_tell_the_sender_what_became_of_its_input() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 1);
    submit(&mut s, "[[tasks]]\nid = \"t\"\ncapability = \"c\"\n");
    assert_eq!(
        s.step(ok("t", 2)).fate,
        Fate::Ignored(IgnoreReason::StaleAttempt)
    );
    assert_eq!(s.step(ok("t", 1)).fate, Fate::Applied);
    assert_eq!(
        s.step(Input::CancelRequested {
            run: run(),
            task: None,
            note: None
        })
        .fate,
        Fate::Rejected(Rejection::RunFinished { run: run() })
    );
    assert_eq!(
        s.step(Input::CancelRequested {
            run: id("nope"),
            task: None,
            note: None
        })
        .fate,
        Fate::Rejected(Rejection::UnknownRun { run: id("nope") })
    );
}

#[test]
fn an_unpublishable_assignment_fails_its_attempt_for_good() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 1);
    submit(&mut s, DIAMOND);
    let failure = PublishFailure::TooLarge {
        bytes: 10,
        limit: 5,
    };
    let d = acts(s.apply(&Input::PublishFailed {
        run: run(),
        task: id("a"),
        attempt: Attempt(1),
        failure: failure.clone(),
    }));
    assert!(
        matches!(&d[..2], [Decision::AttemptFailed { cause: FailureCause::Unpublishable { failure: f }, .. }, Decision::DeadLettered { attempts: 1, .. }] if *f == failure),
        "{d:?}"
    );
    // A failure reported for an attempt no longer running changes nothing.
    assert!(
        s.apply(&Input::PublishFailed {
            run: run(),
            task: id("a"),
            attempt: Attempt(1),
            failure,
        })
        .is_empty()
    );
}

/// Steps `inputs`, then restores the recorded decisions into a fresh scheduler.
fn step_and_restore(inputs: &[Input]) -> (Scheduler, Scheduler) {
    let mut live = Scheduler::default();
    let mut restored = Scheduler::default();
    for input in inputs {
        let step = live.step(input.clone());
        restored.restore(input, &step.decisions).expect("restore");
    }
    (live, restored)
}

#[test]
fn restoring_recorded_decisions_rebuilds_the_same_state() {
    let mut inputs = diamond_with_a_retry();
    let future = inputs.split_off(6);
    // A second run, timed out once and then canceled while it runs and waits.
    inputs.extend([
        Input::RunSubmitted {
            run: id("r2"),
            plan: plan(DIAMOND),
        },
        Input::AttemptTimedOut {
            run: id("r2"),
            task: id("a"),
            attempt: Attempt(1),
        },
        Input::RetryDue {
            run: id("r2"),
            task: id("a"),
            attempt: Attempt(2),
        },
        Input::CancelRequested {
            run: id("r2"),
            task: None,
            note: None,
        },
    ]);
    let (mut live, mut restored) = step_and_restore(&inputs);
    // The whole state: runs, ready sets, in-flight counts, workers (Debug of ordered maps).
    assert_eq!(format!("{restored:?}"), format!("{live:?}"));
    // And both decide the future alike.
    for input in future {
        let (a, b) = (restored.step(input.clone()), live.step(input));
        assert_eq!(a.decisions, b.decisions);
    }
    assert_eq!(format!("{restored:?}"), format!("{live:?}"));
}

#[test]
fn restore_refuses_decisions_the_state_cannot_take() {
    let mut s = Scheduler::default();
    let completed = Decision::TaskCompleted {
        run: run(),
        task: id("a"),
        attempt: Attempt(1),
    };
    assert!(matches!(
        s.restore(&ok("a", 1), std::slice::from_ref(&completed)),
        Err(RestoreError::UnknownRun { .. })
    ));
    submit(&mut s, DIAMOND);
    // Not dispatched yet: it cannot complete.
    let err = s
        .restore(&ok("a", 1), &[completed])
        .expect_err("out of order");
    assert!(
        err.to_string()
            .contains("does not follow from its state: ready"),
        "{err}"
    );
    let newer = Decision::RunAccepted {
        run: id("r2"),
        tasks: 4,
        semantics: SEMANTICS_VERSION + 1,
    };
    let input = Input::RunSubmitted {
        run: id("r2"),
        plan: plan(DIAMOND),
    };
    assert!(matches!(
        s.restore(&input, &[newer]),
        Err(RestoreError::NewerSemantics { .. })
    ));
}

#[test]
fn every_variant_has_its_own_kind_named_as_the_log_tags_it() {
    for kinds in [&Input::KINDS[..], &Decision::KINDS[..]] {
        let distinct: std::collections::BTreeSet<_> = kinds.iter().collect();
        assert_eq!(distinct.len(), kinds.len(), "{kinds:?}");
    }
    let input = Input::CancelRequested {
        run: run(),
        task: None,
        note: None,
    };
    let tagged = serde_json::to_value(&input).expect("json");
    assert_eq!(tagged["input"], json!(input.kind()));
    let decision = Decision::TaskReady {
        run: run(),
        task: id("t"),
        attempt: Attempt(1),
    };
    let tagged = serde_json::to_value(&decision).expect("json");
    assert_eq!(tagged["decision"], json!(decision.kind()));
}

mod growth;

/// `n` independent tasks `t0`… of capability `c`, with the run's `priority`.
fn independent(n: usize, priority: i32) -> Plan {
    let mut source = format!("priority = {priority}\n");
    for i in 0..n {
        source.push_str(&format!("[[tasks]]\nid = \"t{i}\"\ncapability = \"c\"\n"));
    }
    plan(&source)
}

/// Which run each dispatch of `decisions` is for.
fn dispatched_runs(decisions: &[Decision]) -> Vec<String> {
    decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Dispatch { run, task, .. } => Some(format!("{run}/{task}")),
            _ => None,
        })
        .collect()
}

#[test]
fn a_small_run_beside_a_large_one_of_equal_priority_gets_its_share_at_once() {
    let mut s = Scheduler::default();
    for (run, n) in [("large", 100), ("small", 2)] {
        s.apply(&Input::RunSubmitted {
            run: id(run),
            plan: independent(n, 0),
        });
    }
    let mut order = dispatched_runs(&join(&mut s, "w1", &["c"], 2));
    assert_eq!(order, ["large/t0", "small/t0"], "one slot each at once");
    let finish = |s: &mut Scheduler, run: &str, task: &str| {
        let input = Input::ResultReceived {
            result: TaskResult {
                v: PROTOCOL_VERSION,
                run: id(run),
                task: id(task),
                attempt: Attempt(1),
                worker: id("w1"),
                outcome: Outcome::succeeded(json!(null)),
                duration_ms: 1,
                usage: None,
            },
        };
        dispatched_runs(&s.apply(&input))
    };
    order.extend(finish(&mut s, "large", "t0"));
    order.extend(finish(&mut s, "small", "t0"));
    assert_eq!(
        order,
        ["large/t0", "small/t0", "large/t1", "small/t1"],
        "the runs take turns"
    );
}

#[test]
fn a_run_of_higher_priority_goes_first_whatever_its_tasks_priorities() {
    let mut s = Scheduler::default();
    s.apply(&Input::RunSubmitted {
        run: id("routine"),
        plan: plan("[[tasks]]\nid = \"t0\"\ncapability = \"c\"\npriority = 100\n"),
    });
    s.apply(&Input::RunSubmitted {
        run: id("urgent"),
        plan: independent(2, 1),
    });
    let order = dispatched_runs(&join(&mut s, "w1", &["c"], 2));
    assert_eq!(order, ["urgent/t0", "urgent/t1"]);
}

fn pause_run(run: &str) -> Input {
    Input::PauseRequested {
        scope: PauseScope::Run { run: id(run) },
    }
}

fn resume_run(run: &str) -> Input {
    Input::ResumeRequested {
        scope: PauseScope::Run { run: id(run) },
    }
}

#[test]
fn a_paused_run_dispatches_nothing_new_and_resumes_where_it_was() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    submit(&mut s, DIAMOND);
    assert_eq!(
        s.apply(&pause_run("r1")),
        [Decision::Paused {
            scope: PauseScope::Run { run: run() }
        }]
    );
    assert!(s.run_view(&run()).expect("run").paused);
    // The running attempt finishes and is recorded; what it frees waits.
    let d = s.apply(&ok("a", 1));
    assert!(
        d.iter()
            .any(|d| matches!(d, Decision::TaskCompleted { .. }))
    );
    assert!(dispatched(&d).is_empty(), "{d:?}");
    let b = s
        .run_view(&run())
        .expect("run")
        .tasks
        .into_iter()
        .find(|t| t.task.as_str() == "b")
        .expect("b");
    assert_eq!(b.status, TaskStatus::Queued);
    assert_eq!(b.detail.as_deref(), Some("held: the run is paused"));
    // A second pause is refused; resume dispatches what waited.
    assert!(matches!(
        s.step(pause_run("r1")).fate,
        Fate::Rejected(Rejection::AlreadyPaused { .. })
    ));
    let d = s.apply(&resume_run("r1"));
    assert_eq!(dispatched(&d), ["b", "x"]);
    assert!(matches!(
        s.step(resume_run("r1")).fate,
        Fate::Rejected(Rejection::NotPaused { .. })
    ));
}

#[test]
fn a_paused_capability_holds_every_run_and_a_retry_that_falls_due_waits() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c", "d"], 10);
    submit(&mut s, "[[tasks]]\nid = \"a\"\ncapability = \"c\"\n");
    let pause = Input::PauseRequested {
        scope: PauseScope::Capability {
            capability: id("c"),
        },
    };
    s.apply(&pause);
    let d = s.apply(&failed("a", 1));
    assert!(
        d.iter()
            .any(|d| matches!(d, Decision::RetryScheduled { .. }))
    );
    let due = Input::RetryDue {
        run: run(),
        task: id("a"),
        attempt: Attempt(2),
    };
    let d = s.apply(&due);
    assert!(
        matches!(d.as_slice(), [Decision::TaskReady { .. }]),
        "{d:?}"
    );
    let other = s.apply(&Input::RunSubmitted {
        run: id("r2"),
        plan: plan("[[tasks]]\nid = \"z\"\ncapability = \"d\"\n[[tasks]]\nid = \"y\"\ncapability = \"c\"\n"),
    });
    assert_eq!(dispatched(&other), ["z"], "only capability c is held");
    let d = s.apply(&Input::ResumeRequested {
        scope: PauseScope::Capability {
            capability: id("c"),
        },
    });
    // Round-robin: capability c last dispatched from r1, so r2 goes first.
    assert_eq!(dispatched(&d), ["y", "a"]);
}

#[test]
fn pausing_an_unknown_or_finished_run_is_refused() {
    let mut s = Scheduler::default();
    assert!(matches!(
        s.step(pause_run("nowhere")).fate,
        Fate::Rejected(Rejection::UnknownRun { .. })
    ));
    join(&mut s, "w1", &["c"], 1);
    submit(&mut s, "[[tasks]]\nid = \"a\"\ncapability = \"c\"\n");
    s.apply(&ok("a", 1));
    assert!(matches!(
        s.step(pause_run("r1")).fate,
        Fate::Rejected(Rejection::RunFinished { .. })
    ));
}

mod budgets;

#[test]
fn a_workers_results_are_counted_with_its_recent_success_rate() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    submit(&mut s, DIAMOND);
    s.apply(&ok("a", 1));
    s.apply(&failed("b", 1));
    s.apply(&ok("x", 1));
    // A duplicate counts for nothing: it ended no attempt.
    s.apply(&ok("x", 1));
    let view = s.workers().into_iter().next().expect("w1");
    assert_eq!((view.completed, view.failed), (2, 1));
    let rate = view.success_rate.expect("a rate");
    assert!((rate - 2.0 / 3.0).abs() < 1e-9, "{rate}");
}

mod redrive;

mod ladder;

#[test]
fn a_lost_workers_attempts_fail_over_at_once_and_their_late_results_are_ignored() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 1);
    submit(&mut s, "[[tasks]]\nid = \"a\"\ncapability = \"c\"\n");
    join(&mut s, "w2", &["c"], 1);
    let d = s.apply(&Input::WorkerLeft {
        worker: id("w1"),
        reason: WorkerLeftReason::HeartbeatsStopped,
        attempts: vec![workforce_shared::HeldAttempt {
            run: run(),
            task: id("a"),
            attempt: Attempt(1),
        }],
    });
    assert_eq!(
        d[0],
        Decision::StopAttempt {
            run: run(),
            task: id("a"),
            attempt: Attempt(1)
        }
    );
    assert!(matches!(
        &d[1],
        Decision::AttemptFailed { cause: FailureCause::WorkerLost { worker }, .. } if worker.as_str() == "w1"
    ));
    assert!(d.contains(&Decision::RetryScheduled {
        run: run(),
        task: id("a"),
        attempt: Attempt(2),
        delay_ms: 0,
    }));
    let d = s.apply(&Input::RetryDue {
        run: run(),
        task: id("a"),
        attempt: Attempt(2),
    });
    assert_eq!(dispatched(&d), ["a"], "to w2, at once");
    assert!(matches!(
        s.apply(&ok("a", 1)).as_slice(),
        [Decision::ResultIgnored {
            reason: IgnoreReason::StaleAttempt,
            ..
        }]
    ));
}
