//! Commands that need no NATS: validate, replay, simulate.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::Context;
use serde_json::json;
use workforce_coordinator::invariants;
use workforce_coordinator::log::{Entry, Event, EventLog};
use workforce_coordinator::recovery::{DeadlineRule, recover};
use workforce_coordinator::replay::{ReplayError, replay as replay_log};
use workforce_coordinator::scheduler::{Decision, SEMANTICS_VERSION};
use workforce_coordinator::simulate::{SimConfig, check_seeds, simulate as run_simulation};
use workforce_shared::{ParamValues, Plan, PlanLimits, RunId};

use crate::out::outln;
use crate::render;

/// Checks a plan; with `values`, also substitutes them and summarizes the concrete plan,
/// else lists the plan's parameters.
pub fn validate(
    path: &Path,
    max_input_bytes: usize,
    values: Option<&ParamValues>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let limits = PlanLimits { max_input_bytes };
    let loaded = match values {
        Some(values) => Plan::load_with_params(path, &limits, values),
        None => Plan::load(path, &limits),
    };
    let plan = match loaded {
        Ok(plan) => plan,
        Err(e) => {
            // The file, then what is wrong with it.
            let error = format!("{:#}", anyhow::Error::from(e));
            if json {
                outln!("{}", json!({ "valid": false, "error": error }))?;
            } else {
                eprintln!("{error}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    if json {
        outln!("{}", json!({ "valid": true, "plan": plan }))?;
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
    outln!(
        "plan {:?} is valid{}: {} task(s); capabilities: {}",
        plan.name,
        if values.is_some() {
            " with these parameter values"
        } else {
            ""
        },
        plan.tasks.len(),
        caps.join(", ")
    )?;
    let rows: Vec<Vec<String>> = plan
        .tasks
        .iter()
        .map(|t| {
            let needs: Vec<&str> = t.needs.iter().map(|n| n.as_str()).collect();
            let spawns = match &t.spawns {
                None => "any".to_owned(),
                Some(caps) if caps.is_empty() => "none".to_owned(),
                Some(caps) => caps
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            vec![
                t.id.to_string(),
                t.capability.to_string(),
                t.priority.to_string(),
                t.retry.max_attempts.to_string(),
                render::millis(t.timeout_ms),
                t.trigger.name().to_owned(),
                spawns,
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
            "TRIGGER",
            "SPAWNS",
            "NEEDS",
        ],
        &rows,
    );
    let limits = &plan.limits;
    let mut budgets: Vec<String> = workforce_shared::Usage::PARTS
        .iter()
        .filter_map(|part| Some(format!("{part} {}", limits.budget(part)?)))
        .collect();
    budgets.extend(limits.attempts.map(|n| format!("attempts {n}")));
    budgets.extend(
        limits
            .deadline_ms
            .map(|ms| format!("deadline {}", render::millis(ms))),
    );
    outln!(
        "limits: spawn {} tasks at once, spawn depth {}, {} tasks in the run; {}",
        limits.spawn,
        limits.depth,
        limits.tasks,
        if budgets.is_empty() {
            "no budgets".to_owned()
        } else {
            budgets.join(", ")
        }
    )?;
    if !plan.params.is_empty() {
        outln!("parameters (give values with --param NAME=VALUE or --params FILE.json):")?;
        let rows: Vec<Vec<String>> = plan
            .params
            .iter()
            .map(|(name, spec)| {
                vec![
                    name.clone(),
                    spec.default
                        .as_ref()
                        .map_or_else(|| "(required)".to_owned(), ToString::to_string),
                    spec.description.clone(),
                ]
            })
            .collect();
        render::table(&["PARAMETER", "DEFAULT", "DESCRIPTION"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn replay(data: &Path, run: Option<&RunId>, json: bool) -> anyhow::Result<ExitCode> {
    let contents = EventLog::read(data)?;
    let events = &contents.events;
    let format = contents.format;
    // What every log must keep, whatever rules decided it: invariants, and recovery.
    let checked = invariants::check(events);
    let recovered = recover(
        events,
        contents.effects_done,
        DeadlineRule {
            grace_ms: 0,
            floor_ms: 0,
        },
    );
    let replayed = replay_log(events, run);
    let problem = match (&checked, &recovered, &replayed) {
        (Err(e), _, _) => Some(e.to_string()),
        (_, Err(e), _) => Some(format!("recovery fails: {e}")),
        (_, _, Err(e @ ReplayError::Divergence { .. })) => Some(format!("replay diverged: {e}")),
        _ => None,
    };
    if let Some(problem) = problem {
        if json {
            outln!(
                "{}",
                json!({ "identical": false, "format": format, "semantics": SEMANTICS_VERSION, "problem": problem })
            )?;
        } else {
            eprintln!("{problem}");
        }
        return Ok(ExitCode::FAILURE);
    }
    let report = replayed?;
    // How many of each kind of event the log holds, and how many runs each rules version.
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    let mut rules: BTreeMap<u32, u64> = BTreeMap::new();
    for (_, event) in events {
        let kind = match &event.entry {
            Entry::Input(input) => input.kind(),
            Entry::Decision(decision) => {
                if let Decision::RunAccepted { semantics, .. } = decision {
                    *rules.entry(*semantics).or_default() += 1;
                }
                decision.kind()
            }
        };
        *kinds.entry(kind).or_default() += 1;
    }
    let rules_text: Vec<String> = rules
        .iter()
        .map(|(version, runs)| format!("{runs} under rules {version}"))
        .collect();
    let not_redecided: Vec<String> = report.not_redecided.iter().map(|n| n.to_string()).collect();
    if json {
        outln!(
            "{}",
            json!({
                "identical": true,
                "format": format,
                "semantics": SEMANTICS_VERSION,
                "events": report.events,
                "inputs": report.inputs,
                "decisions": report.decisions,
                "redecided": report.redecided,
                "run_decisions": report.run_decisions,
                "not_redecided": not_redecided,
                "kinds": kinds,
                "runs_by_semantics": rules,
                "runs": report.runs,
            })
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "event log format {format}; runs: {}; this build decides under scheduling rules {SEMANTICS_VERSION}",
        if rules_text.is_empty() {
            "none".to_owned()
        } else {
            rules_text.join(", ")
        }
    )?;
    if not_redecided.is_empty() {
        outln!(
            "replayed {} events ({} inputs, {} decisions): every decision reproduced, identical",
            report.events,
            report.inputs,
            report.decisions
        )?;
    } else {
        outln!(
            "replayed {} events ({} inputs, {} decisions): {} re-decided and identical; the rest checked as recorded (invariants hold, recovery succeeds)",
            report.events,
            report.inputs,
            report.decisions,
            report.redecided
        )?;
        for line in &not_redecided {
            outln!("  {line}")?;
        }
    }
    if let Some(run) = run {
        outln!("run {run}: {} decisions checked", report.run_decisions)?;
    }
    render::runs(&report.runs);
    Ok(ExitCode::SUCCESS)
}

/// An inclusive range of seeds, written `A..B` (or a single seed).
#[derive(Clone, Debug)]
pub struct Seeds(pub RangeInclusive<u64>);

impl FromStr for Seeds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |part: &str| {
            part.trim()
                .parse::<u64>()
                .map_err(|e| format!("'{part}' is not a seed: {e}"))
        };
        let (low, high) = match s.split_once("..") {
            Some((low, high)) => (number(low)?, number(high.trim_start_matches('='))?),
            None => {
                let one = number(s)?;
                (one, one)
            }
        };
        if high < low {
            return Err(format!("the range {s} is empty: write it low..high"));
        }
        Ok(Seeds(low..=high))
    }
}

fn check_sim_config(config: &SimConfig) -> anyhow::Result<()> {
    anyhow::ensure!(config.workers > 0, "--workers must be at least 1");
    anyhow::ensure!(config.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&config.fail_rate),
        "--fail-rate must be between 0 and 1"
    );
    Ok(())
}

pub fn simulate_seeds(
    path: &Path,
    values: &ParamValues,
    config: SimConfig,
    seeds: Seeds,
    json: bool,
) -> anyhow::Result<ExitCode> {
    check_sim_config(&config)?;
    let plan = Plan::load_with_params(path, &PlanLimits::default(), values)?;
    match check_seeds(&plan, &config, seeds.0.clone()) {
        Ok(report) => {
            if json {
                outln!(
                    "{}",
                    json!({
                        "runs": report.runs,
                        "violations": 0,
                        "succeeded": report.succeeded,
                        "failed": report.failed,
                        "events": report.events,
                        "attempts": report.attempts,
                        "faults": report.faults,
                        "faults_total": report.faults.total(),
                        "spawns": report.spawns,
                        "spawned": report.spawned,
                    })
                )?;
            } else {
                outln!("{report}")?;
                outln!(
                    "  plan {:?}, seeds {}..{}: {} runs succeeded, {} failed; {} attempts, {} events",
                    plan.name,
                    seeds.0.start(),
                    seeds.0.end(),
                    report.succeeded,
                    report.failed,
                    report.attempts,
                    report.events
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            if json {
                outln!(
                    "{}",
                    json!({ "violations": 1, "seed": failure.seed, "problem": failure.problem.to_string() })
                )?;
            } else {
                eprintln!("invariant violation: {failure}");
                eprintln!(
                    "  see it again with: workforce simulate {}{} --workers {} --concurrency {} --seed {} --fail-rate {}{} --data DIR",
                    path.display(),
                    param_args(values),
                    config.workers,
                    config.concurrency,
                    failure.seed,
                    config.fail_rate,
                    if config.faults { " --faults" } else { "" }
                );
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `values` as `--param` options for a shell, each single-quoted and read back as the same
/// value: a string as plain text unless that text would parse as JSON.
fn param_args(values: &ParamValues) -> String {
    values
        .iter()
        .map(|(name, value)| {
            let text = match value {
                serde_json::Value::String(s)
                    if serde_json::from_str::<serde_json::Value>(s).is_err() =>
                {
                    s.clone()
                }
                other => other.to_string(),
            };
            format!(
                " --param '{}'",
                format!("{name}={text}").replace('\'', "'\\''")
            )
        })
        .collect()
}

pub fn simulate(
    path: &Path,
    values: &ParamValues,
    config: SimConfig,
    data: Option<&Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    check_sim_config(&config)?;
    let plan = Plan::load_with_params(path, &PlanLimits::default(), values)?;
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
    // The recorded log, as the event log reads it back: invariants, then replay.
    let replayed = workforce_coordinator::simulate::verify_log(&log.read_all()?);
    let identical = replayed.is_ok();
    let (spawns, spawned) = replayed.as_ref().map_or((0, 0), |c| (c.spawns, c.spawned));
    let summary = report.summary.as_ref();
    if json {
        outln!(
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
                "faults": report.faults,
                "spawns": spawns,
                "spawned": spawned,
                "summary": summary,
                "replay_identical": identical,
                "data": data.map(|d| d.display().to_string()),
            })
        )?;
    } else {
        let status = summary.map_or("unfinished", |s| s.status.as_str());
        outln!(
            "simulated run {} of plan {:?}: {status}",
            report.run,
            plan.name
        )?;
        outln!(
            "  workers {}, concurrency {}, seed {}, fail rate {}",
            config.workers,
            config.concurrency,
            config.seed,
            config.fail_rate
        )?;
        if config.faults {
            outln!(
                "  faults injected: {} — {}",
                report.faults.total(),
                report.faults
            )?;
        }
        if let Some(s) = summary {
            outln!(
                "  tasks {}: {} completed, {} failed, {} canceled, {} skipped; {} attempts",
                s.tasks,
                s.completed,
                s.failed,
                s.canceled,
                s.skipped,
                report.attempts
            )?;
            if let Some(reason) = &s.reason {
                outln!("  reason: {reason}")?;
            }
        }
        if spawns > 0 {
            outln!("  spawns {spawns}, adding {spawned} tasks")?;
        }
        outln!(
            "  virtual time {}; {} events; replay {}",
            render::millis(report.virtual_ms),
            report.events,
            if identical { "identical" } else { "DIVERGED" }
        )?;
        match data {
            Some(d) => outln!(
                "  log: {} (check it with `workforce replay --data {}`)",
                d.display(),
                d.display()
            )?,
            None => outln!("  log: temporary (pass --data DIR to keep it)")?,
        }
        outln!("digest {}", report.digest)?;
    }
    if let Err(e) = replayed {
        anyhow::bail!("the simulated log does not check: {e}");
    }
    Ok(ExitCode::SUCCESS)
}
