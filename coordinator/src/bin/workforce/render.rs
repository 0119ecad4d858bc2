//! Plain-text tables and durations for human output.

use workforce_coordinator::scheduler::{RunSummary, RunView, WorkerView};

pub fn millis(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1_000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1_000)
    }
}

pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn runs(runs: &[RunSummary]) {
    if runs.is_empty() {
        println!("no runs");
        return;
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.run.to_string(),
                r.name.clone(),
                r.status.as_str().to_owned(),
                format!("{}/{}", r.completed, r.tasks),
                r.failed.to_string(),
                r.canceled.to_string(),
                r.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "RUN",
            "PLAN",
            "STATUS",
            "COMPLETED",
            "FAILED",
            "CANCELED",
            "REASON",
        ],
        &rows,
    );
}

pub fn run_view(view: &RunView) {
    let done = view.tasks.iter().filter(|t| t.status.is_terminal()).count();
    println!(
        "run {} ({}): {} — {done}/{} tasks finished",
        view.run,
        view.name,
        view.status.as_str(),
        view.tasks.len()
    );
    if let Some(reason) = &view.reason {
        println!("reason: {reason}");
    }
    let rows: Vec<Vec<String>> = view
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.task.to_string(),
                t.capability.to_string(),
                t.status.as_str().to_owned(),
                format!("{}/{}", t.attempt, t.max_attempts),
                t.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["TASK", "CAPABILITY", "STATUS", "ATTEMPT", "DETAIL"],
        &rows,
    );
}

pub fn workers(workers: &[WorkerView]) {
    if workers.is_empty() {
        println!("no live workers");
        return;
    }
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            let caps: Vec<&str> = w.capabilities.iter().map(|c| c.as_str()).collect();
            vec![
                w.worker.to_string(),
                w.concurrency.to_string(),
                caps.join(", "),
            ]
        })
        .collect();
    table(&["WORKER", "CONCURRENCY", "CAPABILITIES"], &rows);
}
