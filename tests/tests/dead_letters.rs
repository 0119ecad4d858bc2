//! Dead letters on real NATS and real processes: `workforce dlq list`, `show` and `redrive`. A
//! redriven task runs again as its next attempt (with an edited input if given), what its
//! failure canceled waits again, and its finished run reopens and finishes anew; the redrive
//! limit holds unless forced; a redrive of what was not dead-lettered is refused. Claims are
//! proved by the recorded decisions and by the dead letters the broker stored. Each test ends
//! with `stop_and_check`: the log keeps every invariant and replays with no divergence.

use std::process::Output;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use workforce_coordinator::log::Event;
use workforce_coordinator::scheduler::{
    CancelReason, Decision, Input, REDRIVE_LIMIT, RedriveRefusal, Rejection, RunOutcome, RunStatus,
    RunView, StopReason, TaskStatus,
};
use workforce_shared::{Attempt, DeadLetter, EventSeq, RunId, TaskId, decode};
use workforce_tests::harness::{Cluster, WorkerSpec, decided_on, decisions, eventually};

const RUN_WITHIN: Duration = Duration::from_secs(30);

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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

/// Runs the `workforce` CLI against the cluster and requires it to fail; returns its output.
async fn cli_refused(cluster: &Cluster, args: &[&str]) -> anyhow::Result<(Option<i32>, String)> {
    let out = cluster.cli(args).output().await?;
    ensure!(
        !out.status.success(),
        "workforce {args:?} was to be refused: {}",
        text(&out)
    );
    Ok((out.status.code(), text(&out)))
}

/// `workforce dlq list --run RUN --json`.
async fn dlq_list(cluster: &Cluster, run: &RunId) -> anyhow::Result<Vec<Value>> {
    let out = cli(cluster, &["dlq", "list", "--run", run.as_str(), "--json"]).await?;
    serde_json::from_str(&out).with_context(|| format!("dlq list --json printed {out:?}"))
}

/// Waits until the run has ended with `status` (a reopened run runs again before it does).
async fn ended(cluster: &Cluster, run: &RunId, status: RunStatus) -> anyhow::Result<RunView> {
    eventually(
        &format!("run {run} ends {status:?}"),
        RUN_WITHIN,
        || async {
            let view = cluster.api.status(run).await?;
            Ok((view.status == status).then_some(view))
        },
    )
    .await
    .with_context(|| cluster.logs())
}

/// Waits until `task` is dead-lettered with `redrives` redrives behind it, and returns its
/// entry in `dlq list --json`.
async fn dead_lettered(
    cluster: &Cluster,
    run: &RunId,
    task: &str,
    redrives: u64,
) -> anyhow::Result<Value> {
    eventually(
        &format!("{task} is dead-lettered after {redrives} redrive(s)"),
        RUN_WITHIN,
        || async {
            let letters = dlq_list(cluster, run).await?;
            Ok(letters
                .into_iter()
                .find(|l| l["task"] == task && l["redrives"] == redrives))
        },
    )
    .await
    .with_context(|| cluster.logs())
}

/// The dead letters of `task` the broker stored, in stream order, with their message ids;
/// waits until there are at least `at_least`.
async fn stored_dead_letters(
    cluster: &Cluster,
    run: &RunId,
    task: &str,
    at_least: usize,
) -> anyhow::Result<Vec<(String, DeadLetter)>> {
    let js = async_nats::jetstream::new(cluster.client.clone());
    let name = cluster.subjects.dead_letter_stream();
    let subject = cluster.subjects.dead_letter(run, &task.parse()?);
    eventually(
        &format!("{at_least} dead letter(s) of {task} are stored"),
        Duration::from_secs(10),
        || {
            let (js, name, subject) = (js.clone(), name.clone(), subject.clone());
            async move {
                let mut stream = js.get_stream(&name).await?;
                let last = stream.info().await?.state.last_sequence;
                let mut letters = Vec::new();
                for seq in 1..=last {
                    let message = stream.get_raw_message(seq).await?;
                    if message.subject.as_str() != subject {
                        continue;
                    }
                    let id = message
                        .headers
                        .get("Nats-Msg-Id")
                        .map(|v| v.as_str().to_owned())
                        .with_context(|| format!("dead letter {seq} has no message id"))?;
                    letters.push((id, decode::<DeadLetter>(&message.payload, 1 << 20)?));
                }
                Ok((letters.len() >= at_least).then_some(letters))
            }
        },
    )
    .await
}

/// The operator's redrives of `run` as recorded, each with the decisions it led to.
fn decided_on_redrives<'a>(
    events: &'a [(EventSeq, Event)],
    run: &RunId,
) -> Vec<(&'a Input, Vec<&'a Decision>)> {
    decided_on(
        events,
        |input| matches!(input, Input::RedriveRequested { run: r, .. } if r == run),
    )
}

fn redrive_request(run: &RunId, task: Option<&str>, with_input: Option<Value>) -> Input {
    Input::RedriveRequested {
        run: run.clone(),
        task: task.map(|t| t.parse().expect("a task id")),
        with_input,
        force: false,
    }
}

fn redriven(run: &RunId, task: &str, attempt: u32, redrives: u32) -> Decision {
    Decision::TaskRedriven {
        run: run.clone(),
        task: task.parse().expect("a task id"),
        attempt: Attempt(attempt),
        redrives,
    }
}

fn refused(run: &RunId, task: Option<&str>, why: RedriveRefusal) -> Decision {
    Decision::InputRejected {
        rejection: Rejection::NotRedriven {
            run: run.clone(),
            task: task.map(|t| t.parse().expect("a task id")),
            why,
        },
    }
}

/// The attempts of `task` dispatched, in order.
fn dispatched(decided: &[(u64, Decision)], run: &RunId, task: &str) -> Vec<u32> {
    decided
        .iter()
        .filter_map(|(_, d)| match d {
            Decision::Dispatch {
                run: r,
                task: t,
                attempt,
                ..
            } if r == run && t.as_str() == task => Some(attempt.0),
            _ => None,
        })
        .collect()
}

/// How the run finished, each time it did.
fn finishes(decided: &[(u64, Decision)], run: &RunId) -> Vec<RunOutcome> {
    decided
        .iter()
        .filter_map(|(_, d)| match d {
            Decision::RunFinished { run: r, outcome } if r == run => Some(outcome.clone()),
            _ => None,
        })
        .collect()
}

fn position(decided: &[(u64, Decision)], pick: impl Fn(&Decision) -> bool) -> usize {
    decided
        .iter()
        .position(|(_, d)| pick(d))
        .unwrap_or(usize::MAX)
}

fn failed_by(task: &str) -> RunOutcome {
    RunOutcome::Failed {
        task: task.parse().expect("a task id"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_redriven_with_an_edited_input_runs_again_and_its_run_succeeds() -> anyhow::Result<()>
{
    // `work` fails permanently unless its input says it is fixed; it prints what it was given.
    let command = r#"case "$WORKFORCE_TASK" in
work)
    task=$(cat)
    if printf '%s' "$task" | grep -q '"fixed":true'; then printf '%s' "$task"; exit 0; fi
    echo "input not fixed, giving up" >&2
    exit 100;;
*) echo '{"after": "ran"}';;
esac"#;
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 2, &[("c", command)])]).await?;
    let plan = r#"
name = "fixable"

[[tasks]]
id = "work"
capability = "c"
input = { fixed = false }
retry = { max_attempts = 2, initial_backoff = "100ms" }

[[tasks]]
id = "after"
capability = "c"
needs = ["work"]
"#;
    let run = cluster.submit(plan).await?;
    let view = ended(&cluster, &run, RunStatus::Failed).await?;
    let tasks: Vec<(&str, TaskStatus, u32)> = view
        .tasks
        .iter()
        .map(|t| (t.task.as_str(), t.status, t.started))
        .collect();
    assert_eq!(
        tasks,
        [
            ("work", TaskStatus::Failed, 1),
            ("after", TaskStatus::Canceled, 0)
        ],
        "exit 100 is permanent: one attempt, then what needs it is canceled: {view:#?}"
    );

    let letters = dlq_list(&cluster, &run).await?;
    let [letter] = letters.as_slice() else {
        panic!("one dead letter: {letters:#?}");
    };
    assert_eq!(
        (
            &letter["run"],
            &letter["task"],
            &letter["capability"],
            &letter["input"],
            &letter["redrives"]
        ),
        (
            &json!(run),
            &json!("work"),
            &json!("c"),
            &json!({"fixed": false}),
            &json!(0)
        ),
        "{letter:#}"
    );
    let attempts = letter["attempts"].as_array().context("attempts")?;
    let [attempt] = attempts.as_slice() else {
        panic!("one failed attempt: {letter:#}");
    };
    assert_eq!(
        (&attempt["attempt"], &attempt["worker"]),
        (&json!(1), &json!("w1"))
    );
    let error = attempt["error"].as_str().context("error")?;
    assert!(
        error.starts_with("permanent failure: ") && error.contains("input not fixed, giving up"),
        "the error ends with the command's stderr: {error}"
    );
    assert!(attempt["duration_ms"].is_u64(), "{attempt:#}");

    let listed = cli(&cluster, &["dlq", "list"]).await?;
    assert!(
        listed.contains(run.as_str()) && listed.contains("work"),
        "{listed}"
    );
    let shown = cli(&cluster, &["dlq", "show", run.as_str(), "work"]).await?;
    assert!(
        shown.contains(&format!("task work of run {run}"))
            && shown.contains(r#""fixed":false"#)
            && shown.contains("w1")
            && shown.contains("input not fixed, giving up"),
        "dlq show names the input, the worker and the error: {shown}"
    );

    let inputs = tempfile::tempdir()?;
    let fixed = inputs.path().join("fixed.json");
    std::fs::write(&fixed, r#"{"fixed": true}"#)?;
    let said = cli(
        &cluster,
        &[
            "dlq",
            "redrive",
            run.as_str(),
            "work",
            "--input",
            &fixed.display().to_string(),
        ],
    )
    .await?;
    assert!(said.contains("redriven"), "{said}");

    let view = ended(&cluster, &run, RunStatus::Succeeded).await?;
    let work = view.tasks.iter().find(|t| t.task.as_str() == "work");
    let work = work.context("work")?;
    assert_eq!(
        (work.status, work.attempt, work.redrives),
        (TaskStatus::Completed, 2, 1),
        "{view:#?}"
    );
    let output = work.output.clone().context("work's output")?;
    assert_eq!(
        (&output["attempt"], &output["input"]),
        (&json!(2), &json!({"fixed": true})),
        "attempt 2 ran with the new input: {output:#}"
    );
    let after = view.tasks.iter().find(|t| t.task.as_str() == "after");
    assert_eq!(after.map(|t| t.status), Some(TaskStatus::Completed));
    assert_eq!(dlq_list(&cluster, &run).await?, Vec::<Value>::new());

    let stored = stored_dead_letters(&cluster, &run, "work", 1).await?;
    let ids: Vec<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [format!("{run}.work.1.dlq")], "one dead letter");
    let (_, letter) = &stored[0];
    assert_eq!(letter.last_assignment.attempt, Attempt(1));
    assert_eq!(letter.last_assignment.input, json!({"fixed": false}));

    let events = cluster.stop_and_check().await?;
    let redrives = decided_on_redrives(&events, &run);
    let [(request, on_redrive)] = redrives.as_slice() else {
        panic!("one redrive was recorded: {redrives:#?}");
    };
    assert_eq!(
        *request,
        &redrive_request(&run, Some("work"), Some(json!({"fixed": true})))
    );
    let after_id: TaskId = "after".parse()?;
    assert_eq!(
        on_redrive[..3],
        [
            &Decision::RunReopened { run: run.clone() },
            &redriven(&run, "work", 2, 1),
            &Decision::TaskRestored {
                run: run.clone(),
                task: after_id.clone(),
            },
        ],
        "{on_redrive:#?}"
    );
    assert!(
        on_redrive.iter().any(|d| matches!(d, Decision::Dispatch { task, attempt: Attempt(2), .. } if task.as_str() == "work")),
        "work is dispatched as attempt 2 on the redrive: {on_redrive:#?}"
    );

    let decided = decisions(&events);
    assert_eq!(dispatched(&decided, &run, "work"), [1, 2]);
    assert_eq!(dispatched(&decided, &run, "after"), [1]);
    assert_eq!(
        finishes(&decided, &run),
        [failed_by("work"), RunOutcome::Succeeded]
    );
    let canceled = position(&decided, |d| {
        matches!(d, Decision::TaskCanceled { task, reason: CancelReason::UpstreamFailed { task: up }, .. }
            if *task == after_id && up.as_str() == "work")
    });
    let failed = position(
        &decided,
        |d| matches!(d, Decision::RunFinished { outcome, .. } if *outcome == failed_by("work")),
    );
    let reopened = position(&decided, |d| matches!(d, Decision::RunReopened { .. }));
    let after_ran = position(
        &decided,
        |d| matches!(d, Decision::TaskCompleted { task, .. } if *task == after_id),
    );
    let succeeded = position(&decided, |d| {
        matches!(
            d,
            Decision::RunFinished {
                outcome: RunOutcome::Succeeded,
                ..
            }
        )
    });
    assert!(
        canceled < failed && failed < reopened && reopened < after_ran && after_ran < succeeded,
        "after is canceled, the run fails, reopens, after runs, the run succeeds: {decided:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_redriven_three_times_then_only_when_forced() -> anyhow::Result<()> {
    let command = r#"echo "hopeless attempt $WORKFORCE_ATTEMPT" >&2; exit 100"#;
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 2, &[("c", command)])]).await?;
    let plan = r#"
name = "hopeless"

[[tasks]]
id = "doomed"
capability = "c"
"#;
    let run = cluster.submit(plan).await?;
    ended(&cluster, &run, RunStatus::Failed).await?;
    dead_lettered(&cluster, &run, "doomed", 0).await?;
    for redrives in 1..=u64::from(REDRIVE_LIMIT) {
        cli(&cluster, &["dlq", "redrive", run.as_str(), "doomed"]).await?;
        dead_lettered(&cluster, &run, "doomed", redrives).await?;
        ended(&cluster, &run, RunStatus::Failed).await?;
    }

    let (code, said) = cli_refused(&cluster, &["dlq", "redrive", run.as_str(), "doomed"]).await?;
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("redriven 3 times already (the limit); pass --force to go on"),
        "{said}"
    );
    let still = dead_lettered(&cluster, &run, "doomed", 3).await?;
    assert_eq!(
        still["attempts"].as_array().map(Vec::len),
        Some(4),
        "{still:#}"
    );

    cli(
        &cluster,
        &["dlq", "redrive", run.as_str(), "doomed", "--force"],
    )
    .await?;
    let letter = dead_lettered(&cluster, &run, "doomed", 4).await?;
    ended(&cluster, &run, RunStatus::Failed).await?;
    let attempts: Vec<(u64, &str)> = letter["attempts"]
        .as_array()
        .context("attempts")?
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap_or_default(),
                a["error"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        attempts.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5],
        "every failed attempt, numbered on across redrives: {letter:#}"
    );
    for (n, error) in &attempts {
        assert!(
            error.contains(&format!("hopeless attempt {n}")),
            "attempt {n}: {error}"
        );
    }

    // Each dead letter is its own message: the broker deduplicated none of them.
    let stored = stored_dead_letters(&cluster, &run, "doomed", 5).await?;
    let ids: Vec<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    let expected_ids: Vec<String> = (1..=5).map(|n| format!("{run}.doomed.{n}.dlq")).collect();
    assert_eq!(ids, expected_ids);
    for (n, (_, letter)) in (1..).zip(&stored) {
        assert_eq!(letter.last_assignment.attempt, Attempt(n));
        assert_eq!(letter.errors.len(), n as usize, "{letter:?}");
    }

    let events = cluster.stop_and_check().await?;
    let redrives = decided_on_redrives(&events, &run);
    let got: Vec<(bool, Vec<&Decision>)> = redrives
        .iter()
        .map(|(input, decided)| {
            let forced = matches!(input, Input::RedriveRequested { force: true, .. });
            let kept: Vec<&Decision> = decided
                .iter()
                .copied()
                .filter(|d| {
                    matches!(
                        d,
                        Decision::TaskRedriven { .. }
                            | Decision::InputRejected { .. }
                            | Decision::RunReopened { .. }
                    )
                })
                .collect();
            (forced, kept)
        })
        .collect();
    let reopened = Decision::RunReopened { run: run.clone() };
    let (r1, r2, r3, r5) = (
        redriven(&run, "doomed", 2, 1),
        redriven(&run, "doomed", 3, 2),
        redriven(&run, "doomed", 4, 3),
        redriven(&run, "doomed", 5, 4),
    );
    let over = refused(
        &run,
        Some("doomed"),
        RedriveRefusal::LimitReached {
            limit: REDRIVE_LIMIT,
        },
    );
    assert_eq!(
        got,
        [
            (false, vec![&reopened, &r1]),
            (false, vec![&reopened, &r2]),
            (false, vec![&reopened, &r3]),
            (false, vec![&over]),
            (true, vec![&reopened, &r5]),
        ]
    );
    let decided = decisions(&events);
    assert_eq!(dispatched(&decided, &run, "doomed"), [1, 2, 3, 4, 5]);
    let dead: Vec<u32> = decided
        .iter()
        .filter_map(|(_, d)| match d {
            Decision::DeadLettered { task, attempts, .. } if task.as_str() == "doomed" => {
                Some(*attempts)
            }
            _ => None,
        })
        .collect();
    assert_eq!(dead, [1, 2, 3, 4, 5]);
    assert_eq!(finishes(&decided, &run), vec![failed_by("doomed"); 5]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_of_what_was_not_dead_lettered_is_refused_and_a_run_redrives_all_its_letters()
-> anyhow::Result<()> {
    // `left` and `right` fail permanently at their first attempt only.
    let command = r#"case "$WORKFORCE_TASK.$WORKFORCE_ATTEMPT" in
left.1|right.1) echo "$WORKFORCE_TASK broke" >&2; exit 100;;
*) echo "{\"task\": \"$WORKFORCE_TASK\"}";;
esac"#;
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 2, &[("c", command)])]).await?;
    let plan = r#"
name = "two-broken"

[[tasks]]
id = "left"
capability = "c"

[[tasks]]
id = "right"
capability = "c"

[[tasks]]
id = "fine"
capability = "c"
"#;
    let run = cluster.submit(plan).await?;
    ended(&cluster, &run, RunStatus::Failed).await?;
    let letters = dlq_list(&cluster, &run).await?;
    let listed: Vec<&Value> = letters.iter().map(|l| &l["task"]).collect();
    assert_eq!(listed, [&json!("left"), &json!("right")], "{letters:#?}");

    let (code, said) = cli_refused(&cluster, &["dlq", "redrive", run.as_str(), "fine"]).await?;
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("it was not dead-lettered"), "{said}");

    let said = cli(&cluster, &["dlq", "redrive", "--run", run.as_str()]).await?;
    assert!(said.contains("redriven"), "{said}");
    let view = ended(&cluster, &run, RunStatus::Succeeded).await?;
    for task in &view.tasks {
        assert_eq!(task.status, TaskStatus::Completed, "{view:#?}");
    }
    assert_eq!(dlq_list(&cluster, &run).await?, Vec::<Value>::new());
    let (_, said) = cli_refused(&cluster, &["dlq", "redrive", "--run", run.as_str()]).await?;
    assert!(said.contains("no task of it was dead-lettered"), "{said}");

    let events = cluster.stop_and_check().await?;
    let redrives = decided_on_redrives(&events, &run);
    let [
        (not_dead, on_not_dead),
        (all, on_all),
        (none_left, on_none_left),
    ] = redrives.as_slice()
    else {
        panic!("three redrives were recorded: {redrives:#?}");
    };
    assert_eq!(*not_dead, &redrive_request(&run, Some("fine"), None));
    assert_eq!(
        on_not_dead.as_slice(),
        [&refused(
            &run,
            Some("fine"),
            RedriveRefusal::NotDeadLettered
        )]
    );
    assert_eq!(*all, &redrive_request(&run, None, None));
    assert_eq!(
        on_all[..3],
        [
            &Decision::RunReopened { run: run.clone() },
            &redriven(&run, "left", 2, 1),
            &redriven(&run, "right", 2, 1),
        ],
        "{on_all:#?}"
    );
    assert_eq!(*none_left, &redrive_request(&run, None, None));
    assert_eq!(
        on_none_left.as_slice(),
        [&refused(&run, None, RedriveRefusal::NothingToRedrive)]
    );
    let decided = decisions(&events);
    assert_eq!(dispatched(&decided, &run, "left"), [1, 2]);
    assert_eq!(dispatched(&decided, &run, "right"), [1, 2]);
    assert_eq!(dispatched(&decided, &run, "fine"), [1]);
    let outcomes = finishes(&decided, &run);
    assert!(
        matches!(
            outcomes.as_slice(),
            [RunOutcome::Failed { .. }, RunOutcome::Succeeded]
        ),
        "the run failed by left or right, then succeeded: {outcomes:?}"
    );
    Ok(())
}

/// The run's `[limits] deadline` in this test: long enough for the run to fail, the coordinator
/// to restart and the redrive to land before it.
const DEADLINE_MS: u64 = 8_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_run_is_stopped_at_its_deadline() -> anyhow::Result<()> {
    reopened_run_is_stopped_at_its_deadline(false).await
}

/// Fails: recovery re-arms the deadline timers of unfinished runs only, and a redrive arms none,
/// so a run that was finished when the coordinator started and is then reopened runs on past
/// its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reopened_after_a_coordinator_restart_is_still_stopped_at_its_deadline()
-> anyhow::Result<()> {
    reopened_run_is_stopped_at_its_deadline(true).await
}

/// A run fails before its deadline, the coordinator restarts (if `restart`), the failed task is
/// redriven before the deadline and runs far past it: the reopened run is stopped at it.
async fn reopened_run_is_stopped_at_its_deadline(restart: bool) -> anyhow::Result<()> {
    // Attempt 1 fails permanently; the redriven attempt runs far past the deadline (and not
    // much longer, should the stop never come).
    let command = r#"if [ "$WORKFORCE_ATTEMPT" = 1 ]; then echo broke >&2; exit 100; fi
exec sleep 60"#;
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 2, &[("c", command)])]).await?;
    let plan = format!(
        "name = \"late\"\n\n[limits]\ndeadline = \"{DEADLINE_MS}ms\"\n\n[[tasks]]\nid = \"slow\"\ncapability = \"c\"\n"
    );
    let submitted = std::time::Instant::now();
    let run = cluster.submit(&plan).await?;
    ended(&cluster, &run, RunStatus::Failed).await?;
    if restart {
        // The deadline timer was armed at acceptance; a restart re-arms it from then.
        cluster.coordinator.kill().await?;
        cluster.restart_coordinator().await?;
    }
    cli(&cluster, &["dlq", "redrive", run.as_str(), "slow"]).await?;
    ensure!(
        submitted.elapsed() < Duration::from_millis(DEADLINE_MS),
        "the redrive landed before the deadline"
    );

    let view = eventually(
        "the reopened run is stopped at its deadline",
        Duration::from_millis(DEADLINE_MS + 10_000),
        || async {
            let view = cluster.api.status(&run).await?;
            Ok((view.status != RunStatus::Running).then_some(view))
        },
    )
    .await
    .with_context(|| cluster.logs())?;
    assert_eq!(view.status, RunStatus::Stopped, "{view:#?}");

    let events = cluster.stop_and_check().await?;
    let decided = decisions(&events);
    let stopped = RunOutcome::Stopped {
        reason: StopReason::DeadlineExceeded {
            deadline_ms: DEADLINE_MS,
        },
    };
    assert_eq!(finishes(&decided, &run), [failed_by("slow"), stopped]);
    Ok(())
}
