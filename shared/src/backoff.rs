//! Retry delays. Pure and reproducible: the same run, task and attempt always get the same
//! delay, on every machine, so replay and simulation see what production saw.

use crate::ids::{Attempt, RunId, TaskId};
use crate::plan::RetryPolicy;

/// The delay before `next` (the attempt about to be made, 2 or more).
///
/// `initial_backoff * multiplier^(next - 2)`, capped at `max_backoff`, then reduced by up to
/// `jitter` (a fraction) using a hash of run, task and attempt.
pub fn retry_delay_ms(policy: &RetryPolicy, run: &RunId, task: &TaskId, next: Attempt) -> u64 {
    let cap = policy.max_backoff_ms as f64;
    let mut delay = policy.initial_backoff_ms as f64;
    for _ in 2..next.0 {
        delay *= policy.multiplier;
        if delay >= cap {
            break;
        }
    }
    let delay = delay.min(cap);
    if policy.jitter <= 0.0 {
        return delay as u64;
    }
    let unit = unit_interval(fnv1a(&[
        run.as_str().as_bytes(),
        task.as_str().as_bytes(),
        &next.0.to_le_bytes(),
    ]));
    (delay * (1.0 - policy.jitter * unit)) as u64
}

/// FNV-1a over the parts, each followed by a separator byte so that ("ab","c") != ("a","bc").
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Maps a hash to [0, 1) using its top 53 bits.
fn unit_interval(hash: u64) -> f64 {
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial_backoff_ms: 100,
            multiplier: 2.0,
            max_backoff_ms: 1_000,
            jitter,
        }
    }

    fn ids() -> (RunId, TaskId) {
        (
            RunId::new("r").expect("run"),
            TaskId::new("t").expect("task"),
        )
    }

    #[test]
    fn grows_geometrically_then_caps() {
        let (run, task) = ids();
        let delays: Vec<u64> = (2..=7)
            .map(|n| retry_delay_ms(&policy(0.0), &run, &task, Attempt(n)))
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn jitter_is_reproducible_and_bounded() {
        let (run, task) = ids();
        let p = policy(0.5);
        for n in 2..10 {
            let a = retry_delay_ms(&p, &run, &task, Attempt(n));
            let b = retry_delay_ms(&p, &run, &task, Attempt(n));
            let full = retry_delay_ms(&policy(0.0), &run, &task, Attempt(n));
            assert_eq!(a, b);
            assert!(
                a <= full && a >= full / 2,
                "{a} outside [{}, {full}]",
                full / 2
            );
        }
    }
}
