//! The event log: every input the scheduler acted on and every decision it made, in order, in
//! a redb database. Appends are batched: one write transaction (one fsync) per batch.
//!
//! Only one process may open a data directory for writing; a second gets
//! [`LogError::Locked`], never a shared, corrupted log.
//!
//! # Versions
//! The log's **format version** ([`FORMAT_VERSION`], in the `meta` table) names the shape of
//! its events. An event's shape never changes in place: a new shape is a new variant, or a
//! migration that rewrites old events and bumps the format, so every log this build accepts
//! decodes. The **semantics version** of each run (the scheduling rules it was accepted
//! under) is recorded in its `RunAccepted` decision; see [`crate::scheduler::SEMANTICS_VERSION`].

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use workforce_shared::EventSeq;

use crate::scheduler::{Decision, Input};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Highest event whose effects (publishes) are known done; later ones are redone on restart.
const EFFECTS_DONE: &str = "effects_done";
const FORMAT: &str = "format";
/// The shape of the events this build reads and writes.
pub const FORMAT_VERSION: u64 = 2;

pub const LOG_FILE: &str = "events.redb";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    Input(Input),
    Decision(Decision),
}

/// One log record. `at_ms` is wall-clock time (Unix ms) in production and virtual time in the
/// simulator; the scheduler never sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: u64,
    pub entry: Entry,
}

impl Event {
    pub fn encode(&self) -> Result<Vec<u8>, LogError> {
        rmp_serde::to_vec_named(self).map_err(LogError::Encode)
    }

    pub fn decode(seq: u64, bytes: &[u8]) -> Result<Self, LogError> {
        rmp_serde::from_slice(bytes).map_err(|source| LogError::Corrupt { seq, source })
    }

    /// The events that record one step: its input, then its decisions, all at `at_ms`.
    pub fn of_step(at_ms: u64, input: Input, decisions: Vec<Decision>) -> Vec<Event> {
        let mut events = Vec::with_capacity(decisions.len() + 1);
        events.push(Event {
            at_ms,
            entry: Entry::Input(input),
        });
        events.extend(decisions.into_iter().map(|decision| Event {
            at_ms,
            entry: Entry::Decision(decision),
        }));
        events
    }
}

/// One recorded step: an input and the decisions recorded after it.
#[derive(Debug)]
pub struct Group<'a> {
    pub seq: EventSeq,
    pub at_ms: u64,
    pub input: &'a Input,
    pub decisions: Vec<(EventSeq, &'a Decision)>,
}

impl Group<'_> {
    /// The decisions alone, in order.
    pub fn decisions(&self) -> Vec<Decision> {
        self.decisions.iter().map(|(_, d)| (*d).clone()).collect()
    }
}

/// Splits a log into its steps. A decision with no input before it is an error.
pub fn groups(events: &[(EventSeq, Event)]) -> Result<Vec<Group<'_>>, LogError> {
    let mut out: Vec<Group<'_>> = Vec::new();
    for (seq, event) in events {
        match &event.entry {
            Entry::Input(input) => out.push(Group {
                seq: *seq,
                at_ms: event.at_ms,
                input,
                decisions: Vec::new(),
            }),
            Entry::Decision(decision) => match out.last_mut() {
                Some(group) => group.decisions.push((*seq, decision)),
                None => return Err(LogError::Orphan { seq: seq.0 }),
            },
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error(
        "the event log {path} is in use by another process (a running coordinator?); stop it, or point --data at another directory"
    )]
    Locked { path: PathBuf },
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no event log at {path} (expected {LOG_FILE} in the data directory, or a log file)")]
    Missing { path: PathBuf },
    #[error("event log {path} has format version {found}; this build reads format version {FORMAT_VERSION} only{}", wrong_format_hint(*found))]
    WrongFormat { path: PathBuf, found: u64 },
    #[error("event {seq} of the log cannot be decoded: {source}")]
    Corrupt {
        seq: u64,
        #[source]
        source: rmp_serde::decode::Error,
    },
    #[error("event {seq} is a decision with no input before it")]
    Orphan { seq: u64 },
    #[error("cannot encode an event: {0}")]
    Encode(#[source] rmp_serde::encode::Error),
    #[error("cannot open the event log {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("event log storage error: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("event log transaction error: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("event log table error: {0}")]
    Table(#[from] redb::TableError),
    #[error("event log commit error: {0}")]
    Commit(#[from] redb::CommitError),
    #[error("event log durability setting refused: {0}")]
    Durability(#[from] redb::SetDurabilityError),
}

fn wrong_format_hint(found: u64) -> &'static str {
    if found < FORMAT_VERSION {
        " (logs of format 1 predate the versioned log and cannot be upgraded: start the coordinator on a new data directory)"
    } else {
        " (it was written by a newer Workforce: use that one)"
    }
}

/// An open, writable event log.
#[derive(Debug)]
pub struct EventLog {
    db: Database,
    path: PathBuf,
    next_seq: u64,
}

fn open_error(path: &Path, e: redb::DatabaseError) -> LogError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => LogError::Locked {
            path: path.to_owned(),
        },
        source => LogError::Open {
            path: path.to_owned(),
            source,
        },
    }
}

/// Everything a log holds, read in one transaction.
#[derive(Debug)]
pub struct Contents {
    pub format: u64,
    pub events: Vec<(EventSeq, Event)>,
    /// Effects of events up to here are known done.
    pub effects_done: EventSeq,
}

fn check_format(path: &Path, found: Option<u64>) -> Result<(), LogError> {
    match found {
        None | Some(FORMAT_VERSION) => Ok(()),
        Some(found) => Err(LogError::WrongFormat {
            path: path.to_owned(),
            found,
        }),
    }
}

fn read_contents(path: &Path, txn: &redb::ReadTransaction) -> Result<Contents, LogError> {
    let meta = txn.open_table(META)?;
    let format = meta.get(FORMAT)?.map(|v| v.value());
    check_format(path, format)?;
    let effects_done = EventSeq(meta.get(EFFECTS_DONE)?.map_or(0, |v| v.value()));
    let table = txn.open_table(EVENTS)?;
    let mut events = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        let seq = k.value();
        events.push((EventSeq(seq), Event::decode(seq, v.value())?));
    }
    Ok(Contents {
        format: format.unwrap_or(FORMAT_VERSION),
        events,
        effects_done,
    })
}

impl EventLog {
    /// Opens (creating if needed) the log in `dir`.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir).map_err(|source| LogError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(LOG_FILE);
        let db = Database::create(&path).map_err(|e| open_error(&path, e))?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get(FORMAT)?.map(|v| v.value());
            check_format(&path, found)?;
            let events = txn.open_table(EVENTS)?;
            if found.is_none() {
                // Events with no format version were not written by this log: refuse them.
                if !events.is_empty()? {
                    return Err(LogError::WrongFormat { path, found: 0 });
                }
                meta.insert(FORMAT, FORMAT_VERSION)?;
            }
        }
        txn.commit()?;
        let next_seq = {
            let txn = db.begin_read()?;
            let events = txn.open_table(EVENTS)?;
            events.last()?.map_or(1, |(k, _)| k.value() + 1)
        };
        Ok(Self { db, path, next_seq })
    }

    /// Reads a whole log without changing it: `path` is a data directory or a log file
    /// itself. Read-only when the log was closed cleanly; a log left by a crash is opened for
    /// writing once, to repair it.
    pub fn read(path: &Path) -> Result<Contents, LogError> {
        let file = if path.is_file() {
            path.to_owned()
        } else {
            path.join(LOG_FILE)
        };
        if !file.exists() {
            return Err(LogError::Missing {
                path: path.to_owned(),
            });
        }
        match redb::ReadOnlyDatabase::open(&file) {
            Ok(db) => read_contents(&file, &db.begin_read()?),
            Err(redb::DatabaseError::RepairAborted) => {
                let db = Database::create(&file).map_err(|e| open_error(&file, e))?;
                read_contents(&file, &db.begin_read()?)
            }
            Err(e) => Err(open_error(&file, e)),
        }
    }

    /// Everything the log holds.
    pub fn contents(&self) -> Result<Contents, LogError> {
        read_contents(&self.path, &self.db.begin_read()?)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends events in one durable transaction; returns the sequence of the first.
    pub fn append(&mut self, events: &[Event]) -> Result<EventSeq, LogError> {
        let first = self.next_seq;
        if events.is_empty() {
            return Ok(EventSeq(first));
        }
        let encoded: Vec<Vec<u8>> = events.iter().map(Event::encode).collect::<Result<_, _>>()?;
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(EVENTS)?;
            for (offset, bytes) in encoded.iter().enumerate() {
                table.insert(first + offset as u64, bytes.as_slice())?;
            }
        }
        txn.commit()?;
        self.next_seq = first + events.len() as u64;
        Ok(EventSeq(first))
    }

    /// Every event, in order.
    pub fn read_all(&self) -> Result<Vec<(EventSeq, Event)>, LogError> {
        Ok(self.contents()?.events)
    }

    pub fn len(&self) -> u64 {
        self.next_seq - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records that the effects of every event up to `seq` are done. Not fsynced on its own:
    /// losing it only means some effects are redone (idempotently) after a crash.
    pub fn mark_effects_done(&mut self, seq: EventSeq) -> Result<(), LogError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::None)?;
        txn.open_table(META)?.insert(EFFECTS_DONE, seq.0)?;
        txn.commit()?;
        Ok(())
    }

    pub fn effects_done(&self) -> Result<EventSeq, LogError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(EventSeq(meta.get(EFFECTS_DONE)?.map_or(0, |v| v.value())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use workforce_shared::RunId;

    fn event(n: u64) -> Event {
        Event {
            at_ms: n,
            entry: Entry::Input(Input::CancelRequested {
                run: RunId::new(format!("r{n}")).expect("run"),
                task: None,
                note: None,
            }),
        }
    }

    #[test]
    fn appends_in_batches_and_reads_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = EventLog::open(dir.path()).expect("open");
        assert_eq!(
            log.append(&[event(1), event(2)]).expect("append"),
            EventSeq(1)
        );
        assert_eq!(log.append(&[event(3)]).expect("append"), EventSeq(3));
        drop(log);
        let log = EventLog::open(dir.path()).expect("reopen");
        let all = log.read_all().expect("read");
        assert_eq!(all.len(), 3);
        assert_eq!(all[2], (EventSeq(3), event(3)));
        assert_eq!(log.len(), 3);
    }

    #[test]
    fn a_second_writer_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = EventLog::open(dir.path()).expect("open");
        let err = EventLog::open(dir.path()).expect_err("second open");
        assert!(matches!(err, LogError::Locked { .. }), "{err:?}");
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
    }

    #[test]
    fn effects_marker_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = EventLog::open(dir.path()).expect("open");
        log.append(&[event(1)]).expect("append");
        log.mark_effects_done(EventSeq(1)).expect("mark");
        // A later durable commit persists the marker too.
        log.append(&[event(2)]).expect("append");
        drop(log);
        let log = EventLog::open(dir.path()).expect("reopen");
        assert_eq!(log.effects_done().expect("marker"), EventSeq(1));
    }

    #[test]
    fn a_log_of_another_format_is_refused_naming_its_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = Database::create(dir.path().join(LOG_FILE)).expect("create");
            let txn = db.begin_write().expect("txn");
            txn.open_table(META)
                .expect("meta")
                .insert(FORMAT, 1)
                .expect("insert");
            txn.commit().expect("commit");
        }
        for err in [
            EventLog::open(dir.path()).expect_err("format 1"),
            EventLog::read(dir.path()).expect_err("format 1"),
        ] {
            assert!(
                matches!(err, LogError::WrongFormat { found: 1, .. }),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(text.contains("format version 1"), "{text}");
            assert!(text.contains("new data directory"), "{text}");
        }
    }

    #[test]
    fn events_with_no_format_version_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = Database::create(dir.path().join(LOG_FILE)).expect("create");
            let txn = db.begin_write().expect("txn");
            txn.open_table(EVENTS)
                .expect("events")
                .insert(1, [0u8, 1, 2].as_slice())
                .expect("insert");
            txn.commit().expect("commit");
        }
        let err = EventLog::open(dir.path()).expect_err("no format");
        assert!(
            matches!(err, LogError::WrongFormat { found: 0, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn reading_a_closed_log_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = EventLog::open(dir.path()).expect("open");
        log.append(&[event(1), event(2)]).expect("append");
        drop(log);
        let file = dir.path().join(LOG_FILE);
        let before = std::fs::read(&file).expect("bytes");
        let contents = EventLog::read(dir.path()).expect("read");
        assert_eq!(contents.format, FORMAT_VERSION);
        assert_eq!(contents.events.len(), 2);
        assert_eq!(std::fs::read(&file).expect("bytes"), before);
    }

    #[test]
    fn missing_logs_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = EventLog::read(&dir.path().join("nope")).expect_err("missing");
        assert!(matches!(err, LogError::Missing { .. }));
    }
}
