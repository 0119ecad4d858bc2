//! Worker health on real NATS and real processes: a worker whose capability keeps failing
//! opens its circuit breaker, stops pulling it for a cool-down, and the coordinator counts no
//! capacity for it meanwhile (`workforce workers` shows the breaker); after the cool-down it
//! closes, and the capability works again. Ends with the log's invariants and replay.

use std::time::Duration;

use anyhow::ensure;
use workforce_coordinator::scheduler::{Decision, Input, RunStatus};
use workforce_shared::Capability;
use workforce_tests::harness::{Cluster, WorkerSpec, decisions, eventually};

const RUN_WITHIN: Duration = Duration::from_secs(60);

fn plan(tasks: &[(&str, &str)]) -> String {
    let mut plan = String::from("[defaults]\nretry = { max_attempts = 1 }\n");
    for (id, capability) in tasks {
        plan.push_str(&format!(
            "[[tasks]]\nid = \"{id}\"\ncapability = \"{capability}\"\n"
        ));
    }
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opens_after_repeated_failures_and_capacity_comes_back_when_it_closes()
-> anyhow::Result<()> {
    let worker = WorkerSpec::new("w1", 1, &[("bad", "exit 1"), ("good", "echo fine")])
        .with_args(&["--breaker-failures", "2", "--breaker-cooldown", "3s"]);
    let mut cluster = Cluster::start(&[worker]).await?;
    let bad: Capability = "bad".parse()?;

    // Two failures in a row open the breaker.
    let first = cluster
        .submit(&plan(&[("b1", "bad"), ("b2", "bad")]))
        .await?;
    let view = cluster.finish(&first, RUN_WITHIN).await?;
    ensure!(view.status == RunStatus::Failed, "{view:?}");

    // The coordinator hears it: the worker counts for `good` only, and shows the breaker.
    let open = eventually("workers shows the open breaker", RUN_WITHIN, || async {
        let workers = cluster.api.workers().await?;
        Ok(workers.into_iter().find(|w| {
            w.live
                .as_ref()
                .is_some_and(|l| l.breakers.iter().any(|b| b.capability == bad))
        }))
    })
    .await?;
    ensure!(!open.capabilities.contains(&bad), "{open:?}");
    let live = open.live.as_ref().expect("live");
    ensure!(live.serves.contains(&bad), "it still serves bad: {live:?}");
    ensure!(live.breakers[0].failures == 2, "{live:?}");
    ensure!((open.completed, open.failed) == (0, 2), "{open:?}");
    ensure!(open.success_rate == Some(0.0), "{open:?}");

    // The CLI shows it too.
    let out = cluster.cli(&["workers"]).output().await?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(text.contains("bad open after 2 failures"), "{text}");

    // After the cool-down the breaker closes and the capability counts again.
    eventually("the breaker closes", RUN_WITHIN, || async {
        let workers = cluster.api.workers().await?;
        Ok(workers
            .into_iter()
            .find(|w| w.capabilities.contains(&bad))
            .map(drop))
    })
    .await?;
    let good = cluster.submit(&plan(&[("g1", "good")])).await?;
    ensure!(cluster.finish(&good, RUN_WITHIN).await?.status == RunStatus::Succeeded);

    let log = cluster.stop_and_check().await?;
    // In the log: the worker announced without `bad` while its breaker was open, and with it
    // again after.
    let announced: Vec<bool> = log
        .iter()
        .filter_map(|(_, e)| match &e.entry {
            workforce_coordinator::log::Entry::Input(Input::WorkerJoined {
                capabilities, ..
            }) => Some(capabilities.contains(&bad)),
            _ => None,
        })
        .collect();
    let dropped = announced.iter().position(|with| !with);
    ensure!(
        dropped.is_some(),
        "never announced without bad: {announced:?}"
    );
    ensure!(
        announced[dropped.unwrap_or(0)..].contains(&true),
        "bad never came back: {announced:?}"
    );
    ensure!(
        decisions(&log)
            .iter()
            .filter(|(_, d)| matches!(d, Decision::Dispatch { .. }))
            .count()
            == 3
    );
    Ok(())
}
