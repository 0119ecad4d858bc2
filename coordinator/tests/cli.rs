//! The `workforce` CLI as a real process: quiet when its reader goes away, exit codes, and
//! following a run through a coordinator restart (a stand-in coordinator on a real NATS, from
//! the `workforce-nats:local` image `just nats-image` builds).

use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt;
use testcontainers::clients::Cli;
use testcontainers::core::WaitFor;
use testcontainers::{Container, GenericImage, RunnableImage};
use tokio::io::AsyncBufReadExt;
use workforce_coordinator::api::{ApiRequest, ApiResponse, Reply, Request};
use workforce_coordinator::scheduler::{RunStatus, RunView};
use workforce_shared::subjects::ApiVerb;
use workforce_shared::{Prefix, Subjects, decode, encode};

const WAIT: Duration = Duration::from_secs(20);

fn workforce() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_workforce"));
    command
        .env_remove("WORKFORCE_NATS_URL")
        .env_remove("WORKFORCE_PREFIX")
        .env_remove("WORKFORCE_RECONNECT_FOR");
    command
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn example(name: &str) -> String {
    format!("{}/../examples/plans/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `args` with a stdout whose reader is gone before anything is written.
fn with_closed_stdout(args: &[&str]) -> Output {
    let mut child = workforce()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn workforce");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait for workforce")
}

#[test]
fn a_reader_that_goes_away_ends_every_command_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("log").display().to_string();
    let plan = example("code-review.toml");
    let out = workforce()
        .args(["simulate", &plan, "--data", &data])
        .output()
        .expect("simulate");
    assert!(out.status.success(), "{}", text(&out));

    for args in [
        &["replay", "--data", &data][..],
        &["replay", "--data", &data, "--json"][..],
        &["validate", &plan][..],
        &["simulate", &plan, "--seed", "3"][..],
    ] {
        let out = with_closed_stdout(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn unreachable_nats_exits_with_the_no_coordinator_code() {
    let out = workforce()
        .args([
            "status",
            "r1",
            "--nats",
            "nats://127.0.0.1:9",
            "--timeout",
            "1s",
        ])
        .output()
        .expect("status");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("cannot connect to NATS"),
        "{}",
        text(&out)
    );

    let out = workforce()
        .args(["status", "r1", "--nats", "http://x"])
        .output()
        .expect("status");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

struct Server {
    _container: Container<'static, GenericImage>,
    url: String,
}

fn docker() -> &'static Cli {
    static DOCKER: OnceLock<Cli> = OnceLock::new();
    DOCKER.get_or_init(Cli::default)
}

fn start_server() -> Server {
    let image = GenericImage::new("workforce-nats", "local")
        .with_exposed_port(4222)
        .with_wait_for(WaitFor::message_on_stderr("Server is ready"));
    let container = docker().run(RunnableImage::from((image, vec!["-js".to_owned()])));
    let url = format!("nats://127.0.0.1:{}", container.get_host_port_ipv4(4222));
    Server {
        _container: container,
        url,
    }
}

/// A stand-in coordinator: listens for status requests under `prefix` until dropped.
async fn coordinator(client: &async_nats::Client, prefix: &str) -> async_nats::Subscriber {
    let subjects = Subjects::new(Prefix::new(prefix).expect("prefix"));
    let subscriber = client
        .subscribe(subjects.api(ApiVerb::Status))
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    subscriber
}

/// Waits for the next status request and answers it with `status`.
async fn answer(
    client: &async_nats::Client,
    requests: &mut async_nats::Subscriber,
    status: RunStatus,
) {
    let message = tokio::time::timeout(WAIT, requests.next())
        .await
        .expect("a status request in time")
        .expect("subscription open");
    let request: ApiRequest = decode(&message.payload, 1 << 20).expect("request");
    let Request::Status { run } = request.request else {
        panic!("expected a status request, got {:?}", request.request);
    };
    let view = RunView {
        run,
        name: "stand-in".to_owned(),
        semantics: 1,
        status,
        reason: None,
        stop_reason: None,
        paused: false,
        usage: Default::default(),
        attempts: 0,
        limits: Default::default(),
        tasks: Vec::new(),
    };
    let reply = ApiResponse::new(Ok(Reply::Status {
        view: Box::new(view),
    }));
    let subject = message.reply.expect("reply subject");
    client
        .publish(subject, encode(&reply).expect("encode").into())
        .await
        .expect("reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_rides_through_a_coordinator_restart() {
    let server = tokio::task::block_in_place(start_server);
    let client = async_nats::connect(&server.url).await.expect("connect");

    // The coordinator answers once ("running"), is gone, then is back ("succeeded").
    let mut first = coordinator(&client, "restart").await;
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_workforce"))
        .args(["watch", "r1", "--nats", &server.url, "--prefix", "restart"])
        .args(["--reconnect-for", "30s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    answer(&client, &mut first, RunStatus::Running).await;
    first.unsubscribe().await.expect("unsubscribe");
    drop(first);

    // Gone until watch says it keeps asking.
    let mut stderr = tokio::io::BufReader::new(watch.stderr.take().expect("stderr")).lines();
    let said = tokio::time::timeout(WAIT, async {
        let mut said = String::new();
        while let Some(line) = stderr.next_line().await.expect("read stderr") {
            said.push_str(&line);
            if line.contains("coordinator not answering") {
                break;
            }
        }
        said
    })
    .await
    .expect("watch says it is retrying");
    assert!(said.contains("retrying for up to 30s"), "{said}");

    let mut back = coordinator(&client, "restart").await;
    answer(&client, &mut back, RunStatus::Succeeded).await;
    let status = tokio::time::timeout(WAIT, watch.wait())
        .await
        .expect("watch ends")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "a run that succeeded exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_gives_up_with_the_lost_contact_code_not_the_failed_run_code() {
    let server = tokio::task::block_in_place(start_server);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_workforce"))
        .args(["watch", "r1", "--nats", &server.url, "--prefix", "nobody"])
        .args(["--reconnect-for", "1s"])
        .output()
        .await
        .expect("watch");
    let text = text(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert_eq!(text.matches("retrying for up to 1s").count(), 1, "{text}");
    assert!(text.contains("lost contact with the coordinator"), "{text}");
}
