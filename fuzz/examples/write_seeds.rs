//! Writes the MessagePack seeds of the `envelope_decode` target, one per envelope shape:
//! `cargo run --manifest-path fuzz/Cargo.toml --example write_seeds` (from the repository root).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;
use workforce_shared::{
    Assignment, Attempt, AttemptError, Capability, DeadLetter, Envelope, Heartbeat, Outcome,
    PROTOCOL_VERSION, RunId, TaskId, TaskResult, WorkerId, WorkerState, encode,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/envelope_decode");
    std::fs::create_dir_all(&dir)?;
    let run = RunId::new("r1")?;
    let task = TaskId::new("review")?;
    let worker = WorkerId::new("worker-1")?;
    let assignment = Assignment {
        v: PROTOCOL_VERSION,
        run: run.clone(),
        task: task.clone(),
        attempt: Attempt(2),
        capability: Capability::new("security")?,
        input: json!({"paths": ["src"], "depth": 3, "ratio": 0.5, "deep": {"x": null, "ok": true}}),
        upstream: BTreeMap::from([(TaskId::new("plan")?, json!("text"))]),
        timeout_ms: 60_000,
        upstream_errors: Default::default(),
    };
    let result = |attempt, outcome| TaskResult {
        v: PROTOCOL_VERSION,
        run: run.clone(),
        task: task.clone(),
        attempt: Attempt(attempt),
        worker: worker.clone(),
        outcome,
        duration_ms: 12,
        usage: None,
    };
    write(&dir, "seed-assignment", &assignment)?;
    let output = json!({"findings": [1, -2]});
    write(
        &dir,
        "seed-result-succeeded",
        &result(1, Outcome::succeeded(output)),
    )?;
    let error = "exit status 1".to_owned();
    let failed = Outcome::Failed {
        error,
        permanent: false,
    };
    write(&dir, "seed-result-failed", &result(2, failed))?;
    let heartbeat = Heartbeat {
        v: PROTOCOL_VERSION,
        worker: worker.clone(),
        capabilities: vec![Capability::new("security")?, Capability::new("docs")?],
        concurrency: 2,
        in_flight: 1,
        state: WorkerState::Draining,
        interval_ms: 5_000,
        instance: workforce_shared::Instance(0x5eed),
        started_ms: 1_700_000_000_000,
        breakers: Vec::new(),
        attempts: Vec::new(),
    };
    write(&dir, "seed-heartbeat", &heartbeat)?;
    let dead = DeadLetter {
        v: PROTOCOL_VERSION,
        run: run.clone(),
        task: task.clone(),
        last_assignment: assignment,
        errors: vec![AttemptError {
            attempt: Attempt(1),
            worker,
            error: "timed out".into(),
        }],
    };
    write(&dir, "seed-dead-letter", &dead)?;
    Ok(())
}

fn write<T: Envelope>(dir: &Path, name: &str, value: &T) -> Result<(), Box<dyn std::error::Error>> {
    let path = dir.join(name);
    std::fs::write(&path, encode(value)?)?;
    println!("{}", path.display());
    Ok(())
}
