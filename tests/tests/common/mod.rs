//! The harness: a real NATS JetStream server in a container (testcontainers), and the real
//! `workforce-coordinator` and `workforce-worker` binaries as child processes.
//!
//! Binaries are the debug builds next to this test binary (`cargo build --bins` first; `just
//! test` does). The NATS image is `workforce-nats:local`, built by `just nats-image`.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use testcontainers::clients::Cli;
use testcontainers::core::WaitFor;
use testcontainers::{Container, GenericImage, RunnableImage};
use tokio::process::{Child, Command};
use workforce_coordinator::ApiClient;
use workforce_coordinator::log::{Entry, Event, EventLog};
use workforce_coordinator::replay::replay;
use workforce_coordinator::scheduler::{Decision, RunStatus, RunView};
use workforce_shared::{EventSeq, Prefix, RunId, Subjects};

pub const NATS_IMAGE: &str = "workforce-nats";
pub const NATS_TAG: &str = "local";

fn docker() -> &'static Cli {
    static DOCKER: OnceLock<Cli> = OnceLock::new();
    DOCKER.get_or_init(Cli::default)
}

/// A NATS server with JetStream and file storage, in its own container.
pub struct Nats {
    container: Container<'static, GenericImage>,
    pub url: String,
}

impl Nats {
    pub fn start() -> Self {
        let image = GenericImage::new(NATS_IMAGE, NATS_TAG)
            .with_exposed_port(4222)
            .with_wait_for(WaitFor::message_on_stderr("Server is ready"));
        let args = vec!["-js".to_owned(), "-sd".to_owned(), "/data".to_owned()];
        let container = docker().run(RunnableImage::from((image, args)));
        let port = container.get_host_port_ipv4(4222);
        Self {
            container,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }

    pub fn id(&self) -> &str {
        self.container.id()
    }
}

/// Path of one of the workspace's binaries, built next to the test binary.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/<test> -> target/debug/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first (`just test` does)",
        path.display()
    );
    path
}

/// A child process whose output goes to a log file, killed when dropped.
pub struct Process {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, program: &Path, args: &[String], dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let child = Command::new(program)
            .args(args)
            .env("WORKFORCE_LOG", "info,workforce=debug")
            .env_remove("WORKFORCE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit.
    pub async fn terminate(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let status = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await?;
            anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
        }
        tokio::time::timeout(within, self.child.wait())
            .await
            .with_context(|| format!("{} did not exit within {within:?} of SIGTERM", self.name))?
            .map_err(Into::into)
    }

    pub async fn wait(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .with_context(|| format!("{} did not exit within {within:?}", self.name))?
            .map_err(Into::into)
    }
}

/// Polls `check` until it yields a value or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(e) => bail!("{what}: not true within {within:?}; last error: {e:#}"),
                None => bail!("{what}: not true within {within:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn unique_prefix() -> Prefix {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Prefix::new(format!("t{}x{n}", std::process::id())).expect("valid prefix")
}

/// A worker to start: its id, concurrency and `--serve` lines.
pub struct WorkerSpec {
    pub id: String,
    pub concurrency: u32,
    pub serve: Vec<(String, String)>,
}

impl WorkerSpec {
    pub fn new(id: &str, concurrency: u32, serve: &[(&str, &str)]) -> Self {
        Self {
            id: id.to_owned(),
            concurrency,
            serve: serve
                .iter()
                .map(|(c, cmd)| ((*c).to_owned(), (*cmd).to_owned()))
                .collect(),
        }
    }
}

/// NATS, a coordinator and workers, each test with its own.
pub struct Cluster {
    pub nats: Nats,
    pub subjects: Subjects,
    pub dir: tempfile::TempDir,
    pub coordinator: Process,
    pub workers: Vec<Process>,
    pub api: ApiClient,
    pub client: async_nats::Client,
}

impl Cluster {
    pub async fn start(workers: &[WorkerSpec]) -> anyhow::Result<Self> {
        let nats = tokio::task::block_in_place(Nats::start);
        let prefix = unique_prefix();
        let subjects = Subjects::new(prefix.clone());
        let dir = tempfile::tempdir()?;
        let coordinator = Self::spawn_coordinator(&nats.url, &prefix, dir.path(), "coordinator");
        let client = async_nats::connect(&nats.url).await?;
        let api = ApiClient::new(client.clone(), subjects.clone(), Duration::from_secs(5));
        let mut cluster = Self {
            nats,
            subjects,
            dir,
            coordinator,
            workers: Vec::new(),
            api,
            client,
        };
        eventually(
            "the coordinator answers",
            Duration::from_secs(30),
            || async { Ok(cluster.api.runs().await.ok().map(|_| ())) },
        )
        .await
        .with_context(|| cluster.coordinator.output())?;
        for spec in workers {
            cluster.add_worker(spec);
        }
        let expected = workers.len();
        eventually(
            "every worker has joined",
            Duration::from_secs(30),
            || async {
                let live = cluster.api.workers().await?;
                Ok((live.len() == expected).then_some(()))
            },
        )
        .await?;
        Ok(cluster)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn_coordinator(url: &str, prefix: &Prefix, dir: &Path, name: &str) -> Process {
        let args = vec![
            "--nats".to_owned(),
            url.to_owned(),
            "--prefix".to_owned(),
            prefix.to_string(),
            "--data".to_owned(),
            dir.join("data").display().to_string(),
            "--worker-timeout".to_owned(),
            "5s".to_owned(),
        ];
        Process::spawn(name, &bin("workforce-coordinator"), &args, dir)
    }

    pub fn add_worker(&mut self, spec: &WorkerSpec) {
        let mut args = vec![
            "--nats".to_owned(),
            self.nats.url.clone(),
            "--prefix".to_owned(),
            self.subjects.prefix().to_string(),
            "--id".to_owned(),
            spec.id.clone(),
            "--concurrency".to_owned(),
            spec.concurrency.to_string(),
            "--heartbeat-interval".to_owned(),
            "500ms".to_owned(),
            "--ack-wait".to_owned(),
            "5s".to_owned(),
            "--grace-period".to_owned(),
            "5s".to_owned(),
        ];
        for (capability, command) in &spec.serve {
            args.push("--serve".to_owned());
            args.push(format!("{capability}={command}"));
        }
        let process = Process::spawn(&spec.id, &bin("workforce-worker"), &args, self.dir.path());
        self.workers.push(process);
    }

    pub async fn submit(&self, plan: &str) -> anyhow::Result<RunId> {
        Ok(self
            .api
            .submit(plan.to_owned(), workforce_shared::PlanFormat::Toml)
            .await?)
    }

    /// Waits for the run to end and returns its final view.
    pub async fn finish(&self, run: &RunId, within: Duration) -> anyhow::Result<RunView> {
        eventually(&format!("run {run} finishes"), within, || async {
            let view = self.api.status(run).await?;
            Ok((view.status != RunStatus::Running).then_some(view))
        })
        .await
        .with_context(|| self.logs())
    }

    /// Everything the processes printed, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = format!(
            "--- {} ---\n{}",
            self.coordinator.name,
            self.coordinator.output()
        );
        for w in &self.workers {
            out.push_str(&format!("\n--- {} ---\n{}", w.name, w.output()));
        }
        out
    }

    /// Stops the coordinator cleanly and returns its event log, checked by replay.
    pub async fn stop_and_replay(&mut self) -> anyhow::Result<Vec<(EventSeq, Event)>> {
        for w in &mut self.workers {
            w.terminate(Duration::from_secs(20)).await?;
        }
        let status = self.coordinator.terminate(Duration::from_secs(20)).await?;
        anyhow::ensure!(
            status.success(),
            "coordinator exited with {status}: {}",
            self.coordinator.output()
        );
        let log = EventLog::open_existing(&self.data())?;
        let events = log.read_all()?;
        replay(&events, None).context("the coordinator's log must replay with no divergence")?;
        Ok(events)
    }
}

/// The decisions in a log, in order.
pub fn decisions(events: &[(EventSeq, Event)]) -> Vec<(u64, Decision)> {
    events
        .iter()
        .filter_map(|(_, e)| match &e.entry {
            Entry::Decision(d) => Some((e.at_ms, d.clone())),
            Entry::Input(_) => None,
        })
        .collect()
}
