//! The harness: a real NATS server with JetStream in a container (testcontainers), and the real
//! `workforce-coordinator` and `workforce-worker` binaries as child processes.
//!
//! Binaries are the debug builds next to the running test or tool (`cargo build --bins`
//! first; `just test` does). The NATS image is `workforce-nats:local`, built by
//! `just nats-image`; the container comes from the fixture in `workforce-testkit`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::process::{Child, Command};
use workforce_coordinator::ApiClient;
use workforce_coordinator::log::{Entry, Event, EventLog};
use workforce_coordinator::replay::replay;
use workforce_coordinator::scheduler::{Decision, Input, RunStatus, RunView};
use workforce_shared::{EventSeq, Prefix, RunId, Subjects, TaskId, TaskResult, decode};
pub use workforce_testkit::{Nats, eventually};

/// Path of one of the workspace's binaries, built next to the running executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own executable path");
    // Tests run from target/<profile>/deps, tools from target/<profile>.
    let mut dir = exe.parent().expect("executable has a directory").to_owned();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first (`just test` does)",
        path.display()
    );
    path
}

/// A child process whose output goes to a log file, killed when dropped.
#[derive(Debug)]
pub struct Process {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, program: &Path, args: &[String], dir: &Path) -> Self {
        Self::spawn_with_env(name, program, args, dir, &[])
    }

    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        dir: &Path,
        env: &[(&str, &str)],
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let err = file.try_clone().expect("log file");
        let mut command = Command::new(program);
        command
            .args(args)
            .env("WORKFORCE_LOG", "info,workforce=debug")
            .env("NO_COLOR", "1")
            .env_remove("WORKFORCE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command
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

    async fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.child.id().context("the process has exited")?;
        signal_pid(pid, signal).await
    }

    /// SIGKILL, and waits for the exit.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGSTOP: the process freezes, its connections stay open.
    pub async fn pause(&self) -> anyhow::Result<()> {
        self.signal("STOP").await
    }

    pub async fn resume(&self) -> anyhow::Result<()> {
        self.signal("CONT").await
    }

    /// SIGTERM, then waits for the exit.
    pub async fn terminate(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        if self.child.id().is_some() {
            self.signal("TERM").await?;
        }
        self.wait(within).await
    }

    pub async fn wait(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .with_context(|| format!("{} did not exit within {within:?}", self.name))?
            .map_err(Into::into)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Sends a signal by name to a process id.
pub async fn signal_pid(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .await?;
    ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// Whether a process is gone: no such process, or a zombie (dead, not yet reaped).
pub fn gone(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // `pid (comm) S ...`: the state follows the last ')', since comm may hold one.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    matches!(state, None | Some('Z' | 'X'))
}

/// Waits until the file at `path` holds a pid (a command wrote `echo $$ > FILE`), and
/// returns it.
pub async fn pid_in(path: &Path, within: Duration) -> anyhow::Result<u32> {
    eventually(
        &format!("{} is written", path.display()),
        within,
        || async {
            Ok(std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok()))
        },
    )
    .await
}

fn unique_prefix() -> Prefix {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Prefix::new(format!("t{}x{n}", std::process::id())).expect("valid prefix")
}

/// A worker to start: its id, concurrency, `--serve` lines and any other flags.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    pub id: String,
    pub concurrency: u32,
    pub serve: Vec<(String, String)>,
    pub extra: Vec<String>,
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
            extra: Vec::new(),
        }
    }

    pub fn with_args(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }
}

/// How the harness runs the coordinator: its flags, the same on every restart.
#[derive(Clone, Debug)]
pub struct CoordinatorSpec {
    pub worker_timeout: Duration,
    pub results_ack_wait: Duration,
    pub attempt_grace: Duration,
    /// The broker's window for dropping a repeated message id; the coordinator's default if
    /// `None`.
    pub duplicate_window: Option<Duration>,
    /// Environment for the first start only (a failpoint that is to fire once).
    pub first_start_env: Vec<(String, String)>,
}

impl Default for CoordinatorSpec {
    fn default() -> Self {
        Self {
            worker_timeout: Duration::from_secs(3),
            results_ack_wait: Duration::from_secs(2),
            attempt_grace: Duration::from_secs(1),
            duplicate_window: None,
            first_start_env: Vec::new(),
        }
    }
}

impl CoordinatorSpec {
    /// The first coordinator aborts at `failpoint` (`<point>:<n>`, see the coordinator's
    /// `WORKFORCE_FAILPOINT`); restarted ones do not.
    pub fn with_failpoint(mut self, failpoint: &str) -> Self {
        self.first_start_env
            .push(("WORKFORCE_FAILPOINT".to_owned(), failpoint.to_owned()));
        self
    }

    fn args(&self, url: &str, prefix: &Prefix, dir: &Path) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let mut args = vec![
            "--nats".to_owned(),
            url.to_owned(),
            "--prefix".to_owned(),
            prefix.to_string(),
            "--data".to_owned(),
            dir.join("data").display().to_string(),
            "--worker-timeout".to_owned(),
            ms(self.worker_timeout),
            "--results-ack-wait".to_owned(),
            ms(self.results_ack_wait),
            "--attempt-grace".to_owned(),
            ms(self.attempt_grace),
        ];
        if let Some(window) = self.duplicate_window {
            args.extend(["--duplicate-window".to_owned(), ms(window)]);
        }
        args
    }
}

/// NATS, a coordinator and workers, each test with its own.
pub struct Cluster {
    pub nats: Nats,
    pub subjects: Subjects,
    pub dir: tempfile::TempDir,
    pub coordinator: Process,
    pub workers: Vec<Process>,
    specs: Vec<WorkerSpec>,
    pub api: ApiClient,
    pub client: async_nats::Client,
    coordinator_starts: u32,
    coordinator_spec: CoordinatorSpec,
    /// Sequences in the results stream of what the test published there itself
    /// ([`Cluster::publish_raw`]): the only messages that may be something other than a result.
    injected: Mutex<BTreeSet<u64>>,
}

impl Cluster {
    pub async fn start(workers: &[WorkerSpec]) -> anyhow::Result<Self> {
        Self::start_with(workers, CoordinatorSpec::default()).await
    }

    /// Like [`Cluster::start`], with the coordinator run as `coordinator` says.
    pub async fn start_with(
        workers: &[WorkerSpec],
        coordinator: CoordinatorSpec,
    ) -> anyhow::Result<Self> {
        let nats = Nats::start().await;
        let subjects = Subjects::new(unique_prefix());
        let dir = tempfile::tempdir()?;
        let env: Vec<(&str, &str)> = coordinator
            .first_start_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let coordinator_spec = coordinator.clone();
        let coordinator = spawn_coordinator(&coordinator_spec, &nats.url, &subjects, &dir, &env);
        let client = async_nats::connect(&nats.url).await?;
        let api = ApiClient::new(client.clone(), subjects.clone(), Duration::from_secs(5));
        let mut cluster = Self {
            nats,
            subjects,
            dir,
            coordinator,
            workers: Vec::new(),
            specs: Vec::new(),
            api,
            client,
            coordinator_starts: 1,
            coordinator_spec,
            injected: Mutex::default(),
        };
        cluster.wait_for_coordinator().await?;
        for spec in workers {
            cluster.add_worker(spec);
        }
        cluster.wait_for_workers(workers.len()).await?;
        Ok(cluster)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub async fn wait_for_coordinator(&self) -> anyhow::Result<()> {
        eventually(
            "the coordinator answers",
            Duration::from_secs(30),
            || async { Ok(self.api.runs().await.ok().map(drop)) },
        )
        .await
        .with_context(|| self.coordinator.output())
    }

    pub async fn wait_for_workers(&self, count: usize) -> anyhow::Result<()> {
        eventually(
            &format!("{count} workers are live"),
            Duration::from_secs(30),
            || async {
                let live = self.api.workers().await?;
                Ok((live.len() == count).then_some(()))
            },
        )
        .await
        .with_context(|| self.logs())
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
        args.extend(spec.extra.iter().cloned());
        let process = Process::spawn(&spec.id, &bin("workforce-worker"), &args, self.dir.path());
        self.workers.push(process);
        self.specs.push(spec.clone());
    }

    /// The worker with this id.
    pub fn worker(&mut self, id: &str) -> &mut Process {
        let index = self
            .specs
            .iter()
            .position(|s| s.id == id)
            .unwrap_or_else(|| panic!("no worker {id}"));
        &mut self.workers[index]
    }

    /// Starts a new coordinator process on the same data directory (after the last one died).
    pub async fn restart_coordinator(&mut self) -> anyhow::Result<()> {
        ensure!(
            !self.coordinator.running(),
            "the coordinator is still running"
        );
        self.coordinator_starts += 1;
        self.coordinator = spawn_coordinator(
            &self.coordinator_spec,
            &self.nats.url,
            &self.subjects,
            &self.dir,
            &[],
        );
        self.wait_for_coordinator().await
    }

    pub async fn submit(&self, plan: &str) -> anyhow::Result<RunId> {
        Ok(self
            .api
            .submit(
                plan.to_owned(),
                workforce_shared::PlanFormat::Toml,
                workforce_shared::ParamValues::new(),
            )
            .await?)
    }

    /// The `workforce` CLI pointed at this cluster: `args` (a command and its arguments), then
    /// `--nats` and `--prefix`. Killed if dropped while running.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin("workforce"));
        command
            .args(args)
            .args(["--nats", &self.nats.url, "--prefix"])
            .arg(self.subjects.prefix().to_string())
            .env_remove("WORKFORCE_NATS_URL")
            .env_remove("WORKFORCE_PREFIX")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
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

    /// Waits until the task is running and returns the view.
    pub async fn running(&self, run: &RunId, task: &str, within: Duration) -> anyhow::Result<()> {
        eventually(&format!("task {task} runs"), within, || async {
            let view = self.api.status(run).await?;
            Ok(view
                .tasks
                .iter()
                .any(|t| {
                    t.task.as_str() == task
                        && t.status == workforce_coordinator::scheduler::TaskStatus::Running
                })
                .then_some(()))
        })
        .await
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

    /// Waits until the coordinator has taken and acknowledged every stored result.
    pub async fn results_settled(&self) -> anyhow::Result<()> {
        let js = async_nats::jetstream::new(self.client.clone());
        let stream = js.get_stream(self.subjects.results_stream()).await?;
        let name = self.subjects.results_consumer();
        eventually(
            "the coordinator has acked every result",
            Duration::from_secs(30),
            || {
                let stream = stream.clone();
                let name = name.clone();
                async move {
                    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream
                        .get_consumer(&name)
                        .await
                        .map_err(|e| anyhow::anyhow!(e))?;
                    let info = consumer.info().await?;
                    Ok((info.num_pending == 0 && info.num_ack_pending == 0).then_some(()))
                }
            },
        )
        .await
    }

    /// Every result the results stream holds, in stream order. Fails if a message cannot be
    /// read, or does not decode as a result unless the test published it itself.
    pub async fn stored_results(&self) -> anyhow::Result<Vec<TaskResult>> {
        let js = async_nats::jetstream::new(self.client.clone());
        let name = self.subjects.results_stream();
        let mut stream = js.get_stream(&name).await?;
        let last = stream.info().await?.state.last_sequence;
        let injected = self.injected.lock().expect("not poisoned").clone();
        let mut results = Vec::new();
        for seq in 1..=last {
            let message = stream
                .get_raw_message(seq)
                .await
                .with_context(|| format!("reading message {seq} of stream {name}"))?;
            match decode::<TaskResult>(&message.payload, 1 << 20) {
                Ok(result) => results.push(result),
                Err(_) if injected.contains(&seq) => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "message {seq} of stream {name} ({}) is not a result",
                            message.subject
                        )
                    });
                }
            }
        }
        Ok(results)
    }

    /// The coordinator's event log, read while no coordinator runs (it holds the log locked).
    pub fn read_log(&mut self) -> anyhow::Result<Vec<(EventSeq, Event)>> {
        ensure!(
            !self.coordinator.running(),
            "the coordinator is running and holds the log"
        );
        Ok(EventLog::read(&self.data())?.events)
    }

    /// Stops workers and coordinator cleanly, then checks the invariant on the log and the
    /// results stream. Returns the log.
    pub async fn stop_and_check(&mut self) -> anyhow::Result<Vec<(EventSeq, Event)>> {
        self.results_settled().await?;
        let results = self.stored_results().await?;
        for w in &mut self.workers {
            if w.running() {
                w.terminate(Duration::from_secs(20)).await?;
            }
        }
        let status = self.coordinator.terminate(Duration::from_secs(20)).await?;
        ensure!(
            status.success(),
            "coordinator exited with {status}: {}",
            self.coordinator.output()
        );
        let events = EventLog::read(&self.data())?.events;
        let report = check_invariant(&events, &results)?;
        ensure!(
            report.starts == self.coordinator_starts,
            "the log records {} coordinator starts, {} happened",
            report.starts,
            self.coordinator_starts
        );
        Ok(events)
    }

    /// Publishes raw bytes on a subject, through JetStream when a stream holds the subject.
    pub async fn publish_raw(
        &self,
        subject: String,
        bytes: Vec<u8>,
        jetstream: bool,
    ) -> anyhow::Result<()> {
        if jetstream {
            let js = async_nats::jetstream::new(self.client.clone());
            let stored = js.publish(subject, bytes.into()).await?.await?;
            if stored.stream == self.subjects.results_stream() {
                self.injected
                    .lock()
                    .expect("not poisoned")
                    .insert(stored.sequence);
            }
        } else {
            self.client.publish(subject, bytes.into()).await?;
            self.client.flush().await?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nats", &self.nats)
            .field("prefix", self.subjects.prefix())
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

fn spawn_coordinator(
    spec: &CoordinatorSpec,
    url: &str,
    subjects: &Subjects,
    dir: &tempfile::TempDir,
    env: &[(&str, &str)],
) -> Process {
    Process::spawn_with_env(
        "coordinator",
        &bin("workforce-coordinator"),
        &spec.args(url, subjects.prefix(), dir.path()),
        dir.path(),
        env,
    )
}

/// The decisions in a log, with their times, in order.
pub fn decisions(events: &[(EventSeq, Event)]) -> Vec<(u64, Decision)> {
    events
        .iter()
        .filter_map(|(_, e)| match &e.entry {
            Entry::Decision(d) => Some((e.at_ms, d.clone())),
            Entry::Input(_) => None,
        })
        .collect()
}

/// Each input in a log that `select` picks, with the decisions it led to.
pub fn decided_on(
    events: &[(EventSeq, Event)],
    mut select: impl FnMut(&Input) -> bool,
) -> Vec<(&Input, Vec<&Decision>)> {
    let mut picked: Vec<(&Input, Vec<&Decision>)> = Vec::new();
    let mut current = false;
    for (_, event) in events {
        match &event.entry {
            Entry::Input(input) => {
                current = select(input);
                if current {
                    picked.push((input, Vec::new()));
                }
            }
            Entry::Decision(decision) => {
                if current && let Some((_, decided)) = picked.last_mut() {
                    decided.push(decision);
                }
            }
        }
    }
    picked
}

/// What [`check_invariant`] counted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct InvariantReport {
    /// Tasks ever dispatched.
    pub dispatched: usize,
    /// Terminal events by kind (this and the next two), those a redrive or restore undid
    /// included.
    pub completed: usize,
    pub dead_lettered: usize,
    pub canceled: usize,
    /// Results in the stream, every one of them in the log.
    pub results: usize,
    pub starts: u32,
}

/// The invariant every fault test checks: every task ever dispatched has exactly one terminal
/// event in the log (since its last redrive or restore, which undo the one before); every
/// result the broker stored is in the log; the log replays with no divergence.
pub fn check_invariant(
    events: &[(EventSeq, Event)],
    stored: &[TaskResult],
) -> anyhow::Result<InvariantReport> {
    replay(events, None).context("the log must replay with no divergence")?;
    workforce_coordinator::invariants::check(events)
        .context("the log must keep every invariant")?;
    let mut terminal: BTreeMap<(RunId, TaskId), u32> = BTreeMap::new();
    let mut dispatched: BTreeMap<(RunId, TaskId), ()> = BTreeMap::new();
    let mut report = InvariantReport::default();
    let mut logged: Vec<&TaskResult> = Vec::new();
    for (_, event) in events {
        match &event.entry {
            Entry::Decision(Decision::Dispatch { run, task, .. }) => {
                dispatched.insert((run.clone(), task.clone()), ());
            }
            Entry::Decision(Decision::TaskCompleted { run, task, .. }) => {
                report.completed += 1;
                *terminal.entry((run.clone(), task.clone())).or_default() += 1;
            }
            Entry::Decision(Decision::DeadLettered { run, task, .. }) => {
                report.dead_lettered += 1;
                *terminal.entry((run.clone(), task.clone())).or_default() += 1;
            }
            Entry::Decision(Decision::TaskCanceled { run, task, .. }) => {
                report.canceled += 1;
                *terminal.entry((run.clone(), task.clone())).or_default() += 1;
            }
            Entry::Decision(Decision::TaskRedriven { run, task, .. }) => {
                // Its dead letter is undone: it is to end once more.
                let n = terminal.remove(&(run.clone(), task.clone())).unwrap_or(0);
                ensure!(
                    n == 1,
                    "task {run}/{task} was redriven with {n} terminal events"
                );
            }
            Entry::Decision(Decision::TaskRestored { run, task }) => {
                // Its cancel (or its skip, not counted here) is undone: it waits again.
                let n = terminal.remove(&(run.clone(), task.clone())).unwrap_or(0);
                ensure!(
                    n <= 1,
                    "task {run}/{task} was restored with {n} terminal events"
                );
            }
            Entry::Input(Input::ResultReceived { result }) => logged.push(result),
            Entry::Input(Input::CoordinatorStarted { .. }) => report.starts += 1,
            Entry::Input(_) | Entry::Decision(_) => {}
        }
    }
    for key in dispatched.keys() {
        let n = terminal.get(key).copied().unwrap_or(0);
        ensure!(
            n == 1,
            "task {}/{} was dispatched and has {n} terminal events",
            key.0,
            key.1
        );
    }
    if let Some((key, n)) = terminal.iter().find(|(_, n)| **n > 1) {
        bail!("task {}/{} has {n} terminal events", key.0, key.1);
    }
    for result in stored {
        ensure!(
            logged.contains(&result),
            "the broker stored a result the log lacks: {}/{} attempt {} from {}",
            result.run,
            result.task,
            result.attempt,
            result.worker
        );
    }
    report.dispatched = dispatched.len();
    report.results = stored.len();
    Ok(report)
}
