//! The shape of a plan: how deeply a task's input nests, and whether its tasks form a cycle.

use std::collections::BTreeMap;

use serde_json::Value;

use super::TaskSpec;
use crate::ids::TaskId;

/// How deeply arrays and maps nest in `value` (a scalar is 0). Iterative: no recursion on
/// input from outside.
pub(super) fn depth_of(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
        }
        deepest = deepest.max(match v {
            Value::Array(_) | Value::Object(_) => d + 1,
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => d,
        });
    }
    deepest
}

/// A dependency cycle, as the ids along it with the first repeated at the end, or None.
/// Deterministic: explores tasks and their needs in plan order.
pub(super) fn find_cycle(tasks: &[TaskSpec]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let position: BTreeMap<&TaskId, usize> =
        tasks.iter().enumerate().map(|(i, t)| (&t.id, i)).collect();
    let edges: Vec<Vec<usize>> = tasks
        .iter()
        .map(|t| {
            t.needs
                .iter()
                .filter_map(|d| position.get(d).copied())
                .collect()
        })
        .collect();
    let mut mark = vec![Mark::New; tasks.len()];
    for start in 0..tasks.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // Stack of (node, next edge to explore); the path is the stack's nodes.
        let mut stack = vec![(start, 0usize)];
        mark[start] = Mark::OnPath;
        while let Some(top) = stack.last_mut() {
            let node = top.0;
            if let Some(&dep) = edges[node].get(top.1) {
                top.1 += 1;
                match mark[dep] {
                    Mark::New => {
                        mark[dep] = Mark::OnPath;
                        stack.push((dep, 0));
                    }
                    Mark::OnPath => {
                        let from = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[from..]
                            .iter()
                            .map(|(n, _)| tasks[*n].id.to_string())
                            .collect();
                        cycle.push(tasks[dep].id.to_string());
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}
