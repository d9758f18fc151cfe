//! Audit: the append-only JSON Lines file `audit.jsonl` in `state_dir`, one
//! line per outcome (and one per retry), for operators and billing checks.
//!
//! Owns: the record schema (documented in README.md) and durable appends.
//! Exactly-once for outcome lines comes from the state database: a job's
//! record is prepared there first, appended here, then marked audited; after
//! a crash in between, `contains_job` tells whether the line made it.
//!
//! Must not: hold secrets (records carry no headers or keys), or rewrite
//! earlier lines.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::job::{Code, Event};

/// One audit line.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// RFC 3339 UTC time of the event.
    pub ts: String,
    /// `succeeded`, `rejected`, `failed`, `duplicate` or `retry`.
    pub event: Event,
    /// The job id in the state database.
    pub job: i64,
    /// The inbox's name.
    pub inbox: String,
    /// The input's path relative to its inbox.
    pub input: String,
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
    /// Sniffed input type: `jpeg`, `png`, `webp`.
    pub format: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub provider: Option<String>,
    pub attempts: u32,
    pub duration_ms: u64,
    /// The cut-out's path (successes and duplicates).
    pub output: Option<String>,
    /// Every file written for the input by its `[[inbox.output]]` tables,
    /// in config order (`output` is the first). Absent without outputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Where the input went (archive, rejected/, failed/) if it was moved.
    pub moved_to: Option<String>,
    /// Human-readable reason (rejections, failures, retries).
    pub reason: Option<String>,
    /// Stable kebab-case reason code.
    pub code: Option<Code>,
    /// The provider's job id, where its API has one.
    pub remote_job: Option<String>,
    /// Credits used, when known.
    pub credits: Option<f64>,
    /// For duplicates: the job whose output was reused.
    pub duplicate_of: Option<i64>,
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[derive(Debug, thiserror::Error)]
#[error("audit log {}: {source}", path.display())]
pub struct AuditError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The audit file, shared by all workers.
pub struct Audit {
    path: PathBuf,
    /// Appends take this lock (one line per write, never interleaved).
    file: Mutex<File>,
    /// The same open file for fdatasync, outside the lock: concurrent
    /// outcomes share the disk's flushes instead of queueing for them.
    sync: File,
}

impl Audit {
    pub fn open(state_dir: &Path) -> Result<Audit, AuditError> {
        Self::open_named(state_dir, None)
    }

    /// `audit.jsonl`, or `audit-<instance>.jsonl` for one of several
    /// instances sharing a PostgreSQL state (each appends its own file).
    pub fn open_named(state_dir: &Path, instance: Option<&str>) -> Result<Audit, AuditError> {
        let path = match instance {
            Some(id) => state_dir.join(format!("audit-{id}.jsonl")),
            None => state_dir.join("audit.jsonl"),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(|source| AuditError {
                path: path.clone(),
                source,
            })?;
        let sync = file.try_clone().map_err(|source| AuditError {
            path: path.clone(),
            source,
        })?;
        Ok(Audit {
            path,
            file: Mutex::new(file),
            sync,
        })
    }

    /// Append one line and make it durable.
    pub fn append_json(&self, line: &str) -> Result<(), AuditError> {
        let mut buf = String::with_capacity(line.len() + 1);
        buf.push_str(line.trim_end());
        buf.push('\n');
        let err = |source| AuditError {
            path: self.path.clone(),
            source,
        };
        {
            let f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            (&*f).write_all(buf.as_bytes()).map_err(err)?;
        }
        // Durable once this returns: fdatasync covers everything written
        // before it was called, this line included.
        self.sync.sync_data().map_err(err)
    }

    pub fn append(&self, rec: &Record) -> Result<(), AuditError> {
        let line = serde_json::to_string(rec).map_err(|e| AuditError {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        self.append_json(&line)
    }

    /// Whether an outcome line for `job` is already in the file's tail (used
    /// only by crash recovery, so reading the last few MiB is plenty).
    pub fn contains_job(&self, job: i64, event: Event) -> Result<bool, AuditError> {
        let err = |source| AuditError {
            path: self.path.clone(),
            source,
        };
        let mut f = File::open(&self.path).map_err(err)?;
        let len = f.metadata().map_err(err)?.len();
        let start = len.saturating_sub(8 << 20);
        f.seek(SeekFrom::Start(start)).map_err(err)?;
        let mut text = String::new();
        let mut raw = Vec::new();
        f.read_to_end(&mut raw).map_err(err)?;
        text.push_str(&String::from_utf8_lossy(&raw));
        let needle = format!("\"job\":{job},");
        Ok(text.lines().rev().any(|l| {
            l.contains(&needle)
                && serde_json::from_str::<Record>(l)
                    .map(|r| r.job == job && r.event == event)
                    .unwrap_or(false)
        }))
    }
}
