//! Fault tests: real processes killed, paused and restarted, the NATS container paused,
//! stopped and restarted, garbage on every subject. Each ends by checking the invariant:
//! every task ever dispatched has exactly one terminal event in the log, every result the
//! broker stored is in the log, and the log replays with no divergence.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::json;
use workforce_coordinator::log::Entry;
use workforce_coordinator::scheduler::{
    Decision, IgnoreReason, Input, RunStatus, TaskStatus, WorkerLeftReason,
};
use workforce_shared::{Outcome, encode};
use workforce_tests::harness::{
    Cluster, CoordinatorSpec, WorkerSpec, decided_on, decisions, eventually, signal_pid,
};

const RUN_WITHIN: Duration = Duration::from_secs(90);

/// A command that records the pid of the worker running it (`$PPID`: the worker starts
/// `sh -c`), then sleeps for `sleep` seconds on its first attempt, and echoes its task id.
fn marked(dir: &Path, sleep: &str) -> String {
    format!(
        "echo $PPID > {dir}/$WORKFORCE_TASK.$WORKFORCE_ATTEMPT.pid; \
         if [ \"$WORKFORCE_ATTEMPT\" = 1 ]; then sleep {sleep}; fi; \
         echo \"{{\\\"task\\\": \\\"$WORKFORCE_TASK\\\"}}\"",
        dir = dir.display()
    )
}

/// Waits for the marker file of a task's attempt and returns the pid of its worker.
async fn worker_pid(dir: &Path, task: &str, attempt: u32) -> anyhow::Result<u32> {
    let path = dir.join(format!("{task}.{attempt}.pid"));
    eventually(
        &format!("{task} attempt {attempt} starts"),
        RUN_WITHIN,
        || {
            let path = path.clone();
            async move {
                Ok(std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok()))
            }
        },
    )
    .await
}

/// Milliseconds since the epoch, the clock the coordinator records `at_ms` with.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn chain_plan(tasks: usize, capability: &str) -> String {
    let mut plan = String::from("name = \"chain\"\n");
    for i in 0..tasks {
        plan.push_str(&format!(
            "[[tasks]]\nid = \"t{i}\"\ncapability = \"{capability}\"\ninput = {{ n = {i} }}\n"
        ));
        if i > 0 {
            plan.push_str(&format!("needs = [\"t{}\"]\n", i - 1));
        }
        plan.push_str("retry = { max_attempts = 3, initial_backoff = \"200ms\" }\n\n");
    }
    plan
}

fn all_completed(view: &workforce_coordinator::scheduler::RunView) -> bool {
    view.status == RunStatus::Succeeded
        && view.tasks.iter().all(|t| t.status == TaskStatus::Completed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_task_loses_nothing() -> anyhow::Result<()> {
    let marks = tempfile::tempdir()?;
    let command = marked(marks.path(), "3");
    let mut cluster = Cluster::start(&[
        WorkerSpec::new("w1", 1, &[("work", &command)]),
        WorkerSpec::new("w2", 1, &[("work", &command)]),
    ])
    .await?;
    let run = cluster
        .submit("[[tasks]]\nid = \"victim\"\ncapability = \"work\"\n")
        .await?;
    let pid = worker_pid(marks.path(), "victim", 1).await?;
    let victim = if cluster.worker("w1").pid() == Some(pid) {
        "w1"
    } else {
        "w2"
    };
    cluster.worker(victim).kill().await?;

    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert!(all_completed(&view), "{view:#?}\n{}", cluster.logs());
    let results = cluster.stored_results().await?;
    assert_eq!(results.len(), 1, "one result, from the surviving worker");
    assert_ne!(results[0].worker.as_str(), victim);

    let events = cluster.stop_and_check().await?;
    let lost = events.iter().any(|(_, e)| {
        matches!(&e.entry, Entry::Input(Input::WorkerLeft { worker, reason: WorkerLeftReason::HeartbeatsStopped, .. })
            if worker.as_str() == victim)
    });
    assert!(lost, "the coordinator recorded {victim} as lost");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_paused_past_the_ack_wait_loses_nothing_and_duplicates_change_nothing()
-> anyhow::Result<()> {
    let marks = tempfile::tempdir()?;
    let command = marked(marks.path(), "1");
    // A short dedupe window, so that the paused worker's copy of the result gets past the
    // broker (same message id) to the coordinator, which must ignore it.
    let window = Duration::from_secs(1);
    let coordinator = CoordinatorSpec {
        duplicate_window: Some(window),
        ..CoordinatorSpec::default()
    };
    let mut cluster = Cluster::start_with(
        &[
            WorkerSpec::new("w1", 1, &[("work", &command)]),
            WorkerSpec::new("w2", 1, &[("work", &command)]),
        ],
        coordinator,
    )
    .await?;
    let plan = "[[tasks]]\nid = \"frozen\"\ncapability = \"work\"\ntimeout = \"60s\"\n";
    let run = cluster.submit(plan).await?;
    let pid = worker_pid(marks.path(), "frozen", 1).await?;
    let paused = if cluster.worker("w1").pid() == Some(pid) {
        "w1"
    } else {
        "w2"
    };
    signal_pid(pid, "STOP").await?;
    // Past the 5s ack wait, the other worker gets the assignment and finishes it.
    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert!(all_completed(&view), "{view:#?}\n{}", cluster.logs());
    let stored = cluster.stored_results().await?;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_ne!(stored[0].worker.as_str(), paused);

    // The broker would drop the copy while the window since the first result is open.
    let js = async_nats::jetstream::new(cluster.client.clone());
    let results = js.get_stream(cluster.subjects.results_stream()).await?;
    let first = results
        .get_last_raw_message_by_subject(&cluster.subjects.result(&run, &"frozen".parse()?))
        .await?;
    let stored_ms = u64::try_from(first.time.unix_timestamp_nanos() / 1_000_000)?;
    let window_over = stored_ms + 2 * u64::try_from(window.as_millis())?;
    eventually("the dedupe window closes", RUN_WITHIN, || async {
        Ok((now_ms() > window_over).then_some(()))
    })
    .await?;

    // The paused worker wakes, finishes the same attempt and stores the same result again.
    signal_pid(pid, "CONT").await?;
    eventually("the paused worker's copy is stored", RUN_WITHIN, || async {
        let stored = cluster.stored_results().await?;
        Ok(stored
            .iter()
            .any(|r| r.worker.as_str() == paused)
            .then_some(()))
    })
    .await
    .with_context(|| cluster.logs())?;
    cluster.results_settled().await?;
    assert_eq!(
        cluster.api.status(&run).await?,
        view,
        "the duplicate changed the run"
    );

    let events = cluster.stop_and_check().await?;
    let copies = decided_on(
        &events,
        |input| matches!(input, Input::ResultReceived { result } if result.worker.as_str() == paused),
    );
    assert_eq!(copies.len(), 1, "the copy was recorded once: {copies:#?}");
    assert!(
        matches!(
            copies[0].1.as_slice(),
            [Decision::ResultIgnored { attempt, reason: IgnoreReason::AlreadyFinished, .. }]
                if attempt.0 == 1
        ),
        "the copy was ignored and nothing else decided: {copies:#?}"
    );
    let completions = decisions(&events)
        .iter()
        .filter(|(_, d)| matches!(d, Decision::TaskCompleted { .. }))
        .count();
    assert_eq!(completions, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_past_its_timeout_is_failed_by_the_coordinator_and_retried() -> anyhow::Result<()>
{
    let marks = tempfile::tempdir()?;
    let command = marked(marks.path(), "1");
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 1, &[("work", &command)])]).await?;
    let plan = "[[tasks]]\nid = \"slow\"\ncapability = \"work\"\ntimeout = \"2s\"\n\
                retry = { max_attempts = 3, initial_backoff = \"100ms\" }\n";
    let run = cluster.submit(plan).await?;
    let pid = worker_pid(marks.path(), "slow", 1).await?;
    // A frozen worker cannot time its own attempt out: the coordinator must.
    signal_pid(pid, "STOP").await?;
    cluster.add_worker(&WorkerSpec::new("w2", 1, &[("work", &command)]));
    let view = cluster.finish(&run, RUN_WITHIN).await?;
    signal_pid(pid, "CONT").await?;
    assert!(all_completed(&view), "{view:#?}\n{}", cluster.logs());
    assert!(view.tasks[0].attempt >= 2, "{view:#?}");

    let events = cluster.stop_and_check().await?;
    let timed_out = events.iter().any(|(_, e)| {
        matches!(&e.entry, Entry::Input(Input::AttemptTimedOut { attempt, .. }) if attempt.0 == 1)
    });
    assert!(timed_out, "the coordinator timed attempt 1 out");
    assert!(
        decisions(&events)
            .iter()
            .any(|(_, d)| matches!(d, Decision::StopAttempt { .. })),
        "and told the workers to stop it"
    );
    Ok(())
}

async fn coordinator_crash_at(failpoint: &str) -> anyhow::Result<()> {
    let command = "sleep 0.2; echo done";
    let mut cluster = Cluster::start_with(
        &[
            WorkerSpec::new("w1", 2, &[("work", command)]),
            WorkerSpec::new("w2", 2, &[("work", command)]),
        ],
        CoordinatorSpec::default().with_failpoint(failpoint),
    )
    .await?;
    let run = cluster.submit(&chain_plan(8, "work")).await?;
    let status = cluster
        .coordinator
        .wait(RUN_WITHIN)
        .await
        .map_err(|e| anyhow::anyhow!("the failpoint {failpoint} never fired: {e}"))?;
    assert!(!status.success(), "the coordinator crashed at {failpoint}");
    // At the failpoint, not of something else.
    let (point, _) = failpoint.split_once(':').context("<point>:<n>")?;
    let output = cluster.coordinator.output();
    assert!(
        output.contains("failpoint reached") && output.contains(point),
        "the coordinator did not stop at {failpoint}:\n{output}"
    );
    cluster.restart_coordinator().await?;
    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert!(
        all_completed(&view),
        "{failpoint}: {view:#?}\n{}",
        cluster.logs()
    );
    cluster.stop_and_check().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_after_a_commit_before_publishing_recovers() -> anyhow::Result<()> {
    coordinator_crash_at("after_commit:7").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_before_committing_received_results_recovers() -> anyhow::Result<()> {
    coordinator_crash_at("before_commit:7").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_after_publishing_before_acking_recovers() -> anyhow::Result<()> {
    coordinator_crash_at("after_publish:4").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_sigkilled_mid_run_recovers() -> anyhow::Result<()> {
    let command = "sleep 0.3; echo done";
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 2, &[("work", command)])]).await?;
    let run = cluster.submit(&chain_plan(8, "work")).await?;
    cluster.running(&run, "t3", RUN_WITHIN).await?;
    cluster.coordinator.kill().await?;
    cluster.restart_coordinator().await?;
    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert!(all_completed(&view), "{view:#?}\n{}", cluster.logs());
    cluster.stop_and_check().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_broker_delays_but_loses_nothing() -> anyhow::Result<()> {
    let command = "sleep 0.2; echo done";
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 2, &[("work", command)])]).await?;
    let run = cluster.submit(&chain_plan(6, "work")).await?;
    cluster.running(&run, "t2", RUN_WITHIN).await?;
    cluster.nats.pause()?;
    // Paused until the coordinator feels it: no heartbeat gets through (one every 500ms), so
    // past its 3s worker timeout it counts the worker as gone.
    let felt = eventually(
        "the coordinator misses w1's heartbeats",
        RUN_WITHIN,
        || async {
            Ok(cluster
                .coordinator
                .output()
                .contains("counting it as gone")
                .then_some(()))
        },
    )
    .await;
    let unpaused = cluster.nats.unpause();
    felt.with_context(|| cluster.logs())?;
    unpaused?;
    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert!(all_completed(&view), "{view:#?}\n{}", cluster.logs());
    let events = cluster.stop_and_check().await?;
    // Recorded: the worker was lost to the pause mid-run and came back when it ended.
    let position =
        |wanted: &dyn Fn(&Entry) -> bool| events.iter().position(|(_, e)| wanted(&e.entry));
    let left = position(&|e| {
        matches!(e, Entry::Input(Input::WorkerLeft { worker, reason: WorkerLeftReason::HeartbeatsStopped, .. })
            if worker.as_str() == "w1")
    })
    .context("the log records w1 lost to the pause")?;
    let back = events[left..]
        .iter()
        .any(|(_, e)| matches!(&e.entry, Entry::Input(Input::WorkerJoined { worker, .. }) if worker.as_str() == "w1"));
    assert!(back, "w1 rejoined after the pause");
    let finished = position(&|e| matches!(e, Entry::Decision(Decision::RunFinished { .. })))
        .context("the run finished")?;
    assert!(left < finished, "the pause was felt mid-run");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_and_restarted_with_its_store_loses_nothing() -> anyhow::Result<()> {
    let command = "sleep 0.2; echo done";
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 2, &[("work", command)])]).await?;
    let run = cluster.submit(&chain_plan(6, "work")).await?;
    cluster.running(&run, "t2", RUN_WITHIN).await?;
    cluster.nats.stop()?;
    cluster.nats.restart().await?;
    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert!(all_completed(&view), "{view:#?}\n{}", cluster.logs());
    assert!(
        cluster.coordinator.running(),
        "the coordinator reconnected by itself"
    );
    cluster.stop_and_check().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_subject_is_rejected_and_changes_nothing() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 2, &[("work", "echo done")])]).await?;
    let s = cluster.subjects.clone();
    let run = cluster.submit(&chain_plan(3, "work")).await?;
    cluster.finish(&run, RUN_WITHIN).await?;

    let garbage = b"\xc1 this is not msgpack".to_vec();
    let task = "t0".parse()?;
    let truncated = {
        let bytes = encode(&workforce_shared::TaskResult {
            v: workforce_shared::PROTOCOL_VERSION,
            run: run.clone(),
            task: "t0".parse()?,
            attempt: workforce_shared::Attempt(1),
            worker: "w1".parse()?,
            outcome: Outcome::succeeded(json!("x")),
            duration_ms: 1,
            usage: None,
        })?;
        bytes[..bytes.len() / 2].to_vec()
    };
    let foreign = |v: u16, run: &str, task: &str| -> anyhow::Result<Vec<u8>> {
        Ok(encode(&workforce_shared::TaskResult {
            v,
            run: run.parse()?,
            task: task.parse()?,
            attempt: workforce_shared::Attempt(1),
            worker: "intruder".parse()?,
            outcome: Outcome::succeeded(json!("forged")),
            duration_ms: 1,
            usage: None,
        })?)
    };
    let ghost_run = "ghost".parse()?;
    let results = [
        (s.result(&run, &task), garbage.clone()),
        (s.result(&run, &task), truncated),
        (s.result(&run, &task), foreign(99, run.as_str(), "t0")?),
        (s.result(&ghost_run, &task), foreign(1, "ghost", "t0")?),
        (
            s.result(&run, &"nope".parse()?),
            foreign(1, run.as_str(), "nope")?,
        ),
        (s.result(&run, &task), vec![0x80; 900_000]),
    ];
    for (subject, bytes) in results {
        cluster.publish_raw(subject, bytes, true).await?;
    }
    cluster
        .publish_raw(s.task(&"work".parse()?), garbage.clone(), true)
        .await?;
    cluster
        .publish_raw(s.heartbeat(&"w1".parse()?), garbage.clone(), false)
        .await?;
    cluster
        .publish_raw(s.stop(), garbage.clone(), false)
        .await?;
    // A garbage API request gets an error reply, not silence.
    let reply = cluster
        .client
        .request(
            s.api(workforce_shared::subjects::ApiVerb::Submit),
            garbage.clone().into(),
        )
        .await?;
    let response: workforce_coordinator::api::ApiResponse =
        workforce_shared::decode(&reply.payload, 1 << 20)?;
    assert!(
        matches!(&response.result, Err(e) if e.kind == workforce_coordinator::api::ApiErrorKind::BadRequest),
        "{response:?}"
    );

    // Everything still works, and nothing is left to be redelivered.
    let second = cluster.submit(&chain_plan(3, "work")).await?;
    let view = cluster.finish(&second, RUN_WITHIN).await?;
    assert!(all_completed(&view), "{view:#?}\n{}", cluster.logs());
    let js = async_nats::jetstream::new(cluster.client.clone());
    let tasks = js.get_stream(s.tasks_stream()).await?;
    eventually("the garbage assignment is terminated", RUN_WITHIN, || {
        let mut tasks = tasks.clone();
        async move { Ok((tasks.info().await?.state.messages == 0).then_some(())) }
    })
    .await?;
    assert!(cluster.coordinator.running() && cluster.worker("w1").running());
    let events = cluster.stop_and_check().await?;
    let ignored: Vec<IgnoreReason> = decisions(&events)
        .iter()
        .filter_map(|(_, d)| match d {
            Decision::ResultIgnored { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert!(ignored.contains(&IgnoreReason::UnknownRun), "{ignored:?}");
    assert!(ignored.contains(&IgnoreReason::UnknownTask), "{ignored:?}");
    let coordinator_log = std::fs::read_to_string(cluster.dir.path().join("coordinator.log"))?;
    assert!(coordinator_log.contains("rejecting message on the results stream"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_task_that_kills_its_worker_is_dead_lettered_not_looped() -> anyhow::Result<()> {
    // The poison task kills the worker running it (`sh -c`'s parent).
    let command = "if [ \"$WORKFORCE_TASK\" = poison ]; then kill -9 $PPID; sleep 5; fi; echo ok";
    let spec =
        |id| WorkerSpec::new(id, 1, &[("work", command)]).with_args(&["--max-deliveries", "1"]);
    let mut cluster = Cluster::start(&[spec("w1"), spec("w2"), spec("w3")]).await?;
    let plan = r#"
[[tasks]]
id = "poison"
capability = "work"
retry = { max_attempts = 1 }

[[tasks]]
id = "after-poison"
capability = "work"
needs = ["poison"]

[[tasks]]
id = "fine"
capability = "work"
"#;
    let run = cluster.submit(plan).await?;
    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert_eq!(
        view.status,
        RunStatus::Failed,
        "{view:#?}\n{}",
        cluster.logs()
    );
    let status: BTreeMap<&str, TaskStatus> = view
        .tasks
        .iter()
        .map(|t| (t.task.as_str(), t.status))
        .collect();
    assert_eq!(status["poison"], TaskStatus::Failed);
    assert_eq!(status["after-poison"], TaskStatus::Canceled);
    assert_eq!(status["fine"], TaskStatus::Completed);
    let reason = view.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("delivered 2 times without a result"),
        "{reason}"
    );
    let mut dead = 0;
    for worker in &mut cluster.workers {
        if !worker.running() {
            dead += 1;
        }
    }
    assert_eq!(
        dead, 1,
        "one worker died; the redelivery was failed, not run"
    );
    cluster.stop_and_check().await?;
    Ok(())
}

/// The size and limit in a worker's "result too large" failure.
fn result_too_large(detail: &str) -> anyhow::Result<(usize, usize)> {
    let (_, rest) = detail
        .split_once("permanent failure: output too large: the result is ")
        .context("not the worker's result-too-large failure")?;
    let (size, rest) = rest
        .split_once(" bytes, over the message limit of ")
        .context("no limit")?;
    let (limit, _) = rest.split_once(" bytes").context("no limit")?;
    Ok((size.parse()?, limit.parse()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_over_a_limit_fails_its_task_with_a_clear_error_not_a_cut() -> anyhow::Result<()>
{
    // 600 KB of stdout: over the worker's default output limit (512 KiB) on one worker; on the
    // other the output limit is raised, and 2 MB is over the broker's max payload (1 MiB).
    let big =
        "head -c \"$(cat | grep -o '\"bytes\":[0-9]*' | cut -d: -f2)\" /dev/zero | tr '\\0' a";
    let mut cluster = Cluster::start(&[
        WorkerSpec::new("small", 1, &[("small", big)]),
        WorkerSpec::new("large", 1, &[("large", big)])
            .with_args(&["--max-output-bytes", "4000000"]),
    ])
    .await?;
    let plan = r#"
[[tasks]]
id = "over-output-limit"
capability = "small"
input = { bytes = 600000 }
retry = { max_attempts = 1 }

[[tasks]]
id = "over-max-payload"
capability = "large"
input = { bytes = 2000000 }
retry = { max_attempts = 1 }

[[tasks]]
id = "fits"
capability = "small"
input = { bytes = 1000 }
"#;
    let run = cluster.submit(plan).await?;
    let view = cluster.finish(&run, RUN_WITHIN).await?;
    let task = |id: &str| {
        view.tasks
            .iter()
            .find(|t| t.task.as_str() == id)
            .expect("task")
    };
    assert_eq!(task("fits").status, TaskStatus::Completed);
    assert_eq!(
        task("fits")
            .output
            .as_ref()
            .and_then(|o| o.as_str())
            .map(str::len),
        Some(1000)
    );
    let over = task("over-output-limit");
    assert_eq!(over.status, TaskStatus::Failed, "{view:#?}");
    let detail = over.detail.clone().unwrap_or_default();
    assert!(
        detail.contains(
            "stdout of 600000 bytes exceeds the output limit of 524288 bytes (max_output_bytes)"
        ),
        "{detail}"
    );
    // 2 MB of output fits the raised output limit; the result carrying it is over the
    // broker's max payload (1 MiB), so the worker sends a failure saying so instead.
    let over = task("over-max-payload");
    assert_eq!(over.status, TaskStatus::Failed, "{view:#?}");
    let detail = over.detail.clone().unwrap_or_default();
    let (size, limit) = result_too_large(&detail).with_context(|| detail.clone())?;
    assert!(size > 2_000_000, "the size is the whole result's: {detail}");
    let max_payload = cluster.client.server_info().max_payload;
    assert!(
        limit < max_payload && limit > max_payload - 4096,
        "the limit is the broker's max payload ({max_payload}) less room for headers: {detail}"
    );
    cluster.stop_and_check().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_stored_while_the_coordinator_was_down_beats_its_overdue_deadline()
-> anyhow::Result<()> {
    // The broker hands a stored result to the coordinator, which dies before acking it; the
    // broker hands it out again only results_ack_wait later. A restart after the attempt's
    // deadline must not time the attempt out meanwhile: deadlines after a restart are at
    // least results_ack_wait + attempt_grace away.
    let marks = tempfile::tempdir()?;
    let go = marks.path().join("go");
    // Marks its start, then finishes when the test says so.
    let command = format!(
        "echo $PPID > {dir}/$WORKFORCE_TASK.$WORKFORCE_ATTEMPT.pid; \
         while [ ! -e {go} ]; do sleep 0.05; done; echo '{{\"ok\": true}}'",
        dir = marks.path().display(),
        go = go.display()
    );
    let coordinator = CoordinatorSpec {
        // Long enough that a restart lands well inside it.
        results_ack_wait: Duration::from_secs(8),
        ..CoordinatorSpec::default()
    };
    let grace = u64::try_from(coordinator.attempt_grace.as_millis())?;
    let mut cluster = Cluster::start_with(
        &[WorkerSpec::new("w1", 1, &[("work", &command)])],
        coordinator,
    )
    .await?;
    // No retry: a timeout would dead-letter a task that succeeded.
    let timeout_ms = 2_000;
    let plan = "[[tasks]]\nid = \"done-meanwhile\"\ncapability = \"work\"\ntimeout = \"2s\"\n\
                retry = { max_attempts = 1 }\n";
    let run = cluster.submit(plan).await?;
    worker_pid(marks.path(), "done-meanwhile", 1).await?;

    // Frozen, the coordinator still has a pull open: the broker delivers the result to it.
    cluster.coordinator.pause().await?;
    std::fs::write(&go, "")?;
    let js = async_nats::jetstream::new(cluster.client.clone());
    let stream = js.get_stream(cluster.subjects.results_stream()).await?;
    let subject = cluster.subjects.result(&run, &"done-meanwhile".parse()?);
    let consumer = cluster.subjects.results_consumer();
    eventually(
        "the result is stored and delivered to the frozen coordinator",
        RUN_WITHIN,
        || {
            let (stream, subject, consumer) = (stream.clone(), subject.clone(), consumer.clone());
            async move {
                if stream
                    .get_last_raw_message_by_subject(&subject)
                    .await
                    .is_err()
                {
                    return Ok(None);
                }
                let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
                    .get_consumer(&consumer)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                let info = consumer.info().await?;
                Ok((info.num_pending == 0 && info.num_ack_pending == 1).then_some(()))
            }
        },
    )
    .await
    .with_context(|| cluster.logs())?;
    cluster.coordinator.kill().await?;

    // Restart only once the attempt's deadline has passed.
    let log = cluster.read_log()?;
    let dispatched_at = decisions(&log)
        .iter()
        .find_map(|(at, d)| matches!(d, Decision::Dispatch { .. }).then_some(*at))
        .context("the attempt was dispatched")?;
    let deadline = dispatched_at + timeout_ms + grace;
    drop(log);
    eventually("the attempt's deadline passes", RUN_WITHIN, || async {
        Ok((now_ms() > deadline).then_some(()))
    })
    .await?;
    cluster.restart_coordinator().await?;

    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert!(all_completed(&view), "{view:#?}\n{}", cluster.logs());
    let events = cluster.stop_and_check().await?;
    let (restart, restarted_at) = events
        .iter()
        .enumerate()
        .filter(|(_, (_, e))| matches!(e.entry, Entry::Input(Input::CoordinatorStarted { .. })))
        .map(|(i, (_, e))| (i, e.at_ms))
        .nth(1)
        .context("the log records the restart")?;
    assert!(
        restarted_at > deadline,
        "the deadline ({deadline}) had passed when the coordinator restarted ({restarted_at})"
    );
    let received = events
        .iter()
        .position(|(_, e)| matches!(e.entry, Entry::Input(Input::ResultReceived { .. })))
        .context("the result was received")?;
    assert!(
        received > restart,
        "the result was read only after the restart"
    );
    assert!(
        !events
            .iter()
            .any(|(_, e)| matches!(e.entry, Entry::Input(Input::AttemptTimedOut { .. }))),
        "the stored result was read before the deadline fired"
    );
    Ok(())
}
