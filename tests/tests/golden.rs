//! The golden logs in `tests/golden/`: event logs made by earlier builds, checked into the
//! repository and never edited. Every build must open, recover and replay each of them, so that
//! a data directory written by any released coordinator keeps working. Together they hold every
//! variant of `Input` and `Decision`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use workforce_coordinator::invariants;
use workforce_coordinator::log::{Entry, EventLog};
use workforce_coordinator::recovery::{DeadlineRule, recover};
use workforce_coordinator::replay::replay;
use workforce_coordinator::scheduler::{Decision, Input};
use workforce_tests::harness::bin;

fn golden_logs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "redb"))
        .collect();
    logs.sort();
    logs
}

/// A copy in a data directory of its own, so that nothing can touch the checked-in file.
fn copy(log: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(log, dir.path().join("events.redb")).expect("copy");
    dir
}

#[test]
fn every_golden_log_opens_recovers_and_replays() {
    let logs = golden_logs();
    assert!(logs.len() >= 4, "tests/golden holds {} logs", logs.len());
    for path in &logs {
        let name = path.display();
        let dir = copy(path);
        let contents = EventLog::read(dir.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!contents.events.is_empty(), "{name} is empty");
        invariants::check(&contents.events).unwrap_or_else(|e| panic!("{name}: {e}"));
        let rule = DeadlineRule {
            grace_ms: 0,
            floor_ms: 0,
        };
        recover(&contents.events, contents.effects_done, rule)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = replay(&contents.events, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Runs of this build's rules are re-decided in full; only runs of older rules (and
        // those beside them) are checked as recorded.
        if report.not_redecided.is_empty() {
            assert_eq!(report.redecided, report.decisions, "{name}");
        } else {
            assert!(report.redecided < report.decisions, "{name}");
        }
        // The coordinator itself opens it for writing and appends to it.
        let mut log = EventLog::open(dir.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(log.len(), contents.events.len() as u64, "{name}");
        log.append(&[]).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn the_cli_replays_every_golden_log_in_place_without_changing_it() {
    for path in golden_logs() {
        let before = std::fs::read(&path).expect("read");
        let out = Command::new(bin("workforce"))
            .args(["replay", "--data"])
            .arg(&path)
            .output()
            .expect("run workforce replay");
        assert!(
            out.status.success(),
            "workforce replay --data {}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("event log format 2"), "{stdout}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            before,
            "{} changed",
            path.display()
        );
    }
}

#[test]
fn the_golden_logs_hold_every_input_and_decision() {
    let mut inputs = BTreeSet::new();
    let mut decisions = BTreeSet::new();
    for path in golden_logs() {
        let dir = copy(&path);
        for (_, event) in EventLog::read(dir.path()).expect("read").events {
            match &event.entry {
                Entry::Input(input) => inputs.insert(input.kind()),
                Entry::Decision(decision) => decisions.insert(decision.kind()),
            };
        }
    }
    let missing_inputs: Vec<_> = Input::KINDS
        .iter()
        .filter(|k| !inputs.contains(*k))
        .collect();
    let missing_decisions: Vec<_> = Decision::KINDS
        .iter()
        .filter(|k| !decisions.contains(*k))
        .collect();
    assert!(
        missing_inputs.is_empty() && missing_decisions.is_empty(),
        "no golden log holds inputs {missing_inputs:?} or decisions {missing_decisions:?}: add a golden log that does"
    );
}
