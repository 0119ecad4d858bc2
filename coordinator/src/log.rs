//! The event log: every input the scheduler acted on and every decision it made, in order, in
//! a redb database. Appends are batched: one write transaction (one fsync) per batch.
//!
//! Only one process may open a data directory for writing; a second gets
//! [`LogError::Locked`], never a shared, corrupted log.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use workforce_shared::EventSeq;

use crate::scheduler::{Decision, Input};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Highest event whose effects (publishes) are known done; later ones are redone on restart.
const EFFECTS_DONE: &str = "effects_done";
const FORMAT: &str = "format";
const FORMAT_VERSION: u64 = 1;

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
        rmp_serde::to_vec_named(self).map_err(|e| LogError::Encode(e.to_string()))
    }

    pub fn decode(seq: u64, bytes: &[u8]) -> Result<Self, LogError> {
        rmp_serde::from_slice(bytes).map_err(|e| LogError::Corrupt {
            seq,
            message: e.to_string(),
        })
    }
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
    #[error("no event log at {path} (expected {LOG_FILE} in the data directory)")]
    Missing { path: PathBuf },
    #[error("event log {path} has format {found}; this build reads format {FORMAT_VERSION}")]
    WrongFormat { path: PathBuf, found: u64 },
    #[error("event {seq} of the log cannot be decoded: {message}")]
    Corrupt { seq: u64, message: String },
    #[error("cannot encode an event: {0}")]
    Encode(String),
    #[error("event log storage error: {0}")]
    Storage(String),
}

/// Storage errors from redb all become [`LogError::Storage`]; each names what failed.
macro_rules! storage {
    ($($t:ty),*) => {$(
        impl From<$t> for LogError {
            fn from(e: $t) -> Self {
                LogError::Storage(e.to_string())
            }
        }
    )*};
}
storage!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

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
        other => LogError::Storage(format!("{}: {other}", path.display())),
    }
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
            match found {
                None => {
                    meta.insert(FORMAT, FORMAT_VERSION)?;
                }
                Some(FORMAT_VERSION) => {}
                Some(found) => return Err(LogError::WrongFormat { path, found }),
            }
            txn.open_table(EVENTS)?;
        }
        txn.commit()?;
        let next_seq = {
            let txn = db.begin_read()?;
            let events = txn.open_table(EVENTS)?;
            events.last()?.map_or(1, |(k, _)| k.value() + 1)
        };
        Ok(Self { db, path, next_seq })
    }

    /// Opens an existing log for reading, failing if there is none.
    pub fn open_existing(dir: &Path) -> Result<Self, LogError> {
        if !dir.join(LOG_FILE).exists() {
            return Err(LogError::Missing {
                path: dir.to_owned(),
            });
        }
        Self::open(dir)
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
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVENTS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            let seq = k.value();
            out.push((EventSeq(seq), Event::decode(seq, v.value())?));
        }
        Ok(out)
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
        txn.set_durability(redb::Durability::None)
            .map_err(|e| LogError::Storage(e.to_string()))?;
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
    fn missing_logs_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = EventLog::open_existing(&dir.path().join("nope")).expect_err("missing");
        assert!(matches!(err, LogError::Missing { .. }));
    }
}
