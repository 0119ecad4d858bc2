//! Failover on real NATS and real processes: a worker killed while it runs an attempt is
//! counted gone when its heartbeats stop, and the attempt its last heartbeat listed is failed
//! over at once to a live worker, before the broker's ack wait would redeliver it; when the
//! broker does redeliver the old attempt, the live worker does not run it. Shown by the order
//! of recorded decisions and by what the commands left behind. Ends with the invariants and
//! an identical replay.

use std::time::Duration;

use anyhow::ensure;
use workforce_coordinator::log::Entry;
use workforce_coordinator::scheduler::{
    Decision, FailureCause, Input, RunStatus, WorkerLeftReason,
};
use workforce_shared::Attempt;
use workforce_tests::harness::{Cluster, WorkerSpec, decisions, eventually, pid_in};

const RUN_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_attempt_fails_over_at_once_and_its_redelivery_is_not_run()
-> anyhow::Result<()> {
    let marks = tempfile::tempdir()?;
    let dir = marks.path().display().to_string();
    // Each attempt leaves a mark; attempt 1 then waits long, later ones finish at once.
    let command = format!(
        "echo $$ > '{dir}/'$WORKFORCE_TASK.$WORKFORCE_ATTEMPT.pid; \
         if [ $WORKFORCE_ATTEMPT = 1 ]; then sleep 30; fi; echo done"
    );
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 1, &[("work", &command)])]).await?;
    let run = cluster
        .submit("[[tasks]]\nid = \"job\"\ncapability = \"work\"\n")
        .await?;
    pid_in(&marks.path().join("job.1.pid"), RUN_WITHIN).await?;
    // A live worker to fail over to, then the one running attempt 1 dies.
    cluster.add_worker(&WorkerSpec::new("w2", 1, &[("work", &command)]));
    cluster.wait_for_workers(2).await?;
    // Once a heartbeat of w1 has told the coordinator it runs the attempt.
    eventually("w1's heartbeat lists its attempt", RUN_WITHIN, || async {
        let workers = cluster.api.workers().await?;
        Ok(workers
            .into_iter()
            .find(|w| {
                w.worker.as_str() == "w1" && w.live.as_ref().is_some_and(|l| l.in_flight == 1)
            })
            .map(drop))
    })
    .await?;
    cluster.worker("w1").kill().await?;

    let view = cluster.finish(&run, RUN_WITHIN).await?;
    ensure!(view.status == RunStatus::Succeeded, "{view:?}");
    // The broker redelivers attempt 1 after its ack wait: w2 declines it.
    eventually("w2 declines the superseded attempt", RUN_WITHIN, || async {
        Ok(cluster.logs().contains("superseded").then_some(()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", cluster.logs()))?;

    let log = cluster.stop_and_check().await?;
    // The order: w1 counted gone with its attempt, the attempt stopped, failed as lost, retried
    // at once, and attempt 2 dispatched; attempt 1's result never counted.
    let at = log
        .iter()
        .position(|(_, e)| {
            matches!(&e.entry, Entry::Input(Input::WorkerLeft {
                worker,
                reason: WorkerLeftReason::HeartbeatsStopped,
                attempts,
            }) if worker.as_str() == "w1" && attempts.len() == 1 && attempts[0].attempt == Attempt(1))
        })
        .ok_or_else(|| anyhow::anyhow!("no failover of w1's attempt"))?;
    let after: Vec<Decision> = decisions(&log[at..]).into_iter().map(|(_, d)| d).collect();
    ensure!(
        matches!(
            &after[0],
            Decision::StopAttempt {
                attempt: Attempt(1),
                ..
            }
        ),
        "{after:?}"
    );
    ensure!(
        matches!(&after[1], Decision::AttemptFailed { cause: FailureCause::WorkerLost { worker }, .. } if worker.as_str() == "w1"),
        "{after:?}"
    );
    ensure!(
        matches!(
            &after[2],
            Decision::RetryScheduled {
                attempt: Attempt(2),
                delay_ms: 0,
                ..
            }
        ),
        "{after:?}"
    );
    let dispatches: Vec<Attempt> = decisions(&log)
        .into_iter()
        .filter_map(|(_, d)| match d {
            Decision::Dispatch { attempt, .. } => Some(attempt),
            _ => None,
        })
        .collect();
    ensure!(dispatches == [Attempt(1), Attempt(2)], "{dispatches:?}");
    ensure!(
        !decisions(&log).iter().any(|(_, d)| matches!(
            d,
            Decision::TaskCompleted {
                attempt: Attempt(1),
                ..
            }
        )),
        "attempt 1 never completed"
    );
    Ok(())
}
