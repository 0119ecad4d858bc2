//! What operators do to runs in flight, on real NATS and real processes: cancel a run or one
//! task (the commands running them are stopped: SIGTERM to the group, SIGKILL after the
//! worker's stop grace), pause and resume a run or a capability, and fair dispatch among runs.
//! Claims about order are proved by the order of recorded decisions, not by the clock. Each
//! test ends with `stop_and_check`: the log keeps every invariant and replays with no
//! divergence.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use workforce_coordinator::log::Event;
use workforce_coordinator::scheduler::{
    CancelReason, Decision, Input, PauseScope, RunOutcome, RunStatus, RunView, TaskStatus, TaskView,
};
use workforce_shared::{Attempt, EventSeq, RunId};
use workforce_tests::harness::{
    Cluster, WorkerSpec, decided_on, decisions, eventually, gone, pid_in,
};

const RUN_WITHIN: Duration = Duration::from_secs(60);

/// The workers' `--stop-grace`: how long a stopped command has between SIGTERM and SIGKILL.
const STOP_GRACE: &str = "1s";

/// How long a stopped command may take to be gone: the stop grace, and a few seconds for the
/// stop request to travel and the kill to land.
const GONE_WITHIN: Duration = Duration::from_secs(1 + 5);

/// `body` as a command with `$D` set to `dir`, where commands leave pid files and flags.
fn in_dir(dir: &Path, body: &str) -> String {
    format!("D='{}'; {body}", dir.display())
}

/// Waits until the process is gone, with the cluster's logs if it is not.
async fn wait_gone(pid: u32, what: &str, cluster: &Cluster) -> anyhow::Result<()> {
    eventually(
        &format!("{what} (pid {pid}) is gone"),
        GONE_WITHIN,
        || async { Ok(gone(pid).then_some(())) },
    )
    .await
    .with_context(|| cluster.logs())
}

/// Runs the `workforce` CLI against the cluster and requires exit 0; returns stdout.
async fn cli(cluster: &Cluster, args: &[&str]) -> anyhow::Result<String> {
    let out = cluster.cli(args).output().await?;
    ensure!(
        out.status.success(),
        "workforce {args:?} exited with {}: {}",
        out.status,
        text(&out)
    );
    Ok(String::from_utf8(out.stdout)?)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `workforce status RUN --json`, as JSON.
async fn status_json(cluster: &Cluster, run: &RunId) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(
        &cli(cluster, &["status", run.as_str(), "--json"]).await?,
    )?)
}

fn by_task(view: &RunView) -> BTreeMap<&str, &TaskView> {
    view.tasks.iter().map(|t| (t.task.as_str(), t)).collect()
}

/// Where the first decision `pick` accepts stands among `decided`.
fn position(decided: &[(u64, Decision)], pick: impl Fn(&Decision) -> bool) -> Option<usize> {
    decided.iter().position(|(_, d)| pick(d))
}

fn is_dispatch_of(d: &Decision, run: &RunId, task: &str) -> bool {
    matches!(d, Decision::Dispatch { run: r, task: t, .. } if r == run && t.as_str() == task)
}

fn is_completion_of(d: &Decision, run: &RunId, task: &str) -> bool {
    matches!(d, Decision::TaskCompleted { run: r, task: t, .. } if r == run && t.as_str() == task)
}

fn is_accepted(d: &Decision, run: &RunId) -> bool {
    matches!(d, Decision::RunAccepted { run: r, .. } if r == run)
}

/// The operator's cancel of `run` as recorded, and the decisions it led to.
fn decided_on_cancel<'a>(
    events: &'a [(EventSeq, Event)],
    run: &RunId,
) -> (&'a Input, Vec<&'a Decision>) {
    let mut picked = decided_on(
        events,
        |input| matches!(input, Input::CancelRequested { run: r, .. } if r == run),
    );
    assert_eq!(picked.len(), 1, "one cancel was recorded: {picked:#?}");
    picked.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_run_stops_its_command_with_term_then_kill_and_watch_exits_4()
-> anyhow::Result<()> {
    let marks = tempfile::tempdir()?;
    // `long` ignores SIGTERM (it only notes it), and so does the grandchild it leaves in its
    // group: only the SIGKILL at the end of the stop grace ends them.
    let command = in_dir(
        marks.path(),
        r#"case "$WORKFORCE_TASK" in
long)
    trap 'echo TERM >> "$D/signals"' TERM
    sh -c 'trap "" TERM; exec sleep 600' &
    echo $! > "$D/grandchild.pid"
    echo $$ > "$D/long.pid"
    while :; do sleep 1; done;;
*) echo done;;
esac"#,
    );
    let mut cluster =
        Cluster::start(&[WorkerSpec::new("w1", 2, &[("work", &command)])
            .with_args(&["--stop-grace", STOP_GRACE])])
        .await?;
    let plan = r#"
name = "doomed"

[[tasks]]
id = "long"
capability = "work"

[[tasks]]
id = "after"
capability = "work"
needs = ["long"]
"#;
    let run = cluster.submit(plan).await?;
    let shell = pid_in(&marks.path().join("long.pid"), RUN_WITHIN).await?;
    let grandchild = pid_in(&marks.path().join("grandchild.pid"), RUN_WITHIN).await?;
    cluster.running(&run, "long", RUN_WITHIN).await?;
    let watch = cluster
        .cli(&["watch", run.as_str()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;

    let said = cli(
        &cluster,
        &["cancel", run.as_str(), "--reason", "wrong goal"],
    )
    .await?;
    assert!(said.contains("canceled"), "{said}");
    wait_gone(shell, "the canceled command", &cluster).await?;
    wait_gone(grandchild, "what the canceled command started", &cluster).await?;
    let signals = std::fs::read_to_string(marks.path().join("signals")).unwrap_or_default();
    assert!(
        signals.contains("TERM"),
        "the command was asked to stop (SIGTERM) before it was killed: {signals:?}"
    );

    let watched = tokio::time::timeout(RUN_WITHIN, watch.wait_with_output()).await??;
    assert_eq!(
        watched.status.code(),
        Some(4),
        "watch exits 4 for a canceled run: {}",
        text(&watched)
    );

    let status = status_json(&cluster, &run).await?;
    assert_eq!(status["status"], "canceled", "{status:#}");
    assert_eq!(status["reason"], "canceled by operator: wrong goal");
    assert_eq!(
        status["stop_reason"],
        json!({"kind": "canceled", "note": "wrong goal"})
    );
    let tasks: BTreeMap<&str, &Value> = status["tasks"]
        .as_array()
        .context("tasks")?
        .iter()
        .map(|t| (t["task"].as_str().unwrap_or_default(), t))
        .collect();
    assert_eq!(tasks["long"]["status"], "canceled", "{status:#}");
    assert_eq!(
        tasks["long"]["detail"], "run canceled by operator",
        "{status:#}"
    );
    assert_eq!(tasks["after"]["status"], "canceled", "{status:#}");
    assert_eq!(tasks["after"]["started"], 0, "{status:#}");

    let stored = cluster.stored_results().await?;
    assert!(
        stored.is_empty(),
        "a stopped attempt reports nothing: {stored:?}"
    );

    let events = cluster.stop_and_check().await?;
    let (cancel, on_cancel) = decided_on_cancel(&events, &run);
    assert_eq!(
        cancel,
        &Input::CancelRequested {
            run: run.clone(),
            task: None,
            note: Some("wrong goal".to_owned()),
        }
    );
    let long = "long".parse()?;
    let after = "after".parse()?;
    assert_eq!(
        on_cancel,
        [
            &Decision::StopAttempt {
                run: run.clone(),
                task: long,
                attempt: Attempt(1),
            },
            &Decision::TaskCanceled {
                run: run.clone(),
                task: "long".parse()?,
                reason: CancelReason::RunCanceled,
            },
            &Decision::TaskCanceled {
                run: run.clone(),
                task: after,
                reason: CancelReason::RunCanceled,
            },
            &Decision::RunFinished {
                run: run.clone(),
                outcome: RunOutcome::Canceled,
            },
        ],
        "the running attempt is told to stop before its task is canceled"
    );
    let decided = decisions(&events);
    assert_eq!(
        position(&decided, |d| matches!(d, Decision::StopAttempt { .. })),
        position(
            &decided,
            |d| matches!(d, Decision::StopAttempt { task, .. } if task.as_str() == "long")
        ),
        "only the running attempt is told to stop"
    );
    assert!(
        !decided
            .iter()
            .any(|(_, d)| is_dispatch_of(d, &run, "after")),
        "after never ran"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_one_task_stops_it_and_what_waits_goes_by_its_trigger_rule() -> anyhow::Result<()>
{
    let marks = tempfile::tempdir()?;
    let command = in_dir(
        marks.path(),
        r#"case "$WORKFORCE_TASK" in
a) echo $$ > "$D/a.pid"; exec sleep 600;;
*) cat;;
esac"#,
    );
    let mut cluster =
        Cluster::start(&[WorkerSpec::new("w1", 2, &[("work", &command)])
            .with_args(&["--stop-grace", STOP_GRACE])])
        .await?;
    let plan = r#"
name = "one-bad-input"

[[tasks]]
id = "a"
capability = "work"

[[tasks]]
id = "b"
capability = "work"
needs = ["a"]

[[tasks]]
id = "c"
capability = "work"
needs = ["a"]
trigger = "all_done"
"#;
    let run = cluster.submit(plan).await?;
    let pid = pid_in(&marks.path().join("a.pid"), RUN_WITHIN).await?;
    cluster.running(&run, "a", RUN_WITHIN).await?;
    // `--note` is `--reason`'s other name.
    cli(
        &cluster,
        &["cancel", run.as_str(), "--task", "a", "--note", "bad input"],
    )
    .await?;
    wait_gone(pid, "a's command", &cluster).await?;

    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert_eq!(view.status, RunStatus::Failed, "{view:#?}");
    assert_eq!(
        view.reason.as_deref(),
        Some("task a canceled by operator: bad input"),
        "{view:#?}"
    );
    assert_eq!(view.stop_reason, None, "the run ended by itself: {view:#?}");
    let tasks = by_task(&view);
    assert_eq!(
        (tasks["a"].status, tasks["a"].detail.as_deref()),
        (
            TaskStatus::Canceled,
            Some("canceled by operator: bad input")
        )
    );
    assert_eq!(
        (tasks["b"].status, tasks["b"].detail.as_deref()),
        (TaskStatus::Canceled, Some("upstream task a failed"))
    );
    assert_eq!(tasks["b"].started, 0);
    assert_eq!(tasks["c"].status, TaskStatus::Completed, "{view:#?}");
    // c ran past the canceled a, and was told how it ended.
    let c = tasks["c"].output.clone().context("c's output")?;
    assert_eq!(c["upstream_errors"]["a"]["status"], "canceled", "{c:#}");

    let events = cluster.stop_and_check().await?;
    let (cancel, on_cancel) = decided_on_cancel(&events, &run);
    assert_eq!(
        cancel,
        &Input::CancelRequested {
            run: run.clone(),
            task: Some("a".parse()?),
            note: Some("bad input".to_owned()),
        }
    );
    let [
        Decision::StopAttempt {
            task: stopped,
            attempt,
            ..
        },
        Decision::TaskCanceled {
            task: canceled,
            reason,
            ..
        },
        rest @ ..,
    ] = on_cancel.as_slice()
    else {
        panic!("a's attempt is stopped, then a is canceled: {on_cancel:#?}");
    };
    assert_eq!((stopped.as_str(), *attempt), ("a", Attempt(1)));
    assert_eq!(canceled.as_str(), "a");
    assert_eq!(
        reason,
        &CancelReason::OperatorCanceled {
            note: Some("bad input".to_owned())
        }
    );
    assert!(
        rest.iter().any(|d| matches!(d, Decision::TaskCanceled { task, reason: CancelReason::UpstreamFailed { task: up }, .. }
            if task.as_str() == "b" && up.as_str() == "a")),
        "b is canceled with a: {on_cancel:#?}"
    );
    assert!(
        rest.iter().any(|d| is_dispatch_of(d, &run, "c")),
        "c is dispatched on a's cancel: {on_cancel:#?}"
    );
    let decided = decisions(&events);
    assert!(
        decided.iter().any(|(_, d)| matches!(d, Decision::RunFinished { outcome: RunOutcome::Failed { task }, .. } if task.as_str() == "a")),
        "the run failed by a"
    );
    Ok(())
}

/// A command that waits for `$D/release` when its task is `held`, then prints its task id.
fn held_until_released(dir: &Path, held: &str) -> String {
    in_dir(
        dir,
        &format!(
            r#"if [ "$WORKFORCE_TASK" = {held} ]; then
    while [ ! -e "$D/release" ]; do sleep 0.05; done
fi
echo "{{\"task\": \"$WORKFORCE_TASK\"}}""#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_finishes_what_runs_and_dispatches_nothing_until_resumed() -> anyhow::Result<()>
{
    let marks = tempfile::tempdir()?;
    let command = held_until_released(marks.path(), "first");
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 2, &[("step", &command)])]).await?;
    let plan = r#"
name = "chain"

[[tasks]]
id = "first"
capability = "step"

[[tasks]]
id = "second"
capability = "step"
needs = ["first"]
"#;
    let run = cluster.submit(plan).await?;
    cluster.running(&run, "first", RUN_WITHIN).await?;
    cli(&cluster, &["pause", run.as_str()]).await?;
    std::fs::write(marks.path().join("release"), "")?;

    // first's result is recorded; second becomes ready with it, and is held.
    let held = eventually("first completes", RUN_WITHIN, || async {
        let view = cluster.api.status(&run).await?;
        Ok((by_task(&view)["first"].status == TaskStatus::Completed).then_some(view))
    })
    .await
    .with_context(|| cluster.logs())?;
    let second = by_task(&held)["second"].clone();
    assert_eq!(
        (second.status, second.started, second.detail.as_deref()),
        (TaskStatus::Queued, 0, Some("held: the run is paused")),
        "{held:#?}"
    );
    assert!(
        held.paused && held.status == RunStatus::Running,
        "{held:#?}"
    );
    let status = status_json(&cluster, &run).await?;
    assert_eq!(status["paused"], true, "{status:#}");
    assert_eq!(status["status"], "running", "{status:#}");

    cli(&cluster, &["resume", run.as_str()]).await?;
    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert_eq!(view.status, RunStatus::Succeeded, "{view:#?}");
    assert!(!view.paused);

    let events = cluster.stop_and_check().await?;
    let decided = decisions(&events);
    let scope = PauseScope::Run { run: run.clone() };
    let paused = position(
        &decided,
        |d| matches!(d, Decision::Paused { scope: s } if *s == scope),
    )
    .context("the pause is recorded")?;
    let resumed = position(
        &decided,
        |d| matches!(d, Decision::Resumed { scope: s } if *s == scope),
    )
    .context("the resume is recorded")?;
    let first_done =
        position(&decided, |d| is_completion_of(d, &run, "first")).context("first completed")?;
    let second_ready = position(
        &decided,
        |d| matches!(d, Decision::TaskReady { task, .. } if task.as_str() == "second"),
    )
    .context("second became ready")?;
    let second_dispatched =
        position(&decided, |d| is_dispatch_of(d, &run, "second")).context("second ran")?;
    assert!(
        paused < first_done && first_done < resumed,
        "first's result was recorded while paused"
    );
    assert!(
        paused < second_ready && second_ready < resumed,
        "second became ready while paused"
    );
    assert!(
        resumed < second_dispatched,
        "second was dispatched only after the resume"
    );
    assert!(
        !decided[paused..resumed]
            .iter()
            .any(|(_, d)| matches!(d, Decision::Dispatch { .. })),
        "nothing was dispatched while paused"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_capability_holds_its_tasks_in_every_run_while_others_work() -> anyhow::Result<()>
{
    let marks = tempfile::tempdir()?;
    let x = held_until_released(marks.path(), "x-first");
    let mut cluster =
        Cluster::start(&[WorkerSpec::new("w1", 2, &[("x", &x), ("y", "echo done")])]).await?;
    let plan_a = r#"
name = "a"

[[tasks]]
id = "x-first"
capability = "x"

[[tasks]]
id = "x-next"
capability = "x"
needs = ["x-first"]

[[tasks]]
id = "y-a"
capability = "y"
needs = ["x-first"]
"#;
    let plan_b = r#"
name = "b"

[[tasks]]
id = "x-b"
capability = "x"

[[tasks]]
id = "y-b"
capability = "y"
"#;
    let run_a = cluster.submit(plan_a).await?;
    cluster.running(&run_a, "x-first", RUN_WITHIN).await?;
    cli(&cluster, &["pause", "--capability", "x"]).await?;
    let run_b = cluster.submit(plan_b).await?;
    std::fs::write(marks.path().join("release"), "")?;

    // x-next becomes ready with x-first's completion, x-b was ready from the start.
    let (a, b) = eventually("x-first and the y tasks complete", RUN_WITHIN, || async {
        let a = cluster.api.status(&run_a).await?;
        let b = cluster.api.status(&run_b).await?;
        let (ta, tb) = (by_task(&a), by_task(&b));
        let done = ta["x-first"].status == TaskStatus::Completed
            && ta["y-a"].status == TaskStatus::Completed
            && tb["y-b"].status == TaskStatus::Completed;
        Ok(done.then(|| (a.clone(), b.clone())))
    })
    .await
    .with_context(|| cluster.logs())?;
    for (view, task) in [(&a, "x-next"), (&b, "x-b")] {
        let t = by_task(view)[task];
        assert_eq!(
            (t.status, t.started, t.detail.as_deref()),
            (TaskStatus::Queued, 0, Some("held: capability x is paused")),
            "{view:#?}"
        );
        assert!(!view.paused, "the run itself is not paused: {view:#?}");
    }

    cli(&cluster, &["resume", "--capability", "x"]).await?;
    for run in [&run_a, &run_b] {
        let view = cluster.finish(run, RUN_WITHIN).await?;
        assert_eq!(view.status, RunStatus::Succeeded, "{view:#?}");
    }

    let events = cluster.stop_and_check().await?;
    let decided = decisions(&events);
    let scope = PauseScope::Capability {
        capability: "x".parse()?,
    };
    let paused = position(
        &decided,
        |d| matches!(d, Decision::Paused { scope: s } if *s == scope),
    )
    .context("the pause is recorded")?;
    let resumed = position(
        &decided,
        |d| matches!(d, Decision::Resumed { scope: s } if *s == scope),
    )
    .context("the resume is recorded")?;
    let while_paused = &decided[paused..resumed];
    assert!(
        !while_paused.iter().any(
            |(_, d)| matches!(d, Decision::Dispatch { capability, .. } if capability.as_str() == "x")
        ),
        "no x task was dispatched while x was paused: {while_paused:#?}"
    );
    for (run, task) in [(&run_a, "y-a"), (&run_b, "y-b")] {
        assert!(
            while_paused
                .iter()
                .any(|(_, d)| is_dispatch_of(d, run, task))
                && while_paused
                    .iter()
                    .any(|(_, d)| is_completion_of(d, run, task)),
            "{task} ran while x was paused"
        );
    }
    assert!(
        while_paused
            .iter()
            .any(|(_, d)| is_completion_of(d, &run_a, "x-first")),
        "x-first, running at the pause, finished and was recorded"
    );
    for (run, task) in [(&run_a, "x-next"), (&run_b, "x-b")] {
        let dispatched = position(&decided, |d| is_dispatch_of(d, run, task))
            .with_context(|| format!("{task} ran"))?;
        assert!(
            resumed < dispatched,
            "{task} was dispatched after the resume"
        );
    }
    Ok(())
}

/// A plan of `n` independent tasks `{name}-0..` of capability `c`, at run priority `priority`.
fn independent(name: &str, n: usize, priority: i32) -> String {
    let mut plan = format!("name = \"{name}\"\npriority = {priority}\n");
    for i in 0..n {
        plan.push_str(&format!(
            "\n[[tasks]]\nid = \"{name}-{i}\"\ncapability = \"c\"\n"
        ));
    }
    plan
}

/// The runs of capability `c`'s dispatches, in the order decided.
fn dispatch_order(decided: &[(u64, Decision)]) -> Vec<(&RunId, &str)> {
    decided
        .iter()
        .filter_map(|(_, d)| match d {
            Decision::Dispatch { run, task, .. } => Some((run, task.as_str())),
            _ => None,
        })
        .collect()
}

/// One worker of concurrency 2, so two tasks of `c` are in flight at most.
async fn fairness_cluster() -> anyhow::Result<Cluster> {
    Cluster::start(&[WorkerSpec::new("w1", 2, &[("c", "sleep 0.1; echo done")])]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_beside_a_large_one_takes_turns_at_once() -> anyhow::Result<()> {
    let mut cluster = fairness_cluster().await?;
    let large = cluster.submit(&independent("large", 40, 0)).await?;
    let small = cluster.submit(&independent("small", 3, 0)).await?;
    for run in [&large, &small] {
        let view = cluster.finish(run, RUN_WITHIN).await?;
        assert_eq!(view.status, RunStatus::Succeeded, "{view:#?}");
    }

    let events = cluster.stop_and_check().await?;
    let decided = decisions(&events);
    let order = dispatch_order(&decided);
    assert_eq!(order.len(), 43, "{order:?}");
    let tenth_large = order
        .iter()
        .enumerate()
        .filter(|(_, (run, _))| **run == large)
        .nth(9)
        .map(|(i, _)| i)
        .context("the large run's 10th dispatch")?;
    let small_at: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, (run, _))| **run == small)
        .map(|(i, _)| i)
        .collect();
    assert!(
        small_at.len() == 3 && small_at.iter().all(|i| *i < tenth_large),
        "the small run's 3 tasks were all dispatched before the large run's 10th: {order:?}"
    );
    // Once the small run is accepted, the two runs alternate, the small one first: it takes
    // every other slot as the large run's tasks finish.
    let accepted = position(&decided, |d| is_accepted(d, &small)).context("small accepted")?;
    let after: Vec<(&RunId, &str)> = dispatch_order(&decided[accepted..])
        .into_iter()
        .take(5)
        .collect();
    let runs: Vec<&RunId> = after.iter().map(|(run, _)| *run).collect();
    assert_eq!(
        runs,
        [&small, &large, &small, &large, &small],
        "round-robin from the small run's arrival: {after:?}"
    );
    let small_tasks: Vec<&str> = after
        .iter()
        .filter(|(run, _)| **run == small)
        .map(|(_, task)| *task)
        .collect();
    assert_eq!(small_tasks, ["small-0", "small-1", "small-2"], "plan order");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_higher_priority_submitted_later_is_dispatched_first() -> anyhow::Result<()> {
    let mut cluster = fairness_cluster().await?;
    let large = cluster.submit(&independent("large", 40, 0)).await?;
    cluster.running(&large, "large-0", RUN_WITHIN).await?;
    let urgent = cluster.submit(&independent("urgent", 3, 5)).await?;
    for run in [&large, &urgent] {
        let view = cluster.finish(run, RUN_WITHIN).await?;
        assert_eq!(view.status, RunStatus::Succeeded, "{view:#?}");
    }

    let events = cluster.stop_and_check().await?;
    let decided = decisions(&events);
    let accepted = position(&decided, |d| is_accepted(d, &urgent)).context("urgent accepted")?;
    let before = dispatch_order(&decided[..accepted]);
    assert!(
        before.iter().all(|(run, _)| **run == large) && before.len() < 40,
        "the large run was under way, with tasks left, when the urgent one came: {before:?}"
    );
    let after = dispatch_order(&decided[accepted..]);
    let next: Vec<(&RunId, &str)> = after.iter().take(3).copied().collect();
    assert_eq!(
        next,
        [
            (&urgent, "urgent-0"),
            (&urgent, "urgent-1"),
            (&urgent, "urgent-2")
        ],
        "the urgent run's tasks go before the rest of the large run: {after:?}"
    );
    assert_eq!(
        after.len() - 3,
        40 - before.len(),
        "the large run's rest after"
    );
    Ok(())
}
