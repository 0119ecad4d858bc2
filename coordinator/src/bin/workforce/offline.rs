//! Commands that need no NATS: validate, replay, simulate.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;
use workforce_coordinator::log::{Event, EventLog};
use workforce_coordinator::replay::{ReplayError, replay as replay_log};
use workforce_coordinator::simulate::{SimConfig, simulate as run_simulation};
use workforce_shared::{Plan, PlanLimits, RunId};

use crate::render;

pub fn validate(path: &Path, max_input_bytes: usize, json: bool) -> anyhow::Result<ExitCode> {
    let plan = match Plan::load(path, &PlanLimits { max_input_bytes }) {
        Ok(plan) => plan,
        Err(e) => {
            if json {
                println!("{}", json!({ "valid": false, "error": e.to_string() }));
            } else {
                eprintln!("{e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    if json {
        println!("{}", json!({ "valid": true, "plan": plan }));
        return Ok(ExitCode::SUCCESS);
    }
    let mut capabilities: BTreeMap<&str, usize> = BTreeMap::new();
    for task in &plan.tasks {
        *capabilities.entry(task.capability.as_str()).or_default() += 1;
    }
    let caps: Vec<String> = capabilities
        .iter()
        .map(|(c, n)| format!("{c} ({n})"))
        .collect();
    println!(
        "plan {:?} is valid: {} task(s); capabilities: {}",
        plan.name,
        plan.tasks.len(),
        caps.join(", ")
    );
    let rows: Vec<Vec<String>> = plan
        .tasks
        .iter()
        .map(|t| {
            let needs: Vec<&str> = t.needs.iter().map(|n| n.as_str()).collect();
            vec![
                t.id.to_string(),
                t.capability.to_string(),
                t.priority.to_string(),
                t.retry.max_attempts.to_string(),
                render::millis(t.timeout_ms),
                needs.join(", "),
            ]
        })
        .collect();
    render::table(
        &[
            "TASK",
            "CAPABILITY",
            "PRIORITY",
            "ATTEMPTS",
            "TIMEOUT",
            "NEEDS",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub fn replay(data: &Path, run: Option<&RunId>, json: bool) -> anyhow::Result<ExitCode> {
    let log = EventLog::open_existing(data)?;
    let events = log.read_all()?;
    match replay_log(&events, run) {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    json!({
                        "identical": true,
                        "events": report.events,
                        "inputs": report.inputs,
                        "decisions": report.decisions,
                        "run_decisions": report.run_decisions,
                        "runs": report.runs,
                    })
                );
            } else {
                println!(
                    "replayed {} events ({} inputs, {} decisions): every decision reproduced, identical",
                    report.events, report.inputs, report.decisions
                );
                if let Some(run) = run {
                    println!("run {run}: {} decisions checked", report.run_decisions);
                }
                render::runs(&report.runs);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ ReplayError::Divergence { .. }) => {
            if json {
                println!(
                    "{}",
                    json!({ "identical": false, "divergence": e.to_string() })
                );
            } else {
                eprintln!("replay diverged: {e}");
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

pub fn simulate(
    path: &Path,
    config: SimConfig,
    data: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(config.workers > 0, "--workers must be at least 1");
    anyhow::ensure!(config.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&config.fail_rate),
        "--fail-rate must be between 0 and 1"
    );
    let plan = Plan::load(path, &PlanLimits::default())?;
    let temporary;
    let dir = match data {
        Some(dir) => dir,
        None => {
            temporary = tempfile::tempdir().context("cannot create a temporary directory")?;
            temporary.path()
        }
    };
    let mut log = EventLog::open(dir)?;
    anyhow::ensure!(
        log.is_empty(),
        "{} already holds an event log; give --data an empty or new directory",
        dir.display()
    );
    let report = {
        let mut sink = |events: &[Event]| log.append(events).map(|_| ());
        run_simulation(&plan, &config, Some(&mut sink))?
    };
    let replayed = replay_log(&log.read_all()?, None);
    let identical = replayed.is_ok();
    let summary = report.summary.as_ref();
    if json {
        println!(
            "{}",
            json!({
                "run": report.run,
                "plan": plan.name,
                "workers": config.workers,
                "seed": config.seed,
                "fail_rate": config.fail_rate,
                "events": report.events,
                "attempts": report.attempts,
                "virtual_ms": report.virtual_ms,
                "digest": report.digest,
                "summary": summary,
                "replay_identical": identical,
                "data": data.map(|d| d.display().to_string()),
            })
        );
    } else {
        let status = summary.map_or("unfinished", |s| s.status.as_str());
        println!(
            "simulated run {} of plan {:?}: {status}",
            report.run, plan.name
        );
        println!(
            "  workers {}, concurrency {}, seed {}, fail rate {}",
            config.workers, config.concurrency, config.seed, config.fail_rate
        );
        if let Some(s) = summary {
            println!(
                "  tasks {}: {} completed, {} failed, {} canceled; {} attempts",
                s.tasks, s.completed, s.failed, s.canceled, report.attempts
            );
            if let Some(reason) = &s.reason {
                println!("  reason: {reason}");
            }
        }
        println!(
            "  virtual time {}; {} events; replay {}",
            render::millis(report.virtual_ms),
            report.events,
            if identical { "identical" } else { "DIVERGED" }
        );
        match data {
            Some(d) => println!(
                "  log: {} (check it with `workforce replay --data {}`)",
                d.display(),
                d.display()
            ),
            None => println!("  log: temporary (pass --data DIR to keep it)"),
        }
        println!("digest {}", report.digest);
    }
    if let Err(e) = replayed {
        anyhow::bail!("the simulated log does not replay: {e}");
    }
    Ok(ExitCode::SUCCESS)
}
