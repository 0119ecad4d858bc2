//! Commands that ask the coordinator: submit, status, runs, workers, cancel.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;
use workforce_coordinator::ApiClient;
use workforce_shared::{Plan, PlanFormat, PlanLimits, RunId};

use crate::{render, watch};

pub async fn submit(
    api: &ApiClient,
    path: &Path,
    wait: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let source = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read plan {}", path.display()))?;
    let format = PlanFormat::detect(path, &source);
    // Check locally first for a quick, precise error; the coordinator checks again.
    Plan::parse(&source, format, &PlanLimits::default())
        .with_context(|| format!("{} is not a valid plan", path.display()))?;
    let run = api.submit(source, format).await?;
    if !wait {
        if json {
            println!("{}", json!({ "run": run }));
        } else {
            println!("{run}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        println!("submitted {} as run {run}", path.display());
    }
    watch::watch(api, &run, json).await
}

pub async fn status(api: &ApiClient, run: &RunId, json: bool) -> anyhow::Result<ExitCode> {
    let view = api.status(run).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        render::run_view(&view);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn runs(api: &ApiClient, json: bool) -> anyhow::Result<ExitCode> {
    let runs = api.runs().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else {
        render::runs(&runs);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn workers(api: &ApiClient, json: bool) -> anyhow::Result<ExitCode> {
    let workers = api.workers().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&workers)?);
    } else {
        render::workers(&workers);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(api: &ApiClient, run: &RunId, json: bool) -> anyhow::Result<ExitCode> {
    api.cancel(run).await?;
    if json {
        println!("{}", json!({ "run": run, "cancel_requested": true }));
    } else {
        println!("run {run} canceled");
    }
    Ok(ExitCode::SUCCESS)
}
