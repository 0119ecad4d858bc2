//! The escalation ladder on real NATS and real processes: a task whose capability always
//! fails is rerouted, rung by rung, to one that succeeds, and what needs it gets its output.
//! Ends with the log's invariants and replay.

use std::time::Duration;

use anyhow::ensure;
use workforce_coordinator::scheduler::{Decision, RunStatus};
use workforce_shared::Attempt;
use workforce_tests::harness::{Cluster, WorkerSpec, decisions};

const RUN_WITHIN: Duration = Duration::from_secs(60);

const PLAN: &str = r#"
[[tasks]]
id = "review"
capability = "review"
retry = { max_attempts = 2, initial_backoff = "100ms", max_backoff = "100ms" }
escalate = [ { reroute = "review-senior", retry = { max_attempts = 1 } }, { reroute = "review-expert" } ]
[[tasks]]
id = "merge"
capability = "merge"
needs = ["review"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_capability_always_fails_is_rerouted_to_one_that_succeeds()
-> anyhow::Result<()> {
    let worker = WorkerSpec::new(
        "w1",
        2,
        &[
            ("review", "echo 'cannot review this' >&2; exit 1"),
            ("review-senior", "echo 'too hard' >&2; exit 100"),
            ("review-expert", "echo reviewed"),
            ("merge", "cat"),
        ],
    );
    let mut cluster = Cluster::start(&[worker]).await?;
    let run = cluster.submit(PLAN).await?;
    let view = cluster.finish(&run, RUN_WITHIN).await?;
    ensure!(view.status == RunStatus::Succeeded, "{view:?}");
    let review = view
        .tasks
        .iter()
        .find(|t| t.task.as_str() == "review")
        .expect("review");
    ensure!(review.rung == 2, "{review:?}");
    ensure!(review.capability.as_str() == "review-expert", "{review:?}");
    ensure!(
        review.attempt == 4,
        "two on review, one on senior, one on expert: {review:?}"
    );
    let merge = view
        .tasks
        .iter()
        .find(|t| t.task.as_str() == "merge")
        .expect("merge");
    let output = merge.output.as_ref().expect("merge's output");
    ensure!(
        output["upstream"]["review"] == serde_json::json!("reviewed"),
        "merge got the expert's review: {output}"
    );

    let log = cluster.stop_and_check().await?;
    // In order: two attempts on review, rung 1 (senior) as attempt 3, its permanent failure
    // straight to rung 2 (expert) as attempt 4.
    let path: Vec<(u32, String)> = decisions(&log)
        .into_iter()
        .filter_map(|(_, d)| match d {
            Decision::Dispatch {
                task,
                attempt,
                capability,
                ..
            } if task.as_str() == "review" => Some((attempt.0, capability.to_string())),
            _ => None,
        })
        .collect();
    ensure!(
        path == [
            (1, "review".to_owned()),
            (2, "review".to_owned()),
            (3, "review-senior".to_owned()),
            (4, "review-expert".to_owned()),
        ],
        "{path:?}"
    );
    let rungs: Vec<(u32, Attempt)> = decisions(&log)
        .into_iter()
        .filter_map(|(_, d)| match d {
            Decision::TaskEscalated { rung, attempt, .. } => Some((rung, attempt)),
            _ => None,
        })
        .collect();
    ensure!(rungs == [(1, Attempt(3)), (2, Attempt(4))], "{rungs:?}");
    ensure!(
        !decisions(&log)
            .iter()
            .any(|(_, d)| matches!(d, Decision::DeadLettered { .. })),
        "nothing dead-lettered"
    );
    Ok(())
}
