//! End to end: real NATS JetStream (testcontainers), the real coordinator and worker binaries.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use workforce_coordinator::ClientError;
use workforce_coordinator::api::ApiErrorKind;
use workforce_coordinator::log::Entry;
use workforce_coordinator::scheduler::{Decision, Input, RunStatus, TaskStatus};
use workforce_shared::{DeadLetter, Outcome, ParamValues, PlanFormat, TaskResult, decode};
use workforce_tests::harness::{Cluster, WorkerSpec, decisions};

const ECHO: &str = "sleep 0.2; cat";

fn task_block(id: &str, capability: &str, needs: &[&str]) -> String {
    let needs: Vec<String> = needs.iter().map(|n| format!("{n:?}")).collect();
    format!(
        "[[tasks]]\nid = {id:?}\ncapability = {capability:?}\ninput = {{ name = {id:?} }}\nneeds = [{}]\n\n",
        needs.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dag_fans_out_and_in_across_three_workers_every_task_once() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(&[
        WorkerSpec::new("alpha-only", 1, &[("alpha", ECHO)]),
        WorkerSpec::new("beta-only", 1, &[("beta", ECHO)]),
        WorkerSpec::new("both", 1, &[("alpha", ECHO), ("beta", ECHO)]),
    ])
    .await?;
    // root -> a1..a4 (fan-out) -> b1..b4 -> join1(b1,b2), join2(b3,b4) -> final (fan-in)
    let mut needs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut plan = String::from("name = \"fan\"\n\n");
    let mut add = |id: &str, capability: &str, deps: &[&str]| {
        plan.push_str(&task_block(id, capability, deps));
        needs.insert(
            id.to_owned(),
            deps.iter().map(|d| (*d).to_owned()).collect(),
        );
    };
    add("root", "alpha", &[]);
    for i in 1..=4 {
        add(&format!("a{i}"), "beta", &["root"]);
    }
    for i in 1..=4 {
        add(&format!("b{i}"), "alpha", &[&format!("a{i}")]);
    }
    add("join1", "beta", &["b1", "b2"]);
    add("join2", "beta", &["b3", "b4"]);
    add("final", "alpha", &["join1", "join2"]);
    assert_eq!(needs.len(), 12);

    let run = cluster.submit(&plan).await?;
    let view = cluster.finish(&run, Duration::from_secs(90)).await?;
    assert_eq!(
        view.status,
        RunStatus::Succeeded,
        "{view:#?}\n{}",
        cluster.logs()
    );

    let outputs: BTreeMap<String, Value> = view
        .tasks
        .iter()
        .map(|t| (t.task.to_string(), t.output.clone().unwrap_or(Value::Null)))
        .collect();
    for task in &view.tasks {
        assert_eq!(task.status, TaskStatus::Completed);
        assert_eq!(task.attempt, 1, "{} needed a retry", task.task);
        let output = &outputs[task.task.as_str()];
        // The echo command's output is the task as the worker received it.
        assert_eq!(output["task"], json!(task.task.as_str()));
        assert_eq!(output["input"], json!({ "name": task.task.as_str() }));
        let upstream = output["upstream"].as_object().expect("upstream is a map");
        let seen: BTreeSet<&str> = upstream.keys().map(String::as_str).collect();
        let expected: BTreeSet<&str> = needs[task.task.as_str()]
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(seen, expected, "upstream of {}", task.task);
        for (dep, value) in upstream {
            assert_eq!(value, &outputs[dep], "{} saw {dep}'s output", task.task);
        }
    }

    // Exactly once: one stored result per task, and one dispatch and one completion each.
    let js = async_nats::jetstream::new(cluster.client.clone());
    let mut stream = js.get_stream(cluster.subjects.results_stream()).await?;
    let stored = stream.info().await?.state.messages;
    assert_eq!(stored, 12, "results stored");
    let mut workers_used = BTreeSet::new();
    for seq in 1..=stored {
        let message = stream.get_raw_message(seq).await?;
        let result: TaskResult = decode(&message.payload, 1 << 20)?;
        workers_used.insert(result.worker.to_string());
    }
    assert!(workers_used.len() >= 2, "work was spread: {workers_used:?}");

    let events = cluster.stop_and_check().await?;
    let mut dispatches: BTreeMap<String, u32> = BTreeMap::new();
    let mut completions: BTreeMap<String, u32> = BTreeMap::new();
    for (_, d) in decisions(&events) {
        match d {
            Decision::Dispatch { task, .. } => {
                *dispatches.entry(task.to_string()).or_default() += 1
            }
            Decision::TaskCompleted { task, .. } => {
                *completions.entry(task.to_string()).or_default() += 1
            }
            _ => {}
        }
    }
    assert_eq!(dispatches.len(), 12);
    assert!(dispatches.values().all(|n| *n == 1), "{dispatches:?}");
    assert!(
        completions.values().all(|n| *n == 1) && completions.len() == 12,
        "{completions:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_fails_twice_then_succeeds_shows_three_attempts_and_its_backoff()
-> anyhow::Result<()> {
    let flaky = r#"if [ "$WORKFORCE_ATTEMPT" -lt 3 ]; then echo "flaky attempt $WORKFORCE_ATTEMPT" >&2; exit 1; fi; echo '{"ok": true}'"#;
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 2, &[("flaky", flaky)])]).await?;
    let plan = r#"
[[tasks]]
id = "flaky"
capability = "flaky"
retry = { max_attempts = 4, initial_backoff = "300ms", multiplier = 2.0 }
"#;
    let run = cluster.submit(plan).await?;
    let view = cluster.finish(&run, Duration::from_secs(60)).await?;
    assert_eq!(view.status, RunStatus::Succeeded, "{view:#?}");
    assert_eq!(view.tasks[0].attempt, 3);
    assert_eq!(view.tasks[0].output, Some(json!({"ok": true})));

    let events = cluster.stop_and_check().await?;
    let decided = decisions(&events);
    let dispatched: Vec<(u64, u32)> = decided
        .iter()
        .filter_map(|(at, d)| match d {
            Decision::Dispatch { attempt, .. } => Some((*at, attempt.0)),
            _ => None,
        })
        .collect();
    assert_eq!(
        dispatched.iter().map(|d| d.1).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let retries: Vec<(u64, u32, u64)> = decided
        .iter()
        .filter_map(|(at, d)| match d {
            Decision::RetryScheduled {
                attempt, delay_ms, ..
            } => Some((*at, attempt.0, *delay_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries.iter().map(|r| (r.1, r.2)).collect::<Vec<_>>(),
        [(2, 300), (3, 600)],
        "backoff doubles from 300ms"
    );
    for (scheduled_at, attempt, delay) in &retries {
        let (dispatched_at, _) = dispatched[(*attempt - 1) as usize];
        assert!(
            dispatched_at >= scheduled_at + delay,
            "attempt {attempt} dispatched {}ms after its retry was scheduled, before its {delay}ms backoff",
            dispatched_at - scheduled_at
        );
    }
    let errors: Vec<String> = events
        .iter()
        .filter_map(|(_, e)| match &e.entry {
            Entry::Input(Input::ResultReceived { result }) => match &result.outcome {
                Outcome::Failed { error, .. } => Some(error.clone()),
                Outcome::Succeeded { .. } => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 2);
    assert!(
        errors[0].contains("flaky attempt 1"),
        "stderr tail in the error: {}",
        errors[0]
    );
    assert!(errors[1].contains("flaky attempt 2"), "{}", errors[1]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_always_fails_is_dead_lettered_and_its_dependents_canceled()
-> anyhow::Result<()> {
    let command =
        r#"if [ "$WORKFORCE_TASK" = bad ]; then echo "always broken" >&2; exit 1; fi; echo done"#;
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 2, &[("alpha", command)])]).await?;
    let plan = r#"
[[tasks]]
id = "bad"
capability = "alpha"
retry = { max_attempts = 2, initial_backoff = "100ms" }

[[tasks]]
id = "child"
capability = "alpha"
needs = ["bad"]

[[tasks]]
id = "grandchild"
capability = "alpha"
needs = ["child"]

[[tasks]]
id = "other"
capability = "alpha"
"#;
    let run = cluster.submit(plan).await?;
    let view = cluster.finish(&run, Duration::from_secs(60)).await?;
    assert_eq!(view.status, RunStatus::Failed, "{view:#?}");
    let reason = view.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("task bad dead-lettered after 2 attempt(s)"),
        "{reason}"
    );
    let status: BTreeMap<&str, TaskStatus> = view
        .tasks
        .iter()
        .map(|t| (t.task.as_str(), t.status))
        .collect();
    assert_eq!(status["bad"], TaskStatus::Failed);
    assert_eq!(status["child"], TaskStatus::Canceled);
    assert_eq!(status["grandchild"], TaskStatus::Canceled);
    assert_eq!(status["other"], TaskStatus::Completed);

    let js = async_nats::jetstream::new(cluster.client.clone());
    let stream = js.get_stream(cluster.subjects.dead_letter_stream()).await?;
    let bad = "bad".parse()?;
    let subject = cluster.subjects.dead_letter(&run, &bad);
    let message = workforce_tests::harness::eventually(
        "the dead letter is stored",
        Duration::from_secs(10),
        || {
            let stream = stream.clone();
            let subject = subject.clone();
            async move { Ok(stream.get_last_raw_message_by_subject(&subject).await.ok()) }
        },
    )
    .await?;
    let letter: DeadLetter = decode(&message.payload, 1 << 20)?;
    assert_eq!(letter.task, bad);
    assert_eq!(letter.last_assignment.attempt.0, 2);
    assert_eq!(letter.errors.len(), 2);
    assert!(
        letter
            .errors
            .iter()
            .all(|e| e.error.contains("always broken")),
        "{:?}",
        letter.errors
    );

    let events = cluster.stop_and_check().await?;
    let dispatched_children = decisions(&events).iter().any(|(_, d)| {
        matches!(d, Decision::Dispatch { task, .. } if task.as_str() == "child" || task.as_str() == "grandchild")
    });
    assert!(
        !dispatched_children,
        "dependents of a dead-lettered task never run"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_coordinator_on_the_same_data_directory_fails_fast() -> anyhow::Result<()> {
    let cluster = Cluster::start(&[]).await?;
    let mut second = workforce_tests::harness::Process::spawn(
        "second-coordinator",
        &workforce_tests::harness::bin("workforce-coordinator"),
        &[
            "--nats".to_owned(),
            cluster.nats.url.clone(),
            "--data".to_owned(),
            cluster.data().display().to_string(),
        ],
        cluster.dir.path(),
    );
    let status = second.wait(Duration::from_secs(10)).await?;
    assert!(!status.success());
    let output = second.output();
    assert!(output.contains("in use by another process"), "{output}");
    // The first one is unharmed.
    assert!(cluster.api.runs().await?.is_empty());
    Ok(())
}

/// `workforce submit --param`, as an operator runs it: the log records the concrete plan, and
/// the worker receives the substituted input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameterized_plan_runs_and_the_log_records_its_values() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(&[WorkerSpec::new("w1", 1, &[("alpha", ECHO)])]).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("params.toml");
    std::fs::write(
        &path,
        r#"name = "parameterized"

[params]
repo = { default = ".", description = "the repository" }
goal = { description = "what to look for" }
focus = { default = ["security"] }

[[tasks]]
id = "one"
capability = "alpha"
input = { repo = "{{ params.repo }}", goal = "Goal: {{ params.goal }}", focus = "{{ params.focus }}" }
"#,
    )?;
    let out = tokio::process::Command::new(workforce_tests::harness::bin("workforce"))
        .arg("--json")
        .arg("submit")
        .arg(&path)
        .args([
            "--param",
            "goal=find the leak",
            "--param",
            r#"focus=["tests","docs"]"#,
        ])
        .args(["--nats", &cluster.nats.url, "--prefix"])
        .arg(cluster.subjects.prefix().to_string())
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "submit failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let submitted: Value = serde_json::from_slice(&out.stdout)?;
    let run = submitted["run"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no run in {submitted}"))?
        .parse()?;
    let view = cluster.finish(&run, Duration::from_secs(60)).await?;
    assert_eq!(view.status, RunStatus::Succeeded, "{view:#?}");
    let expected =
        json!({ "repo": ".", "goal": "Goal: find the leak", "focus": ["tests", "docs"] });
    let output = view.tasks[0].output.clone().unwrap_or(Value::Null);
    assert_eq!(
        output["input"], expected,
        "the worker got the concrete input"
    );

    // The coordinator checks the values itself, whatever the client did.
    let source = std::fs::read_to_string(&path)?;
    match cluster
        .api
        .submit(source, PlanFormat::Toml, ParamValues::new())
        .await
    {
        Err(ClientError::Api(e)) => {
            assert_eq!(e.kind, ApiErrorKind::InvalidPlan);
            assert!(
                e.message
                    .contains("missing a value for the required parameter \"goal\""),
                "{}",
                e.message
            );
        }
        other => panic!("a submit without the required value: {other:?}"),
    }

    let events = cluster.stop_and_check().await?;
    let recorded: Vec<_> = events
        .iter()
        .filter_map(|(_, e)| match &e.entry {
            Entry::Input(Input::RunSubmitted { plan, .. }) => Some(plan.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(recorded.len(), 1);
    assert!(recorded[0].params.is_empty(), "{:?}", recorded[0].params);
    assert_eq!(recorded[0].tasks[0].input, expected);
    Ok(())
}
