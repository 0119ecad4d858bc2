//! `CommandHandler` against real `sh` processes; no broker.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use workforce_shared::{Attempt, Capability, RunId, TaskId, UpstreamError, UpstreamStatus};
use workforce_worker::{
    CommandHandler, Growth, HandlerError, PERMANENT_FAILURE_EXIT_CODE, StopSignal, TaskContext,
};

fn task(input: Value) -> TaskContext {
    let mut task = TaskContext::new(
        RunId::new("run-1").expect("run"),
        TaskId::new("review").expect("task"),
        Attempt(3),
        Capability::new("security").expect("capability"),
        input,
        Duration::from_secs(30),
    );
    task.upstream = BTreeMap::from([(TaskId::new("plan").expect("task"), json!({"steps": 2}))]);
    task
}

async fn run(command: &str) -> Result<Value, HandlerError> {
    CommandHandler::new(command).run(&task(json!(null))).await
}

fn retryable(result: Result<Value, HandlerError>) -> String {
    match result {
        Err(HandlerError::Retryable(message)) => message,
        other => panic!("expected a retryable failure, got {other:?}"),
    }
}

fn permanent(result: Result<Value, HandlerError>) -> String {
    match result {
        Err(HandlerError::Permanent(message)) => message,
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

#[tokio::test]
async fn json_stdout_is_parsed() {
    let output = run(r#"printf '  {"ok": true, "n": [1, 2]}\n\n'"#)
        .await
        .expect("success");
    assert_eq!(output, json!({"ok": true, "n": [1, 2]}));
    assert_eq!(run("echo 42").await.expect("success"), json!(42));
}

#[tokio::test]
async fn text_stdout_becomes_a_trimmed_string() {
    let output = run("printf '\\n  hello world  \\n'")
        .await
        .expect("success");
    assert_eq!(output, json!("hello world"));
    assert_eq!(run("true").await.expect("success"), json!(""));
}

#[tokio::test]
async fn the_task_arrives_as_json_on_stdin() {
    let input = json!({"paths": ["src", "tests"], "depth": 3});
    let output = CommandHandler::new("cat")
        .run(&task(input.clone()))
        .await
        .expect("success");
    assert_eq!(
        output,
        json!({
            "run": "run-1",
            "task": "review",
            "attempt": 3,
            "capability": "security",
            "input": input,
            "upstream": {"plan": {"steps": 2}},
        })
    );
}

#[tokio::test]
async fn upstream_errors_arrive_on_stdin_when_there_are_any() {
    let mut t = task(json!(null));
    t.upstream_errors = BTreeMap::from([(
        TaskId::new("lint").expect("task"),
        UpstreamError {
            status: UpstreamStatus::Failed,
            error: "exit 1".into(),
        },
    )]);
    let output = CommandHandler::new("cat").run(&t).await.expect("success");
    assert_eq!(
        output["upstream_errors"],
        json!({"lint": {"status": "failed", "error": "exit 1"}})
    );
}

#[tokio::test]
async fn task_ids_are_in_the_environment() {
    let output = run(r#"printf '%s|%s|%s|%s' "$WORKFORCE_RUN" "$WORKFORCE_TASK" "$WORKFORCE_ATTEMPT" "$WORKFORCE_CAPABILITY""#)
        .await
        .expect("success");
    assert_eq!(output, json!("run-1|review|3|security"));
}

#[tokio::test]
async fn runs_in_the_working_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = CommandHandler::new("pwd -P")
        .workdir(dir.path())
        .run(&task(json!(null)))
        .await
        .expect("success");
    let expected = dir.path().canonicalize().expect("canonical");
    assert_eq!(output, json!(expected.to_str().expect("utf-8 path")));
}

#[tokio::test]
async fn a_missing_working_directory_is_a_retryable_failure() {
    let message = retryable(
        CommandHandler::new("true")
            .workdir("/no/such/dir")
            .run(&task(json!(null)))
            .await,
    );
    assert!(message.contains("/no/such/dir"), "{message}");
}

#[tokio::test]
async fn exit_1_is_retryable_with_the_stderr_tail() {
    let message = retryable(run("echo partial; echo 'disk is full' >&2; exit 1").await);
    assert!(message.contains("status 1"), "{message}");
    assert!(message.contains("disk is full"), "{message}");
}

#[tokio::test]
async fn the_stderr_tail_is_bounded_and_keeps_the_end() {
    let message =
        retryable(run("head -c 100000 /dev/zero | tr '\\0' x >&2; echo THE-END >&2; exit 3").await);
    assert!(message.contains("status 3"), "{message}");
    assert!(
        message.ends_with("THE-END"),
        "{}",
        &message[message.len() - 40..]
    );
    assert!(message.len() < 4096 + 200, "{} bytes", message.len());
}

#[tokio::test]
async fn exit_100_is_permanent() {
    let message = permanent(
        run(&format!(
            "echo 'input is not a repository' >&2; exit {PERMANENT_FAILURE_EXIT_CODE}"
        ))
        .await,
    );
    assert!(message.contains("status 100"), "{message}");
    assert!(message.contains("input is not a repository"), "{message}");
}

#[tokio::test]
async fn death_by_signal_is_retryable() {
    let message = retryable(run("kill -s KILL $$").await);
    assert!(message.contains("signal 9"), "{message}");
}

#[tokio::test]
async fn a_timeout_kills_the_command_and_is_retryable() {
    let mut t = task(json!(null));
    t.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let message = retryable(
        CommandHandler::new("echo starting >&2; sleep 60")
            .run(&t)
            .await,
    );
    assert!(message.contains("timed out after 300ms"), "{message}");
    assert!(message.contains("starting"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("pid");
    let mut t = task(json!(null));
    t.timeout = Duration::from_millis(500);
    // A grandchild that would outlive the shell, holding stdout open.
    let command = format!("sleep 60 & echo $! > {}; wait", pid_file.display());
    let message = retryable(CommandHandler::new(command).run(&t).await);
    assert!(message.contains("timed out"), "{message}");

    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    let pid = pid.trim();
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_alive(pid) {
        assert!(Instant::now() < deadline, "grandchild {pid} still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Running and not a zombie (an unreaped orphan counts as dead).
#[cfg(target_os = "linux")]
fn is_alive(pid: &str) -> bool {
    match std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")) {
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

#[tokio::test]
async fn oversized_stdout_is_permanent_and_names_size_and_limit() {
    let message = permanent(
        CommandHandler::new("head -c 2000 /dev/zero | tr '\\0' a")
            .max_output_bytes(1000)
            .run(&task(json!(null)))
            .await,
    );
    assert!(message.contains("2000 bytes"), "{message}");
    assert!(message.contains("1000 bytes"), "{message}");
}

#[tokio::test]
async fn large_output_and_input_do_not_deadlock() {
    // Writes megabytes to stdout and stderr before reading a megabyte of stdin: a handler that
    // wrote stdin first, or read one pipe at a time, would block forever.
    let command = "head -c 4000000 /dev/zero | tr '\\0' x; \
                   head -c 3000000 /dev/zero >&2; \
                   cat > /dev/null";
    let mut t = task(json!("y".repeat(1_000_000)));
    t.timeout = Duration::from_secs(60);
    let output = CommandHandler::new(command)
        .max_output_bytes(8 * 1024 * 1024)
        .run(&t)
        .await
        .expect("success");
    assert_eq!(output.as_str().map(str::len), Some(4_000_000));
}

#[tokio::test]
async fn a_command_that_ignores_stdin_is_fine() {
    let mut t = task(json!("z".repeat(2_000_000)));
    t.timeout = Duration::from_secs(60);
    let output = CommandHandler::new("echo done")
        .run(&t)
        .await
        .expect("success");
    assert_eq!(output, json!("done"));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn dropping_the_attempt_kills_the_whole_process_group() {
    // What the worker does to an attempt it abandons (end of a drain, or a handler ignoring its
    // timeout): drop the future.
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("pid");
    let command = format!("sleep 60 & echo $! > {}; wait", pid_file.display());
    let handler = CommandHandler::new(command);
    let t = task(json!(null));
    // Boxed, so that `drop` below drops the future itself.
    let mut running = Box::pin(handler.run(&t));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pid_file.exists()
        || std::fs::read_to_string(&pid_file).is_ok_and(|s| s.trim().is_empty())
    {
        assert!(Instant::now() < deadline, "command did not start");
        tokio::select! {
            result = &mut running => panic!("command finished early: {result:?}"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    drop(running);

    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    let pid = pid.trim();
    while is_alive(pid) {
        assert!(Instant::now() < deadline, "grandchild {pid} still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- Stop requests (the task's stop signal) ----

/// Runs `command` on its own tokio task with a stop signal of `grace`; returns what raises it
/// and the handler's eventual result.
fn start_stoppable(
    command: String,
    grace: Duration,
) -> (
    workforce_worker::StopRequester,
    tokio::task::JoinHandle<Result<Value, HandlerError>>,
) {
    let (requester, signal) = StopSignal::channel(grace);
    let t = task(json!(null)).with_stop_signal(signal);
    let running = tokio::spawn(async move { CommandHandler::new(command).run(&t).await });
    (requester, running)
}

/// The whitespace-separated pids a command wrote to `path`, once it has written a whole line.
async fn pids_written_to(
    path: &Path,
    running: &tokio::task::JoinHandle<Result<Value, HandlerError>>,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text.split_whitespace().map(str::to_owned).collect();
        }
        assert!(
            !running.is_finished(),
            "the command ended before it started"
        );
        assert!(Instant::now() < deadline, "the command did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(target_os = "linux")]
async fn wait_until_gone(pids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for pid in pids {
        while is_alive(pid) {
            assert!(Instant::now() < deadline, "{pid} still running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn finished(
    running: tokio::task::JoinHandle<Result<Value, HandlerError>>,
) -> Result<Value, HandlerError> {
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the handler returned")
        .expect("no panic")
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_stop_sends_sigterm_to_the_group_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (pids, marker) = (dir.path().join("pids"), dir.path().join("marker"));
    // The trap is set before the pids are written, so the stop cannot come before it.
    let command = format!(
        "trap 'echo got TERM > {marker}; exit 0' TERM; sleep 600 & echo $$ $! > {pids}; wait",
        marker = marker.display(),
        pids = pids.display()
    );
    // A grace far longer than the test may take: only TERM can end it in time.
    let (stop, running) = start_stoppable(command, Duration::from_secs(600));
    let pids = pids_written_to(&pids, &running).await;
    stop.request();

    let message = retryable(finished(running).await);
    assert!(
        message.starts_with("stopped on request: the command ended after SIGTERM"),
        "{message}"
    );
    let marked = std::fs::read_to_string(&marker).expect("the trap ran");
    assert_eq!(marked.trim(), "got TERM");
    // The shell and its child, which took the TERM sent to the group.
    wait_until_gone(&pids).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_command_that_ignores_sigterm_is_killed_after_the_grace() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pids = dir.path().join("pids");
    let command = format!(
        "trap '' TERM; sleep 600 & echo $$ $! > {}; wait",
        pids.display()
    );
    let grace = Duration::from_millis(300);
    let (stop, running) = start_stoppable(command, grace);
    let pids = pids_written_to(&pids, &running).await;
    let requested = Instant::now();
    stop.request();

    let message = retryable(finished(running).await);
    assert!(requested.elapsed() >= grace, "{:?}", requested.elapsed());
    assert!(
        message.starts_with(
            "stopped on request: the command was still running 300ms after SIGTERM; killed"
        ),
        "{message}"
    );
    wait_until_gone(&pids).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_timeout_cuts_a_stop_grace_short() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pids = dir.path().join("pids");
    let command = format!(
        "trap '' TERM; sleep 600 & echo $$ $! > {}; wait",
        pids.display()
    );
    let (stop, signal) = StopSignal::channel(Duration::from_secs(600));
    let mut t = task(json!(null)).with_stop_signal(signal);
    t.timeout = Duration::from_secs(2);
    let running = tokio::spawn(async move { CommandHandler::new(command).run(&t).await });
    let pids = pids_written_to(&pids, &running).await;
    stop.request();

    let message = retryable(finished(running).await);
    assert!(
        message.starts_with(
            "stopped on request: the command was still running after SIGTERM at its timeout of 2s; killed"
        ),
        "{message}"
    );
    wait_until_gone(&pids).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn nothing_a_stopped_command_started_outlives_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pids = dir.path().join("pids");
    // The shell dies of the TERM at once; its child ignores TERM and holds none of the pipes,
    // so nothing keeps the handler waiting for it.
    let command = format!(
        "(trap '' TERM; exec sleep 600) </dev/null >/dev/null 2>&1 & echo $! > {}; wait",
        pids.display()
    );
    let (stop, running) = start_stoppable(command, Duration::from_secs(600));
    let pids = pids_written_to(&pids, &running).await;
    stop.request();

    let message = retryable(finished(running).await);
    assert!(
        message.starts_with("stopped on request: the command ended after SIGTERM"),
        "{message}"
    );
    wait_until_gone(&pids).await;
}

#[tokio::test]
async fn a_command_stopped_before_it_starts_is_not_started() {
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("ran");
    let (stop, signal) = StopSignal::channel(Duration::from_secs(1));
    stop.request();
    let t = task(json!(null)).with_stop_signal(signal);
    let message = retryable(
        CommandHandler::new(format!("touch {}", marker.display()))
            .run(&t)
            .await,
    );
    assert!(message.contains("before the command started"), "{message}");
    assert!(!marker.exists());
}

// ---- The control file (WORKFORCE_CONTROL) ----

#[tokio::test]
async fn the_control_file_is_fresh_and_empty_and_removed_afterwards() {
    let t = task(json!(null));
    let output = CommandHandler::new(
        r#"test -f "$WORKFORCE_CONTROL" && ! test -s "$WORKFORCE_CONTROL" && printf %s "$WORKFORCE_CONTROL""#,
    )
    .run(&t)
    .await
    .expect("success");
    let path = output.as_str().expect("the path");
    assert!(!path.is_empty());
    assert!(!Path::new(path).exists(), "{path} left behind");
    assert!(t.growth().is_empty(), "an untouched file asks nothing");
}

#[tokio::test]
async fn a_command_spawns_and_branches_through_its_control_file() {
    let t = task(json!(null));
    let command = r#"
cat > "$WORKFORCE_CONTROL" <<'JSON'
{"spawn": [{"id": "part-1", "capability": "llm", "input": {"n": 1}, "trigger": "all_done"},
           {"id": "part-2", "capability": "llm", "needs": ["part-1"]}],
 "branch": ["summarize"]}
JSON
echo planned"#;
    let output = CommandHandler::new(command).run(&t).await.expect("success");
    assert_eq!(output, json!("planned"));
    assert_eq!(
        t.growth(),
        Growth {
            spawn: vec![
                json!({"id": "part-1", "capability": "llm", "input": {"n": 1}, "trigger": "all_done"}),
                json!({"id": "part-2", "capability": "llm", "needs": ["part-1"]}),
            ],
            branch: Some(vec!["summarize".into()]),
        }
    );
}

#[tokio::test]
async fn a_command_may_replace_its_control_file() {
    let t = task(json!(null));
    let command = r#"printf '{"branch": []}' > "$WORKFORCE_CONTROL.new" && mv "$WORKFORCE_CONTROL.new" "$WORKFORCE_CONTROL""#;
    CommandHandler::new(command).run(&t).await.expect("success");
    assert_eq!(t.growth().branch, Some(Vec::new()));
}

#[tokio::test]
async fn a_malformed_control_file_is_permanent_and_named() {
    for (written, problem) in [
        ("not json", "is not JSON"),
        (
            r#"{"spawn": [], "usage": {"tokens": 1}, "cost": 1}"#,
            "unknown fields `cost`",
        ),
        (
            r#"{"branch": "b"}"#,
            "`branch` must be an array of strings, not a string",
        ),
        (r#"["a"]"#, "one JSON object, not an array"),
    ] {
        let t = task(json!(null));
        let command = format!("printf '%s' '{written}' > \"$WORKFORCE_CONTROL\"");
        let message = permanent(CommandHandler::new(command).run(&t).await);
        assert!(message.contains(problem), "{written}: {message}");
        assert!(message.contains("control file /"), "{written}: {message}");
        assert!(message.contains("control.json"), "{written}: {message}");
        assert!(t.growth().is_empty());
        assert_eq!(t.usage(), None, "an unusable file reports nothing");
    }
}

#[tokio::test]
async fn an_oversized_control_file_is_permanent_and_names_size_and_limit() {
    let t = task(json!(null));
    let command = r#"printf '{"branch": ["%s"]}' "$(head -c 2000 /dev/zero | tr '\0' a)" > "$WORKFORCE_CONTROL""#;
    let message = permanent(
        CommandHandler::new(command)
            .max_output_bytes(1000)
            .run(&t)
            .await,
    );
    assert!(message.contains("is 2016 bytes"), "{message}");
    assert!(message.contains("limit of 1000 bytes"), "{message}");
    assert!(t.growth().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_command_s_spawn_and_branch_are_ignored_with_a_warning() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    // The test runs on this one thread, so the subscriber sees the handler's events.
    let _guard = tracing::subscriber::set_default(subscriber);
    let t = task(json!(null));
    let command =
        r#"printf '{"spawn": [{"id": "a", "capability": "c"}]}' > "$WORKFORCE_CONTROL"; exit 1"#;
    let message = retryable(CommandHandler::new(command).run(&t).await);
    assert!(message.contains("status 1"), "{message}");
    assert!(!message.contains("control file"), "{message}");
    assert!(t.growth().is_empty());
    assert_eq!(t.usage(), None);
    let logged = logs.text();
    assert!(
        logged.contains("the spawn and branch in its control file are ignored"),
        "{logged}"
    );
    assert!(logged.contains("WARN"), "{logged}");
}

#[tokio::test]
async fn a_failed_command_s_unusable_control_file_is_named_in_its_failure() {
    for (written, exit, problem) in [
        ("not even json", PERMANENT_FAILURE_EXIT_CODE, "is not JSON"),
        (
            r#"{"usage": {"tokens": 3}, "zzz": 1}"#,
            1,
            "unknown fields `zzz`",
        ),
    ] {
        let t = task(json!(null));
        let command =
            format!("printf '%s' '{written}' > \"$WORKFORCE_CONTROL\"; echo oops >&2; exit {exit}");
        let error = CommandHandler::new(command)
            .run(&t)
            .await
            .expect_err("a failure");
        // The command's own failure stands: its kind, its status, its stderr last.
        assert_eq!(error.is_permanent(), exit == PERMANENT_FAILURE_EXIT_CODE);
        let message = error.message();
        assert!(
            message.starts_with(&format!(
                "command exited with status {exit}{}; and the control file is unusable: the \
                 control file /",
                if exit == PERMANENT_FAILURE_EXIT_CODE {
                    " (permanent failure)"
                } else {
                    ""
                }
            )),
            "{message}"
        );
        assert!(message.contains(problem), "{message}");
        assert!(message.ends_with("; stderr: oops"), "{message}");
        assert_eq!(t.usage(), None, "an unusable file reports nothing");
    }
}

// ---- Usage reports in the control file ----

#[tokio::test]
async fn a_command_reports_usage_beside_its_spawn_after_exit_0() {
    let t = task(json!(null));
    let command = r#"printf '{"spawn": [{"id": "a", "capability": "c"}], "usage": {"tokens": 1200, "cost_cents": 3}}' > "$WORKFORCE_CONTROL"; echo done"#;
    let output = CommandHandler::new(command).run(&t).await.expect("success");
    assert_eq!(output, json!("done"));
    assert_eq!(
        t.growth().spawn,
        vec![json!({"id": "a", "capability": "c"})]
    );
    assert_eq!(
        t.usage(),
        Some(json!({"tokens": 1200, "cost_cents": 3})),
        "passed on as written"
    );
}

#[tokio::test]
async fn a_command_that_fails_still_reports_its_usage() {
    let t = task(json!(null));
    let command = r#"printf '{"usage": {"tokens": 900, "tool_calls": 4}, "branch": []}' > "$WORKFORCE_CONTROL"; echo 'rate limited' >&2; exit 1"#;
    let message = retryable(CommandHandler::new(command).run(&t).await);
    assert_eq!(
        message,
        "command exited with status 1; stderr: rate limited"
    );
    assert_eq!(t.usage(), Some(json!({"tokens": 900, "tool_calls": 4})));
    assert!(t.growth().is_empty(), "only a success grows the run");
}

#[tokio::test]
async fn oversized_stdout_fails_the_attempt_and_the_usage_still_counts() {
    let t = task(json!(null));
    let command = r#"printf '{"usage": {"tokens": 7}, "branch": []}' > "$WORKFORCE_CONTROL"; head -c 2000 /dev/zero"#;
    let message = permanent(
        CommandHandler::new(command)
            .max_output_bytes(1000)
            .run(&t)
            .await,
    );
    assert!(message.starts_with("stdout of 2000 bytes"), "{message}");
    assert_eq!(t.usage(), Some(json!({"tokens": 7})));
    assert!(t.growth().is_empty());
}

#[tokio::test]
async fn a_timed_out_command_still_reports_its_usage() {
    let mut t = task(json!(null));
    t.timeout = Duration::from_secs(1);
    let command = r#"printf '{"usage": {"tokens": 50}}' > "$WORKFORCE_CONTROL"; sleep 60"#;
    let message = retryable(CommandHandler::new(command).run(&t).await);
    assert!(message.starts_with("timed out after 1s"), "{message}");
    assert_eq!(t.usage(), Some(json!({"tokens": 50})));
}

#[tokio::test]
async fn a_stopped_command_reports_no_usage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pids = dir.path().join("pids");
    let command = format!(
        r#"trap 'exit 0' TERM; printf '{{"usage": {{"tokens": 5}}}}' > "$WORKFORCE_CONTROL"; sleep 600 & echo $$ $! > {pids}; wait"#,
        pids = pids.display()
    );
    let (stop, signal) = StopSignal::channel(Duration::from_secs(600));
    let t = task(json!(null)).with_stop_signal(signal);
    let running = {
        let t = t.clone();
        tokio::spawn(async move { CommandHandler::new(command).run(&t).await })
    };
    pids_written_to(&pids, &running).await;
    stop.request();
    let message = retryable(finished(running).await);
    assert!(message.starts_with("stopped on request"), "{message}");
    assert_eq!(t.usage(), None, "nothing a stopped attempt reports counts");
}

#[tokio::test]
async fn an_unreadable_usage_report_fails_the_attempt_and_is_still_sent_as_written() {
    // After exit 0: a permanent failure naming the problem.
    let t = task(json!(null));
    let command =
        r#"printf '{"usage": {"tokens": -5}, "branch": ["b"]}' > "$WORKFORCE_CONTROL"; echo done"#;
    let message = permanent(CommandHandler::new(command).run(&t).await);
    assert!(message.contains("in the control file /"), "{message}");
    assert!(
        message.contains(
            r#"the usage report {"tokens":-5} cannot be read: tokens must be a whole number of at least 0, not -5"#
        ),
        "{message}"
    );
    assert_eq!(t.usage(), Some(json!({"tokens": -5})));
    assert!(t.growth().is_empty());

    // After a failure: the failure stands and gains the problem.
    let t = task(json!(null));
    let command =
        r#"printf '{"usage": {"tokens": "many"}}' > "$WORKFORCE_CONTROL"; echo flaky >&2; exit 2"#;
    let message = retryable(CommandHandler::new(command).run(&t).await);
    assert!(
        message.starts_with(
            "command exited with status 2; and the control file is unusable: in the control file /"
        ),
        "{message}"
    );
    assert!(message.contains(r#"not "many""#), "{message}");
    assert!(message.ends_with("; stderr: flaky"), "{message}");
    assert_eq!(t.usage(), Some(json!({"tokens": "many"})));
}

#[tokio::test]
async fn a_command_s_usage_adds_to_what_its_handler_reported() {
    let t = task(json!(null));
    t.report_usage(workforce_shared::Usage {
        tokens: 10,
        ..Default::default()
    });
    let command = r#"printf '{"usage": {"tokens": 5, "tool_calls": 1}}' > "$WORKFORCE_CONTROL""#;
    CommandHandler::new(command).run(&t).await.expect("success");
    assert_eq!(
        t.usage(),
        Some(json!({"tokens": 15, "cost_cents": 0, "tool_calls": 1}))
    );
}

/// What a test's subscriber logged.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
