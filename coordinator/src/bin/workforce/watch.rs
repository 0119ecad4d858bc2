//! `watch`: follows a run by polling its status. On a terminal, a progress bar per task and
//! one for the run; otherwise one line per status change, for logs and CI.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use workforce_coordinator::ApiClient;
use workforce_coordinator::scheduler::{RunStatus, RunView, TaskStatus, TaskView};
use workforce_shared::RunId;

use crate::render;

const POLL: Duration = Duration::from_millis(250);

fn task_line(t: &TaskView) -> String {
    let mut line = format!(
        "{:<10} attempt {}/{}",
        t.status.as_str(),
        t.attempt,
        t.max_attempts
    );
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
        let tasks = view
            .tasks
            .iter()
            .map(|t| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(format!("{:<width$}", t.task.as_str()));
                (t.task.to_string(), bar)
            })
            .collect();
        Self { multi, run, tasks }
    }

    fn update(&self, view: &RunView) {
        let done = view.tasks.iter().filter(|t| t.status.is_terminal()).count();
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

/// Follows `run` to its end. Exits 0 only if it succeeded.
pub async fn watch(api: &ApiClient, run: &RunId, json: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut view = api.status(run).await?;
    let bars = (!json && std::io::stderr().is_terminal()).then(|| Bars::new(&view));
    let mut seen: BTreeMap<String, (TaskStatus, u32)> = BTreeMap::new();
    loop {
        match &bars {
            Some(bars) => bars.update(&view),
            None if !json => {
                for t in &view.tasks {
                    let now = (t.status, t.attempt);
                    if seen.get(t.task.as_str()) != Some(&now) {
                        seen.insert(t.task.to_string(), now);
                        println!(
                            "[{:>7}] {:<16} {}",
                            render::millis(started.elapsed().as_millis() as u64),
                            t.task.as_str(),
                            task_line(t)
                        );
                    }
                }
            }
            None => {}
        }
        if view.status != RunStatus::Running {
            break;
        }
        tokio::time::sleep(POLL).await;
        view = api.status(run).await?;
    }
    if let Some(bars) = &bars {
        bars.finish();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        println!();
        render::run_view(&view);
        println!(
            "run {} {} in {}",
            view.run,
            view.status.as_str(),
            render::millis(started.elapsed().as_millis() as u64)
        );
    }
    Ok(match view.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Running | RunStatus::Failed | RunStatus::Canceled => ExitCode::FAILURE,
    })
}
