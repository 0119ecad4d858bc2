//! Commands that ask the coordinator: submit, status, runs, workers, cancel.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use workforce_coordinator::ApiClient;
use workforce_coordinator::scheduler::PauseScope;
use workforce_shared::{ParamValues, Plan, PlanFormat, PlanLimits, RunId, TaskId};

use crate::out::outln;
use crate::{render, watch};

/// A plan file and values for its parameters, checked here before NATS is involved.
#[derive(Debug)]
pub struct Submission {
    path: PathBuf,
    source: String,
    format: PlanFormat,
    values: ParamValues,
}

impl Submission {
    /// Reads the plan and checks it, and the values against it, for a quick, precise error;
    /// the coordinator checks again (with its own limits) and substitutes itself.
    pub fn read(path: &Path, values: ParamValues) -> anyhow::Result<Self> {
        let source = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read plan {}", path.display()))?;
        let format = PlanFormat::detect(path, &source);
        let limits = PlanLimits::default();
        Plan::parse(&source, format, &limits)
            .with_context(|| format!("{} is not a valid plan", path.display()))?
            .with_params(&values, &limits)
            .with_context(|| format!("cannot submit {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            source,
            format,
            values,
        })
    }
}

pub async fn submit(
    api: &ApiClient,
    submission: Submission,
    wait: Option<Duration>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let Submission {
        path,
        source,
        format,
        values,
    } = submission;
    // Not retried: a submit that timed out may have been accepted, and a retry would start a
    // second run.
    let run = api.submit(source, format, values).await?;
    let Some(reconnect_for) = wait else {
        if json {
            outln!("{}", json!({ "run": run }))?;
        } else {
            outln!("{run}")?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    if !json {
        outln!("submitted {} as run {run}", path.display())?;
    }
    watch::watch(api, &run, reconnect_for, json).await
}

pub async fn status(api: &ApiClient, run: &RunId, json: bool) -> anyhow::Result<ExitCode> {
    let view = api.status(run).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&view)?)?;
    } else {
        render::write_run_view(&mut std::io::stdout().lock(), &view)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn runs(api: &ApiClient, json: bool) -> anyhow::Result<ExitCode> {
    let runs = api.runs().await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&runs)?)?;
    } else {
        render::write_runs(&mut std::io::stdout().lock(), &runs)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn workers(api: &ApiClient, json: bool) -> anyhow::Result<ExitCode> {
    let workers = api.workers().await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&workers)?)?;
    } else {
        render::write_workers(&mut std::io::stdout().lock(), &workers)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(
    api: &ApiClient,
    run: &RunId,
    task: Option<&TaskId>,
    note: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    api.cancel(run, task, note).await?;
    if json {
        outln!(
            "{}",
            json!({ "run": run, "task": task, "note": note, "cancel_requested": true })
        )?;
    } else {
        match task {
            Some(task) => outln!("task {task} of run {run} canceled")?,
            None => outln!("run {run} canceled")?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Pauses (`pause`) or resumes dispatch of a run or a capability.
pub async fn pause(
    api: &ApiClient,
    scope: PauseScope,
    pause: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    api.pause(scope.clone(), pause).await?;
    let done = if pause { "paused" } else { "resumed" };
    if json {
        outln!("{}", json!({ "scope": scope, done: true }))?;
    } else {
        outln!("{scope} {done}")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn dlq_list(
    api: &ApiClient,
    run: Option<&RunId>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let letters = api.dead_letters(run).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&letters)?)?;
    } else {
        render::write_dead_letters(&mut std::io::stdout().lock(), &letters)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn dlq_show(
    api: &ApiClient,
    run: &RunId,
    task: &TaskId,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let letters = api.dead_letters(Some(run)).await?;
    let letter = letters
        .into_iter()
        .find(|l| &l.task == task)
        .with_context(|| format!("task {task} of run {run} is not dead-lettered"))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&letter)?)?;
    } else {
        render::write_dead_letter(&mut std::io::stdout().lock(), &letter)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn dlq_redrive(
    api: &ApiClient,
    run: &RunId,
    task: Option<&TaskId>,
    with_input: Option<serde_json::Value>,
    force: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    api.redrive(run, task, with_input, force).await?;
    if json {
        outln!("{}", json!({ "run": run, "task": task, "redriven": true }))?;
    } else {
        match task {
            Some(task) => outln!("task {task} of run {run} redriven")?,
            None => outln!("the dead letters of run {run} redriven")?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
