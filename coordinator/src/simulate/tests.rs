use super::*;
use crate::invariants::Invariant;
use crate::log::{Entry, EventLog};
use crate::scheduler::{Decision, Input};
use workforce_shared::{PlanFormat, PlanLimits};

fn fan_plan(width: usize) -> Plan {
    let mut src = String::from("[[tasks]]\nid = \"root\"\ncapability = \"plan\"\n");
    for i in 0..width {
        src.push_str(&format!(
            "[[tasks]]\nid = \"w{i}\"\ncapability = \"{}\"\nneeds = [\"root\"]\nretry = {{ max_attempts = 6, initial_backoff = \"1s\" }}\n",
            if i % 2 == 0 { "even" } else { "odd" }
        ));
    }
    let all: Vec<String> = (0..width).map(|i| format!("\"w{i}\"")).collect();
    src.push_str(&format!(
        "[[tasks]]\nid = \"merge\"\ncapability = \"plan\"\nneeds = [{}]\n",
        all.join(", ")
    ));
    Plan::parse(&src, PlanFormat::Toml, &PlanLimits::default()).expect("plan")
}

fn code_review() -> Plan {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/plans/code-review.toml"
    );
    Plan::load(std::path::Path::new(path), &PlanLimits::default()).expect("example plan")
}

/// What `workforce simulate … --workers 3 --fail-rate 0.3 --faults` runs.
fn with_faults() -> SimConfig {
    SimConfig {
        workers: 3,
        fail_rate: 0.3,
        faults: true,
        ..SimConfig::default()
    }
}

fn count(log: &[(EventSeq, Event)], pick: impl Fn(&Entry) -> bool) -> usize {
    log.iter().filter(|(_, e)| pick(&e.entry)).count()
}

#[test]
fn the_same_seed_gives_the_same_digest() {
    let plan = fan_plan(20);
    let config = SimConfig {
        seed: 42,
        fail_rate: 0.2,
        ..SimConfig::default()
    };
    let a = simulate(&plan, &config, None).expect("sim");
    let b = simulate(&plan, &config, None).expect("sim");
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.events, b.events);
    assert!(a.attempts > 22, "some attempts failed and were retried");
    let other = simulate(&plan, &SimConfig { seed: 43, ..config }, None).expect("sim");
    assert_ne!(a.digest, other.digest);
}

#[test]
fn a_simulated_log_is_written_whole_and_replays_to_the_same_summary() {
    let plan = fan_plan(8);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = EventLog::open(dir.path()).expect("log");
    let config = SimConfig {
        fail_rate: 0.3,
        ..SimConfig::default()
    };
    let report = {
        let mut sink = |events: &[Event]| log.append(events).map(|_| ());
        simulate(&plan, &config, Some(&mut sink)).expect("sim")
    };
    let summary = report.summary.expect("summary");
    let events = log.read_all().expect("read");
    assert_eq!(events, report.log, "the sink got every event, in order");
    let replayed = replay(&events, Some(&report.run)).expect("replay");
    assert_eq!(replayed.runs, vec![summary.clone()]);
    // Every task ends exactly once, and the summary counts what the log records.
    assert_eq!(
        summary.completed + summary.failed + summary.canceled,
        summary.tasks,
        "{summary:?}"
    );
    let completed = count(&events, |e| {
        matches!(e, Entry::Decision(Decision::TaskCompleted { .. }))
    });
    let dead = count(&events, |e| {
        matches!(e, Entry::Decision(Decision::DeadLettered { .. }))
    });
    assert_eq!(completed, summary.completed as usize);
    assert_eq!(dead, summary.failed as usize);
    assert!(
        report.attempts > 10,
        "a 30% failure rate retried some attempts"
    );
}

#[test]
fn a_run_with_no_failures_completes_every_task_once() {
    let plan = fan_plan(10);
    let report = simulate(&plan, &SimConfig::default(), None).expect("sim");
    let summary = report.summary.expect("summary");
    assert_eq!(summary.status, RunStatus::Succeeded);
    assert_eq!(summary.completed, 12);
    assert_eq!(report.attempts, 12);
    assert_eq!(report.faults, FaultCounts::default());
}

#[test]
fn faults_reach_the_log_timeouts_included() {
    let plan = code_review();
    let config = with_faults();
    let mut seen = FaultCounts::default();
    let (mut timed_out, mut restarts) = (0, 0);
    for seed in 1..=200 {
        let (report, _) = check_seed(
            &plan,
            &SimConfig {
                seed,
                ..config.clone()
            },
            |_| {},
        )
        .expect("every seed keeps the invariants");
        seen.add(&report.faults);
        timed_out += count(&report.log, |e| {
            matches!(e, Entry::Input(Input::AttemptTimedOut { .. }))
        });
        restarts += count(&report.log, |e| {
            matches!(e, Entry::Input(Input::CoordinatorStarted { .. }))
        });
    }
    assert!(timed_out > 0, "the coordinator timed attempts out: {seen}");
    assert!(restarts > 200, "coordinators restarted mid-run: {seen}");
    for (kind, n) in [
        ("timeouts", seen.timeouts),
        ("permanent failures", seen.permanent_failures),
        ("workers left", seen.workers_left),
        ("workers joined", seen.workers_joined),
        ("coordinator restarts", seen.coordinator_restarts),
        ("duplicate results", seen.duplicate_results),
        ("unpublishable", seen.unpublishable),
    ] {
        assert!(n > 0, "no {kind} in 200 seeds: {seen}");
    }
}

#[test]
fn a_thousand_seeds_with_faults_keep_every_invariant() {
    let plan = code_review();
    let config = with_faults();
    let report = check_seeds(&plan, &config, 1..=1000).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.runs, 1000);
    assert!(report.faults.total() > 1000, "{report}");
    assert!(report.succeeded > 0 && report.failed > 0, "{report:?}");
}

/// Inserts an event into a log and numbers the events again.
fn insert(log: &mut Vec<(EventSeq, Event)>, at: usize, event: Event) {
    log.insert(at, (EventSeq(0), event));
    for (i, (seq, _)) in log.iter_mut().enumerate() {
        *seq = EventSeq(i as u64 + 1);
    }
}

#[test]
fn a_damaged_log_is_caught_naming_the_seed_and_the_invariant() {
    let plan = code_review();
    let config = SimConfig {
        seed: 77,
        ..SimConfig::default()
    };
    // A second completion of a task that already completed.
    let err = check_seed(&plan, &config, |log| {
        let at = log
            .iter()
            .position(|(_, e)| matches!(e.entry, Entry::Decision(Decision::TaskCompleted { .. })))
            .expect("a completion");
        let copy = log[at].1.clone();
        insert(log, at + 1, copy);
    })
    .expect_err("the damaged log must be caught");
    assert_eq!(err.seed, 77);
    assert!(
        matches!(&err.problem, SeedProblem::Invariant(v) if v.invariant == Invariant::OneOutcome),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.starts_with("seed 77: "), "{text}");
    assert!(text.contains("one terminal outcome per task"), "{text}");

    // A dispatch beyond capacity: one worker of concurrency 1, so each capability runs one
    // task at a time. Once the root completes, w0 and w2 (capability "even") are ready and
    // one is dispatched; dispatch the other beside it.
    let fan = fan_plan(4);
    let one_worker = SimConfig {
        seed: 78,
        workers: 1,
        ..config
    };
    let err = check_seed(&fan, &one_worker, |log| {
        let at = log
            .iter()
            .position(|(_, e)| {
                matches!(&e.entry, Entry::Decision(Decision::Dispatch { capability, .. }) if capability.as_str() == "even")
            })
            .expect("a dispatch of an even task");
        let Entry::Decision(Decision::Dispatch {
            run,
            task,
            capability,
            timeout_ms,
            ..
        }) = log[at].1.entry.clone()
        else {
            unreachable!()
        };
        let other: workforce_shared::TaskId =
            (if task.as_str() == "w0" { "w2" } else { "w0" }).parse().expect("id");
        let extra = Event {
            at_ms: log[at].1.at_ms,
            entry: Entry::Decision(Decision::Dispatch {
                run,
                task: other,
                attempt: workforce_shared::Attempt::FIRST,
                capability,
                timeout_ms,
            }),
        };
        insert(log, at + 1, extra);
    })
    .expect_err("the damaged log must be caught");
    assert_eq!(err.seed, 78);
    assert!(
        matches!(&err.problem, SeedProblem::Invariant(v) if v.invariant == Invariant::Capacity),
        "{err}"
    );
}

const LEAD: &str = r#"
name = "lead"
[[tasks]]
id = "lead"
capability = "lead"
spawns = ["analyze"]
[[tasks]]
id = "synthesize"
capability = "merge"
needs = ["lead"]
trigger = "all_done"
"#;

#[test]
fn spawning_plans_grow_under_faults_and_check_clean() {
    let plan = Plan::parse(LEAD, PlanFormat::Toml, &PlanLimits::default()).expect("plan");
    let config = SimConfig {
        workers: 4,
        faults: true,
        ..SimConfig::default()
    };
    let report = check_seeds(&plan, &config, 1..=60).expect("clean");
    assert!(report.spawns >= 50, "{report}");
    assert!(
        report.spawned > report.spawns,
        "nested and wide spawns: {report}"
    );
    assert!(report.succeeded > 0, "{report}");
}

#[test]
fn a_join_made_ready_before_what_was_spawned_ended_is_caught() {
    let plan = Plan::parse(LEAD, PlanFormat::Toml, &PlanLimits::default()).expect("plan");
    let config = SimConfig {
        seed: 5,
        workers: 2,
        ..SimConfig::default()
    };
    let err = check_seed(&plan, &config, |log| {
        let at = log
            .iter()
            .position(|(_, e)| matches!(e.entry, Entry::Decision(Decision::TasksSpawned { .. })))
            .expect("a spawn");
        let Entry::Decision(Decision::TasksSpawned { run, .. }) = log[at].1.entry.clone() else {
            unreachable!()
        };
        let early = Event {
            at_ms: log[at].1.at_ms,
            entry: Entry::Decision(Decision::TaskReady {
                run,
                task: "synthesize".parse().expect("id"),
                attempt: workforce_shared::Attempt::FIRST,
            }),
        };
        insert(log, at + 1, early);
    })
    .expect_err("the damaged log must be caught");
    assert!(
        matches!(&err.problem, SeedProblem::Invariant(v) if v.invariant == Invariant::TriggerRules),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("decisions follow the trigger rules"),
        "{err}"
    );
}

#[test]
fn a_dispatch_while_its_run_is_paused_is_caught() {
    let plan = code_review();
    let config = SimConfig {
        seed: 9,
        ..SimConfig::default()
    };
    let err = check_seed(&plan, &config, |log| {
        let at = log
            .iter()
            .position(|(_, e)| matches!(e.entry, Entry::Decision(Decision::Dispatch { .. })))
            .expect("a dispatch");
        let Entry::Decision(Decision::Dispatch { run, .. }) = log[at].1.entry.clone() else {
            unreachable!()
        };
        let pause = Event {
            at_ms: log[at].1.at_ms,
            entry: Entry::Decision(Decision::Paused {
                scope: crate::scheduler::PauseScope::Run { run },
            }),
        };
        insert(log, at, pause);
    })
    .expect_err("the damaged log must be caught");
    assert!(
        matches!(&err.problem, SeedProblem::Invariant(v) if v.invariant == Invariant::PausesHold),
        "{err}"
    );
}
