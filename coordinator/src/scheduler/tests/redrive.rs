//! Redrive: a dead-lettered task runs again and its run finishes anew.

use serde_json::json;

use super::*;

fn redrive(task: Option<&str>, with_input: Option<serde_json::Value>, force: bool) -> Input {
    Input::RedriveRequested {
        run: run(),
        task: task.map(id),
        with_input,
        force,
    }
}

fn permanent(task: &str, attempt: u32) -> Input {
    result(
        task,
        attempt,
        Outcome::Failed {
            error: format!("{task} gave up"),
            permanent: true,
        },
    )
}

/// `a` → `b` (all_success) and `a` → `c` (one_success), and `d` on its own.
const CHAIN: &str = r#"
[[tasks]]
id = "a"
capability = "c"
retry = { max_attempts = 2 }
[[tasks]]
id = "b"
capability = "c"
needs = ["a"]
[[tasks]]
id = "c"
capability = "c"
needs = ["a"]
trigger = "one_success"
[[tasks]]
id = "d"
capability = "c"
"#;

#[test]
fn a_redriven_task_runs_again_with_its_new_input_and_its_run_finishes_anew() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    submit(&mut s, CHAIN);
    s.apply(&ok("d", 1));
    let d = s.apply(&permanent("a", 1));
    assert!(matches!(
        d.last(),
        Some(Decision::RunFinished {
            outcome: RunOutcome::Failed { .. },
            ..
        })
    ));
    let d = s.apply(&redrive(Some("a"), Some(json!({"fixed": true})), false));
    assert_eq!(
        d[..4],
        [
            Decision::RunReopened { run: run() },
            Decision::TaskRedriven {
                run: run(),
                task: id("a"),
                attempt: Attempt(2),
                redrives: 1,
            },
            Decision::TaskRestored {
                run: run(),
                task: id("b"),
            },
            Decision::TaskRestored {
                run: run(),
                task: id("c"),
            },
        ]
    );
    assert_eq!(dispatched(&d), ["a"], "attempt numbers go on");
    let assignment = s
        .assignment(&run(), &id("a"), Attempt(2))
        .expect("assignment");
    assert_eq!(assignment.input, json!({"fixed": true}));
    // A fresh attempt budget: attempt 2 fails, attempt 3 is a retry.
    let d = s.apply(&failed("a", 2));
    assert!(d.iter().any(|d| matches!(
        d,
        Decision::RetryScheduled {
            attempt: Attempt(3),
            ..
        }
    )));
    s.apply(&Input::RetryDue {
        run: run(),
        task: id("a"),
        attempt: Attempt(3),
    });
    let d = s.apply(&ok("a", 3));
    assert_eq!(dispatched(&d), ["b", "c"]);
    s.apply(&ok("b", 1));
    let d = s.apply(&ok("c", 1));
    assert!(matches!(
        d.last(),
        Some(Decision::RunFinished {
            outcome: RunOutcome::Succeeded,
            ..
        })
    ));
}

#[test]
fn a_redrive_of_what_was_not_dead_lettered_or_past_the_limit_is_refused() {
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    submit(&mut s, CHAIN);
    let not = s.step(redrive(Some("d"), None, false)).fate;
    assert!(matches!(
        not,
        Fate::Rejected(Rejection::NotRedriven {
            why: RedriveRefusal::NotDeadLettered,
            ..
        })
    ));
    let nothing = s.step(redrive(None, None, false)).fate;
    assert!(matches!(
        nothing,
        Fate::Rejected(Rejection::NotRedriven {
            why: RedriveRefusal::NothingToRedrive,
            ..
        })
    ));
    // Dead-lettered and redriven up to the limit, then refused unless forced.
    let mut attempt = 1;
    s.apply(&permanent("a", attempt));
    for _ in 0..REDRIVE_LIMIT {
        s.apply(&redrive(Some("a"), None, false));
        attempt += 1;
        s.apply(&permanent("a", attempt));
    }
    let limit = s.step(redrive(Some("a"), None, false));
    assert!(matches!(
        limit.fate,
        Fate::Rejected(Rejection::NotRedriven {
            why: RedriveRefusal::LimitReached { limit: 3 },
            ..
        })
    ));
    assert!(
        limit.fate.to_string_lossy().contains("pass --force"),
        "{:?}",
        limit.fate
    );
    let forced = s.apply(&redrive(Some("a"), None, true));
    assert!(forced.iter().any(|d| matches!(
        d,
        Decision::TaskRedriven {
            redrives: 4,
            attempt: Attempt(5),
            ..
        }
    )));
}

#[test]
fn a_redriven_run_restores_from_its_decisions_alone() {
    let inputs = vec![
        Input::WorkerJoined {
            worker: id("w1"),
            capabilities: vec![id("c")],
            concurrency: 4,
        },
        Input::RunSubmitted {
            run: run(),
            plan: plan(CHAIN),
        },
        ok("d", 1),
        permanent("a", 1),
        redrive(None, Some(json!("again")), false),
    ];
    let (mut live, mut restored) = step_and_restore(&inputs);
    assert_eq!(format!("{restored:?}"), format!("{live:?}"));
    let input = ok("a", 2);
    let (a, b) = (restored.step(input.clone()), live.step(input));
    assert_eq!(a.decisions, b.decisions);
    assert_eq!(format!("{restored:?}"), format!("{live:?}"));
}

trait Lossy {
    fn to_string_lossy(&self) -> String;
}

impl Lossy for Fate {
    fn to_string_lossy(&self) -> String {
        match self {
            Fate::Rejected(r) => r.to_string(),
            other => format!("{other:?}"),
        }
    }
}

#[test]
fn a_reopened_run_keeps_its_deadline_and_none_is_reopened_past_it() {
    let with_deadline = format!("[limits]\ndeadline = \"1m\"\n{CHAIN}");
    // Reopened before its deadline: the deadline still stops it.
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    submit(&mut s, &with_deadline);
    s.apply(&ok("d", 1));
    s.apply(&permanent("a", 1));
    s.apply(&redrive(Some("a"), None, false));
    let d = s.apply(&Input::RunDeadlinePassed { run: run() });
    assert!(d.iter().any(|d| matches!(
        d,
        Decision::RunFinished {
            outcome: RunOutcome::Stopped {
                reason: StopReason::DeadlineExceeded { .. }
            },
            ..
        }
    )));
    // Its deadline passed while it was finished: it is not reopened.
    let mut s = Scheduler::default();
    join(&mut s, "w1", &["c"], 10);
    submit(&mut s, &with_deadline);
    s.apply(&ok("d", 1));
    s.apply(&permanent("a", 1));
    assert!(s.apply(&Input::RunDeadlinePassed { run: run() }).is_empty());
    assert!(matches!(
        s.step(redrive(Some("a"), None, false)).fate,
        Fate::Rejected(Rejection::NotRedriven {
            why: RedriveRefusal::DeadlinePassed,
            ..
        })
    ));
}
