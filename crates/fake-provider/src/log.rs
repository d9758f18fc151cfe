//! The request log: one [`LogEntry`] per request the fake answered (or
//! dropped), kept in memory for the handle's queries and optionally written
//! as JSON lines to a file, flushed per line.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Api, Endpoint};

/// One request as the fake saw and answered it.
#[derive(Clone, Debug)]
pub struct LogEntry {
    /// Order of completion (0, 1, 2, …; not reset by `clear_log`).
    pub seq: u64,
    /// When the request head arrived.
    pub at: Instant,
    /// Same moment, wall clock.
    pub at_system: SystemTime,
    /// From arrival until the answer head was ready (or the drop).
    pub duration: Duration,
    /// Which API (`None` for unknown paths).
    pub api: Option<Api>,
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Status answered; `None` when the connection was closed without an answer.
    pub status: Option<u16>,
    /// The injected fault or built-in limit that shaped this answer
    /// (`"rate-limit"` for the limiter, `"quota"` for spent credits, else
    /// [`crate::Fault::label`]).
    pub fault: Option<String>,
    /// File name of the upload (see [`crate::FaultRule::file_contains`]).
    pub file_name: Option<String>,
    /// SHA-256 (lower-case hex) of the uploaded image bytes, when the
    /// request carried one.
    pub image_sha256: Option<String>,
    /// Whether this request took a credit.
    pub charged: bool,
    /// The verging job id created or served, if any.
    pub job_id: Option<u64>,
}

impl LogEntry {
    /// The entry as one JSON object (`unix_ms`, `method`, `path`, `status`, …).
    pub fn to_json(&self) -> serde_json::Value {
        let unix_ms = self
            .at_system
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        serde_json::json!({
            "seq": self.seq,
            "unix_ms": unix_ms,
            "duration_ms": self.duration.as_secs_f64() * 1000.0,
            "api": self.api,
            "endpoint": self.endpoint,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "fault": self.fault,
            "file_name": self.file_name,
            "image_sha256": self.image_sha256,
            "charged": self.charged,
            "job_id": self.job_id,
        })
    }
}

/// In-memory log plus the optional JSON-lines sink.
pub(crate) struct RequestLog {
    entries: Mutex<Vec<LogEntry>>,
    sink: Mutex<Option<File>>,
    next_seq: AtomicU64,
}

impl RequestLog {
    pub(crate) fn new(sink: Option<File>) -> Self {
        RequestLog {
            entries: Mutex::new(Vec::new()),
            sink: Mutex::new(sink),
            next_seq: AtomicU64::new(0),
        }
    }

    pub(crate) fn push(&self, mut entry: LogEntry) {
        let mut entries = self.entries.lock().unwrap();
        entry.seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = self.sink.lock().unwrap().as_mut() {
            // One write per line on an unbuffered file: flushed per line, and
            // in `seq` order because the entries lock is held.
            let line = format!("{}\n", entry.to_json());
            let _ = f.write_all(line.as_bytes());
            let _ = f.flush();
        }
        entries.push(entry);
    }

    pub(crate) fn snapshot(&self) -> Vec<LogEntry> {
        self.entries.lock().unwrap().clone()
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&[LogEntry]) -> R) -> R {
        f(&self.entries.lock().unwrap())
    }

    pub(crate) fn clear(&self) {
        self.entries.lock().unwrap().clear();
    }
}
