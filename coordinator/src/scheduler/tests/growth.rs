//! Graphs that grow: spawning and fan-in, trigger rules, branches and skips.

use serde_json::{Value, json};
use workforce_shared::{Outcome, UpstreamStatus};

use super::*;

/// A success that spawns `spawn` and chooses `branch`.
fn grows(task: &str, attempt: u32, spawn: Value, branch: Option<&[&str]>) -> Input {
    result(
        task,
        attempt,
        Outcome::Succeeded {
            output: json!({ "from": task }),
            spawn: spawn.as_array().cloned().unwrap_or_default(),
            branch: branch.map(|b| b.iter().map(|s| (*s).to_owned()).collect()),
        },
    )
}

fn gave_up(task: &str, attempt: u32) -> Input {
    result(
        task,
        attempt,
        Outcome::Failed {
            error: format!("{task} gave up"),
            permanent: true,
        },
    )
}

fn status(s: &Scheduler, task: &str) -> TaskStatus {
    task_view(s, task).status
}

fn task_view(s: &Scheduler, task: &str) -> TaskView {
    s.run_view(&run())
        .expect("run")
        .tasks
        .into_iter()
        .find(|t| t.task.as_str() == task)
        .expect("task")
}

fn outcome(decisions: &[Decision]) -> Option<RunOutcome> {
    decisions.iter().find_map(|d| match d {
        Decision::RunFinished { outcome, .. } => Some(outcome.clone()),
        _ => None,
    })
}

const LEAD: &str = r#"
[[tasks]]
id = "lead"
capability = "lead"
spawns = ["analyze"]
[[tasks]]
id = "join"
capability = "merge"
needs = ["lead"]
trigger = "all_done"
"#;

fn analysts(n: usize) -> Value {
    Value::Array(
        (1..=n)
            .map(|i| json!({"id": format!("a{i}"), "capability": "analyze", "input": {"i": i}}))
            .collect(),
    )
}

fn lead_cluster() -> Scheduler {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["lead", "analyze", "merge"], 100);
    s
}

#[test]
fn a_join_waits_for_the_spawner_and_everything_it_spawned() {
    let mut s = lead_cluster();
    submit(&mut s, LEAD);
    let d = s.apply(&grows("lead", 1, analysts(3), None));
    assert!(matches!(&d[1], Decision::TasksSpawned { tasks, .. } if tasks.len() == 3));
    assert_eq!(dispatched(&d), ["a1", "a2", "a3"]);
    assert_eq!(task_view(&s, "a2").parent.expect("parent").as_str(), "lead");
    assert_eq!(status(&s, "join"), TaskStatus::Blocked);
    // A spawned task may spawn in turn: the join waits for its children too.
    let nested = json!([{"id": "a1-deep", "capability": "analyze"}]);
    s.apply(&grows("a1", 1, nested, None));
    s.apply(&ok("a2", 1));
    assert!(
        dispatched(&s.apply(&ok("a3", 1))).is_empty(),
        "a1-deep runs"
    );
    let d = s.apply(&ok("a1-deep", 1));
    assert_eq!(dispatched(&d), ["join"]);
    let assignment = s
        .assignment(&run(), &id("join"), Attempt(1))
        .expect("assignment");
    let upstream: Vec<&str> = assignment.upstream.keys().map(|t| t.as_str()).collect();
    assert_eq!(upstream, ["a1", "a1-deep", "a2", "a3", "lead"]);
    assert!(assignment.upstream_errors.is_empty());
    let d = s.apply(&ok("join", 1));
    assert_eq!(outcome(&d), Some(RunOutcome::Succeeded));
}

#[test]
fn an_empty_spawn_is_a_plain_success_and_the_join_of_nothing_runs() {
    let mut s = lead_cluster();
    submit(&mut s, LEAD);
    let d = s.apply(&grows("lead", 1, json!([]), None));
    assert!(!d.iter().any(|d| matches!(d, Decision::TasksSpawned { .. })));
    assert_eq!(dispatched(&d), ["join"]);
}

#[test]
fn an_all_done_join_runs_past_failed_children_and_is_told_why() {
    let mut s = lead_cluster();
    submit(&mut s, LEAD);
    s.apply(&grows("lead", 1, analysts(2), None));
    s.apply(&gave_up("a1", 1));
    let d = s.apply(&ok("a2", 1));
    assert_eq!(dispatched(&d), ["join"]);
    let assignment = s
        .assignment(&run(), &id("join"), Attempt(1))
        .expect("assignment");
    assert_eq!(assignment.upstream.len(), 2, "lead and a2");
    let error = &assignment.upstream_errors[&id::<TaskId>("a1")];
    assert_eq!(error.status, UpstreamStatus::Failed);
    assert!(error.error.contains("a1 gave up"), "{}", error.error);
    // The run follows its leaves: the join completed, so it succeeded.
    let d = s.apply(&ok("join", 1));
    assert_eq!(outcome(&d), Some(RunOutcome::Succeeded));
}

#[test]
fn a_failed_leaf_fails_the_run_naming_its_dead_letter() {
    let mut s = lead_cluster();
    submit(&mut s, "[[tasks]]\nid = \"lead\"\ncapability = \"lead\"\n");
    s.apply(&grows("lead", 1, analysts(2), None));
    s.apply(&ok("a2", 1));
    let d = s.apply(&gave_up("a1", 1));
    assert_eq!(outcome(&d), Some(RunOutcome::Failed { task: id("a1") }));
}

#[test]
fn an_invalid_spawn_fails_its_spawner_for_good_and_applies_nothing() {
    let mut s = lead_cluster();
    submit(&mut s, LEAD);
    let bad = json!([
        {"id": "join", "capability": "analyze"},
        {"id": "b", "capability": "other"},
        {"id": "c", "capability": "analyze", "needs": ["lead"]},
    ]);
    let d = s.apply(&grows("lead", 1, bad, None));
    let cause = d
        .iter()
        .find_map(|d| match d {
            Decision::AttemptFailed { cause, .. } => Some(cause.clone()),
            _ => None,
        })
        .expect("the attempt failed");
    let FailureCause::ControlRefused { problems } = &cause else {
        panic!("expected a refusal, got {cause:?}");
    };
    let all = problems.join("\n");
    assert!(
        all.contains("task \"join\": the run already has a task with this id"),
        "{all}"
    );
    assert!(all.contains("capability \"other\""), "{all}");
    assert!(
        all.contains("needs \"lead\", which waits for what \"lead\" spawns"),
        "{all}"
    );
    assert!(
        cause
            .to_string()
            .contains("refused its spawn or branch (3 problems)")
    );
    // Permanent: dead-lettered at once though its policy allows three attempts.
    assert!(
        d.iter()
            .any(|d| matches!(d, Decision::DeadLettered { attempts: 1, .. }))
    );
    assert!(!d.iter().any(|d| matches!(d, Decision::TasksSpawned { .. })));
    assert_eq!(s.run_view(&run()).expect("run").tasks.len(), 2);
    // The all_done join still runs: the run goes on by its trigger rules.
    assert_eq!(dispatched(&d), ["join"]);

    // A spawned task that needs the join would wait for itself.
    let mut s = lead_cluster();
    submit(&mut s, LEAD);
    let cyclic = json!([{"id": "d", "capability": "analyze", "needs": ["join"]}]);
    let d = s.apply(&grows("lead", 1, cyclic, None));
    let refused = d.iter().any(|d| {
        matches!(d, Decision::AttemptFailed { cause: FailureCause::ControlRefused { problems }, .. }
            if problems.iter().any(|p| p.contains("needs \"join\", which waits for what \"lead\" spawns")))
    });
    assert!(refused, "{d:#?}");
}

#[test]
fn a_spawn_over_a_limit_fails_naming_the_limit() {
    let mut s = lead_cluster();
    submit(&mut s, &format!("[limits]\nspawn = 2\n{LEAD}"));
    let d = s.apply(&grows("lead", 1, analysts(3), None));
    let refused = d.iter().any(|d| {
        matches!(d, Decision::AttemptFailed { cause: FailureCause::ControlRefused { problems }, .. }
            if problems.iter().any(|p| p.contains("3 is over the run's limit spawn = 2")))
    });
    assert!(refused, "{d:#?}");

    let mut s = lead_cluster();
    submit(&mut s, &format!("[limits]\ndepth = 1\n{LEAD}"));
    s.apply(&grows("lead", 1, analysts(1), None));
    let d = s.apply(&grows(
        "a1",
        1,
        json!([{"id": "deeper", "capability": "analyze"}]),
        None,
    ));
    let refused = d.iter().any(|d| {
        matches!(d, Decision::AttemptFailed { cause: FailureCause::ControlRefused { problems }, .. }
            if problems.iter().any(|p| p.contains("2 is over the run's limit depth = 1")))
    });
    assert!(refused, "{d:#?}");
}

/// `a` and `b` feed one task of each rule; `a` fails for good, `b` completes.
const RULES: &str = r#"
[[tasks]]
id = "a"
capability = "c"
[[tasks]]
id = "b"
capability = "c"
[[tasks]]
id = "all_success"
capability = "c"
needs = ["a", "b"]
[[tasks]]
id = "all_done"
capability = "c"
needs = ["a", "b"]
trigger = "all_done"
[[tasks]]
id = "one_success"
capability = "c"
needs = ["a", "b"]
trigger = "one_success"
[[tasks]]
id = "one_failed"
capability = "c"
needs = ["a", "b"]
trigger = "one_failed"
[[tasks]]
id = "all_failed"
capability = "c"
needs = ["a", "b"]
trigger = "all_failed"
[[tasks]]
id = "none_failed"
capability = "c"
needs = ["a", "b"]
trigger = "none_failed"
"#;

#[test]
fn each_trigger_rule_decides_when_its_upstream_allows() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 100);
    submit(&mut s, RULES);
    let d = s.apply(&gave_up("a", 1));
    // Decided as soon as one upstream failed: one_failed runs, all_success and none_failed are
    // canceled; the others wait for b.
    assert_eq!(dispatched(&d), ["one_failed"]);
    assert_eq!(status(&s, "all_success"), TaskStatus::Canceled);
    assert_eq!(status(&s, "none_failed"), TaskStatus::Canceled);
    for waiting in ["all_done", "one_success", "all_failed"] {
        assert_eq!(status(&s, waiting), TaskStatus::Blocked, "{waiting}");
    }
    let d = s.apply(&ok("b", 1));
    assert_eq!(dispatched(&d), ["all_done", "one_success"]);
    assert_eq!(status(&s, "all_failed"), TaskStatus::Skipped);
    assert!(
        task_view(&s, "all_failed")
            .detail
            .expect("detail")
            .contains("all_failed can no longer be met")
    );
    assert_eq!(
        task_view(&s, "all_success").detail.as_deref(),
        Some("upstream task a failed")
    );
}

#[test]
fn one_success_runs_on_the_first_success_and_all_failed_when_all_failed() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 100);
    submit(&mut s, RULES);
    let d = s.apply(&ok("b", 1));
    assert_eq!(dispatched(&d), ["one_success"], "before a has ended");
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 100);
    submit(&mut s, RULES);
    s.apply(&gave_up("a", 1));
    let d = s.apply(&gave_up("b", 1));
    assert_eq!(dispatched(&d), ["all_done", "all_failed"]);
    assert_eq!(status(&s, "one_success"), TaskStatus::Skipped);
}

/// `route` chooses between `fast` and `slow`; `after_slow` follows `slow`; `merge` joins both
/// past skips; `strict` joins both and needs both to succeed.
const BRANCHES: &str = r#"
[[tasks]]
id = "route"
capability = "c"
[[tasks]]
id = "fast"
capability = "c"
needs = ["route"]
[[tasks]]
id = "slow"
capability = "c"
needs = ["route"]
[[tasks]]
id = "after_slow"
capability = "c"
needs = ["slow"]
[[tasks]]
id = "merge"
capability = "c"
needs = ["fast", "after_slow"]
trigger = "none_failed"
[[tasks]]
id = "strict"
capability = "c"
needs = ["fast", "after_slow"]
"#;

#[test]
fn a_branch_skips_what_it_leaves_out_and_skips_propagate_by_rule() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 100);
    submit(&mut s, BRANCHES);
    let d = s.apply(&grows("route", 1, json!([]), Some(&["fast"])));
    assert_eq!(dispatched(&d), ["fast"]);
    for skipped in ["slow", "after_slow"] {
        assert_eq!(status(&s, skipped), TaskStatus::Skipped, "{skipped}");
    }
    assert_eq!(
        task_view(&s, "slow").detail.as_deref(),
        Some("not chosen by the branch of task route")
    );
    let d = s.apply(&ok("fast", 1));
    assert_eq!(dispatched(&d), ["merge"]);
    assert_eq!(
        status(&s, "strict"),
        TaskStatus::Skipped,
        "all_success skips past a skip"
    );
    let assignment = s
        .assignment(&run(), &id("merge"), Attempt(1))
        .expect("assignment");
    assert_eq!(
        assignment.upstream_errors[&id::<TaskId>("after_slow")].status,
        UpstreamStatus::Skipped
    );
    // Leaves: merge completed, strict skipped: the run succeeded.
    let d = s.apply(&ok("merge", 1));
    assert_eq!(outcome(&d), Some(RunOutcome::Succeeded));
}

#[test]
fn a_branch_naming_a_task_that_does_not_follow_fails_for_good() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 100);
    submit(&mut s, BRANCHES);
    let d = s.apply(&grows(
        "route",
        1,
        json!([]),
        Some(&["after_slow", "nowhere"]),
    ));
    let refused = d.iter().find_map(|d| match d {
        Decision::AttemptFailed {
            cause: FailureCause::ControlRefused { problems },
            ..
        } => Some(problems.join("\n")),
        _ => None,
    });
    let problems = refused.expect("refused");
    assert!(
        problems
            .contains("branch chooses \"after_slow\", which is not a task that needs \"route\""),
        "{problems}"
    );
    assert!(problems.contains("\"nowhere\""), "{problems}");
}

#[test]
fn a_grown_run_restores_from_its_decisions_alone() {
    let inputs = vec![
        Input::WorkerJoined {
            worker: id("w1"),
            capabilities: vec![id("lead"), id("analyze"), id("merge"), id("c")],
            concurrency: 2,
        },
        Input::RunSubmitted {
            run: run(),
            plan: plan(LEAD),
        },
        grows("lead", 1, analysts(4), None),
        gave_up("a1", 1),
        grows(
            "a2",
            1,
            json!([{"id": "a2-deep", "capability": "analyze"}]),
            None,
        ),
        ok("a3", 1),
        Input::RunSubmitted {
            run: id("r2"),
            plan: plan(BRANCHES),
        },
    ];
    let (mut live, mut restored) = step_and_restore(&inputs);
    assert_eq!(format!("{restored:?}"), format!("{live:?}"));
    for input in [ok("a4", 1), ok("a2-deep", 1), ok("join", 1)] {
        let (a, b) = (restored.step(input.clone()), live.step(input));
        assert_eq!(a.decisions, b.decisions);
    }
    assert_eq!(format!("{restored:?}"), format!("{live:?}"));
    let view = live.run_view(&run()).expect("run");
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(view.tasks.len(), 7);
}

#[test]
fn a_spawned_task_can_need_its_siblings_and_finished_tasks() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 100);
    submit(
        &mut s,
        "[[tasks]]\nid = \"first\"\ncapability = \"c\"\n[[tasks]]\nid = \"lead\"\ncapability = \"c\"\nneeds = [\"first\"]\n",
    );
    s.apply(&ok("first", 1));
    let spawn = json!([
        {"id": "x", "capability": "c", "needs": ["first"]},
        {"id": "y", "capability": "c", "needs": ["x"]},
    ]);
    let d = s.apply(&grows("lead", 1, spawn, None));
    assert_eq!(dispatched(&d), ["x"]);
    assert_eq!(dispatched(&s.apply(&ok("x", 1))), ["y"]);
}

fn cancel(task: Option<&str>, note: Option<&str>) -> Input {
    Input::CancelRequested {
        run: run(),
        task: task.map(id),
        note: note.map(str::to_owned),
    }
}

#[test]
fn canceling_one_task_stops_it_and_what_waits_for_it_goes_by_its_rule() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 100);
    submit(
        &mut s,
        "[[tasks]]\nid = \"a\"\ncapability = \"c\"\n\
         [[tasks]]\nid = \"b\"\ncapability = \"c\"\nneeds = [\"a\"]\n\
         [[tasks]]\nid = \"c\"\ncapability = \"c\"\nneeds = [\"a\"]\ntrigger = \"all_done\"\n",
    );
    let d = s.apply(&cancel(Some("a"), Some("wrong input")));
    assert_eq!(
        d[..2],
        [
            Decision::StopAttempt {
                run: run(),
                task: id("a"),
                attempt: Attempt(1)
            },
            Decision::TaskCanceled {
                run: run(),
                task: id("a"),
                reason: CancelReason::OperatorCanceled {
                    note: Some("wrong input".into())
                }
            }
        ]
    );
    assert_eq!(
        task_view(&s, "a").detail.as_deref(),
        Some("canceled by operator: wrong input")
    );
    assert_eq!(
        status(&s, "b"),
        TaskStatus::Canceled,
        "all_success: upstream failed"
    );
    assert_eq!(dispatched(&d), ["c"], "all_done runs past it");
    let errors = s
        .assignment(&run(), &id("c"), Attempt(1))
        .expect("assignment")
        .upstream_errors;
    assert_eq!(errors[&id::<TaskId>("a")].status, UpstreamStatus::Canceled);
    // A late result of the stopped attempt changes nothing; the run ends by its leaves.
    assert!(matches!(
        s.apply(&ok("a", 1)).as_slice(),
        [Decision::ResultIgnored { .. }]
    ));
    let d = s.apply(&ok("c", 1));
    assert_eq!(outcome(&d), Some(RunOutcome::Failed { task: id("a") }));
    let view = s.run_view(&run()).expect("run");
    assert_eq!(
        view.reason.as_deref(),
        Some("task a canceled by operator: wrong input")
    );
}

#[test]
fn a_cancel_of_a_task_that_is_not_there_or_has_ended_is_refused() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 100);
    submit(&mut s, RULES);
    s.apply(&ok("a", 1));
    let fates = [
        s.step(cancel(Some("nowhere"), None)).fate,
        s.step(cancel(Some("a"), None)).fate,
    ];
    assert_eq!(
        fates,
        [
            Fate::Rejected(Rejection::UnknownTask {
                run: run(),
                task: id("nowhere")
            }),
            Fate::Rejected(Rejection::TaskFinished {
                run: run(),
                task: id("a")
            }),
        ]
    );
}

#[test]
fn a_canceled_run_keeps_the_operators_note() {
    let mut s = lead_cluster();
    submit(&mut s, LEAD);
    s.apply(&cancel(None, Some("wrong goal")));
    let view = s.run_view(&run()).expect("run");
    assert_eq!(view.status, RunStatus::Canceled);
    assert_eq!(
        view.reason.as_deref(),
        Some("canceled by operator: wrong goal")
    );
    assert_eq!(
        view.stop_reason,
        Some(StopReason::Canceled {
            note: Some("wrong goal".into())
        })
    );
}

#[test]
fn a_run_of_rules_1_is_canceled_by_rules_1_without_stops() {
    // A run restored as rules 1 recorded it: accepted, its first task dispatched.
    let mut s = lead_cluster();
    let submitted = Input::RunSubmitted {
        run: run(),
        plan: plan(LEAD),
    };
    let recorded = [
        Decision::RunAccepted {
            run: run(),
            tasks: 2,
            semantics: 1,
        },
        Decision::TaskReady {
            run: run(),
            task: id("lead"),
            attempt: Attempt::FIRST,
        },
        Decision::Dispatch {
            run: run(),
            task: id("lead"),
            attempt: Attempt::FIRST,
            capability: id("lead"),
            timeout_ms: 600_000,
        },
    ];
    s.restore(&submitted, &recorded).expect("restore");
    let d = s.apply(&cancel(None, None));
    assert!(
        !d.iter().any(|d| matches!(d, Decision::StopAttempt { .. })),
        "{d:?}"
    );
    assert_eq!(d.len(), 3, "two tasks canceled, then the run: {d:?}");
}
