//! A worker whose capabilities are written in Rust: `wordcount` counts the words, lines and
//! characters of its input text and of the text outputs of the tasks it depends on; `split`
//! grows its run: it spawns one `wordcount` task per paragraph of its input, so a task that
//! needs `split` receives every paragraph's count (fan-in).
//!
//! ```text
//! cargo run -p workforce-worker --example rust_handler -- --nats nats://127.0.0.1:4222
//! ```
//!
//! It takes every `workforce-worker` option (see `--help`), so it can serve shell commands
//! with `--serve` alongside.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use workforce_shared::Capability;
use workforce_worker::{
    BoxFuture, Handler, HandlerError, SpawnTask, TaskContext, Worker, WorkerArgs,
};

/// Counts text. Input: a string, `{"text": "..."}`, or null (only upstream outputs).
#[derive(Debug)]
struct WordCount;

impl Handler for WordCount {
    fn handle(&self, task: TaskContext) -> BoxFuture<'_, Result<Value, HandlerError>> {
        Box::pin(async move { count(&task) })
    }
}

fn count(task: &TaskContext) -> Result<Value, HandlerError> {
    let input = match &task.input {
        Value::Null => None,
        Value::String(text) => Some(text.as_str()),
        Value::Object(fields) => match fields.get("text") {
            Some(Value::String(text)) => Some(text.as_str()),
            _ => return Err(bad_input()),
        },
        _ => return Err(bad_input()),
    };
    let mut by_source = BTreeMap::new();
    if let Some(text) = input {
        by_source.insert("input".to_owned(), stats(text));
    }
    // Upstream outputs that are text (a command's plain stdout, say); others are not prose.
    for (task_id, output) in &task.upstream {
        if let Value::String(text) = output {
            by_source.insert(task_id.to_string(), stats(text));
        }
    }
    let total = |key: &str| -> u64 { by_source.values().filter_map(|s| s[key].as_u64()).sum() };
    Ok(json!({
        "words": total("words"),
        "lines": total("lines"),
        "chars": total("chars"),
        "by_source": by_source,
    }))
}

fn stats(text: &str) -> Value {
    json!({
        "words": text.split_whitespace().count(),
        "lines": text.lines().count(),
        "chars": text.chars().count(),
    })
}

/// Spawns a `wordcount` task per paragraph (blank-line separated) of `{"text": "..."}`, ids
/// `<task>-p1`, `<task>-p2`...; its own output says how many.
#[derive(Debug)]
struct Split;

impl Handler for Split {
    fn handle(&self, task: TaskContext) -> BoxFuture<'_, Result<Value, HandlerError>> {
        Box::pin(async move {
            let Some(text) = task.input.get("text").and_then(Value::as_str) else {
                return Err(HandlerError::permanent(
                    "split input must be {\"text\": \"...\"}",
                ));
            };
            let paragraphs: Vec<&str> = text
                .split("\n\n")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            for (i, paragraph) in paragraphs.iter().enumerate() {
                let id = format!("{}-p{}", task.task, i + 1);
                task.spawn(SpawnTask::new(id, "wordcount").input(json!({ "text": paragraph })));
            }
            Ok(json!({ "paragraphs": paragraphs.len() }))
        })
    }
}

fn bad_input() -> HandlerError {
    // No retry can fix the input.
    HandlerError::permanent("wordcount input must be a string, {\"text\": \"...\"} or null")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let config = WorkerArgs::parse().load()?;
    let mut handlers = config.command_handlers();
    let wordcount: Arc<dyn Handler> = Arc::new(WordCount);
    handlers.insert(Capability::new("wordcount")?, wordcount);
    let split: Arc<dyn Handler> = Arc::new(Split);
    handlers.insert(Capability::new("split")?, split);

    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    tokio::pin!(shutdown);
    let worker = tokio::select! {
        worker = Worker::connect(config, handlers) => worker.context("cannot start the worker")?,
        () = &mut shutdown => return Ok(()),
    };
    worker.run(shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use workforce_shared::{Attempt, RunId, TaskId};

    use super::*;

    fn task(input: Value, upstream: &[(&str, Value)]) -> TaskContext {
        let mut task = TaskContext::new(
            RunId::new("r").expect("run"),
            TaskId::new("count").expect("task"),
            Attempt(1),
            Capability::new("wordcount").expect("capability"),
            input,
            Duration::from_secs(5),
        );
        task.upstream = upstream
            .iter()
            .map(|(id, output)| (TaskId::new(*id).expect("task"), output.clone()))
            .collect();
        task
    }

    #[tokio::test]
    async fn counts_input_and_text_upstream_outputs() {
        let t = task(
            json!({"text": "one two\nthree"}),
            &[("notes", json!("four")), ("data", json!({"n": 1}))],
        );
        let output = WordCount.handle(t).await.expect("counts");
        assert_eq!(output["words"], json!(4));
        assert_eq!(output["lines"], json!(3));
        assert_eq!(output["by_source"]["input"]["chars"], json!(13));
        assert!(output["by_source"].get("data").is_none());
    }

    #[tokio::test]
    async fn split_spawns_a_count_per_paragraph() {
        let t = task(json!({"text": "one two\n\nthree\n\n\n"}), &[]);
        let output = Split.handle(t.clone()).await.expect("splits");
        assert_eq!(output, json!({"paragraphs": 2}));
        let growth = t.growth();
        assert_eq!(growth.spawn.len(), 2);
        assert_eq!(growth.spawn[1]["id"], json!("count-p2"));
        assert_eq!(growth.spawn[1]["capability"], json!("wordcount"));
        assert_eq!(growth.spawn[1]["input"], json!({"text": "three"}));
    }

    #[tokio::test]
    async fn rejects_other_input_permanently() {
        let error = WordCount
            .handle(task(json!(42), &[]))
            .await
            .expect_err("number");
        assert!(error.is_permanent(), "{error}");
    }
}
