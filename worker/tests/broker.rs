//! The worker against a real NATS server: results stored and acked, undecodable assignments
//! terminated, panics reported, a result that grows its run written as version 2 and one that
//! reports usage as version 3, heartbeats (and the attempts they list), a drain handing
//! unfinished work back, stop requests (one sent before its attempt's assignment too), two
//! processes started with one worker id, and a circuit breaker pausing a failing capability.
//!
//! Each test has its own NATS server in a container (`workforce_testkit::Nats`, from the image
//! `just nats-image` builds). The workspace's `tests/` crate runs the full system the same way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::time::{Instant, timeout};
use workforce_shared::{
    Assignment, Attempt, Capability, Heartbeat, HeldAttempt, Instance, Outcome, PROTOCOL_VERSION,
    Prefix, RESULT_VERSION, RunId, SPAWN_VERSION, StopAttempt, Subjects, TaskId, TaskResult,
    UpstreamError, UpstreamStatus, Usage, WorkerId, WorkerState, decode, encode,
};
use workforce_testkit::Nats;
use workforce_worker::{
    CommandHandler, Handler, TaskContext, Worker, WorkerConfig, WorkerError, handler_fn,
};

const WAIT: Duration = Duration::from_secs(20);

fn cap(name: &str) -> Capability {
    Capability::new(name).expect("capability")
}

fn config(server: &Nats, prefix: &str, id: &str) -> WorkerConfig {
    WorkerConfig {
        nats_url: server.url.parse().expect("server url"),
        prefix: Prefix::new(prefix).expect("prefix"),
        id: WorkerId::new(id).expect("worker id"),
        heartbeat_interval: Duration::from_millis(200),
        ack_wait: Duration::from_secs(60),
        ..WorkerConfig::default()
    }
}

fn assignment(task: &str, capability: &str, input: Value) -> Assignment {
    Assignment {
        v: PROTOCOL_VERSION,
        run: RunId::new("run1").expect("run"),
        task: TaskId::new(task).expect("task"),
        attempt: Attempt(1),
        capability: cap(capability),
        input,
        upstream: BTreeMap::new(),
        timeout_ms: 10_000,
        upstream_errors: Default::default(),
    }
}

async fn publish(js: &jetstream::Context, subjects: &Subjects, a: &Assignment) {
    js.publish(
        subjects.task(&a.capability),
        encode(a).expect("encode").into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
}

async fn next_result(results: &mut async_nats::Subscriber) -> TaskResult {
    let message = timeout(WAIT, results.next())
        .await
        .expect("a result in time")
        .expect("subscription open");
    decode(&message.payload, 1 << 20).expect("result decodes")
}

async fn wait_for_empty_tasks_stream(js: &jetstream::Context, subjects: &Subjects) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut stream = js
            .get_stream(subjects.tasks_stream())
            .await
            .expect("stream");
        if stream.info().await.expect("info").state.messages == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "tasks stream never emptied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_commands_and_rust_handlers_end_to_end() {
    let server = Nats::start().await;
    let subjects = Subjects::new(Prefix::new("e2e").expect("prefix"));
    let client = async_nats::connect(&server.url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let mut results = client.subscribe(subjects.all_results()).await.expect("sub");
    let mut heartbeats = client
        .subscribe(subjects.all_heartbeats())
        .await
        .expect("sub");

    let mut handlers: BTreeMap<Capability, Arc<dyn Handler>> = BTreeMap::new();
    handlers.insert(cap("echo"), Arc::new(CommandHandler::new("cat")));
    handlers.insert(
        cap("boom"),
        Arc::new(handler_fn(|_| async { panic!("kaboom") })),
    );
    let worker = Worker::connect(config(&server, "e2e", "w1"), handlers)
        .await
        .expect("worker connects");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));

    let first = timeout(WAIT, heartbeats.next())
        .await
        .expect("heartbeat")
        .expect("open");
    let hb: Heartbeat = decode(&first.payload, 1 << 20).expect("heartbeat decodes");
    assert_eq!(hb.worker.as_str(), "w1");
    assert_eq!(hb.state, WorkerState::Ready);
    assert_eq!(hb.capabilities, vec![cap("boom"), cap("echo")]);

    // Garbage first: it must be terminated, not block or crash the worker.
    js.publish(subjects.task(&cap("echo")), "garbage".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    publish(&js, &subjects, &assignment("t1", "echo", json!({"x": 1}))).await;
    let result = next_result(&mut results).await;
    assert_eq!(result.task.as_str(), "t1");
    assert_eq!(result.worker.as_str(), "w1");
    match result.outcome {
        Outcome::Succeeded { output, .. } => assert_eq!(output["input"], json!({"x": 1})),
        other => panic!("expected success, got {other:?}"),
    }

    publish(&js, &subjects, &assignment("t2", "boom", json!(null))).await;
    let result = next_result(&mut results).await;
    match result.outcome {
        Outcome::Failed { error, permanent } => {
            assert!(error.contains("handler panicked: kaboom"), "{error}");
            assert!(!permanent);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    // Results acked, garbage terminated: the work queue is empty.
    wait_for_empty_tasks_stream(&js, &subjects).await;

    // The result was stored with its message id.
    let stored = js
        .get_stream(subjects.results_stream())
        .await
        .expect("results stream")
        .get_last_raw_message_by_subject(&subjects.result(
            &RunId::new("run1").expect("run"),
            &TaskId::new("t1").expect("task"),
        ))
        .await
        .expect("stored result");
    let msg_id = stored
        .headers
        .get(async_nats::header::NATS_MESSAGE_ID)
        .map(|v| v.to_string());
    assert_eq!(msg_id.as_deref(), Some("run1.t1.1.result"));

    stop.send(()).expect("worker running");
    timeout(WAIT, running)
        .await
        .expect("worker stops")
        .expect("no panic")
        .expect("clean stop");
    let deadline = Instant::now() + WAIT;
    loop {
        let message = timeout(WAIT, heartbeats.next())
            .await
            .expect("heartbeat")
            .expect("open");
        let hb: Heartbeat = decode(&message.payload, 1 << 20).expect("decodes");
        if hb.state == WorkerState::Stopped {
            break;
        }
        assert!(Instant::now() < deadline, "no Stopped heartbeat");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_grows_the_run_is_version_2_and_others_stay_version_1() {
    let server = Nats::start().await;
    let subjects = Subjects::new(Prefix::new("grow").expect("prefix"));
    let client = async_nats::connect(&server.url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let mut results = client.subscribe(subjects.all_results()).await.expect("sub");

    let mut handlers: BTreeMap<Capability, Arc<dyn Handler>> = BTreeMap::new();
    let plan = r#"printf '{"spawn": [{"id": "part", "capability": "echo"}], "branch": ["next"]}' > "$WORKFORCE_CONTROL"; echo planned"#;
    handlers.insert(cap("plan"), Arc::new(CommandHandler::new(plan)));
    handlers.insert(cap("echo"), Arc::new(CommandHandler::new("cat")));
    let worker = Worker::connect(config(&server, "grow", "w1"), handlers)
        .await
        .expect("worker connects");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));

    publish(&js, &subjects, &assignment("t1", "plan", json!(null))).await;
    let result = next_result(&mut results).await;
    assert_eq!(result.v, SPAWN_VERSION);
    assert_eq!(
        result.outcome,
        Outcome::Succeeded {
            output: json!("planned"),
            spawn: vec![json!({"id": "part", "capability": "echo"})],
            branch: Some(vec!["next".into()]),
        }
    );

    let mut past_failures = assignment("t2", "echo", json!(null));
    past_failures.upstream_errors = BTreeMap::from([(
        TaskId::new("t0").expect("task"),
        UpstreamError {
            status: UpstreamStatus::Canceled,
            error: "run canceled".into(),
        },
    )]);
    publish(&js, &subjects, &past_failures).await;
    let result = next_result(&mut results).await;
    assert_eq!(result.v, PROTOCOL_VERSION);
    match result.outcome {
        Outcome::Succeeded { output, .. } => assert_eq!(
            output["upstream_errors"],
            json!({"t0": {"status": "canceled", "error": "run canceled"}})
        ),
        other => panic!("expected success, got {other:?}"),
    }

    stop.send(()).expect("worker running");
    timeout(WAIT, running)
        .await
        .expect("worker stops")
        .expect("no panic")
        .expect("clean stop");
}

/// The result of `task` as the results stream stored it.
async fn stored_result(js: &jetstream::Context, subjects: &Subjects, task: &str) -> TaskResult {
    let stored = js
        .get_stream(subjects.results_stream())
        .await
        .expect("results stream")
        .get_last_raw_message_by_subject(&subjects.result(
            &RunId::new("run1").expect("run"),
            &TaskId::new(task).expect("task"),
        ))
        .await
        .expect("stored result");
    decode(&stored.payload, 1 << 20).expect("result decodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_reports_usage_is_stored_as_version_3_with_the_usage_as_sent() {
    let server = Nats::start().await;
    let subjects = Subjects::new(Prefix::new("usage").expect("prefix"));
    let client = async_nats::connect(&server.url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let mut results = client.subscribe(subjects.all_results()).await.expect("sub");

    let mut handlers: BTreeMap<Capability, Arc<dyn Handler>> = BTreeMap::new();
    // A command that spends, then fails: its spending counts too.
    let spend = r#"printf '{"usage": {"tokens": 900, "cost_cents": 12}}' > "$WORKFORCE_CONTROL"; echo 'rate limited' >&2; exit 1"#;
    handlers.insert(cap("spend"), Arc::new(CommandHandler::new(spend)));
    handlers.insert(
        cap("count"),
        Arc::new(handler_fn(|t: TaskContext| async move {
            t.report_usage(Usage {
                tokens: 40,
                tool_calls: 2,
                ..Usage::default()
            });
            Ok(json!("counted"))
        })),
    );
    handlers.insert(cap("echo"), Arc::new(CommandHandler::new("cat")));
    let worker = Worker::connect(config(&server, "usage", "w1"), handlers)
        .await
        .expect("worker connects");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));

    publish(&js, &subjects, &assignment("t1", "spend", json!(null))).await;
    let result = next_result(&mut results).await;
    assert_eq!((result.task.as_str(), result.v), ("t1", RESULT_VERSION));
    let stored = stored_result(&js, &subjects, "t1").await;
    assert_eq!(stored, result);
    assert_eq!(
        stored.outcome,
        Outcome::Failed {
            error: "command exited with status 1; stderr: rate limited".into(),
            permanent: false,
        }
    );
    assert_eq!(stored.usage, Some(json!({"tokens": 900, "cost_cents": 12})));

    publish(&js, &subjects, &assignment("t2", "count", json!(null))).await;
    let result = next_result(&mut results).await;
    assert_eq!((result.task.as_str(), result.v), ("t2", RESULT_VERSION));
    let stored = stored_result(&js, &subjects, "t2").await;
    assert_eq!(stored.outcome, Outcome::succeeded(json!("counted")));
    assert_eq!(
        stored.usage,
        Some(json!({"tokens": 40, "cost_cents": 0, "tool_calls": 2}))
    );

    // Nothing reported: no usage, and the version of what it does carry.
    publish(&js, &subjects, &assignment("t3", "echo", json!(null))).await;
    let result = next_result(&mut results).await;
    assert_eq!((result.task.as_str(), result.v), ("t3", PROTOCOL_VERSION));
    assert_eq!(stored_result(&js, &subjects, "t3").await.usage, None);

    stop.send(()).expect("worker running");
    timeout(WAIT, running)
        .await
        .expect("worker stops")
        .expect("no panic")
        .expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_hands_unfinished_work_to_another_worker_at_once() {
    let server = Nats::start().await;
    let subjects = Subjects::new(Prefix::new("drain").expect("prefix"));
    let client = async_nats::connect(&server.url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let mut results = client.subscribe(subjects.all_results()).await.expect("sub");

    // Worker 1 never finishes; its drain grace period is short.
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let stuck = handler_fn(move |_| {
        let started = started_tx.clone();
        async move {
            let _ = started.send(());
            futures::future::pending::<()>().await;
            Ok(Value::Null)
        }
    });
    let mut handlers: BTreeMap<Capability, Arc<dyn Handler>> = BTreeMap::new();
    handlers.insert(cap("slow"), Arc::new(stuck));
    let mut config1 = config(&server, "drain", "w1");
    config1.grace_period = Duration::from_millis(300);
    let worker1 = Worker::connect(config1, handlers).await.expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker1.run(async {
        let _ = stopped.await;
    }));

    let mut slow = assignment("t1", "slow", json!(null));
    slow.timeout_ms = 600_000;
    publish(&js, &subjects, &slow).await;
    timeout(WAIT, started_rx.recv())
        .await
        .expect("worker 1 started the task");
    stop.send(()).expect("worker running");
    timeout(WAIT, running)
        .await
        .expect("worker 1 stops after its grace period")
        .expect("no panic")
        .expect("clean stop");

    // Worker 2 gets it well before ack_wait (60s) would have redelivered it.
    let mut handlers: BTreeMap<Capability, Arc<dyn Handler>> = BTreeMap::new();
    handlers.insert(
        cap("slow"),
        Arc::new(handler_fn(|_| async { Ok(json!("done")) })),
    );
    let worker2 = Worker::connect(config(&server, "drain", "w2"), handlers)
        .await
        .expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker2.run(async {
        let _ = stopped.await;
    }));
    let result = next_result(&mut results).await;
    assert_eq!(result.worker.as_str(), "w2");
    assert_eq!(result.outcome, Outcome::succeeded(json!("done")));
    stop.send(()).expect("worker running");
    timeout(WAIT, running)
        .await
        .expect("worker 2 stops")
        .expect("no panic")
        .expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_acks_keep_a_long_task_from_being_redelivered() {
    let server = Nats::start().await;
    let subjects = Subjects::new(Prefix::new("progress").expect("prefix"));
    let client = async_nats::connect(&server.url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let mut results = client.subscribe(subjects.all_results()).await.expect("sub");

    // Runs for three ack_waits; a redelivery would reach the idle second slot and run it again.
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = calls.clone();
    let long = handler_fn(move |_| {
        let calls = counted.clone();
        async move {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(json!("finished"))
        }
    });
    let mut handlers: BTreeMap<Capability, Arc<dyn Handler>> = BTreeMap::new();
    handlers.insert(cap("long"), Arc::new(long));
    let config = WorkerConfig {
        ack_wait: Duration::from_secs(1),
        concurrency: 2,
        ..config(&server, "progress", "w1")
    };
    let worker = Worker::connect(config, handlers).await.expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));

    publish(&js, &subjects, &assignment("t1", "long", json!(null))).await;
    let result = next_result(&mut results).await;
    assert_eq!(result.outcome, Outcome::succeeded(json!("finished")));
    wait_for_empty_tasks_stream(&js, &subjects).await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);

    stop.send(()).expect("worker running");
    timeout(WAIT, running)
        .await
        .expect("worker stops")
        .expect("no panic")
        .expect("clean stop");
}

/// Publishes a stop request for attempt 1 of `task` in run1 every half second until `done`
/// holds: stop requests are best effort, and the worker's subscription may not have reached
/// the server when the first one is sent.
async fn stop_until(
    client: &async_nats::Client,
    subjects: &Subjects,
    task: &str,
    mut done: impl FnMut() -> bool,
) {
    let stop = StopAttempt {
        v: PROTOCOL_VERSION,
        run: RunId::new("run1").expect("run"),
        task: TaskId::new(task).expect("task"),
        attempt: Attempt(1),
    };
    let payload = bytes::Bytes::from(encode(&stop).expect("encode"));
    let deadline = Instant::now() + WAIT;
    let mut next_publish = Instant::now();
    while !done() {
        assert!(Instant::now() < deadline, "{task} did not stop");
        if Instant::now() >= next_publish {
            client
                .publish(subjects.stop(), payload.clone())
                .await
                .expect("publish the stop request");
            next_publish = Instant::now() + Duration::from_millis(500);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stored_results(js: &jetstream::Context, subjects: &Subjects) -> u64 {
    js.get_stream(subjects.results_stream())
        .await
        .expect("results stream")
        .info()
        .await
        .expect("info")
        .state
        .messages
}

/// Running and not a zombie (an unreaped orphan counts as dead).
#[cfg(target_os = "linux")]
fn is_alive(pid: &str) -> bool {
    match std::fs::read_to_string(std::path::Path::new("/proc").join(pid).join("stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            !matches!(state, Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_request_stops_a_command_and_a_rust_handler_and_reports_nothing() {
    let server = Nats::start().await;
    let subjects = Subjects::new(Prefix::new("stops").expect("prefix"));
    let client = async_nats::connect(&server.url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let (pids, marker) = (dir.path().join("pids"), dir.path().join("marker"));

    // The shell notes the TERM and waits on; its child ignores TERM: only the KILL after the
    // stop grace ends them.
    let command = format!(
        "trap 'echo got TERM > {marker}' TERM; (trap '' TERM; exec sleep 600) & \
         echo $$ $! > {pids}; while :; do wait; done",
        marker = marker.display(),
        pids = pids.display()
    );
    // A Rust handler that watches its stop signal and says when it saw it.
    let (saw_tx, mut saw_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let watching = handler_fn(move |task| {
        let saw = saw_tx.clone();
        async move {
            let _ = saw.send(false);
            task.stop_signal().requested().await;
            let _ = saw.send(true);
            Ok(json!("returned after the stop; discarded"))
        }
    });
    let mut handlers: BTreeMap<Capability, Arc<dyn Handler>> = BTreeMap::new();
    handlers.insert(cap("slow"), Arc::new(CommandHandler::new(command)));
    handlers.insert(cap("watch"), Arc::new(watching));
    let stop_grace = Duration::from_millis(500);
    let config = WorkerConfig {
        stop_grace,
        ..config(&server, "stops", "w1")
    };
    let worker = Worker::connect(config, handlers).await.expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));

    // A command: SIGTERM, then SIGKILL after the grace; the whole group is gone.
    let mut slow = assignment("slow", "slow", json!(null));
    slow.timeout_ms = 600_000;
    publish(&js, &subjects, &slow).await;
    let deadline = Instant::now() + WAIT;
    let written = loop {
        if let Ok(text) = std::fs::read_to_string(&pids)
            && text.ends_with('\n')
        {
            break text;
        }
        assert!(Instant::now() < deadline, "the command did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pids: Vec<&str> = written.split_whitespace().collect();
    let requested = Instant::now();
    stop_until(&client, &subjects, "slow", || {
        pids.iter().all(|pid| !is_alive(pid))
    })
    .await;
    let took = requested.elapsed();
    assert!(
        took >= stop_grace && took < stop_grace + Duration::from_secs(5),
        "the command took {took:?} to stop"
    );
    let marked = std::fs::read_to_string(&marker).expect("the shell saw a TERM first");
    assert_eq!(marked.trim(), "got TERM");
    // Terminated, not handed back: the work queue empties without a rerun.
    wait_for_empty_tasks_stream(&js, &subjects).await;
    assert_eq!(
        stored_results(&js, &subjects).await,
        0,
        "a result was stored"
    );

    // A Rust handler sees its signal and returns; what it returns is discarded.
    let mut watch = assignment("watch", "watch", json!(null));
    watch.timeout_ms = 600_000;
    publish(&js, &subjects, &watch).await;
    assert_eq!(
        timeout(WAIT, saw_rx.recv()).await.expect("started"),
        Some(false)
    );
    let mut saw_stop = false;
    stop_until(&client, &subjects, "watch", || {
        saw_stop = saw_stop || saw_rx.try_recv() == Ok(true);
        saw_stop
    })
    .await;
    wait_for_empty_tasks_stream(&js, &subjects).await;
    assert_eq!(
        stored_results(&js, &subjects).await,
        0,
        "a result was stored"
    );

    stop.send(()).expect("worker running");
    timeout(WAIT, running)
        .await
        .expect("worker stops")
        .expect("no panic")
        .expect("clean stop");
}

fn echo_handlers() -> BTreeMap<Capability, Arc<dyn Handler>> {
    let mut handlers: BTreeMap<Capability, Arc<dyn Handler>> = BTreeMap::new();
    handlers.insert(cap("echo"), Arc::new(CommandHandler::new("cat")));
    handlers
}

async fn next_heartbeat(heartbeats: &mut async_nats::Subscriber) -> Heartbeat {
    let message = timeout(WAIT, heartbeats.next())
        .await
        .expect("a heartbeat in time")
        .expect("subscription open");
    decode(&message.payload, 1 << 20).expect("heartbeat decodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_the_same_id_refuses_to_start() {
    let server = Nats::start().await;
    let subjects = Subjects::new(Prefix::new("twins").expect("prefix"));
    let client = async_nats::connect(&server.url).await.expect("connect");
    let mut heartbeats = client
        .subscribe(subjects.all_heartbeats())
        .await
        .expect("sub");

    let first = Worker::connect(config(&server, "twins", "w1"), echo_handlers())
        .await
        .expect("first connects");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(first.run(async {
        let _ = stopped.await;
    }));
    let original = next_heartbeat(&mut heartbeats).await;
    assert_ne!(original.instance, Instance(0));
    assert!(original.started_ms > 0);

    let second = Worker::connect(config(&server, "twins", "w1"), echo_handlers())
        .await
        .expect("second connects");
    let refused = timeout(WAIT, second.run(std::future::pending()))
        .await
        .expect("the second stops at once");
    match refused {
        Err(WorkerError::DuplicateId {
            worker,
            other,
            at_start: true,
            ..
        }) => {
            assert_eq!((worker.as_str(), other), ("w1", original.instance));
        }
        other => panic!("expected a duplicate id at start, got {other:?}"),
    }
    let message = WorkerError::DuplicateId {
        worker: WorkerId::new("w1").expect("id"),
        other: original.instance,
        other_started_ms: original.started_ms,
        at_start: true,
    }
    .to_string();
    assert!(message.contains("its own --id"), "{message}");

    // The refused process said nothing: every heartbeat since is the first one's, and it
    // still stops cleanly, announcing Stopped itself.
    stop.send(()).expect("first running");
    timeout(WAIT, running)
        .await
        .expect("first stops")
        .expect("no panic")
        .expect("clean stop");
    loop {
        let hb = next_heartbeat(&mut heartbeats).await;
        assert_eq!(
            hb.instance, original.instance,
            "a heartbeat from the refused process"
        );
        if hb.state == WorkerState::Stopped {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_worker_that_meets_an_earlier_twin_drains_and_stops_silently() {
    let server = Nats::start().await;
    let subjects = Subjects::new(Prefix::new("late").expect("prefix"));
    let client = async_nats::connect(&server.url).await.expect("connect");
    let mut heartbeats = client
        .subscribe(subjects.all_heartbeats())
        .await
        .expect("sub");

    let worker = Worker::connect(config(&server, "late", "w1"), echo_handlers())
        .await
        .expect("worker connects");
    let running = tokio::spawn(worker.run(std::future::pending()));
    let mine = next_heartbeat(&mut heartbeats).await;

    // A process that started earlier (one that did not answer the probe, say) announces
    // itself on the same subject.
    let earlier = Heartbeat {
        instance: Instance(42),
        started_ms: mine.started_ms - 1,
        breakers: Vec::new(),
        attempts: Vec::new(),
        ..mine.clone()
    };
    client
        .publish(
            subjects.heartbeat(&earlier.worker),
            encode(&earlier).expect("encode").into(),
        )
        .await
        .expect("publish");

    let stopped = timeout(WAIT, running)
        .await
        .expect("the later process stops")
        .expect("no panic");
    match stopped {
        Err(WorkerError::DuplicateId {
            other,
            at_start: false,
            ..
        }) => assert_eq!(other, Instance(42)),
        other => panic!("expected a duplicate id while running, got {other:?}"),
    }
    // It sent no Draining or Stopped heartbeat, which would speak for the earlier one.
    client.flush().await.expect("flush");
    while let Ok(Some(message)) = timeout(Duration::from_millis(500), heartbeats.next()).await {
        let hb: Heartbeat = decode(&message.payload, 1 << 20).expect("decodes");
        if hb.instance == mine.instance {
            assert_eq!(hb.state, WorkerState::Ready, "{hb:?}");
        }
    }
}

/// The error of a failed outcome.
fn failure(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::Failed { error, .. } => Some(error),
        Outcome::Succeeded { .. } => None,
    }
}

fn unix_ms() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch");
    u64::try_from(now.as_millis()).expect("fits")
}

/// Lines in `path`, 0 if it does not exist yet.
fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capability_that_keeps_failing_is_not_pulled_until_its_breaker_closes() {
    let server = Nats::start().await;
    let subjects = Subjects::new(Prefix::new("breaker").expect("prefix"));
    let client = async_nats::connect(&server.url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let mut results = client.subscribe(subjects.all_results()).await.expect("sub");
    let worker_id = WorkerId::new("w1").expect("worker id");
    let mut heartbeats = client
        .subscribe(subjects.heartbeat(&worker_id))
        .await
        .expect("sub");
    client.flush().await.expect("subscribed");

    // Every attempt of `bad` notes that it started, then fails.
    let dir = tempfile::tempdir().expect("temp dir");
    let started = dir.path().join("started");
    let mut handlers: BTreeMap<Capability, Arc<dyn Handler>> = BTreeMap::new();
    handlers.insert(
        cap("bad"),
        Arc::new(CommandHandler::new(format!(
            "echo started >> {}; echo broken >&2; exit 1",
            started.display()
        ))),
    );
    handlers.insert(cap("good"), Arc::new(CommandHandler::new("cat")));
    let cooldown = Duration::from_secs(3);
    let config = WorkerConfig {
        breaker_failures: 2,
        breaker_cooldown: cooldown,
        // Longer than the test: every heartbeat after the first is one sent at once, for a
        // breaker that opened or closed.
        heartbeat_interval: Duration::from_secs(300),
        ..config(&server, "breaker", "w1")
    };
    let worker = Worker::connect(config, handlers).await.expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    let first = next_heartbeat(&mut heartbeats).await;
    assert_eq!(first.breakers, vec![], "no breaker open at start");

    // Two failures in a row open the breaker.
    for task in ["b1", "b2"] {
        publish(&js, &subjects, &assignment(task, "bad", json!(null))).await;
    }
    let before = unix_ms();
    let open = next_heartbeat(&mut heartbeats).await;
    assert_eq!(open.state, WorkerState::Ready);
    let [breaker] = open.breakers.as_slice() else {
        panic!("expected one open breaker, got {:?}", open.breakers);
    };
    assert_eq!((breaker.capability.as_str(), breaker.failures), ("bad", 2));
    let cooldown_ms = u64::try_from(cooldown.as_millis()).expect("fits");
    assert!(
        breaker.until_ms > before && breaker.until_ms <= unix_ms() + cooldown_ms,
        "until_ms {} is not about {cooldown:?} from now",
        breaker.until_ms
    );
    let until_ms = breaker.until_ms;
    for _ in 0..2 {
        let result = next_result(&mut results).await;
        assert_eq!(
            failure(&result.outcome),
            Some("command exited with status 1; stderr: broken")
        );
    }
    assert_eq!(lines(&started), 2);

    // While it is open, `bad` tasks stay in the broker and `good` is still served.
    for task in ["b3", "b4"] {
        publish(&js, &subjects, &assignment(task, "bad", json!(null))).await;
    }
    publish(&js, &subjects, &assignment("g1", "good", json!("fine"))).await;
    let result = next_result(&mut results).await;
    assert_eq!(result.task.as_str(), "g1");
    assert!(
        matches!(result.outcome, Outcome::Succeeded { .. }),
        "{result:?}"
    );
    let consumer = js
        .get_stream(subjects.tasks_stream())
        .await
        .expect("tasks stream")
        .consumer_info(subjects.task_consumer(&cap("bad")))
        .await
        .expect("consumer info");
    assert_eq!(
        lines(&started),
        2,
        "a bad task ran while the breaker was open"
    );
    // Undelivered, or handed back by a pull that was under way when the breaker opened.
    assert_eq!(
        consumer.num_pending + u64::try_from(consumer.num_ack_pending).expect("fits"),
        2,
        "{consumer:?}"
    );
    assert!(
        unix_ms() < until_ms,
        "the checks ended after the cool-down; they proved nothing"
    );

    // The cool-down's end closes it: a heartbeat says so, and pulling resumes.
    let closed = next_heartbeat(&mut heartbeats).await;
    assert_eq!(closed.breakers, vec![], "{closed:?}");
    assert_eq!(closed.state, WorkerState::Ready);
    assert!(
        unix_ms() + 100 >= until_ms,
        "closed before its cool-down was over"
    );
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let result = next_result(&mut results).await;
        assert!(failure(&result.outcome).is_some(), "{result:?}");
        tasks.push(result.task.to_string());
    }
    tasks.sort();
    assert_eq!(tasks, ["b3", "b4"]);
    assert_eq!(lines(&started), 4);

    // Counting started again from 0: two more failures open it again.
    let reopened = next_heartbeat(&mut heartbeats).await;
    match reopened.breakers.as_slice() {
        [again] => {
            assert_eq!((again.capability.as_str(), again.failures), ("bad", 2));
            assert!(again.until_ms > until_ms, "{again:?}");
        }
        other => panic!("expected the breaker open again, got {other:?}"),
    }

    stop.send(()).expect("worker running");
    timeout(WAIT, running)
        .await
        .expect("worker stops")
        .expect("no panic")
        .expect("clean stop");
}

fn held(task: &str, attempt: u32) -> HeldAttempt {
    HeldAttempt {
        run: RunId::new("run1").expect("run"),
        task: TaskId::new(task).expect("task"),
        attempt: Attempt(attempt),
    }
}

/// The next heartbeat that satisfies `wanted`.
async fn heartbeat_where(
    heartbeats: &mut async_nats::Subscriber,
    what: &str,
    wanted: impl Fn(&Heartbeat) -> bool,
) -> Heartbeat {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no heartbeat {what}");
        let heartbeat = next_heartbeat(heartbeats).await;
        if wanted(&heartbeat) {
            return heartbeat;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_stopped_before_it_is_delivered_is_terminated_not_run() {
    let server = Nats::start().await;
    let subjects = Subjects::new(Prefix::new("superseded").expect("prefix"));
    let client = async_nats::connect(&server.url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("ran");
    let command = format!("echo $$ >> {}; cat", marker.display());
    let mut handlers: BTreeMap<Capability, Arc<dyn Handler>> = BTreeMap::new();
    handlers.insert(cap("late"), Arc::new(CommandHandler::new(command)));
    let config = config(&server, "superseded", "w1");
    let mut heartbeats = client
        .subscribe(subjects.heartbeat(&config.id))
        .await
        .expect("subscribe to heartbeats");
    let worker = Worker::connect(config, handlers).await.expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    // The worker subscribes to stop requests before its first heartbeat.
    next_heartbeat(&mut heartbeats).await;

    // The coordinator failed attempt 1 over (its worker went silent) and stopped it; its
    // assignment comes afterwards, as a redelivery would.
    let request = StopAttempt {
        v: PROTOCOL_VERSION,
        run: RunId::new("run1").expect("run"),
        task: TaskId::new("late").expect("task"),
        attempt: Attempt(1),
    };
    client
        .publish(subjects.stop(), encode(&request).expect("encode").into())
        .await
        .expect("publish the stop request");
    client.flush().await.expect("flush");
    publish(&js, &subjects, &assignment("late", "late", json!("first"))).await;

    // Had it run, its result would be stored before the assignment left the stream.
    wait_for_empty_tasks_stream(&js, &subjects).await;
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream(subjects.tasks_stream())
        .await
        .expect("tasks stream")
        .get_consumer(&subjects.task_consumer(&cap("late")))
        .await
        .expect("consumer");
    let info = consumer.cached_info();
    assert_eq!(
        (
            info.num_pending,
            info.num_ack_pending,
            info.delivered.stream_sequence
        ),
        (0, 0, 1),
        "delivered once, then terminated"
    );
    assert_eq!(
        stored_results(&js, &subjects).await,
        0,
        "a result was stored"
    );
    assert!(!marker.exists(), "the stopped attempt ran");

    // The attempt that replaced it runs.
    let mut second = assignment("late", "late", json!("second"));
    second.attempt = Attempt(2);
    publish(&js, &subjects, &second).await;
    wait_for_empty_tasks_stream(&js, &subjects).await;
    let result = stored_result(&js, &subjects, "late").await;
    match result.outcome {
        Outcome::Succeeded { output, .. } => assert_eq!(output["input"], json!("second")),
        Outcome::Failed { error, .. } => panic!("attempt 2 failed: {error}"),
    }
    assert_eq!(result.attempt, Attempt(2));
    assert_eq!(lines(&marker), 1, "only attempt 2 ran");

    stop.send(()).expect("worker running");
    timeout(WAIT, running)
        .await
        .expect("worker stops")
        .expect("no panic")
        .expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_list_an_attempt_while_it_runs_and_not_after() {
    let server = Nats::start().await;
    let subjects = Subjects::new(Prefix::new("held").expect("prefix"));
    let client = async_nats::connect(&server.url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let dir = tempfile::tempdir().expect("temp dir");
    let flag = dir.path().join("go");
    let command = format!(
        "while [ ! -e {flag} ]; do sleep 0.05; done; cat",
        flag = flag.display()
    );
    let mut handlers: BTreeMap<Capability, Arc<dyn Handler>> = BTreeMap::new();
    handlers.insert(cap("wait"), Arc::new(CommandHandler::new(command)));
    let config = config(&server, "held", "w1");
    let mut heartbeats = client
        .subscribe(subjects.heartbeat(&config.id))
        .await
        .expect("subscribe to heartbeats");
    let worker = Worker::connect(config, handlers).await.expect("connect");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    let first = next_heartbeat(&mut heartbeats).await;
    assert!(first.attempts.is_empty(), "{:?}", first.attempts);

    let mut waiting = assignment("waiting", "wait", json!("done"));
    waiting.attempt = Attempt(3);
    waiting.timeout_ms = 600_000;
    publish(&js, &subjects, &waiting).await;
    let listed = heartbeat_where(&mut heartbeats, "listing the attempt", |h| {
        !h.attempts.is_empty()
    })
    .await;
    assert_eq!(listed.attempts, vec![held("waiting", 3)]);
    assert_eq!((listed.state, listed.in_flight), (WorkerState::Ready, 1));

    std::fs::write(&flag, b"").expect("raise the flag");
    wait_for_empty_tasks_stream(&js, &subjects).await;
    let result = stored_result(&js, &subjects, "waiting").await;
    match result.outcome {
        Outcome::Succeeded { output, .. } => assert_eq!(output["input"], json!("done")),
        Outcome::Failed { error, .. } => panic!("attempt 3 failed: {error}"),
    }
    assert_eq!(result.attempt, Attempt(3));
    heartbeat_where(&mut heartbeats, "without the finished attempt", |h| {
        h.attempts.is_empty()
    })
    .await;

    stop.send(()).expect("worker running");
    timeout(WAIT, running)
        .await
        .expect("worker stops")
        .expect("no panic")
        .expect("clean stop");
}
