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
//! recovery and status queries), `fencing` (does this instance still hold
//! a job; who finished an input that vanished under its move), `review`
//! (the outcome index behind the review page, read through its own
//! read-only connections; on PostgreSQL `pg/review.rs` fills it from the
//! `audit` table), `marks` (approvals, flags and the action log;
//! `pg/marks.rs`).
//!
//! Two backends behind this one `Store`: SQLite (above; the default, one
//! instance) and PostgreSQL (`pg/`, several instances sharing one line:
//! claims, leases, fencing, the audit table). Every public method of the
//! pipeline's set goes to `pg` first when it is set; `run`/`call` (and so
//! any SQLite-only query) answer [`StoreError::Unsupported`] there.
//!
//! Must not: do file I/O other than the database, its lock and the name
//! checks of a reservation, or hold image bytes.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::job::{Code, Outcome};

pub use marks::{Action, ActionKind, ActionState, Mark, MarkRow};
use types::{blob_path, path_blob, NameColumn, OpError, OpResult, SCHEMA_VERSION};
pub use types::{now_ms, AllNames, Audit, Claim, ClaimRequest, Job, Known, Naming, StoreError};

mod types;

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

mod claim;
mod decide;
mod fencing;
mod pg;
pub mod pg_limits;
mod schema;
mod thread;

pub use fencing::Elsewhere;
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
