//! The escalation ladder: once its retries run out, a task climbs its rungs before it is
//! dead-lettered.

use super::*;

const LADDER: &str = r#"
[[tasks]]
id = "review"
capability = "review"
retry = { max_attempts = 2, initial_backoff = "1s" }
escalate = [ { reroute = "review-senior", retry = { max_attempts = 1 } }, { reroute = "review-expert" } ]
[[tasks]]
id = "merge"
capability = "merge"
needs = ["review"]
"#;

fn cluster() -> Scheduler {
    let mut s = Scheduler::default();
    join(
        &mut s,
        "w1",
        &["review", "review-senior", "review-expert", "merge"],
        10,
    );
    s
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

#[test]
fn a_task_out_of_retries_climbs_its_ladder_with_a_fresh_budget_each_rung() {
    let mut s = cluster();
    submit(&mut s, LADDER);
    s.apply(&failed("review", 1));
    s.apply(&Input::RetryDue {
        run: run(),
        task: id("review"),
        attempt: Attempt(2),
    });
    let d = s.apply(&failed("review", 2));
    assert!(d.contains(&Decision::TaskEscalated {
        run: run(),
        task: id("review"),
        rung: 1,
        attempt: Attempt(3),
    }));
    assert!(
        d.contains(&Decision::Dispatch {
            run: run(),
            task: id("review"),
            attempt: Attempt(3),
            capability: id("review-senior"),
            timeout_ms: 600_000,
        }),
        "rerouted: {d:?}"
    );
    let view = s.run_view(&run()).expect("run");
    let review = view
        .tasks
        .iter()
        .find(|t| t.task.as_str() == "review")
        .expect("review");
    assert_eq!(
        (review.rung, review.capability.as_str()),
        (1, "review-senior")
    );
    // Rung 1 allows one attempt: its failure climbs again, to the task's own policy.
    let d = s.apply(&failed("review", 3));
    assert!(d.iter().any(|d| matches!(
        d,
        Decision::Dispatch { attempt: Attempt(4), capability, .. } if capability.as_str() == "review-expert"
    )));
    let d = s.apply(&ok("review", 4));
    assert_eq!(dispatched(&d), ["merge"]);
}

#[test]
fn a_permanent_failure_goes_straight_to_the_next_rung_and_the_last_dead_letters() {
    let mut s = cluster();
    submit(&mut s, LADDER);
    let d = s.apply(&permanent("review", 1));
    assert!(
        d.iter()
            .any(|d| matches!(d, Decision::TaskEscalated { rung: 1, .. }))
    );
    let d = s.apply(&permanent("review", 2));
    assert!(
        d.iter()
            .any(|d| matches!(d, Decision::TaskEscalated { rung: 2, .. }))
    );
    let d = s.apply(&permanent("review", 3));
    assert!(
        d.iter()
            .any(|d| matches!(d, Decision::DeadLettered { attempts: 3, .. }))
    );
    assert!(matches!(
        d.last(),
        Some(Decision::RunFinished {
            outcome: RunOutcome::Failed { .. },
            ..
        })
    ));
}

#[test]
fn an_escalated_run_restores_from_its_decisions_alone() {
    let inputs = vec![
        Input::WorkerJoined {
            worker: id("w1"),
            capabilities: vec![id("review"), id("review-senior"), id("merge")],
            concurrency: 2,
        },
        Input::RunSubmitted {
            run: run(),
            plan: plan(LADDER),
        },
        permanent("review", 1),
    ];
    let (mut live, mut restored) = step_and_restore(&inputs);
    assert_eq!(format!("{restored:?}"), format!("{live:?}"));
    let input = ok("review", 2);
    let (a, b) = (restored.step(input.clone()), live.step(input));
    assert_eq!(a.decisions, b.decisions);
}
