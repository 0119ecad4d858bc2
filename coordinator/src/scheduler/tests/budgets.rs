//! Budgets, attempts and deadlines: reserved at dispatch, settled at the result, stopping the
//! run when a limit trips.

use serde_json::{Value, json};
use workforce_shared::{Outcome, RESULT_VERSION, Usage};

use super::*;

/// A result reporting `usage` (as sent).
fn used(task: &str, attempt: u32, usage: Value, succeeded: bool) -> Input {
    let outcome = if succeeded {
        Outcome::succeeded(json!({ "from": task }))
    } else {
        Outcome::Failed {
            error: format!("{task} broke"),
            permanent: false,
        }
    };
    Input::ResultReceived {
        result: TaskResult {
            v: RESULT_VERSION,
            run: run(),
            task: id(task),
            attempt: Attempt(attempt),
            worker: id("w1"),
            outcome,
            duration_ms: 1,
            usage: Some(usage),
        },
    }
}

fn tokens(n: u64) -> Usage {
    Usage {
        tokens: n,
        ..Usage::default()
    }
}

fn stop_reason(decisions: &[Decision]) -> Option<StopReason> {
    decisions.iter().find_map(|d| match d {
        Decision::RunFinished {
            outcome: RunOutcome::Stopped { reason },
            ..
        } => Some(reason.clone()),
        _ => None,
    })
}

/// Three independent tasks, each estimated at 400 tokens, under a budget of 1000.
const THREE: &str = r#"
[limits]
tokens = 1000
[[tasks]]
id = "a"
capability = "c"
estimate = { tokens = 400 }
[[tasks]]
id = "b"
capability = "c"
estimate = { tokens = 400 }
[[tasks]]
id = "x"
capability = "c"
estimate = { tokens = 400 }
"#;

#[test]
fn an_estimate_the_remaining_budget_cannot_cover_waits() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    let d = submit(&mut s, THREE);
    // 400 + 400 reserved; a third 400 would pass 1000.
    assert_eq!(dispatched(&d), ["a", "b"]);
    let x = s
        .run_view(&run())
        .expect("run")
        .tasks
        .into_iter()
        .find(|t| t.task.as_str() == "x")
        .expect("x");
    assert_eq!(x.status, TaskStatus::Blocked);
    assert!(
        x.detail
            .as_deref()
            .unwrap_or_default()
            .contains("waiting for budget"),
        "{x:?}"
    );
    // a used less than estimated: 100 charged, 400 released; x now fits.
    let d = s.apply(&used("a", 1, json!({"tokens": 100}), true));
    assert!(d.contains(&Decision::UsageCharged {
        run: run(),
        task: id("a"),
        attempt: Attempt(1),
        usage: tokens(100),
        reported: true,
    }));
    assert_eq!(dispatched(&d), ["x"]);
}

#[test]
fn a_run_stops_once_its_usage_reaches_a_budget_and_nothing_is_dead_lettered() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    submit(&mut s, THREE);
    let d = s.apply(&used("a", 1, json!({"tokens": 1000}), true));
    assert_eq!(
        stop_reason(&d),
        Some(StopReason::BudgetExhausted {
            budget: "tokens".into(),
            limit: 1000,
            used: 1000,
        })
    );
    // b was running: told to stop, canceled with the reason, charged its estimate.
    assert!(d.contains(&Decision::StopAttempt {
        run: run(),
        task: id("b"),
        attempt: Attempt(1)
    }));
    assert!(!d.iter().any(|d| matches!(d, Decision::DeadLettered { .. })));
    let view = s.run_view(&run()).expect("run");
    assert_eq!(view.status, RunStatus::Stopped);
    assert_eq!(
        view.usage.tokens, 1400,
        "1000 reported by a, b's estimate of 400"
    );
    let a = view
        .tasks
        .iter()
        .find(|t| t.task.as_str() == "a")
        .expect("a");
    assert_eq!(a.status, TaskStatus::Completed, "completed outputs stay");
    let x = view
        .tasks
        .iter()
        .find(|t| t.task.as_str() == "x")
        .expect("x");
    assert_eq!(x.status, TaskStatus::Canceled);
    assert_eq!(
        x.detail.as_deref(),
        Some("run stopped: budget exhausted: tokens used 1000 of its limit 1000")
    );
}

#[test]
fn an_unreadable_usage_report_fails_the_attempt_and_charges_its_estimate() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    submit(&mut s, THREE);
    let d = s.apply(&used("a", 1, json!({"tokens": -5}), true));
    let cause = d
        .iter()
        .find_map(|d| match d {
            Decision::AttemptFailed { cause, .. } => Some(cause.to_string()),
            _ => None,
        })
        .expect("the attempt failed");
    assert!(
        cause.contains("tokens must be a whole number of at least 0, not -5"),
        "{cause}"
    );
    assert!(d.contains(&Decision::UsageCharged {
        run: run(),
        task: id("a"),
        attempt: Attempt(1),
        usage: tokens(400),
        reported: false,
    }));
}

#[test]
fn a_failed_attempts_spending_counts_too() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    submit(&mut s, THREE);
    let d = s.apply(&used("a", 1, json!({"tokens": 999}), false));
    assert!(
        d.iter()
            .any(|d| matches!(d, Decision::RetryScheduled { .. }))
    );
    assert_eq!(s.run_view(&run()).expect("run").usage.tokens, 999);
}

#[test]
fn a_run_whose_budget_cannot_cover_what_waits_stops_when_nothing_runs() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    submit(
        &mut s,
        "[limits]\ntokens = 500\n[[tasks]]\nid = \"a\"\ncapability = \"c\"\n\
         estimate = { tokens = 300 }\n[[tasks]]\nid = \"b\"\ncapability = \"c\"\n\
         needs = [\"a\"]\nestimate = { tokens = 300 }\n",
    );
    let d = s.apply(&used("a", 1, json!({"tokens": 300}), true));
    assert_eq!(
        stop_reason(&d),
        Some(StopReason::BudgetExhausted {
            budget: "tokens".into(),
            limit: 500,
            used: 300,
        })
    );
}

#[test]
fn attempts_are_a_budget_of_their_own() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    submit(
        &mut s,
        "[limits]\nattempts = 2\n[[tasks]]\nid = \"a\"\ncapability = \"c\"\n\
         retry = { max_attempts = 5, initial_backoff = \"1s\" }\n",
    );
    s.apply(&failed("a", 1));
    let retry = |attempt| Input::RetryDue {
        run: run(),
        task: id("a"),
        attempt: Attempt(attempt),
    };
    assert_eq!(dispatched(&s.apply(&retry(2))), ["a"]);
    s.apply(&failed("a", 2));
    let d = s.apply(&retry(3));
    assert_eq!(
        stop_reason(&d),
        Some(StopReason::TooManyAttempts { limit: 2 })
    );
}

#[test]
fn a_deadline_stops_the_run_and_a_late_one_changes_nothing() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    let step = s.step(Input::RunSubmitted {
        run: run(),
        plan: plan("[limits]\ndeadline = \"20m\"\n[[tasks]]\nid = \"a\"\ncapability = \"c\"\n"),
    });
    assert!(step.effects.contains(&Effect::ArmRunDeadline {
        run: run(),
        delay_ms: 1_200_000
    }));
    let d = s.apply(&Input::RunDeadlinePassed { run: run() });
    assert_eq!(
        stop_reason(&d),
        Some(StopReason::DeadlineExceeded {
            deadline_ms: 1_200_000
        })
    );
    assert!(s.apply(&Input::RunDeadlinePassed { run: run() }).is_empty());
}

#[test]
fn a_budgeted_run_restores_from_its_decisions_alone() {
    let inputs = vec![
        Input::WorkerJoined {
            worker: id("w1"),
            capabilities: vec![id("c")],
            concurrency: 2,
        },
        Input::RunSubmitted {
            run: run(),
            plan: plan(THREE),
        },
        used("a", 1, json!({"tokens": 50}), true),
        used("b", 1, json!({"tokens": 2}), false),
    ];
    let (mut live, mut restored) = step_and_restore(&inputs);
    assert_eq!(format!("{restored:?}"), format!("{live:?}"));
    let input = used("x", 1, json!({"tokens": 990}), true);
    let (a, b) = (restored.step(input.clone()), live.step(input));
    assert_eq!(a.decisions, b.decisions);
    assert_eq!(format!("{restored:?}"), format!("{live:?}"));
}
