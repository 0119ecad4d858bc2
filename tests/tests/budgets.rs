//! Limits on real NATS and real processes: a token budget that stops a run within the
//! documented overshoot, an estimate that holds a task back until a charge frees room, a
//! deadline that stops a run and its command, a task that keeps spawning itself stopped by
//! `[limits] depth` and `tasks`, and a usage report that cannot be read. Claims are proved by
//! the recorded decisions, not by the clock. Each test ends with `stop_and_check`: the log
//! keeps every invariant (budgets hold at dispatch among them) and replays with no divergence.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use workforce_coordinator::log::{Entry, Event};
use workforce_coordinator::scheduler::{
    CancelReason, Decision, FailureCause, Input, RunOutcome, RunStatus, RunView, StopReason,
    TaskStatus, TaskView,
};
use workforce_shared::{Attempt, EventSeq, RunId, Usage};
use workforce_tests::harness::{
    Cluster, WorkerSpec, decided_on, decisions, eventually, gone, pid_in,
};

const RUN_WITHIN: Duration = Duration::from_secs(60);

/// `body` as a command with `$D` set to `dir`, where commands leave pid files and flags.
fn in_dir(dir: &Path, body: &str) -> String {
    format!("D='{}'; {body}", dir.display())
}

/// Shell that writes `control` to the attempt's control file.
fn write_control(control: &Value) -> String {
    let control = control.to_string();
    assert!(!control.contains('\''), "single-quoted in sh");
    format!("printf '%s' '{control}' > \"$WORKFORCE_CONTROL\"")
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
    let out = cluster
        .cli(&["status", run.as_str(), "--json"])
        .output()
        .await?;
    ensure!(out.status.success(), "workforce status: {}", text(&out));
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn by_task(view: &RunView) -> BTreeMap<&str, &TaskView> {
    view.tasks.iter().map(|t| (t.task.as_str(), t)).collect()
}

/// The decisions taken on the results of `task`'s attempts, in order.
fn decided_on_result<'a>(events: &'a [(EventSeq, Event)], task: &str) -> Vec<&'a Decision> {
    decided_on(
        events,
        |input| matches!(input, Input::ResultReceived { result } if result.task.as_str() == task),
    )
    .into_iter()
    .flat_map(|(_, decided)| decided)
    .collect()
}

fn position(decided: &[(u64, Decision)], pick: impl Fn(&Decision) -> bool) -> Option<usize> {
    decided.iter().position(|(_, d)| pick(d))
}

fn count(decided: &[(u64, Decision)], pick: impl Fn(&Decision) -> bool) -> usize {
    decided.iter().filter(|(_, d)| pick(d)).count()
}

/// A run's tokens as its log reserves and charges them.
#[derive(Debug, Default)]
struct Ledger {
    /// Charged so far.
    used: u64,
    /// Estimates of the attempts in flight.
    reserved: u64,
    /// Attempts dispatched and not yet charged, with their estimates.
    in_flight: BTreeMap<(String, Attempt), u64>,
    /// What each attempt was charged.
    charged: BTreeMap<(String, Attempt), u64>,
    /// The attempts in flight just after the last dispatch.
    after_last_dispatch: Vec<(String, Attempt)>,
    /// The attempts in flight when usage first reached the limit (the one charged then left
    /// out).
    in_flight_at_trip: Option<Vec<(String, Attempt)>>,
}

/// Walks the run's decisions, reserving `estimate` at each dispatch and settling it at each
/// charge, and checks every dispatch fitted the budget: `used + reserved + estimate <= limit`.
fn tokens_ledger(
    decided: &[(u64, Decision)],
    run: &RunId,
    estimate: u64,
    limit: u64,
) -> anyhow::Result<Ledger> {
    let mut ledger = Ledger::default();
    for (_, decision) in decided {
        match decision {
            Decision::Dispatch {
                run: r,
                task,
                attempt,
                ..
            } if r == run => {
                ensure!(
                    ledger.used + ledger.reserved + estimate <= limit,
                    "{task} attempt {attempt} was dispatched with {} tokens used and {} reserved of {limit}",
                    ledger.used,
                    ledger.reserved
                );
                ledger.reserved += estimate;
                ledger
                    .in_flight
                    .insert((task.to_string(), *attempt), estimate);
                ledger.after_last_dispatch = ledger.in_flight.keys().cloned().collect();
            }
            Decision::UsageCharged {
                run: r,
                task,
                attempt,
                usage,
                ..
            } if r == run => {
                let key = (task.to_string(), *attempt);
                let reserved = ledger
                    .in_flight
                    .remove(&key)
                    .with_context(|| format!("{key:?} was charged but not in flight"))?;
                ledger.reserved -= reserved;
                ledger.used += usage.tokens;
                ledger.charged.insert(key, usage.tokens);
                if ledger.used >= limit && ledger.in_flight_at_trip.is_none() {
                    ledger.in_flight_at_trip = Some(ledger.in_flight.keys().cloned().collect());
                }
            }
            _ => {}
        }
    }
    Ok(ledger)
}

const LIMIT: u64 = 1000;
const ESTIMATE: u64 = 100;
const REPORTED: u64 = 250;
const CONCURRENCY: u64 = 3;

/// Ten independent tasks under a token budget, each estimated below what it reports.
fn token_budget_plan() -> String {
    let mut plan = format!("name = \"token-budget\"\n\n[limits]\ntokens = {LIMIT}\n");
    for i in 0..10 {
        plan.push_str(&format!(
            "\n[[tasks]]\nid = \"t-{i}\"\ncapability = \"c\"\nestimate = {{ tokens = {ESTIMATE} }}\n"
        ));
    }
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_budget_stops_the_run_within_the_documented_overshoot() -> anyhow::Result<()> {
    let command = format!(
        "{}; echo done",
        write_control(&json!({"usage": {"tokens": REPORTED}}))
    );
    let mut cluster = Cluster::start(&[WorkerSpec::new(
        "w1",
        CONCURRENCY as u32,
        &[("c", &command)],
    )])
    .await?;
    let plans = tempfile::tempdir()?;
    let plan = plans.path().join("token-budget.toml");
    std::fs::write(&plan, token_budget_plan())?;
    let submitted = tokio::time::timeout(
        RUN_WITHIN,
        cluster
            .cli(&["submit", &plan.display().to_string(), "--wait"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await??;
    assert_eq!(
        submitted.status.code(),
        Some(5),
        "submit --wait exits 5 for a run a limit stopped: {}\n{}",
        text(&submitted),
        cluster.logs()
    );
    let stdout = String::from_utf8(submitted.stdout.clone())?;
    let run: RunId = stdout
        .lines()
        .find_map(|line| line.split_once(" as run ").map(|(_, run)| run.trim()))
        .with_context(|| format!("the run id in {stdout:?}"))?
        .parse()?;

    let status = status_json(&cluster, &run).await?;
    assert_eq!(status["status"], "stopped", "{status:#}");
    let stop = &status["stop_reason"];
    assert_eq!(
        (&stop["kind"], &stop["budget"], &stop["limit"]),
        (&json!("budget_exhausted"), &json!("tokens"), &json!(LIMIT)),
        "{status:#}"
    );
    let used_at_trip = stop["used"].as_u64().context("stop_reason.used")?;
    assert!(used_at_trip >= LIMIT, "usage reached the budget: {stop}");
    let final_used = status["usage"]["tokens"].as_u64().context("usage.tokens")?;
    let view = cluster.api.status(&run).await?;
    assert_eq!(view.usage.tokens, final_used);
    assert_eq!(
        view.tasks.iter().map(|t| t.usage.tokens).sum::<u64>(),
        final_used,
        "the run's usage is its tasks' summed"
    );
    let detail =
        format!("run stopped: budget exhausted: tokens used {used_at_trip} of its limit {LIMIT}");
    let mut ended = BTreeMap::<&str, usize>::new();
    for task in &view.tasks {
        match task.status {
            TaskStatus::Completed => {}
            TaskStatus::Canceled => assert_eq!(task.detail.as_deref(), Some(detail.as_str())),
            other => panic!("{} ended {other:?}: {view:#?}", task.task),
        }
        *ended.entry(task.status.as_str()).or_default() += 1;
    }

    let events = cluster.stop_and_check().await?;
    let decided = decisions(&events);
    let ledger = tokens_ledger(&decided, &run, ESTIMATE, LIMIT)?;
    assert_eq!(ledger.used, final_used, "the log's charges are the status");
    assert!(ledger.in_flight.is_empty(), "every attempt was charged");

    // The bound, from the log: after the last dispatch, used + reserved <= limit, and each
    // attempt then in flight was charged in place of its estimate.
    let beyond: u64 = ledger
        .after_last_dispatch
        .iter()
        .map(|key| ledger.charged[key].saturating_sub(ESTIMATE))
        .sum();
    assert!(
        final_used <= LIMIT + beyond,
        "{final_used} tokens charged, over {LIMIT} by more than the {beyond} the attempts in flight after the last dispatch used beyond their estimates"
    );
    assert!(final_used <= LIMIT + CONCURRENCY * REPORTED);

    // The trip: the result whose charge reached the budget stops every attempt still in
    // flight, cancels the rest and stops the run; nothing is dead-lettered.
    let in_flight = ledger
        .in_flight_at_trip
        .clone()
        .context("usage reached the budget")?;
    let mut trips = decided_on(&events, |input| {
        matches!(input, Input::ResultReceived { .. })
    })
    .into_iter()
    .filter(|(_, d)| {
        d.iter()
            .any(|d| matches!(d, Decision::RunFinished { run: r, .. } if *r == run))
    });
    let (_, on_trip) = trips.next().context("a result stopped the run")?;
    let stopped: Vec<(String, Attempt)> = on_trip
        .iter()
        .filter_map(|d| match d {
            Decision::StopAttempt { task, attempt, .. } => Some((task.to_string(), *attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(
        stopped, in_flight,
        "the attempts in flight at the trip are told to stop: {on_trip:#?}"
    );
    let reason = StopReason::BudgetExhausted {
        budget: "tokens".to_owned(),
        limit: LIMIT,
        used: used_at_trip,
    };
    assert_eq!(
        on_trip.last(),
        Some(&&Decision::RunFinished {
            run: run.clone(),
            outcome: RunOutcome::Stopped {
                reason: reason.clone()
            },
        })
    );
    let canceled = count(
        &decided,
        |d| matches!(d, Decision::TaskCanceled { reason: CancelReason::RunStopped { reason: r }, .. } if *r == reason),
    );
    assert_eq!(canceled, ended.get("canceled").copied().unwrap_or(0));
    assert_eq!(
        count(&decided, |d| matches!(d, Decision::DeadLettered { .. })),
        0
    );
    // By the numbers: three dispatched at once; each result of 250 frees room for one more
    // while used + 200 reserved + 100 fits 1000, so the first two do and the third does not;
    // the fourth result reaches 1000 with the fifth attempt in flight, stopped and charged its
    // estimate.
    assert_eq!(
        count(&decided, |d| matches!(d, Decision::Dispatch { .. })),
        5
    );
    assert_eq!(in_flight.len(), 1, "{in_flight:?}");
    assert_eq!(
        (used_at_trip, final_used),
        (LIMIT, LIMIT + ESTIMATE),
        "{ended:?}"
    );
    assert_eq!(ended, BTreeMap::from([("canceled", 6), ("completed", 4)]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_estimate_holds_a_task_back_until_a_charge_makes_room() -> anyhow::Result<()> {
    let marks = tempfile::tempdir()?;
    let command = in_dir(
        marks.path(),
        &format!(
            r#"if [ "$WORKFORCE_TASK" = big ]; then
    while [ ! -e "$D/release" ]; do sleep 0.05; done
    {}
fi
echo done"#,
            write_control(&json!({"usage": {"tokens": 100}}))
        ),
    );
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 4, &[("c", &command)])]).await?;
    let plan = r#"
name = "held-by-estimate"

[limits]
tokens = 500

[[tasks]]
id = "big"
capability = "c"
estimate = { tokens = 400 }

[[tasks]]
id = "small"
capability = "c"
estimate = { tokens = 200 }
"#;
    let run = cluster.submit(plan).await?;
    let held = eventually("big runs and small is held", RUN_WITHIN, || async {
        let view = cluster.api.status(&run).await?;
        let tasks = by_task(&view);
        let ok = tasks["big"].status == TaskStatus::Running
            && tasks["small"].status == TaskStatus::Blocked;
        Ok(ok.then(|| view.clone()))
    })
    .await
    .with_context(|| cluster.logs())?;
    let small = by_task(&held)["small"].clone();
    assert_eq!(small.started, 0, "{held:#?}");
    assert_eq!(
        small.detail.as_deref(),
        Some(
            "waiting for budget: its estimate of 200 tokens does not fit what is left of the run's 500"
        ),
        "{held:#?}"
    );
    let status = status_json(&cluster, &run).await?;
    let shown = status["tasks"]
        .as_array()
        .context("tasks")?
        .iter()
        .find(|t| t["task"] == "small")
        .context("small")?;
    assert_eq!(shown["status"], "blocked", "{status:#}");
    assert!(
        shown["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("waiting for budget")),
        "{status:#}"
    );
    std::fs::write(marks.path().join("release"), "")?;

    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert_eq!(view.status, RunStatus::Succeeded, "{view:#?}");
    let tasks = by_task(&view);
    assert_eq!(tasks["big"].usage.tokens, 100, "big's report");
    assert_eq!(
        tasks["small"].usage.tokens, 200,
        "small's estimate: it reported nothing"
    );
    assert_eq!(view.usage.tokens, 300);

    let events = cluster.stop_and_check().await?;
    let decided = decisions(&events);
    let is_dispatch = |task: &'static str| move |d: &Decision| matches!(d, Decision::Dispatch { task: t, .. } if t.as_str() == task);
    assert_eq!(count(&decided, is_dispatch("small")), 1);
    let big_charged = position(
        &decided,
        |d| matches!(d, Decision::UsageCharged { task, .. } if task.as_str() == "big"),
    )
    .context("big was charged")?;
    let small_dispatched = position(&decided, is_dispatch("small")).context("small ran")?;
    assert!(
        big_charged < small_dispatched,
        "small was dispatched only after big's charge"
    );
    let on_big = decided_on_result(&events, "big");
    let big = "big".parse()?;
    assert_eq!(
        on_big[..2],
        [
            &Decision::TaskCompleted {
                run: run.clone(),
                task: "big".parse()?,
                attempt: Attempt(1),
            },
            &Decision::UsageCharged {
                run: run.clone(),
                task: big,
                attempt: Attempt(1),
                usage: Usage {
                    tokens: 100,
                    ..Usage::default()
                },
                reported: true,
            },
        ],
        "{on_big:#?}"
    );
    assert!(
        on_big.iter().any(|d| is_dispatch("small")(d)),
        "big's charge made room for small, dispatched on big's result: {on_big:#?}"
    );
    let on_small = decided_on_result(&events, "small");
    assert!(
        on_small.iter().any(|d| matches!(d, Decision::UsageCharged { usage, reported: false, .. } if usage.tokens == 200)),
        "{on_small:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_stops_the_run_and_its_command() -> anyhow::Result<()> {
    let marks = tempfile::tempdir()?;
    let command = in_dir(
        marks.path(),
        r#"echo $$ > "$D/forever.pid"; while [ ! -e "$D/never" ]; do sleep 0.1; done; echo done"#,
    );
    let mut cluster = Cluster::start(&[
        WorkerSpec::new("w1", 2, &[("c", &command)]).with_args(&["--stop-grace", "1s"])
    ])
    .await?;
    let plan = r#"
name = "deadline"

[limits]
deadline = "2s"

[[tasks]]
id = "forever"
capability = "c"

[[tasks]]
id = "after"
capability = "c"
needs = ["forever"]
"#;
    let run = cluster.submit(plan).await?;
    let pid = pid_in(&marks.path().join("forever.pid"), RUN_WITHIN).await?;
    let watched = tokio::time::timeout(
        RUN_WITHIN,
        cluster
            .cli(&["watch", run.as_str()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await??;
    assert_eq!(
        watched.status.code(),
        Some(5),
        "watch exits 5 for a run its deadline stopped: {}",
        text(&watched)
    );
    eventually(
        &format!("the stopped command (pid {pid}) is gone"),
        Duration::from_secs(1 + 5),
        || async { Ok(gone(pid).then_some(())) },
    )
    .await
    .with_context(|| cluster.logs())?;

    let status = status_json(&cluster, &run).await?;
    assert_eq!(status["status"], "stopped", "{status:#}");
    assert_eq!(
        status["stop_reason"],
        json!({"kind": "deadline_exceeded", "deadline_ms": 2000}),
        "{status:#}"
    );
    let view = cluster.api.status(&run).await?;
    let tasks = by_task(&view);
    let detail = "run stopped: deadline exceeded: it ran past its deadline of 2s";
    assert_eq!(
        (tasks["forever"].status, tasks["forever"].detail.as_deref()),
        (TaskStatus::Canceled, Some(detail))
    );
    assert_eq!(
        (
            tasks["after"].status,
            tasks["after"].started,
            tasks["after"].detail.as_deref()
        ),
        (TaskStatus::Canceled, 0, Some(detail))
    );

    let events = cluster.stop_and_check().await?;
    let mut passed = decided_on(
        &events,
        |input| matches!(input, Input::RunDeadlinePassed { run: r } if *r == run),
    );
    assert_eq!(passed.len(), 1, "{passed:#?}");
    let (_, on_deadline) = passed.remove(0);
    let reason = CancelReason::RunStopped {
        reason: StopReason::DeadlineExceeded { deadline_ms: 2000 },
    };
    assert_eq!(
        on_deadline,
        [
            &Decision::StopAttempt {
                run: run.clone(),
                task: "forever".parse()?,
                attempt: Attempt(1),
            },
            &Decision::TaskCanceled {
                run: run.clone(),
                task: "forever".parse()?,
                reason: reason.clone(),
            },
            &Decision::TaskCanceled {
                run: run.clone(),
                task: "after".parse()?,
                reason,
            },
            &Decision::RunFinished {
                run: run.clone(),
                outcome: RunOutcome::Stopped {
                    reason: StopReason::DeadlineExceeded { deadline_ms: 2000 },
                },
            },
        ]
    );
    // Recorded times: the deadline passed no earlier than 2s after the submission.
    let at = |pick: &dyn Fn(&Input) -> bool| {
        events.iter().find_map(|(_, e)| match &e.entry {
            Entry::Input(input) if pick(input) => Some(e.at_ms),
            _ => None,
        })
    };
    let submitted = at(&|i| matches!(i, Input::RunSubmitted { run: r, .. } if *r == run))
        .context("the submission is recorded")?;
    let deadline = at(&|i| matches!(i, Input::RunDeadlinePassed { .. })).context("deadline")?;
    assert!(
        deadline >= submitted + 2000,
        "submitted at {submitted}, deadline recorded at {deadline}"
    );
    let decided = decisions(&events);
    assert_eq!(
        count(&decided, |d| matches!(d, Decision::DeadLettered { .. })),
        0
    );
    assert_eq!(
        count(
            &decided,
            |d| matches!(d, Decision::Dispatch { task, .. } if task.as_str() == "after")
        ),
        0,
        "after never ran"
    );
    Ok(())
}

/// A command that spawns one task of its own capability, `<its id>-x`, and notes its id.
fn spawns_itself(dir: &Path) -> String {
    in_dir(
        dir,
        r#"echo "$WORKFORCE_TASK" >> "$D/ran"
printf '{"spawn": [{"id": "%s-x", "capability": "grow"}]}' "$WORKFORCE_TASK" > "$WORKFORCE_CONTROL"
echo done"#,
    )
}

fn growing_plan(name: &str, limits: &str) -> String {
    format!(
        r#"
name = "{name}"

[limits]
{limits}

[[tasks]]
id = "seed"
capability = "grow"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_keeps_spawning_itself_is_stopped_by_depth_and_tasks() -> anyhow::Result<()> {
    let marks = tempfile::tempdir()?;
    let command = spawns_itself(marks.path());
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 2, &[("grow", &command)])]).await?;
    // seed is at depth 0 and the 1st task; seed-x-x-x, at depth 3 and the 4th, is refused
    // either way: its spawn would be at depth 4, the 5th task.
    let cases = [
        (
            "by-depth",
            "depth = 3",
            "4 is over the run's limit depth = 3",
        ),
        (
            "by-tasks",
            "depth = 100\ntasks = 4",
            "5 is over the run's limit tasks = 4",
        ),
    ];
    let mut runs = Vec::new();
    for (name, limits, problem) in cases {
        let run = cluster.submit(&growing_plan(name, limits)).await?;
        runs.push((run, problem));
    }
    let chain = ["seed", "seed-x", "seed-x-x", "seed-x-x-x"];
    for (run, problem) in &runs {
        let view = cluster.finish(run, RUN_WITHIN).await?;
        assert_eq!(view.status, RunStatus::Failed, "{view:#?}");
        assert_eq!(
            view.tasks
                .iter()
                .map(|t| (t.task.as_str(), t.parent.as_ref().map(|p| p.as_str())))
                .collect::<Vec<_>>(),
            [
                ("seed", None),
                ("seed-x", Some("seed")),
                ("seed-x-x", Some("seed-x")),
                ("seed-x-x-x", Some("seed-x-x")),
            ],
            "each spawned by the one before, and no more: {view:#?}"
        );
        let tasks = by_task(&view);
        for done in &chain[..3] {
            assert_eq!(tasks[done].status, TaskStatus::Completed, "{view:#?}");
        }
        let last = tasks["seed-x-x-x"];
        assert_eq!(
            (last.status, last.started),
            (TaskStatus::Failed, 1),
            "{view:#?}"
        );
        let detail = last.detail.clone().unwrap_or_default();
        assert!(
            detail.starts_with("the coordinator refused its spawn or branch (1 problem): ")
                && detail.contains(problem),
            "{detail}"
        );
        let reason = view.reason.clone().unwrap_or_default();
        assert!(
            reason.starts_with("task seed-x-x-x dead-lettered after 1 attempt(s)"),
            "{reason}"
        );
    }

    let events = cluster.stop_and_check().await?;
    let decided = decisions(&events);
    for (run, problem) in &runs {
        let mine: Vec<(u64, Decision)> = decided
            .iter()
            .filter(|(_, d)| d.run() == Some(run))
            .cloned()
            .collect();
        let spawned: Vec<(&str, Vec<&str>)> = mine
            .iter()
            .filter_map(|(_, d)| match d {
                Decision::TasksSpawned { parent, tasks, .. } => Some((
                    parent.as_str(),
                    tasks.iter().map(|t| t.id.as_str()).collect(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            spawned,
            [
                ("seed", vec!["seed-x"]),
                ("seed-x", vec!["seed-x-x"]),
                ("seed-x-x", vec!["seed-x-x-x"]),
            ]
        );
        let refused: Vec<&Vec<String>> = mine
            .iter()
            .filter_map(|(_, d)| match d {
                Decision::AttemptFailed {
                    task,
                    cause: FailureCause::ControlRefused { problems },
                    ..
                } if task.as_str() == "seed-x-x-x" => Some(problems),
                _ => None,
            })
            .collect();
        assert!(
            refused.len() == 1 && refused[0].len() == 1 && refused[0][0].contains(problem),
            "{refused:?}"
        );
        assert_eq!(
            mine.last().map(|(_, d)| d),
            Some(&Decision::RunFinished {
                run: run.clone(),
                outcome: RunOutcome::Failed {
                    task: "seed-x-x-x".parse()?
                },
            })
        );
        assert_eq!(
            count(&mine, |d| matches!(d, Decision::RetryScheduled { .. })),
            0,
            "a refusal is permanent"
        );
    }
    let ran = std::fs::read_to_string(marks.path().join("ran"))?;
    let mut ran: Vec<&str> = ran.lines().collect();
    ran.sort_unstable();
    let mut expected: Vec<&str> = chain.iter().chain(chain.iter()).copied().collect();
    expected.sort_unstable();
    assert_eq!(ran, expected, "each task of each chain ran once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_usage_report_fails_the_attempt_and_charges_the_estimate()
-> anyhow::Result<()> {
    let command = format!(
        "{}; echo done",
        write_control(&json!({"usage": {"tokens": -1}}))
    );
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 1, &[("c", &command)])]).await?;
    let plan = r#"
name = "bad-report"

[[tasks]]
id = "liar"
capability = "c"
retry = { max_attempts = 1 }
estimate = { tokens = 50 }
"#;
    let run = cluster.submit(plan).await?;
    let view = cluster.finish(&run, RUN_WITHIN).await?;
    assert_eq!(view.status, RunStatus::Failed, "{view:#?}");
    let liar = by_task(&view)["liar"].clone();
    assert_eq!(liar.status, TaskStatus::Failed, "{view:#?}");
    let detail = liar.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("tokens must be a whole number of at least 0"),
        "{detail}"
    );
    assert_eq!(liar.usage.tokens, 50, "charged its estimate");
    assert_eq!(view.usage.tokens, 50);

    let events = cluster.stop_and_check().await?;
    let on_liar = decided_on_result(&events, "liar");
    let [
        Decision::AttemptFailed {
            attempt: Attempt(1),
            cause: FailureCause::UsageUnreadable { error },
            ..
        },
        Decision::UsageCharged {
            attempt: Attempt(1),
            usage,
            reported: false,
            ..
        },
        Decision::DeadLettered { attempts: 1, .. },
        ..,
    ] = on_liar.as_slice()
    else {
        panic!("failed, charged its estimate, dead-lettered: {on_liar:#?}");
    };
    assert!(
        error.contains("tokens must be a whole number of at least 0"),
        "{error}"
    );
    assert_eq!(
        *usage,
        Usage {
            tokens: 50,
            ..Usage::default()
        }
    );
    Ok(())
}
