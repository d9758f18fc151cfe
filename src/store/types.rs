//! The store's plain types, shared by both backends: errors, job rows,
//! claim requests and answers, name reservations, and the small helpers
//! that turn paths and times into columns.
//!
//! Must not: hold a connection or run a query (the backends do).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::job::{Code, Outcome};

pub(super) const SCHEMA_VERSION: i64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state folder {} is in use by another cutout process (pid file {}); stop it first or give this one another state_dir", dir.display(), lock.display())]
    Locked { dir: PathBuf, lock: PathBuf },
    #[error("state folder {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("state database {}: cannot prepare the audit record: {why}", path.display())]
    Record { path: PathBuf, why: String },
    #[error("state database {}: {what}", path.display())]
    Batch { path: PathBuf, what: String },
    #[error("state database {} was written by a newer cutout (schema {found}, this build knows {SCHEMA_VERSION})", path.display())]
    TooNew { path: PathBuf, found: i64 },
    /// The PostgreSQL state (`at` is host:port/database, never the password).
    #[error("PostgreSQL state {at}: {what}")]
    Postgres { at: String, what: String },
    /// Another instance took this job over after this one's lease lapsed
    /// (a paused or cut-off instance woke up): the write was refused.
    #[error("job {id} was taken over by cutout instance {holder} after this instance's lease lapsed; that instance finishes it")]
    Fenced { id: i64, holder: String },
    /// A request only the other backend answers (a SQLite-only query on
    /// PostgreSQL, a shared-state transaction on SQLite).
    #[error("{what} is not available with this state backend")]
    Unsupported { what: &'static str },
}

/// One row of `jobs`.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub inbox: String,
    pub rel_path: PathBuf,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub mtime_ns: Option<i64>,
    pub active: bool,
    pub outcome: Option<Outcome>,
    pub attempts: u32,
    pub provider: Option<String>,
    pub output: Option<PathBuf>,
    /// Where the input is to go (archive/rejected/failed path), or None for
    /// delete/keep.
    pub move_to: Option<PathBuf>,
    pub remote_job: Option<String>,
    /// When `remote_job` was created (ms since the epoch).
    pub remote_since_ms: Option<i64>,
    /// The audit record prepared when the outcome was decided.
    pub record: Option<String>,
    pub audited: bool,
    pub reason_code: Option<Code>,
    pub reason: Option<String>,
}

/// What `claim` is asked about: one file of one inbox, with its content.
#[derive(Clone)]
pub struct ClaimRequest {
    pub inbox: String,
    /// The file's path relative to its inbox.
    pub rel: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub provider: String,
    /// Successful inputs stay in the inbox (`after_success = "keep"`): a
    /// finished job for the same path and content means "nothing to do".
    pub kept_in_place: bool,
    /// How to name the output of a new job (None: no name reserved).
    pub output: Option<Naming>,
}

/// What `claim` found.
#[derive(Debug)]
pub enum Claim {
    /// A fresh job.
    New(Job),
    /// An interrupted job for this same file and content: resume it.
    Resume(Job),
    /// Already done for this exact file (e.g. `after_success = "keep"`).
    AlreadyDone,
    /// Same content is being processed under another name right now.
    Busy,
    /// Same content succeeded before; its output is reused.
    Duplicate { job: Job, earlier: Box<Job> },
}

/// How to pick a free file name in a transaction: `candidate(base, n)` for
/// n = 1, 2, … until one is free on disk, not held by another unfinished
/// job, and `also_free` (e.g. no reason file beside it).
#[derive(Clone)]
pub struct Naming {
    pub base: PathBuf,
    pub candidate: fn(&Path, u32) -> PathBuf,
    pub also_free: fn(&Path) -> bool,
    /// Names that go with a reserved name (every `[[inbox.output]]` file of
    /// one input): see [`AllNames`]. None: the reserved name stands alone.
    pub all_names: Option<AllNames>,
}

/// Every name that belongs with job's reserved name: `(inbox, rel, name)`
/// → all names, the reserved one included. A candidate is free only when
/// each of its names is free on disk and none is among the names of
/// another unfinished job.
pub type AllNames = Arc<dyn Fn(&str, &Path, &Path) -> Vec<PathBuf> + Send + Sync>;

/// Which name column a [`Naming`] reserves.
#[derive(Clone, Copy)]
pub(super) enum NameColumn {
    Output,
    MoveTo,
}

/// Whether a finished job's audit line is written, as [`Store::finish`]
/// records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    /// The audit line is appended (and durable).
    Written,
    /// No line written by this step (one may exist from before: `finish`
    /// never clears the mark).
    NotWritten,
}

/// What `lookup` knows about a file before it is read.
#[derive(Debug)]
pub enum Known {
    /// Decided earlier, finishing steps still to run.
    Decided(Box<Job>),
    /// This exact file (path, size, mtime) already finished and was kept in
    /// place.
    DoneUnchanged,
    /// Nothing that saves reading it.
    Unknown,
}

/// Why one request failed inside the state thread (the path is added when
/// it becomes a [`StoreError`]).
#[derive(Debug)]
pub(super) enum OpError {
    Sqlite(rusqlite::Error),
    Record(String),
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> Self {
        OpError::Sqlite(e)
    }
}

impl OpError {
    pub(super) fn at(self, path: PathBuf) -> StoreError {
        match self {
            OpError::Sqlite(source) => StoreError::Sqlite { path, source },
            OpError::Record(why) => StoreError::Record { path, why },
        }
    }
}

pub(super) type OpResult<T> = Result<T, OpError>;

/// Milliseconds since the epoch (the clock of `*_ms` columns).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(super) fn path_blob(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

pub(super) fn blob_path(b: Vec<u8>) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&b))
}
