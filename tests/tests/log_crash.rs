//! Crash consistency of the event log. A writer process (`log_writer`) appends real scheduler
//! events, one durable batch per input, and is SIGKILLed at a random point, hundreds of times
//! on the same data directory. After the kills, every commit the writer reported is in the log,
//! everything once read back stays as it was, and the whole log replays with no divergence.
//!
//! Some kills are left unverified until after the next writer has run, so that writers also
//! open (and repair) a log that was not closed cleanly, and are sometimes killed while doing so.
//!
//! The run stops when it has done enough of what matters (kills after reported commits, checks,
//! opens of an unrepaired log), counted rather than timed: a slow machine takes longer, it does
//! not fail.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use workforce_coordinator::log::{Event, EventLog};
use workforce_coordinator::replay::replay;
use workforce_coordinator::simulate::SplitMix64;
use workforce_shared::EventSeq;

/// What the run does before it stops.
const ENOUGH: Counts = Counts {
    iterations: 250,
    kills_after_commits: 80,
    verified: 80,
    unrepaired_opens: 25,
};
/// A run that has not done enough after this many writers is broken, not slow: each of the
/// counts above grows with a share of the iterations whatever the machine's speed.
const MAX_ITERATIONS: u64 = 2_000;
/// A writer that says nothing for this long is stuck, not slow.
const STUCK: Duration = Duration::from_secs(30);
const SIGKILL: i32 = 9;

/// What the run has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    iterations: u64,
    /// Writers killed after they reported commits: usually mid-append.
    kills_after_commits: u64,
    /// Checks of the log between writers.
    verified: u64,
    /// Writers that opened a log left unchecked (and unrepaired) after a kill.
    unrepaired_opens: u64,
}

impl Counts {
    fn at_least(&self, other: &Counts) -> bool {
        self.iterations >= other.iterations
            && self.kills_after_commits >= other.kills_after_commits
            && self.verified >= other.verified
            && self.unrepaired_opens >= other.unrepaired_opens
    }
}

/// When to kill the writer.
#[derive(Clone, Copy, Debug)]
enum KillAfter {
    /// This long after spawning: often while it opens, repairs or replays the log.
    Spawn(Duration),
    /// This long after it reported the log open and replayed: usually mid-append.
    Ready(Duration),
    /// Right after it reported this many commits.
    Commits(usize),
}

#[derive(Debug)]
enum Line {
    Ready(u64),
    Committed(u64),
}

fn parse(line: &str) -> Line {
    let number = |s: &str| {
        s.parse()
            .unwrap_or_else(|_| panic!("bad writer line {line:?}"))
    };
    match line.split_once(' ') {
        Some(("ready", n)) => Line::Ready(number(n)),
        Some(("committed", n)) => Line::Committed(number(n)),
        _ => panic!("bad writer line {line:?}"),
    }
}

/// What one writer reported on stdout.
#[derive(Debug, Default)]
struct Reported {
    ready: Option<u64>,
    committed: Vec<u64>,
}

impl Reported {
    fn take(&mut self, line: Line) {
        match line {
            Line::Ready(n) => {
                assert!(self.ready.is_none(), "writer said ready twice");
                self.ready = Some(n);
            }
            Line::Committed(seq) => {
                assert!(self.ready.is_some(), "writer committed before ready");
                self.committed.push(seq);
            }
        }
    }

    /// Takes lines until `done` holds or `deadline` passes; false if the writer's stdout
    /// closed first.
    fn take_until(
        &mut self,
        lines: &Receiver<Line>,
        deadline: Instant,
        done: impl Fn(&Reported) -> bool,
    ) -> bool {
        while !done(self) {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.take(line),
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        true
    }
}

struct Writer {
    child: Child,
    lines: Receiver<Line>,
    reader: std::thread::JoinHandle<()>,
    spawned: Instant,
}

impl Writer {
    fn spawn(dir: &Path, seed: u64) -> Writer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_log_writer"))
            .arg(dir)
            .arg(seed.to_string())
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn log_writer");
        let spawned = Instant::now();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(parse(&line)).is_err() {
                    break;
                }
            }
        });
        Writer {
            child,
            lines,
            reader,
            spawned,
        }
    }

    /// Kills the writer as `kill` says and returns everything it reported, including lines
    /// still in the pipe when it died (each was printed after its commit returned), and whether
    /// it died of the kill.
    fn run_until_killed(mut self, kill: KillAfter) -> (Reported, bool) {
        let mut reported = Reported::default();
        match kill {
            KillAfter::Spawn(delay) => {
                reported.take_until(&self.lines, self.spawned + delay, |_| false);
            }
            KillAfter::Ready(delay) => {
                if self.wait_for(&mut reported, |r| r.ready.is_some()) {
                    reported.take_until(&self.lines, Instant::now() + delay, |_| false);
                }
            }
            KillAfter::Commits(n) => {
                self.wait_for(&mut reported, |r| r.committed.len() >= n);
            }
        }
        // std's kill is SIGKILL on Unix; a writer that already exited is reaped below.
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for log_writer");
        self.reader.join().expect("stdout reader");
        while let Ok(line) = self.lines.try_recv() {
            reported.take(line);
        }
        let killed = status.signal() == Some(SIGKILL);
        // Exiting 0 means it reached its batch cap: fine, if unlikely.
        if !killed && !status.success() {
            let mut stderr = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            panic!("log_writer failed ({status}) before the kill ({kill:?}):\n{stderr}");
        }
        (reported, killed)
    }

    /// Takes lines until `done` holds; false if the writer's stdout closed first.
    fn wait_for(&mut self, reported: &mut Reported, done: impl Fn(&Reported) -> bool) -> bool {
        let open = reported.take_until(&self.lines, Instant::now() + STUCK, &done);
        if open && !done(reported) {
            let _ = self.child.kill();
            panic!("log_writer said nothing for {STUCK:?}; it reported {reported:?}");
        }
        open
    }
}

/// Reopens the log (repairing it if the last writer died) and checks it against everything
/// reported and everything read before. Returns the log's length.
fn verify(dir: &Path, reported: u64, before: &mut Vec<(EventSeq, Event)>) -> (u64, Duration) {
    let started = Instant::now();
    let log = EventLog::open(dir).expect("the log reopens after a kill");
    let reopen = started.elapsed();
    let events = log.read_all().expect("every event decodes");
    assert_eq!(events.len() as u64, log.len());
    for (index, (seq, _)) in events.iter().enumerate() {
        assert_eq!(seq.0, index as u64 + 1, "sequences have a gap");
    }
    assert!(
        log.len() >= reported,
        "the writer reported commit {reported} done, but the log ends at {}",
        log.len()
    );
    assert!(
        events.len() >= before.len() && events[..before.len()] == before[..],
        "events read back before have changed or gone ({} before, {} now)",
        before.len(),
        events.len()
    );
    let report = replay(&events, None).expect("the log replays with no divergence");
    assert_eq!(report.events, log.len());
    *before = events;
    (log.len(), reopen)
}

#[test]
fn reported_commits_survive_sigkill_and_the_log_replays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    // Seeded: a failing iteration can be found again.
    let mut rng = SplitMix64::new(0x1a7e_2025);
    let started = Instant::now();
    let mut done = Counts::default();
    let (mut kills, mut commits, mut slowest_reopen) = (0u64, 0u64, Duration::ZERO);
    // The highest sequence any writer reported committed: the log may never end before it.
    let mut durable = 0u64;
    let mut read_back: Vec<(EventSeq, Event)> = Vec::new();
    let mut clean_len = Some(0u64);

    while !done.at_least(&ENOUGH) {
        assert!(
            done.iterations < MAX_ITERATIONS,
            "not enough done after {MAX_ITERATIONS} writers: {done:?}, wanted {ENOUGH:?}"
        );
        done.iterations += 1;
        let kill = match rng.below(3) {
            0 => KillAfter::Spawn(Duration::from_millis(rng.below(16))),
            1 => KillAfter::Ready(Duration::from_millis(rng.below(21))),
            _ => KillAfter::Commits(1 + rng.below(10) as usize),
        };
        let (reported, killed) = Writer::spawn(dir, rng.next_u64()).run_until_killed(kill);
        kills += u64::from(killed);
        if let Some(ready) = reported.ready {
            if clean_len.is_none() {
                done.unrepaired_opens += 1;
            }
            assert!(
                ready >= durable,
                "writer opened a log of {ready} events, {durable} were reported"
            );
            if let Some(len) = clean_len {
                assert_eq!(
                    ready, len,
                    "writer saw another length than the last check did"
                );
            }
            let mut last = ready;
            for &seq in &reported.committed {
                assert!(
                    seq > last,
                    "commits reported out of order: {seq} after {last}"
                );
                last = seq;
            }
            durable = last.max(durable);
        }
        if !reported.committed.is_empty() {
            done.kills_after_commits += u64::from(killed);
            commits += reported.committed.len() as u64;
        }
        // One kill in four stays unchecked: the next writer opens a log nobody repaired yet.
        clean_len = None;
        if rng.below(4) != 0 {
            let (len, reopen) = verify(dir, durable, &mut read_back);
            done.verified += 1;
            slowest_reopen = slowest_reopen.max(reopen);
            clean_len = Some(len);
        }
    }
    let (events, _) = verify(dir, durable, &mut read_back);
    eprintln!(
        "log_crash: {done:?}, {kills} kills, {commits} reported commits, {events} events, \
         slowest reopen {slowest_reopen:?}, {:?}",
        started.elapsed()
    );
    assert!(
        kills * 2 >= done.iterations,
        "too few writers were killed: {kills} of {}",
        done.iterations
    );
    assert!(events > 0, "no writer got to commit anything");
}
