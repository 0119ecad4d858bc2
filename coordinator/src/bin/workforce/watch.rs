//! `watch`: follows a run by polling its status. On a terminal, a progress bar per task and
//! one for the run; otherwise one line per status change, for logs and CI. A coordinator that
//! stops answering (it is restarting) is asked again for up to `--reconnect-for`; a run lost
//! sight of is never reported as failed.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use workforce_coordinator::scheduler::{RunStatus, RunView, TaskStatus, TaskView};
use workforce_coordinator::{ApiClient, ClientError};
use workforce_shared::RunId;

use crate::exit;
use crate::out::outln;
use crate::render;

const POLL: Duration = Duration::from_millis(250);
/// Pause between questions to a coordinator that did not answer.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// The coordinator did not answer for `--reconnect-for`: the run's outcome is unknown.
#[derive(Debug, thiserror::Error)]
#[error(
    "lost contact with the coordinator: no answer for {}; run {run} may still be running \
     (ask again with `workforce watch {run}`)",
    humantime::format_duration(*.waited)
)]
pub struct LostContact {
    run: RunId,
    waited: Duration,
    #[source]
    last: ClientError,
}

/// Asks for a run's status, riding through a coordinator restart.
struct Follower<'a> {
    api: &'a ApiClient,
    run: &'a RunId,
    reconnect_for: Duration,
    /// When the coordinator stopped answering, while it does not.
    outage: Option<Instant>,
}

impl Follower<'_> {
    async fn status(&mut self, bars: Option<&Bars>) -> anyhow::Result<RunView> {
        loop {
            match self.api.status(self.run).await {
                Ok(view) => {
                    if self.outage.take().is_some() {
                        notice(bars, "the coordinator is answering again");
                    }
                    return Ok(view);
                }
                Err(error) if error.is_retryable() => {
                    let since = match self.outage {
                        Some(since) => since,
                        None => {
                            notice(
                                bars,
                                &format!(
                                    "coordinator not answering ({error}); retrying for up to {}",
                                    humantime::format_duration(self.reconnect_for)
                                ),
                            );
                            *self.outage.insert(Instant::now())
                        }
                    };
                    let waited = since.elapsed();
                    if waited >= self.reconnect_for {
                        return Err(LostContact {
                            run: self.run.clone(),
                            waited,
                            last: error,
                        }
                        .into());
                    }
                    tokio::time::sleep(RETRY_EVERY.min(self.reconnect_for - waited)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// A message on stderr, above the progress bars if there are any.
fn notice(bars: Option<&Bars>, message: &str) {
    match bars {
        Some(bars) => bars.multi.suspend(|| eprintln!("workforce: {message}")),
        None => eprintln!("workforce: {message}"),
    }
}

fn task_line(t: &TaskView) -> String {
    let mut line = format!("{:<10} attempt {}", t.status.as_str(), render::attempt(t));
    if let Some(detail) = &t.detail {
        line.push_str(" — ");
        line.push_str(detail);
    }
    line
}

struct Bars {
    multi: MultiProgress,
    run: ProgressBar,
    tasks: BTreeMap<String, ProgressBar>,
    style: ProgressStyle,
    /// Width of the task-id column, from the tasks the run had at first.
    width: usize,
}

impl Bars {
    fn new(view: &RunView) -> Self {
        let multi = MultiProgress::new();
        let run = multi.add(ProgressBar::new(view.tasks.len() as u64));
        run.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        run.set_prefix(format!("run {}", view.run));
        let width = view
            .tasks
            .iter()
            .map(|t| t.task.as_str().len())
            .max()
            .unwrap_or(4);
        let style = ProgressStyle::with_template("  {spinner} {prefix} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Self {
            multi,
            run,
            tasks: BTreeMap::new(),
            style,
            width,
        }
    }

    fn update(&mut self, view: &RunView) {
        // A run grows when its tasks spawn: a bar for each task not seen before.
        for t in &view.tasks {
            if !self.tasks.contains_key(t.task.as_str()) {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(self.style.clone());
                bar.set_prefix(format!("{:<width$}", t.task.as_str(), width = self.width));
                self.tasks.insert(t.task.to_string(), bar);
            }
        }
        let done = view.tasks.iter().filter(|t| t.status.is_terminal()).count();
        self.run.set_length(view.tasks.len() as u64);
        self.run.set_position(done as u64);
        self.run.set_message(view.status.as_str());
        for t in &view.tasks {
            if let Some(bar) = self.tasks.get(t.task.as_str()) {
                bar.set_message(task_line(t));
                if t.status.is_terminal() {
                    bar.finish();
                } else {
                    bar.tick();
                }
            }
        }
    }

    fn finish(&self) {
        self.run.finish();
        for bar in self.tasks.values() {
            bar.finish();
        }
        let _ = self.multi.clear();
    }
}

/// Follows `run` to its end. Exits 0 only if it succeeded, 1 if it failed, 4 if it was
/// canceled, 5 if a limit stopped it; a coordinator silent for `reconnect_for` ends it with
/// [`LostContact`].
pub async fn watch(
    api: &ApiClient,
    run: &RunId,
    reconnect_for: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut follower = Follower {
        api,
        run,
        reconnect_for,
        outage: None,
    };
    let mut view = follower.status(None).await?;
    let mut bars = (!json && std::io::stderr().is_terminal()).then(|| Bars::new(&view));
    let mut seen: BTreeMap<String, (TaskStatus, u32)> = BTreeMap::new();
    loop {
        match &mut bars {
            Some(bars) => bars.update(&view),
            None if !json => {
                for t in &view.tasks {
                    let now = (t.status, t.attempt);
                    if seen.get(t.task.as_str()) != Some(&now) {
                        seen.insert(t.task.to_string(), now);
                        outln!(
                            "[{:>7}] {:<16} {}",
                            render::millis(started.elapsed().as_millis() as u64),
                            t.task.as_str(),
                            task_line(t)
                        )?;
                    }
                }
            }
            None => {}
        }
        if view.status != RunStatus::Running {
            break;
        }
        tokio::time::sleep(POLL).await;
        view = follower.status(bars.as_ref()).await?;
    }
    if let Some(bars) = &bars {
        bars.finish();
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&view)?)?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out)?;
        render::write_run_view(&mut out, &view)?;
        writeln!(
            out,
            "run {} {} in {}",
            view.run,
            view.status.as_str(),
            render::millis(started.elapsed().as_millis() as u64)
        )?;
        out.flush()?;
    }
    Ok(match view.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Failed => ExitCode::from(exit::RUN_FAILED),
        RunStatus::Canceled => ExitCode::from(exit::RUN_CANCELED),
        RunStatus::Stopped => ExitCode::from(exit::RUN_STOPPED),
        // The loop ends only once the run has.
        RunStatus::Running => ExitCode::from(exit::ERROR),
    })
}
