//! Plain-text tables and durations for human output. `write_*` functions write to any writer
//! and return its errors; the others print to stdout through [`out`](crate::out).

use std::io::{self, Write};

use workforce_coordinator::scheduler::{DeadLetterView, RunSummary, RunView, TaskView, WorkerView};
use workforce_shared::Usage;

/// Columns holding a list ("a, b, c"): a long one shows its first items and how many more.
/// `--json` always has all of them.
const LIST_COLUMNS: [&str; 3] = ["NEEDS", "CAPABILITIES", "SPAWNS"];
/// Items of a list column shown before "… and N more".
const LIST_ITEMS: usize = 5;
/// Longest free-text cell (DETAIL) shown whole; longer ones end in "…".
const TEXT_CHARS: usize = 160;

pub fn millis(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1_000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1_000)
    }
}

/// A list of names, the first [`LIST_ITEMS`] of them and then how many more.
pub fn list<S: AsRef<str>>(items: &[S]) -> String {
    let shown: Vec<&str> = items.iter().take(LIST_ITEMS).map(AsRef::as_ref).collect();
    let mut text = shown.join(", ");
    if items.len() > LIST_ITEMS {
        text.push_str(&format!(", … and {} more", items.len() - LIST_ITEMS));
    }
    text
}

/// `text` cut to [`TEXT_CHARS`] characters.
fn clip(text: &str) -> String {
    match text.char_indices().nth(TEXT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The ATTEMPT cell: "n/max", or "-/max" for a task none of whose attempts has started.
pub fn attempt(t: &TaskView) -> String {
    if never_started(t) {
        format!("-/{}", t.max_attempts)
    } else {
        format!("{}/{}", t.attempt, t.max_attempts)
    }
}

/// Whether no attempt of the task was ever dispatched.
fn never_started(t: &TaskView) -> bool {
    t.started == 0
}

/// Prints a table to stdout; a reader that went away ends the process quietly.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    crate::out::settle(write_table(&mut io::stdout().lock(), headers, rows));
}

pub fn write_table(out: &mut impl Write, headers: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .zip(headers)
                .map(|(cell, header)| {
                    if LIST_COLUMNS.contains(header) {
                        // Ids cannot hold spaces, so ", " only separates items.
                        list(&cell.split(", ").collect::<Vec<_>>())
                    } else {
                        clip(cell)
                    }
                })
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| -> io::Result<()> {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = w.saturating_sub(cell.chars().count());
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(headers.to_vec())?;
    for row in &rows {
        line(row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

/// What a run or task used: "1200 tokens, 35 cents, 3 tool calls", or "-" for nothing.
pub fn usage(usage: &Usage) -> String {
    if usage.is_zero() {
        return "-".to_owned();
    }
    format!(
        "{} tokens, {} cents, {} tool calls",
        usage.tokens, usage.cost_cents, usage.tool_calls
    )
}

/// A run's usage against its limits: "tokens 1200/150000, cost_cents 35/200, attempts 5/500,
/// deadline 20m", the parts it has a budget for (and what it used where it has none).
pub fn budgets(view: &RunView) -> Option<String> {
    let limits = &view.limits;
    let mut parts = Vec::new();
    for part in Usage::PARTS {
        let used = view.usage.part(part).unwrap_or(0);
        match limits.budget(part) {
            Some(limit) => parts.push(format!("{part} {used}/{limit}")),
            None if used > 0 => parts.push(format!("{part} {used}")),
            None => {}
        }
    }
    if let Some(limit) = limits.attempts {
        parts.push(format!("attempts {}/{limit}", view.attempts));
    }
    if let Some(ms) = limits.deadline_ms {
        parts.push(format!("deadline {}", millis(ms)));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Prints runs to stdout; a reader that went away ends the process quietly.
pub fn runs(runs: &[RunSummary]) {
    crate::out::settle(write_runs(&mut io::stdout().lock(), runs));
}

pub fn write_runs(out: &mut impl Write, runs: &[RunSummary]) -> io::Result<()> {
    if runs.is_empty() {
        return writeln!(out, "no runs");
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.run.to_string(),
                r.name.clone(),
                if r.paused {
                    format!("{} (paused)", r.status.as_str())
                } else {
                    r.status.as_str().to_owned()
                },
                format!("{}/{}", r.completed, r.tasks),
                r.failed.to_string(),
                r.canceled.to_string(),
                r.skipped.to_string(),
                usage(&r.usage),
                r.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "RUN",
            "PLAN",
            "STATUS",
            "COMPLETED",
            "FAILED",
            "CANCELED",
            "SKIPPED",
            "USAGE",
            "REASON",
        ],
        &rows,
    )
}

pub fn write_run_view(out: &mut impl Write, view: &RunView) -> io::Result<()> {
    let done = view.tasks.iter().filter(|t| t.status.is_terminal()).count();
    writeln!(
        out,
        "run {} ({}): {}{} — {done}/{} tasks finished",
        view.run,
        view.name,
        view.status.as_str(),
        if view.paused { " (paused)" } else { "" },
        view.tasks.len()
    )?;
    if let Some(reason) = &view.reason {
        writeln!(out, "reason: {reason}")?;
    }
    if let Some(budgets) = budgets(view) {
        writeln!(out, "usage: {budgets}")?;
    }
    // PARENT once a task spawned, TRIGGER once a task has a rule other than all_success.
    let spawned = view.tasks.iter().any(|t| t.parent.is_some());
    let triggers = view.tasks.iter().any(|t| !t.trigger.is_default());
    let rungs = view.tasks.iter().any(|t| t.rung > 0);
    let rows: Vec<Vec<String>> = view
        .tasks
        .iter()
        .map(|t| {
            let mut row = vec![t.task.to_string()];
            if spawned {
                row.push(
                    t.parent
                        .as_ref()
                        .map_or("-".to_owned(), ToString::to_string),
                );
            }
            row.extend([t.capability.to_string(), t.status.as_str().to_owned()]);
            if triggers {
                row.push(t.trigger.name().to_owned());
            }
            if rungs {
                row.push(if t.rung > 0 {
                    t.rung.to_string()
                } else {
                    "-".to_owned()
                });
            }
            row.extend([attempt(t), t.detail.clone().unwrap_or_default()]);
            row
        })
        .collect();
    let mut headers = vec!["TASK"];
    if spawned {
        headers.push("PARENT");
    }
    headers.extend(["CAPABILITY", "STATUS"]);
    if triggers {
        headers.push("TRIGGER");
    }
    if rungs {
        headers.push("RUNG");
    }
    headers.extend(["ATTEMPT", "DETAIL"]);
    write_table(out, &headers, &rows)
}

pub fn write_dead_letters(out: &mut impl Write, letters: &[DeadLetterView]) -> io::Result<()> {
    if letters.is_empty() {
        return writeln!(out, "no dead letters");
    }
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|l| {
            vec![
                l.run.to_string(),
                l.task.to_string(),
                l.capability.to_string(),
                l.attempts.len().to_string(),
                l.redrives.to_string(),
                l.attempts
                    .last()
                    .map_or_else(String::new, |a| a.error.clone()),
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "RUN",
            "TASK",
            "CAPABILITY",
            "ATTEMPTS",
            "REDRIVES",
            "DETAIL",
        ],
        &rows,
    )
}

pub fn write_dead_letter(out: &mut impl Write, letter: &DeadLetterView) -> io::Result<()> {
    writeln!(
        out,
        "task {} of run {} ({}): dead-lettered, redriven {} time(s)",
        letter.task, letter.run, letter.capability, letter.redrives
    )?;
    writeln!(out, "input: {}", letter.input)?;
    let rows: Vec<Vec<String>> = letter
        .attempts
        .iter()
        .map(|a| {
            vec![
                a.attempt.to_string(),
                a.worker.to_string(),
                a.duration_ms.map_or("-".to_owned(), millis),
                a.error.clone(),
            ]
        })
        .collect();
    write_table(out, &["ATTEMPT", "WORKER", "DURATION", "DETAIL"], &rows)
}

pub fn write_workers(out: &mut impl Write, workers: &[WorkerView]) -> io::Result<()> {
    if workers.is_empty() {
        return writeln!(out, "no live workers");
    }
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            let live = w.live.as_ref();
            let serves = live.map_or(&w.capabilities, |l| &l.serves);
            let caps: Vec<&str> = serves.iter().map(|c| c.as_str()).collect();
            let breakers: Vec<String> = live
                .map(|l| {
                    l.breakers
                        .iter()
                        .map(|b| format!("{} open after {} failures", b.capability, b.failures))
                        .collect()
                })
                .unwrap_or_default();
            vec![
                w.worker.to_string(),
                live.map_or("-".to_owned(), |l| format!("{:?}", l.state).to_lowercase()),
                w.concurrency.to_string(),
                live.map_or("-".to_owned(), |l| l.in_flight.to_string()),
                w.completed.to_string(),
                w.failed.to_string(),
                w.success_rate
                    .map_or("-".to_owned(), |r| format!("{:.0}%", r * 100.0)),
                live.map_or("-".to_owned(), |l| {
                    format!("{} ago", millis(l.last_heartbeat_ms_ago))
                }),
                caps.join(", "),
                if breakers.is_empty() {
                    "-".to_owned()
                } else {
                    breakers.join("; ")
                },
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "WORKER",
            "STATE",
            "CONCURRENCY",
            "IN FLIGHT",
            "COMPLETED",
            "FAILED",
            "SUCCESS",
            "HEARTBEAT",
            "CAPABILITIES",
            "BREAKERS",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use workforce_coordinator::scheduler::TaskStatus;
    use workforce_shared::{Capability, TaskId};

    use super::*;

    fn task(status: TaskStatus, attempt: u32, started: u32) -> TaskView {
        TaskView {
            task: TaskId::new("t").expect("task"),
            capability: Capability::new("c").expect("capability"),
            priority: 0,
            status,
            attempt,
            started,
            max_attempts: 2,
            trigger: Default::default(),
            redrives: 0,
            rung: 0,
            parent: None,
            usage: Default::default(),
            detail: None,
            output: None,
        }
    }

    #[test]
    fn a_task_that_never_started_shows_no_attempt() {
        let cases = [
            (TaskStatus::Blocked, 1, 0, "-/2"),
            (TaskStatus::Queued, 1, 0, "-/2"),
            // Backing off before attempt 2: attempt 1 ran.
            (TaskStatus::Queued, 2, 1, "2/2"),
            (TaskStatus::Running, 1, 1, "1/2"),
            (TaskStatus::Failed, 2, 2, "2/2"),
            // Canceled before it ran, and while it ran.
            (TaskStatus::Canceled, 1, 0, "-/2"),
            (TaskStatus::Canceled, 1, 1, "1/2"),
        ];
        for (status, n, started, expected) in cases {
            assert_eq!(
                attempt(&task(status, n, started)),
                expected,
                "{status:?} {n} {started}"
            );
        }
    }

    #[test]
    fn long_lists_are_elided_in_tables_only() {
        let needs: Vec<String> = (0..10_000).map(|i| format!("t{i}")).collect();
        let rows = vec![vec!["join".to_owned(), needs.join(", ")]];
        let mut out = Vec::new();
        write_table(&mut out, &["TASK", "NEEDS"], &rows).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text.lines().nth(1),
            Some("join  t0, t1, t2, t3, t4, … and 9995 more")
        );
        assert_eq!(list(&["a", "b"]), "a, b");
    }

    #[test]
    fn long_text_is_clipped() {
        let long = "x".repeat(500);
        let rows = vec![vec![long]];
        let mut out = Vec::new();
        write_table(&mut out, &["DETAIL"], &rows).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        let cell = text.lines().nth(1).expect("row");
        assert_eq!(cell.chars().count(), TEXT_CHARS + 1);
        assert!(cell.ends_with('…'));
    }
}
