//! Runs that grow, on real NATS and real processes: command handlers that spawn tasks through
//! their control file, fan-in joins, trigger rules, branches and skips, and a coordinator
//! killed while spawned tasks are in flight. Each test ends with `stop_and_check`: the log
//! keeps every invariant and replays with no divergence.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use workforce_coordinator::log::{Entry, Event};
use workforce_coordinator::scheduler::{
    CancelReason, Decision, FailureCause, Input, RunStatus, RunView, SkipReason, TaskStatus,
    TaskView,
};
use workforce_shared::{EventSeq, TaskId, Trigger};
use workforce_tests::harness::{Cluster, WorkerSpec, decided_on, decisions, eventually};

const RUN_WITHIN: Duration = Duration::from_secs(90);

/// `body` as a command with `$D` set to `dir`, where commands leave their side effects.
fn in_dir(dir: &Path, body: &str) -> String {
    format!("D='{}'; {body}", dir.display())
}

/// A command that writes `control` to its control file and prints `output`.
fn writes_control(control: &Value, output: &str) -> String {
    let control = control.to_string();
    assert!(
        !control.contains('\'') && !output.contains('\''),
        "single-quoted in sh"
    );
    format!("printf '%s' '{control}' > \"$WORKFORCE_CONTROL\"; echo '{output}'")
}

/// `child-1` .. `child-{n}`, capability `child`, as spawn entries.
fn children(n: usize) -> Vec<Value> {
    (1..=n)
        .map(|i| json!({"id": format!("child-{i}"), "capability": "child", "input": {"n": i}}))
        .collect()
}

/// A child that notes its start in `$D/ran` and outputs its id.
const CHILD: &str =
    r#"echo "$WORKFORCE_TASK" >> "$D/ran"; sleep 0.1; echo "{\"child\": \"$WORKFORCE_TASK\"}""#;

/// The lines of a side-effect file, counted.
fn lines(path: &Path) -> BTreeMap<String, u32> {
    let mut seen = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        *seen.entry(line.to_owned()).or_default() += 1;
    }
    seen
}

fn by_task(view: &RunView) -> BTreeMap<&str, &TaskView> {
    view.tasks.iter().map(|t| (t.task.as_str(), t)).collect()
}

/// How many decisions `pick` names each task in.
fn per_task(
    events: &[(EventSeq, Event)],
    pick: impl Fn(&Decision) -> Option<&TaskId>,
) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for (_, decision) in decisions(events) {
        if let Some(task) = pick(&decision) {
            *counts.entry(task.to_string()).or_default() += 1;
        }
    }
    counts
}

fn completions(events: &[(EventSeq, Event)]) -> BTreeMap<String, u32> {
    per_task(events, |d| match d {
        Decision::TaskCompleted { task, .. } => Some(task),
        _ => None,
    })
}

fn dispatches(events: &[(EventSeq, Event)]) -> BTreeMap<String, u32> {
    per_task(events, |d| match d {
        Decision::Dispatch { task, .. } => Some(task),
        _ => None,
    })
}

/// The decisions taken on the result of `task`'s attempts, in order.
fn decided_on_result<'a>(events: &'a [(EventSeq, Event)], task: &str) -> Vec<&'a Decision> {
    decided_on(
        events,
        |input| matches!(input, Input::ResultReceived { result } if result.task.as_str() == task),
    )
    .into_iter()
    .flat_map(|(_, decided)| decided)
    .collect()
}

/// The task a decision ends, readies or dispatches, with what it does to it.
fn fate(decision: &Decision) -> Option<(&'static str, &str)> {
    match decision {
        Decision::TaskReady { task, .. } => Some(("ready", task.as_str())),
        Decision::Dispatch { task, .. } => Some(("dispatch", task.as_str())),
        Decision::TaskCompleted { task, .. } => Some(("completed", task.as_str())),
        Decision::TaskSkipped { task, .. } => Some(("skipped", task.as_str())),
        Decision::TaskCanceled { task, .. } => Some(("canceled", task.as_str())),
        Decision::DeadLettered { task, .. } => Some(("dead_lettered", task.as_str())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_spawns_fifty_children_and_the_join_receives_every_output() -> anyhow::Result<()> {
    let marks = tempfile::tempdir()?;
    let lead = writes_control(&json!({ "spawn": children(50) }), r#"{"spawned": 50}"#);
    let child = in_dir(marks.path(), CHILD);
    let mut cluster = Cluster::start(&[
        WorkerSpec::new(
            "w1",
            4,
            &[("lead", &lead), ("merge", "cat"), ("child", &child)],
        ),
        WorkerSpec::new("w2", 4, &[("child", &child)]),
        WorkerSpec::new("w3", 4, &[("child", &child)]),
    ])
    .await?;
    let plan = r#"
name = "fan-out"

[[tasks]]
id = "spawner"
capability = "lead"
spawns = ["child"]

[[tasks]]
id = "join"
capability = "merge"
needs = ["spawner"]
"#;
    let run = cluster.submit(plan).await?;
    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert_eq!(
        view.status,
        RunStatus::Succeeded,
        "{view:#?}\n{}",
        cluster.logs()
    );
    assert_eq!(view.tasks.len(), 52, "the plan's 2 tasks and 50 spawned");
    let tasks = by_task(&view);
    for task in &view.tasks {
        assert_eq!(task.status, TaskStatus::Completed, "{task:#?}");
    }
    let spawned: BTreeSet<&str> = view
        .tasks
        .iter()
        .filter(|t| t.parent.as_ref().is_some_and(|p| p.as_str() == "spawner"))
        .map(|t| t.task.as_str())
        .collect();
    let expected: BTreeSet<String> = (1..=50).map(|i| format!("child-{i}")).collect();
    assert_eq!(
        spawned,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        "every child's parent is the spawner"
    );
    assert_eq!(tasks["spawner"].parent, None);
    assert_eq!(tasks["join"].parent, None);

    // The join's stdin (echoed by `cat`): the spawner's output and every child's, by id.
    let join = tasks["join"].output.clone().context("the join's output")?;
    let upstream = join["upstream"].as_object().context("upstream is a map")?;
    assert_eq!(upstream.len(), 51, "{:?}", upstream.keys());
    assert_eq!(upstream["spawner"], json!({"spawned": 50}));
    for id in &expected {
        assert_eq!(upstream[id.as_str()], json!({ "child": id }), "{id}");
        assert_eq!(tasks[id.as_str()].output, Some(json!({ "child": id })));
    }
    assert!(join.get("upstream_errors").is_none(), "{join}");

    let workers: BTreeSet<String> = cluster
        .stored_results()
        .await?
        .iter()
        .filter(|r| r.task.as_str().starts_with("child-"))
        .map(|r| r.worker.to_string())
        .collect();
    assert!(workers.len() >= 2, "the children were spread: {workers:?}");

    let events = cluster.stop_and_check().await?;
    let completed = completions(&events);
    assert_eq!(completed.len(), 52, "{completed:?}");
    assert!(completed.values().all(|n| *n == 1), "{completed:?}");
    let dispatched = dispatches(&events);
    assert!(
        dispatched.len() == 52 && dispatched.values().all(|n| *n == 1),
        "{dispatched:?}"
    );
    let ran = lines(&marks.path().join("ran"));
    assert_eq!(
        ran.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "every child ran"
    );
    assert!(
        ran.values().all(|n| *n == 1),
        "each child ran once: {ran:?}"
    );

    // Recorded with the spawner's completion, whole, once.
    let on_spawner = decided_on_result(&events, "spawner");
    let [
        Decision::TaskCompleted { task, .. },
        Decision::TasksSpawned { parent, tasks, .. },
        ..,
    ] = on_spawner.as_slice()
    else {
        panic!("the spawner completed, then spawned: {on_spawner:#?}");
    };
    assert_eq!((task.as_str(), parent.as_str()), ("spawner", "spawner"));
    let ids: Vec<String> = tasks.iter().map(|t| t.id.to_string()).collect();
    let in_order: Vec<String> = (1..=50).map(|i| format!("child-{i}")).collect();
    assert_eq!(ids, in_order);
    assert!(tasks.iter().all(|t| t.capability.as_str() == "child"));
    let spawns = decisions(&events)
        .iter()
        .filter(|(_, d)| matches!(d, Decision::TasksSpawned { .. }))
        .count();
    assert_eq!(spawns, 1);

    // The join is dispatched only after the last child completed.
    let decided = decisions(&events);
    let position = |kind: &str, task: &str| {
        decided
            .iter()
            .position(|(_, d)| fate(d) == Some((kind, task)))
    };
    let join_dispatched = position("dispatch", "join").context("the join was dispatched")?;
    for id in &expected {
        let done = position("completed", id).context("the child completed")?;
        assert!(
            done < join_dispatched,
            "{id} completed after the join started"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spawn_fails_its_spawner_once_for_good_naming_every_problem()
-> anyhow::Result<()> {
    let marks = tempfile::tempdir()?;
    let spawn = json!({ "spawn": [
        {"id": "dup", "capability": "child"},
        {"id": "dup", "capability": "child"},
        {"id": "orphan", "capability": "child", "needs": ["nowhere"]},
        {"id": "existing", "capability": "child"},
        {"id": "loop", "capability": "child", "needs": ["after"]},
        {"id": "rogue", "capability": "merge"},
    ], "branch": ["existing"]});
    let lead = in_dir(
        marks.path(),
        &format!(
            "echo \"$WORKFORCE_ATTEMPT\" >> \"$D/ran\"; {}",
            writes_control(&spawn, r#"{"spawned": 6}"#)
        ),
    );
    let mut cluster = Cluster::start(&[WorkerSpec::new(
        "w1",
        2,
        &[("lead", &lead), ("child", "echo done"), ("merge", "cat")],
    )])
    .await?;
    let plan = r#"
name = "bad-spawn"

[[tasks]]
id = "spawner"
capability = "lead"
spawns = ["child"]
retry = { max_attempts = 3, initial_backoff = "100ms" }

[[tasks]]
id = "existing"
capability = "child"

[[tasks]]
id = "after"
capability = "merge"
needs = ["spawner"]
"#;
    let run = cluster.submit(plan).await?;
    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert_eq!(view.status, RunStatus::Failed, "{view:#?}");
    assert_eq!(view.tasks.len(), 3, "nothing was added: {view:#?}");
    let tasks = by_task(&view);
    let spawner = tasks["spawner"];
    assert_eq!(spawner.status, TaskStatus::Failed);
    assert_eq!(
        (spawner.attempt, spawner.started, spawner.max_attempts),
        (1, 1, 3)
    );
    let detail = spawner.detail.clone().unwrap_or_default();
    assert!(
        detail.starts_with("the coordinator refused its spawn or branch (6 problems): "),
        "{detail}"
    );
    let named = [
        "task \"dup\": duplicate task id",
        "task \"orphan\": needs \"nowhere\", which is not a task",
        "task \"existing\": the run already has a task with this id",
        "task \"loop\": needs \"after\", which waits for what \"spawner\" spawns",
        "task \"rogue\": capability \"merge\" is not one its spawner may spawn (child)",
        "branch chooses \"existing\", which is not a task that needs \"spawner\"",
    ];
    for problem in named {
        assert!(detail.contains(problem), "{problem:?} in {detail}");
    }
    assert!(
        view.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("task spawner dead-lettered after 1 attempt(s)")),
        "{:?}",
        view.reason
    );
    assert_eq!(tasks["existing"].status, TaskStatus::Completed);
    assert_eq!(tasks["after"].status, TaskStatus::Canceled);
    assert_eq!(
        tasks["after"].detail.as_deref(),
        Some("upstream task spawner failed")
    );

    let events = cluster.stop_and_check().await?;
    assert_eq!(
        lines(&marks.path().join("ran")),
        BTreeMap::from([("1".to_owned(), 1)]),
        "the spawner ran once"
    );
    assert_eq!(dispatches(&events).get("spawner"), Some(&1));
    let on_spawner = decided_on_result(&events, "spawner");
    let [
        Decision::AttemptFailed { cause, attempt, .. },
        Decision::DeadLettered { attempts: 1, .. },
        Decision::TaskCanceled {
            task: canceled,
            reason: CancelReason::UpstreamFailed { task: root },
            ..
        },
        ..,
    ] = on_spawner.as_slice()
    else {
        panic!("refused, dead-lettered at once, its dependent canceled: {on_spawner:#?}");
    };
    assert_eq!(attempt.0, 1);
    assert_eq!((canceled.as_str(), root.as_str()), ("after", "spawner"));
    let FailureCause::ControlRefused { problems } = cause else {
        panic!("a refusal, not {cause:?}");
    };
    assert_eq!(problems.len(), named.len(), "{problems:#?}");
    for (problem, expected) in problems.iter().zip(named) {
        assert!(problem.contains(expected), "{problem:?} names {expected:?}");
    }
    assert_eq!(cause.worker().as_str(), "coordinator");
    let grew_or_retried = decisions(&events).iter().any(|(_, d)| {
        matches!(
            d,
            Decision::TasksSpawned { .. } | Decision::RetryScheduled { .. }
        )
    });
    assert!(!grew_or_retried, "no spawn applied, no retry");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_while_spawned_tasks_run_records_each_completion_once()
-> anyhow::Result<()> {
    let marks = tempfile::tempdir()?;
    let lead = writes_control(&json!({ "spawn": children(6) }), r#"{"spawned": 6}"#);
    // child-1..3 finish at once; child-4..6 hold until the test says go.
    let child = in_dir(
        marks.path(),
        r#"echo "$WORKFORCE_TASK" >> "$D/ran"; case "$WORKFORCE_TASK" in child-[123]) ;; *) while [ ! -e "$D/go" ]; do sleep 0.05; done ;; esac; echo "{\"child\": \"$WORKFORCE_TASK\"}""#,
    );
    let mut cluster = Cluster::start(&[
        WorkerSpec::new("w1", 2, &[("lead", &lead), ("merge", "cat")]),
        WorkerSpec::new("w2", 3, &[("child", &child)]),
        WorkerSpec::new("w3", 3, &[("child", &child)]),
    ])
    .await?;
    let plan = r#"
name = "spawn-then-crash"

[[tasks]]
id = "spawner"
capability = "lead"
spawns = ["child"]

[[tasks]]
id = "join"
capability = "merge"
needs = ["spawner"]
"#;
    let run = cluster.submit(plan).await?;
    let held = ["child-4", "child-5", "child-6"];
    eventually(
        "child-1..3 completed and child-4..6 running",
        RUN_WITHIN,
        || async {
            let view = cluster.api.status(&run).await?;
            let tasks = by_task(&view);
            let status = |id: &str| tasks.get(id).map(|t| t.status);
            let ready = ["child-1", "child-2", "child-3"]
                .iter()
                .all(|id| status(id) == Some(TaskStatus::Completed))
                && held
                    .iter()
                    .all(|id| status(id) == Some(TaskStatus::Running));
            Ok(ready.then_some(()))
        },
    )
    .await
    .with_context(|| cluster.logs())?;
    cluster.coordinator.kill().await?;

    // What the dead coordinator recorded: the spawn and three completions, no more.
    let before = cluster.read_log()?;
    let completed_before = completions(&before);
    assert_eq!(
        completed_before.keys().cloned().collect::<Vec<_>>(),
        ["child-1", "child-2", "child-3", "spawner"],
        "{completed_before:?}"
    );
    drop(before);

    // The held children finish while no coordinator runs: their results wait in the stream.
    std::fs::write(marks.path().join("go"), "")?;
    eventually(
        "the held children's results are stored",
        RUN_WITHIN,
        || async {
            let stored = cluster.stored_results().await?;
            let done = held
                .iter()
                .all(|id| stored.iter().any(|r| r.task.as_str() == *id));
            Ok(done.then_some(()))
        },
    )
    .await
    .with_context(|| cluster.logs())?;
    cluster.restart_coordinator().await?;

    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert_eq!(
        view.status,
        RunStatus::Succeeded,
        "{view:#?}\n{}",
        cluster.logs()
    );
    assert_eq!(view.tasks.len(), 8);
    assert!(
        view.tasks.iter().all(|t| t.status == TaskStatus::Completed),
        "{view:#?}"
    );
    let tasks = by_task(&view);
    let join = tasks["join"].output.clone().context("the join's output")?;
    let upstream = join["upstream"].as_object().context("upstream is a map")?;
    let mut expected: Vec<String> = (1..=6).map(|i| format!("child-{i}")).collect();
    expected.push("spawner".to_owned());
    assert_eq!(
        upstream.keys().cloned().collect::<Vec<_>>(),
        expected,
        "the join saw every child, those finished before the crash and after"
    );

    let events = cluster.stop_and_check().await?;
    let completed = completions(&events);
    assert_eq!(completed.len(), 8, "{completed:?}");
    assert!(
        completed.values().all(|n| *n == 1),
        "each task's completion recorded once: {completed:?}"
    );
    let spawns = decisions(&events)
        .iter()
        .filter(|(_, d)| matches!(d, Decision::TasksSpawned { .. }))
        .count();
    assert_eq!(
        spawns, 1,
        "recovery rebuilt the spawn, it did not spawn again"
    );
    // Side effects are at least once.
    let ran = lines(&marks.path().join("ran"));
    let children: Vec<&str> = expected[..6].iter().map(String::as_str).collect();
    assert_eq!(ran.keys().map(String::as_str).collect::<Vec<_>>(), children);
    // The held children's results were read by the restarted coordinator.
    let restart = events
        .iter()
        .enumerate()
        .filter(|(_, (_, e))| matches!(e.entry, Entry::Input(Input::CoordinatorStarted { .. })))
        .map(|(i, _)| i)
        .nth(1)
        .context("the log records the restart")?;
    for id in held {
        let received = events
            .iter()
            .position(|(_, e)| {
                matches!(&e.entry, Entry::Input(Input::ResultReceived { result }) if result.task.as_str() == id)
            })
            .context("the result was received")?;
        assert!(
            received > restart,
            "{id}'s result was read after the restart"
        );
    }
    Ok(())
}

fn statuses(view: &RunView) -> BTreeMap<&str, TaskStatus> {
    view.tasks
        .iter()
        .map(|t| (t.task.as_str(), t.status))
        .collect()
}

fn fates<'a>(decided: &[&'a Decision]) -> Vec<(&'static str, &'a str)> {
    decided.iter().filter_map(|d| fate(d)).collect()
}

/// The ids under `key` (`upstream`, `upstream_errors`) of the stdin a `cat` command echoed.
fn stdin_keys<'a>(output: &'a Value, key: &str) -> Vec<&'a str> {
    output[key]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// `a` fails for good and `b` completes (once the test allows it); one task of each rule
/// needs both.
const RULES: &str = r#"
name = "rules"

[defaults.retry]
max_attempts = 3
initial_backoff = "100ms"

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

/// `x` and `y` both fail for good.
const ALL_FAIL: &str = r#"
name = "all-fail"

[[tasks]]
id = "x"
capability = "c"

[[tasks]]
id = "y"
capability = "c"

[[tasks]]
id = "all_failed"
capability = "c"
needs = ["x", "y"]
trigger = "all_failed"

[[tasks]]
id = "one_success"
capability = "c"
needs = ["x", "y"]
trigger = "one_success"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trigger_rule_runs_skips_or_cancels_by_how_its_upstream_ended() -> anyhow::Result<()>
{
    let marks = tempfile::tempdir()?;
    // Exit 100: a permanent failure. Everything else echoes its stdin.
    let command = in_dir(
        marks.path(),
        r#"case "$WORKFORCE_TASK" in a|x|y) echo "$WORKFORCE_TASK breaks" >&2; exit 100 ;; b) while [ ! -e "$D/b-may-finish" ]; do sleep 0.05; done ;; esac; cat"#,
    );
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 4, &[("c", &command)])]).await?;
    let run = cluster.submit(RULES).await?;

    // Decided as soon as `a` failed, while `b` still runs.
    let early = eventually("a is dead-lettered", RUN_WITHIN, || async {
        let view = cluster.api.status(&run).await?;
        let failed = statuses(&view).get("a") == Some(&TaskStatus::Failed);
        Ok(failed.then_some(view))
    })
    .await
    .with_context(|| cluster.logs())?;
    let status = statuses(&early);
    assert_eq!(status["b"], TaskStatus::Running, "{early:#?}");
    assert_eq!(status["all_success"], TaskStatus::Canceled);
    assert_eq!(status["none_failed"], TaskStatus::Canceled);
    for waiting in ["all_done", "one_success", "all_failed"] {
        assert_eq!(
            status[waiting],
            TaskStatus::Blocked,
            "{waiting}: {early:#?}"
        );
    }
    assert_ne!(status["one_failed"], TaskStatus::Blocked, "{early:#?}");
    std::fs::write(marks.path().join("b-may-finish"), "")?;

    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert_eq!(
        statuses(&view),
        BTreeMap::from([
            ("a", TaskStatus::Failed),
            ("b", TaskStatus::Completed),
            ("all_success", TaskStatus::Canceled),
            ("all_done", TaskStatus::Completed),
            ("one_success", TaskStatus::Completed),
            ("one_failed", TaskStatus::Completed),
            ("all_failed", TaskStatus::Skipped),
            ("none_failed", TaskStatus::Canceled),
        ]),
        "{view:#?}\n{}",
        cluster.logs()
    );
    // Leaves canceled by a's failure: the run failed, naming a.
    assert_eq!(view.status, RunStatus::Failed);
    let reason = view.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("task a dead-lettered after 1 attempt(s)"),
        "{reason}"
    );
    let tasks = by_task(&view);
    for canceled in ["all_success", "none_failed"] {
        assert_eq!(
            tasks[canceled].detail.as_deref(),
            Some("upstream task a failed"),
            "{canceled}"
        );
    }
    let skipped = tasks["all_failed"].detail.clone().unwrap_or_default();
    assert!(
        skipped.contains("all_failed can no longer be met"),
        "{skipped}"
    );
    // Those that ran past a were told why: stdin's upstream_errors.
    let all_done = tasks["all_done"]
        .output
        .clone()
        .context("all_done output")?;
    assert_eq!(stdin_keys(&all_done, "upstream"), ["b"]);
    assert_eq!(stdin_keys(&all_done, "upstream_errors"), ["a"]);
    assert_eq!(all_done["upstream_errors"]["a"]["status"], json!("failed"));
    let error = all_done["upstream_errors"]["a"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("a breaks"), "{error}");
    // one_failed ran before b ended.
    let one_failed = tasks["one_failed"]
        .output
        .clone()
        .context("one_failed output")?;
    assert_eq!(stdin_keys(&one_failed, "upstream"), Vec::<&str>::new());
    assert_eq!(stdin_keys(&one_failed, "upstream_errors"), ["a"]);

    // Every upstream fails: all_failed runs, one_success is skipped, and the run succeeds
    // (its leaves completed or were skipped).
    let second = cluster.submit(ALL_FAIL).await?;
    let view2 = cluster.finish(&second, RUN_WITHIN).await?;
    assert_eq!(
        statuses(&view2),
        BTreeMap::from([
            ("x", TaskStatus::Failed),
            ("y", TaskStatus::Failed),
            ("all_failed", TaskStatus::Completed),
            ("one_success", TaskStatus::Skipped),
        ]),
        "{view2:#?}"
    );
    assert_eq!(view2.status, RunStatus::Succeeded, "{view2:#?}");
    let tasks2 = by_task(&view2);
    let all_failed = tasks2["all_failed"]
        .output
        .clone()
        .context("all_failed output")?;
    assert_eq!(stdin_keys(&all_failed, "upstream"), Vec::<&str>::new());
    assert_eq!(stdin_keys(&all_failed, "upstream_errors"), ["x", "y"]);
    for id in ["x", "y"] {
        assert_eq!(all_failed["upstream_errors"][id]["status"], json!("failed"));
    }

    let events = cluster.stop_and_check().await?;
    let failed_upstream = CancelReason::UpstreamFailed { task: "a".parse()? };
    let on_a = decided_on_result(&events, "a");
    assert_eq!(
        fates(&on_a),
        [
            ("dead_lettered", "a"),
            ("canceled", "all_success"),
            ("ready", "one_failed"),
            ("canceled", "none_failed"),
            ("dispatch", "one_failed"),
        ],
        "{on_a:#?}"
    );
    assert!(
        on_a.iter()
            .filter(|d| matches!(d, Decision::TaskCanceled { .. }))
            .all(
                |d| matches!(d, Decision::TaskCanceled { reason, .. } if *reason == failed_upstream)
            ),
        "{on_a:#?}"
    );
    let on_b = decided_on_result(&events, "b");
    assert_eq!(
        fates(&on_b),
        [
            ("completed", "b"),
            ("ready", "all_done"),
            ("ready", "one_success"),
            ("skipped", "all_failed"),
            ("dispatch", "all_done"),
            ("dispatch", "one_success"),
        ],
        "{on_b:#?}"
    );
    assert!(
        on_b.iter().any(|d| matches!(
            d,
            Decision::TaskSkipped {
                reason: SkipReason::TriggerUnmet {
                    trigger: Trigger::AllFailed
                },
                ..
            }
        )),
        "{on_b:#?}"
    );
    // The second run: decided on the later of the two failures.
    let ended: Vec<Vec<(&str, &str)>> = decided_on(
        &events,
        |input| matches!(input, Input::ResultReceived { result } if result.run == second),
    )
    .iter()
    .map(|(_, decided)| fates(decided))
    .take(2)
    .collect();
    let last = ended.last().context("two results")?;
    assert!(
        ended[0]
            .iter()
            .all(|(_, task)| *task == "x" || *task == "y"),
        "{ended:?}"
    );
    assert!(last.contains(&("ready", "all_failed")), "{ended:?}");
    assert!(last.contains(&("skipped", "one_success")), "{ended:?}");
    let one_success_skipped = decisions(&events).iter().any(|(_, d)| {
        matches!(d, Decision::TaskSkipped { run, task, reason: SkipReason::TriggerUnmet { trigger: Trigger::OneSuccess } }
            if *run == second && task.as_str() == "one_success")
    });
    assert!(one_success_skipped);
    // A permanent failure is not retried, whatever the policy allows.
    assert!(
        !decisions(&events)
            .iter()
            .any(|(_, d)| matches!(d, Decision::RetryScheduled { .. }))
    );
    Ok(())
}

/// `route` chooses `fast` over `slow`; `after_slow` follows `slow`; `merge` joins past skips;
/// `strict` joins and needs both to succeed.
const BRANCHES: &str = r#"
name = "branches"

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_skips_what_it_leaves_out_and_the_skips_propagate_by_rule() -> anyhow::Result<()> {
    let command = r#"case "$WORKFORCE_TASK" in route) echo '{"branch": ["fast"]}' > "$WORKFORCE_CONTROL" ;; esac; cat"#;
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 2, &[("c", command)])]).await?;
    let run = cluster.submit(BRANCHES).await?;
    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert_eq!(
        statuses(&view),
        BTreeMap::from([
            ("route", TaskStatus::Completed),
            ("fast", TaskStatus::Completed),
            ("slow", TaskStatus::Skipped),
            ("after_slow", TaskStatus::Skipped),
            ("merge", TaskStatus::Completed),
            ("strict", TaskStatus::Skipped),
        ]),
        "{view:#?}\n{}",
        cluster.logs()
    );
    assert_eq!(
        view.status,
        RunStatus::Succeeded,
        "leaves completed or skipped"
    );
    let tasks = by_task(&view);
    assert_eq!(
        tasks["slow"].detail.as_deref(),
        Some("not chosen by the branch of task route")
    );
    for skipped in ["after_slow", "strict"] {
        let detail = tasks[skipped].detail.clone().unwrap_or_default();
        assert!(
            detail.contains("all_success can no longer be met"),
            "{skipped}: {detail}"
        );
    }
    let merge = tasks["merge"].output.clone().context("merge output")?;
    assert_eq!(stdin_keys(&merge, "upstream"), ["fast"]);
    assert_eq!(stdin_keys(&merge, "upstream_errors"), ["after_slow"]);
    assert_eq!(
        merge["upstream_errors"]["after_slow"]["status"],
        json!("skipped")
    );
    assert_eq!(
        merge["upstream_errors"]["after_slow"]["error"].as_str(),
        tasks["after_slow"].detail.as_deref(),
        "the reason it was skipped"
    );

    let events = cluster.stop_and_check().await?;
    assert_eq!(
        dispatches(&events).into_keys().collect::<Vec<_>>(),
        ["fast", "merge", "route"],
        "what was skipped never ran"
    );
    let on_route = decided_on_result(&events, "route");
    assert_eq!(
        fates(&on_route),
        [
            ("completed", "route"),
            ("ready", "fast"),
            ("skipped", "slow"),
            ("skipped", "after_slow"),
            ("dispatch", "fast"),
        ],
        "{on_route:#?}"
    );
    let not_chosen = on_route.iter().any(|d| {
        matches!(d, Decision::TaskSkipped { task, reason: SkipReason::NotChosen { by }, .. }
            if task.as_str() == "slow" && by.as_str() == "route")
    });
    assert!(not_chosen, "{on_route:#?}");
    let on_fast = decided_on_result(&events, "fast");
    assert_eq!(
        fates(&on_fast),
        [
            ("completed", "fast"),
            ("ready", "merge"),
            ("skipped", "strict"),
            ("dispatch", "merge"),
        ],
        "{on_fast:#?}"
    );
    Ok(())
}
