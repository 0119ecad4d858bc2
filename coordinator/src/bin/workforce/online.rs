//! Commands that ask the coordinator: submit, status, runs, workers, cancel.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use workforce_coordinator::ApiClient;
use workforce_shared::{Plan, PlanFormat, PlanLimits, RunId};

use crate::out::outln;
use crate::{render, watch};

pub async fn submit(
    api: &ApiClient,
    path: &Path,
    wait: Option<Duration>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let source = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read plan {}", path.display()))?;
    let format = PlanFormat::detect(path, &source);
    // Check locally first for a quick, precise error; the coordinator checks again.
    Plan::parse(&source, format, &PlanLimits::default())
        .with_context(|| format!("{} is not a valid plan", path.display()))?;
    // Not retried: a submit that timed out may have been accepted, and a retry would start a
    // second run.
    let run = api.submit(source, format).await?;
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

pub async fn cancel(api: &ApiClient, run: &RunId, json: bool) -> anyhow::Result<ExitCode> {
    api.cancel(run).await?;
    if json {
        outln!("{}", json!({ "run": run, "cancel_requested": true }))?;
    } else {
        outln!("run {run} canceled")?;
    }
    Ok(ExitCode::SUCCESS)
}
