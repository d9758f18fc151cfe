//! Persistent job state in SQLite under `state_dir`: what has been done to
//! which picture (keyed by SHA-256), so a restart resumes, a crash re-runs
//! only the job it interrupted, and the same picture is never paid for twice.
//!
//! Owns: the schema and its migrations, the single-writer lock on the state
//! folder, and every query. A job row goes claimed (output name reserved,
//! first attempt counted) → outcome decided (with where the input goes) →
//! `done`; each step is one committed transaction, so recovery can finish
//! whatever a crash left half-way. A picture's happy path takes three:
//! claim, decide, finish.
//!
//! One thread owns the connection and serves every caller in batches (group
//! commit): what arrived while the last batch ran goes into one transaction,
//! each request under its own savepoint, and nobody hears back before that
//! transaction is durable (`synchronous = FULL`). Sixty workers then share
//! one fsync instead of queueing on a mutex for sixty.
//!
//! Files: `thread` (open, lock, the state thread, submit/run), `schema`
//! (migrations, rows), `claim` (lookup, claim, names), `decide` (finish,
//! recovery and status queries), `review` (the outcome index behind the
//! review page, read through its own read-only connections).
//!
//! Two backends behind this one `Store`: SQLite (above; the default, one
//! instance) and PostgreSQL (`pg/`, several instances sharing one line:
//! claims, leases, fencing, the audit table). Every public method of the
//! pipeline's set goes to `pg` first when it is set; `run`/`call` (and so
//! any SQLite-only query) answer [`StoreError::Unsupported`] there.
//!
//! Must not: do file I/O other than the database, its lock and the name
//! checks of a reservation, or hold image bytes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::job::{Code, Outcome};

pub use marks::{Action, ActionKind, ActionState, Mark, MarkRow};

const SCHEMA_VERSION: i64 = 5;

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
enum NameColumn {
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
enum OpError {
    Sqlite(rusqlite::Error),
    Record(String),
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> Self {
        OpError::Sqlite(e)
    }
}

impl OpError {
    fn at(self, path: PathBuf) -> StoreError {
        match self {
            OpError::Sqlite(source) => StoreError::Sqlite { path, source },
            OpError::Record(why) => StoreError::Record { path, why },
        }
    }
}

type OpResult<T> = Result<T, OpError>;

/// Delivers one request's answer once its batch is committed (`Err`: the
/// batch could not be begun or committed, so nothing of it is durable).
type Reply = Box<dyn FnOnce(Result<(), &str>) + Send>;
/// One request to the state thread: runs in the batch's transaction (None
/// when it could not be begun) and says whether it succeeded.
type Op = Box<dyn FnOnce(Option<&Connection>) -> (bool, Reply) + Send>;

/// Requests taken into one transaction at most.
const MAX_BATCH: usize = 256;

/// The state database. Cheap to clone: every clone sends its requests to
/// the one thread that owns the connection (see the module docs).
#[derive(Clone)]
pub struct Store {
    /// The SQLite state thread (None on PostgreSQL).
    ops: Option<mpsc::Sender<Op>>,
    path: PathBuf,
    _lock: Option<Arc<LockFile>>,
    /// The PostgreSQL backend: every public method goes there when set.
    pg: Option<Arc<pg::Pg>>,
}

struct LockFile {
    file: std::fs::File,
}

impl Drop for LockFile {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: the fd is owned by `file` and valid until it drops.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Milliseconds since the epoch (the clock of `*_ms` columns).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn path_blob(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

fn blob_path(b: Vec<u8>) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&b))
}

mod claim;
mod decide;
mod pg;
pub mod pg_limits;
mod schema;
mod thread;

pub use pg::{Instance, PgOptions};

impl Store {
    /// Open the shared PostgreSQL state as instance `opts.instance`
    /// (registers it and starts its heartbeat; see `pg`).
    pub fn open_postgres(opts: &PgOptions) -> Result<Store, StoreError> {
        Ok(Self::on_pg(pg::Pg::open(opts)?))
    }

    /// Open the PostgreSQL state for reading (`cutout status`): no instance
    /// row, nothing taken over.
    pub fn open_postgres_read_only(opts: &PgOptions) -> Result<Store, StoreError> {
        Ok(Self::on_pg(pg::Pg::open_read_only(opts)?))
    }

    fn on_pg(pg: Arc<pg::Pg>) -> Store {
        Store {
            ops: None,
            path: PathBuf::from(&pg.at),
            _lock: None,
            pg: Some(pg),
        }
    }

    /// Whether this store is the shared PostgreSQL one.
    pub fn is_shared(&self) -> bool {
        self.pg.is_some()
    }

    /// This instance's id on the shared state (None on SQLite or read-only).
    pub fn instance(&self) -> Option<&str> {
        self.pg.as_ref().and_then(|p| p.me.as_deref())
    }

    /// The instances sharing this state (empty on SQLite: one instance).
    pub fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        match &self.pg {
            Some(pg) => pg.instances(),
            None => Ok(Vec::new()),
        }
    }

    /// Run `f` in one transaction on the shared PostgreSQL state and wait
    /// (blocking callers); for state other modules keep there (e.g. a
    /// provider's shared rate row; add its table to `pg::schema::MIGRATIONS`).
    /// [`StoreError::Unsupported`] on SQLite.
    pub fn shared_run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        match &self.pg {
            Some(pg) => pg.run(move |tx| f(tx).map_err(pg::PgOpError::Pg)),
            None => Err(StoreError::Unsupported {
                what: "a shared-state transaction on SQLite",
            }),
        }
    }

    /// [`Store::shared_run`] for async callers (no thread tied up).
    pub async fn shared_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        match &self.pg {
            Some(pg) => pg.call(move |tx| f(tx).map_err(pg::PgOpError::Pg)).await,
            None => Err(StoreError::Unsupported {
                what: "a shared-state transaction on SQLite",
            }),
        }
    }

    /// The newest `n` records of the shared `audit` table as (instance,
    /// record), oldest first (empty on SQLite: the audit file is the record).
    pub fn audit_tail(&self, n: usize) -> Result<Vec<(String, String)>, StoreError> {
        match &self.pg {
            Some(pg) => pg.audit_tail(n),
            None => Ok(Vec::new()),
        }
    }
}

mod marks;
mod review;

pub use review::{Entry, IndexLine, ReviewFilter, ReviewReader};

#[cfg(test)]
mod tests;
