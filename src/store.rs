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

const SCHEMA_VERSION: i64 = 3;

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
}

/// Which name column a [`Naming`] reserves.
#[derive(Clone, Copy)]
enum NameColumn {
    Output,
    MoveTo,
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
    ops: mpsc::Sender<Op>,
    path: PathBuf,
    _lock: Option<Arc<LockFile>>,
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

/// The state thread: take what is waiting, run it in one transaction (one
/// savepoint per request, so a failing request leaves the others alone),
/// commit, then answer everyone. Ends when the last `Store` clone is gone.
fn serve(conn: Connection, ops: mpsc::Receiver<Op>) {
    let step = |sql: &str| conn.execute_batch(sql);
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let begun = step("BEGIN").map_err(|e| format!("cannot begin a transaction: {e}"));
        let mut replies = Vec::with_capacity(batch.len());
        for op in batch {
            let c = match begun {
                Ok(()) if step("SAVEPOINT op").is_ok() => Some(&conn),
                _ => None,
            };
            let ran = std::panic::catch_unwind(AssertUnwindSafe(|| op(c)));
            let ok = matches!(ran, Ok((true, _)));
            if c.is_some() {
                if !ok {
                    let _ = step("ROLLBACK TO op");
                }
                let _ = step("RELEASE op");
            }
            // A request that panicked drops its reply: its caller gets
            // "stopped" instead of hanging.
            if let Ok((_, reply)) = ran {
                replies.push(reply);
            }
        }
        let done = match begun {
            Ok(()) => step("COMMIT").map_err(|e| {
                let _ = step("ROLLBACK");
                format!("cannot commit: {e}")
            }),
            Err(e) => Err(e),
        };
        for reply in replies {
            reply(done.as_ref().map(|_| ()).map_err(String::as_str));
        }
    }
}

impl Store {
    /// Open (creating) the database for the daemon or a batch: takes the
    /// exclusive lock on the state folder.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Io {
            dir: state_dir.to_path_buf(),
            source,
        })?;
        let lock = Self::lock(state_dir)?;
        let path = state_dir.join("state.sqlite3");
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        // FULL: a committed decision survives power loss, not just a crash.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.set_prepared_statement_cache_capacity(64);
        Self::migrate(&conn, &path)?;
        let mut s = Self::serve_on(conn, path)?;
        s._lock = Some(Arc::new(lock));
        Ok(s)
    }

    /// Open for reading only (`cutout status`), without the lock.
    pub fn open_read_only(state_dir: &Path) -> Result<Option<Store>, StoreError> {
        let path = state_dir.join("state.sqlite3");
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
        Self::serve_on(conn, path).map(Some)
    }

    fn serve_on(conn: Connection, path: PathBuf) -> Result<Store, StoreError> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("cutout-state".into())
            .spawn(move || serve(conn, rx))
            .map_err(|source| StoreError::Io {
                dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                source,
            })?;
        Ok(Store {
            ops: tx,
            path,
            _lock: None,
        })
    }

    fn lock(state_dir: &Path) -> Result<LockFile, StoreError> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let lock_path = state_dir.join("cutout.lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::Io {
                dir: state_dir.to_path_buf(),
                source,
            })?;
        // SAFETY: valid fd for the lifetime of `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(StoreError::Locked {
                dir: state_dir.to_path_buf(),
                lock: lock_path,
            });
        }
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(LockFile { file })
    }

    /// Run `f` in the state thread's next batch and wait until that batch
    /// is committed. Called from blocking threads (it blocks).
    /// Queue `f` for the state thread; `deliver` gets its result once its
    /// batch is committed (or failed).
    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> OpResult<T> + Send + 'static,
        deliver: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let op: Op = Box::new(move |c| {
            let r = match c {
                Some(c) => f(c).map_err(|e| e.at(path.clone())),
                None => Err(StoreError::Batch {
                    path: path.clone(),
                    what: "the transaction could not be begun".into(),
                }),
            };
            let ok = r.is_ok();
            let reply: Reply = Box::new(move |done| {
                let out = match (r, done) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Ok(_), Err(what)) => Err(StoreError::Batch {
                        path,
                        what: what.to_string(),
                    }),
                    (Err(e), _) => Err(e),
                };
                deliver(out);
            });
            (ok, reply)
        });
        self.ops.send(op).map_err(|_| self.stopped())
    }

    fn stopped(&self) -> StoreError {
        StoreError::Batch {
            path: self.path.clone(),
            what:
                "the request was lost in the state thread (it failed inside or the thread stopped)"
                    .into(),
        }
    }

    /// Run `f` on the state thread and wait for it (blocking callers:
    /// finishing steps, recovery, the CLI).
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> OpResult<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel::<Result<T, StoreError>>(1);
        self.submit(f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv().map_err(|_| self.stopped())?
    }

    /// Run `f` on the state thread; async callers wait on a oneshot reply
    /// and tie up no thread meanwhile.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> OpResult<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, StoreError>>();
        self.submit(f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.map_err(|_| self.stopped())?
    }

    fn migrate(c: &Connection, path: &Path) -> Result<(), StoreError> {
        Self::migrate_in(c)
            .map_err(|e| e.at(path.to_path_buf()))?
            .map_or(Ok(()), |found| {
                Err(StoreError::TooNew {
                    path: path.to_path_buf(),
                    found,
                })
            })
    }

    /// Bring the schema up to date; Some(version) when the database is newer
    /// than this build.
    fn migrate_in(c: &Connection) -> OpResult<Option<i64>> {
        let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if v > SCHEMA_VERSION {
            return Ok(Some(v));
        }
        if v < 1 {
            c.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS jobs (
                    id          INTEGER PRIMARY KEY,
                    inbox       TEXT NOT NULL,
                    rel_path    BLOB NOT NULL,
                    sha256      TEXT,
                    size        INTEGER,
                    mtime_ns    INTEGER,
                    active      INTEGER NOT NULL DEFAULT 1,
                    outcome     TEXT,
                    attempts    INTEGER NOT NULL DEFAULT 0,
                    provider    TEXT,
                    output      BLOB,
                    move_to     BLOB,
                    remote_job  TEXT,
                    record      TEXT,
                    audited     INTEGER NOT NULL DEFAULT 0,
                    reason_code TEXT,
                    reason      TEXT,
                    created_ms  INTEGER NOT NULL,
                    updated_ms  INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS jobs_sha ON jobs(sha256);
                 CREATE INDEX IF NOT EXISTS jobs_path ON jobs(inbox, rel_path);
                 CREATE INDEX IF NOT EXISTS jobs_output ON jobs(output);
                 CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active_per_path
                    ON jobs(inbox, rel_path) WHERE active = 1;
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        if v < 2 {
            // Name reservations look only at unfinished jobs: small partial
            // indexes keep them O(log n) however many jobs the table holds
            // (a full scan per picture before).
            c.execute_batch(
                "BEGIN;
                 CREATE INDEX IF NOT EXISTS jobs_active_move_to ON jobs(move_to) WHERE active = 1;
                 CREATE INDEX IF NOT EXISTS jobs_active_output ON jobs(output) WHERE active = 1;
                 PRAGMA user_version = 2;
                 COMMIT;",
            )?;
        }
        if v < 3 {
            // When the remote job was created: its `job_timeout` counts
            // from there, across restarts.
            c.execute_batch(
                "BEGIN;
                 ALTER TABLE jobs ADD COLUMN remote_since_ms INTEGER;
                 PRAGMA user_version = 3;
                 COMMIT;",
            )?;
        }
        Ok(None)
    }

    fn row(r: &Row<'_>) -> rusqlite::Result<Job> {
        Ok(Job {
            id: r.get("id")?,
            inbox: r.get("inbox")?,
            rel_path: blob_path(r.get("rel_path")?),
            sha256: r.get("sha256")?,
            size: r.get::<_, Option<i64>>("size")?.map(|v| v as u64),
            mtime_ns: r.get("mtime_ns")?,
            active: r.get::<_, i64>("active")? != 0,
            outcome: r
                .get::<_, Option<String>>("outcome")?
                .as_deref()
                .and_then(Outcome::parse),
            attempts: r.get::<_, i64>("attempts")? as u32,
            provider: r.get("provider")?,
            output: r.get::<_, Option<Vec<u8>>>("output")?.map(blob_path),
            move_to: r.get::<_, Option<Vec<u8>>>("move_to")?.map(blob_path),
            remote_job: r.get("remote_job")?,
            remote_since_ms: r.get("remote_since_ms")?,
            record: r.get("record")?,
            audited: r.get::<_, i64>("audited")? != 0,
            reason_code: r
                .get::<_, Option<String>>("reason_code")?
                .as_deref()
                .and_then(Code::parse),
            reason: r.get("reason")?,
        })
    }

    /// One row by id.
    fn job(c: &Connection, id: i64) -> OpResult<Option<Job>> {
        Ok(c.prepare_cached("SELECT * FROM jobs WHERE id = ?1")?
            .query_row([id], Self::row)
            .optional()?)
    }

    pub fn get(&self, id: i64) -> Result<Option<Job>, StoreError> {
        self.run(move |c| Self::job(c, id))
    }

    /// What is known about this input before reading it: a decision whose
    /// finishing steps are still to run, or (for a regular file, `stat` =
    /// size and mtime) a finished job that kept it in place unchanged, so
    /// rescans skip it without reading it.
    pub async fn lookup(
        &self,
        inbox: &str,
        rel: &Path,
        stat: Option<(u64, i64)>,
    ) -> Result<Known, StoreError> {
        let (inbox, rel) = (inbox.to_string(), rel.to_path_buf());
        self.call(move |c| {
            let decided = c
                .prepare_cached(
                    "SELECT * FROM jobs WHERE inbox = ?1 AND rel_path = ?2 AND active = 1
                       AND outcome IS NOT NULL",
                )?
                .query_row(params![inbox, path_blob(&rel)], Self::row)
                .optional()?;
            if let Some(job) = decided {
                return Ok(Known::Decided(Box::new(job)));
            }
            let Some((size, mtime_ns)) = stat else {
                return Ok(Known::Unknown);
            };
            let n: i64 = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM jobs WHERE inbox = ?1 AND rel_path = ?2 AND active = 0
                       AND size = ?3 AND mtime_ns = ?4 AND outcome IN ('succeeded','duplicate')
                       AND move_to IS NULL",
                )?
                .query_row(
                    params![inbox, path_blob(&rel), size as i64, mtime_ns],
                    |r| r.get(0),
                )?;
            Ok(if n > 0 {
                Known::DoneUnchanged
            } else {
                Known::Unknown
            })
        })
        .await
    }

    /// Find or create the job for this file and content (see
    /// [`ClaimRequest`]): a new job (not a duplicate) gets its output name
    /// reserved and its first attempt counted in the same commit; a resumed
    /// job without a reserved name gets one.
    pub async fn claim(&self, req: ClaimRequest) -> Result<Claim, StoreError> {
        self.call(move |c| {
            Self::claim_in(
                c,
                &req.inbox,
                &req.rel,
                &req.sha256,
                (req.size, req.mtime_ns),
                &req.provider,
                req.kept_in_place,
                req.output.as_ref(),
            )
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    fn claim_in(
        c: &Connection,
        inbox: &str,
        rel: &Path,
        sha: &str,
        (size, mtime_ns): (u64, i64),
        provider: &str,
        kept_in_place: bool,
        output: Option<&Naming>,
    ) -> OpResult<Claim> {
        let rel_b = path_blob(rel);
        let active: Option<Job> = c
            .prepare_cached("SELECT * FROM jobs WHERE inbox = ?1 AND rel_path = ?2 AND active = 1")?
            .query_row(params![inbox, rel_b], Self::row)
            .optional()?;
        if let Some(mut job) = active {
            if job.sha256.as_deref() == Some(sha) && job.outcome.is_none() {
                c.execute(
                    "UPDATE jobs SET size = ?2, mtime_ns = ?3, updated_ms = ?4 WHERE id = ?1",
                    params![job.id, size as i64, mtime_ns, now_ms()],
                )?;
                // A job interrupted while it was being handled as a duplicate
                // stays a duplicate: resuming it as a new job would pay again.
                let earlier = Self::earlier_success(c, sha, job.id)?;
                if let (None, None, Some(naming)) = (&earlier, &job.output, output) {
                    job.output = Some(Self::pick_name(c, job.id, NameColumn::Output, naming)?);
                }
                return Ok(match earlier {
                    Some(earlier) => Claim::Duplicate {
                        job,
                        earlier: Box::new(earlier),
                    },
                    None => Claim::Resume(job),
                });
            }
            if job.outcome.is_some() {
                // Decided but not finished: recovery owns it.
                return Ok(Claim::Busy);
            }
            // The file was replaced by other content before the old job ended.
            c.execute(
                "UPDATE jobs SET active = 0, outcome = 'vanished', reason = 'replaced by new content',
                        updated_ms = ?2 WHERE id = ?1",
                params![job.id, now_ms()],
            )?;
        }
        if kept_in_place {
            let done: i64 = c.query_row(
                "SELECT COUNT(*) FROM jobs WHERE inbox = ?1 AND rel_path = ?2 AND sha256 = ?3
                   AND active = 0 AND outcome IN ('succeeded','duplicate')",
                params![inbox, rel_b, sha],
                |r| r.get(0),
            )?;
            if done > 0 {
                // Refresh size/mtime so the next rescan skips without reading.
                c.execute(
                    "UPDATE jobs SET size = ?4, mtime_ns = ?5 WHERE inbox = ?1 AND rel_path = ?2
                       AND sha256 = ?3 AND active = 0 AND outcome IN ('succeeded','duplicate')",
                    params![inbox, rel_b, sha, size as i64, mtime_ns],
                )?;
                return Ok(Claim::AlreadyDone);
            }
        }
        let busy: i64 = c
            .prepare_cached(
                "SELECT COUNT(*) FROM jobs WHERE sha256 = ?1 AND active = 1 AND outcome IS NULL",
            )?
            .query_row([sha], |r| r.get(0))?;
        if busy > 0 {
            return Ok(Claim::Busy);
        }
        let earlier = Self::earlier_success(c, sha, -1)?;
        c.prepare_cached(
            "INSERT INTO jobs (inbox, rel_path, sha256, size, mtime_ns, provider, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        )?
        .execute(params![inbox, rel_b, sha, size as i64, mtime_ns, provider, now_ms()])?;
        let id = c.last_insert_rowid();
        if let (None, Some(naming)) = (&earlier, output) {
            // The output name is reserved before any request is sent (after
            // a crash, a file there is this job's paid result), and the
            // request about to be sent is counted.
            Self::pick_name(c, id, NameColumn::Output, naming)?;
            c.prepare_cached("UPDATE jobs SET attempts = 1 WHERE id = ?1")?
                .execute([id])?;
        }
        let job = Self::job(c, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        Ok(match earlier {
            Some(earlier) => Claim::Duplicate {
                job,
                earlier: Box::new(earlier),
            },
            None => Claim::New(job),
        })
    }

    /// The latest success for this content (other than job `not`) whose
    /// cut-out is still on disk.
    fn earlier_success(c: &Connection, sha: &str, not: i64) -> OpResult<Option<Job>> {
        let earlier: Option<Job> = c
            .prepare_cached(
                "SELECT * FROM jobs WHERE sha256 = ?1 AND outcome = 'succeeded' AND output IS NOT NULL
                   AND id != ?2 ORDER BY id DESC LIMIT 1",
            )?
            .query_row(params![sha, not], Self::row)
            .optional()?;
        Ok(earlier.filter(|j| j.output.as_deref().is_some_and(Path::exists)))
    }

    /// A job for a file rejected before it could be hashed (or claimed).
    pub async fn insert_untracked(
        &self,
        inbox: &str,
        rel: &Path,
        sha: Option<&str>,
        size: Option<u64>,
        mtime_ns: Option<i64>,
    ) -> Result<Job, StoreError> {
        let (inbox, rel, sha) = (
            inbox.to_string(),
            rel.to_path_buf(),
            sha.map(str::to_string),
        );
        self.call(move |c| {
            let now = now_ms();
            // An earlier undecided row for this path (e.g. a file that turned
            // corrupt) yields to the new one.
            c.execute(
                "UPDATE jobs SET active = 0, outcome = 'vanished', updated_ms = ?3
                   WHERE inbox = ?1 AND rel_path = ?2 AND active = 1 AND outcome IS NULL",
                params![inbox, path_blob(&rel), now],
            )?;
            c.execute(
                "INSERT INTO jobs (inbox, rel_path, sha256, size, mtime_ns, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![
                    inbox,
                    path_blob(&rel),
                    sha,
                    size.map(|s| s as i64),
                    mtime_ns,
                    now
                ],
            )?;
            let id = c.last_insert_rowid();
            Ok(Self::job(c, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?)
        })
        .await
    }

    pub async fn set_attempts(&self, id: i64, attempts: u32) -> Result<(), StoreError> {
        self.call(move |c| {
            c.prepare_cached("UPDATE jobs SET attempts = ?2, updated_ms = ?3 WHERE id = ?1")?
                .execute((id, attempts as i64, now_ms()))?;
            Ok(())
        })
        .await
    }

    pub async fn set_remote_job(&self, id: i64, remote: &str) -> Result<(), StoreError> {
        let remote = remote.to_string();
        self.call(move |c| {
            c.prepare_cached(
                "UPDATE jobs SET remote_job = ?2, remote_since_ms = ?3, updated_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![id, remote, now_ms()])?;
            Ok(())
        })
        .await
    }

    /// Pick the first free name of `naming` and store it in `col` of job
    /// `id` (inside the batch's transaction).
    fn pick_name(c: &Connection, id: i64, col: NameColumn, naming: &Naming) -> OpResult<PathBuf> {
        let (held_sql, set_sql) = match col {
            NameColumn::Output => (
                "SELECT COUNT(*) FROM jobs WHERE output = ?1 AND id != ?2 AND active = 1",
                "UPDATE jobs SET output = ?2, updated_ms = ?3 WHERE id = ?1",
            ),
            NameColumn::MoveTo => (
                "SELECT COUNT(*) FROM jobs WHERE move_to = ?1 AND id != ?2 AND active = 1",
                "UPDATE jobs SET move_to = ?2, updated_ms = ?3 WHERE id = ?1",
            ),
        };
        let mut held = c.prepare_cached(held_sql)?;
        let mut n = 1;
        let chosen = loop {
            let p = (naming.candidate)(&naming.base, n);
            let taken: i64 = held.query_row(params![path_blob(&p), id], |r| r.get(0))?;
            if taken == 0 && std::fs::symlink_metadata(&p).is_err() && (naming.also_free)(&p) {
                break p;
            }
            n += 1;
        };
        c.prepare_cached(set_sql)?
            .execute(params![id, path_blob(&chosen), now_ms()])?;
        Ok(chosen)
    }

    /// Reserve an output name for job `id` (a duplicate that needs its own
    /// copy of the earlier cut-out). Returns the reserved path.
    pub async fn reserve_output(&self, id: i64, naming: Naming) -> Result<PathBuf, StoreError> {
        self.call(move |c| Self::pick_name(c, id, NameColumn::Output, &naming))
            .await
    }

    /// Record the decision in one commit: the outcome, where the input goes
    /// (`move_to`: a free name is reserved; None for delete/keep) and the
    /// audit record to write, built by `record` once that name is known.
    /// From here on the job is finished by `finish_job`, also after a crash.
    /// Returns the reserved input target.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide(
        &self,
        id: i64,
        outcome: Outcome,
        output: Option<PathBuf>,
        reason_code: Option<Code>,
        reason: Option<String>,
        move_to: Option<Naming>,
        record: impl FnOnce(Option<&Path>) -> Result<String, String> + Send + 'static,
    ) -> Result<Option<PathBuf>, StoreError> {
        self.call(move |c| {
            let target = match &move_to {
                Some(naming) => Some(Self::pick_name(c, id, NameColumn::MoveTo, naming)?),
                None => None,
            };
            let record = record(target.as_deref()).map_err(OpError::Record)?;
            c.prepare_cached(
                "UPDATE jobs SET outcome = ?2, output = COALESCE(?3, output), reason_code = ?4,
                        reason = ?5, record = ?6, updated_ms = ?7 WHERE id = ?1",
            )?
            .execute(params![
                id,
                outcome.as_str(),
                output.as_deref().map(path_blob),
                reason_code.map(Code::as_str),
                reason,
                record,
                now_ms()
            ])?;
            Ok(target)
        })
        .await
    }

    /// The audit line is written (used when a later finishing step fails,
    /// so the retry need not search the audit file).
    pub fn mark_audited(&self, id: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE jobs SET audited = 1, updated_ms = ?2 WHERE id = ?1",
            (id, now_ms()),
        )
    }

    /// The job is done. `audited`: its audit line is written (a crash
    /// between that append and this commit is covered by recovery's search
    /// of the audit file).
    pub fn finish(&self, id: i64, audited: bool) -> Result<(), StoreError> {
        self.exec(
            "UPDATE jobs SET active = 0, audited = MAX(audited, ?2), updated_ms = ?3 WHERE id = ?1",
            (id, audited as i64, now_ms()),
        )
    }

    /// Take back a rejection or failure whose finishing steps have not
    /// taken effect (its input changed after it was judged): the job ends
    /// as `withdrawn`, with no audit record to write and no target held, so
    /// it is neither counted nor listed as an error, and recovery leaves it
    /// alone. A job whose audit line is written is not touched.
    pub fn withdraw(&self, id: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE jobs SET active = 0, outcome = 'withdrawn', record = NULL, move_to = NULL,
                    updated_ms = ?2
               WHERE id = ?1 AND active = 1 AND outcome IN ('rejected','failed') AND audited = 0",
            (id, now_ms()),
        )
    }

    /// Drop an undecided job whose input is gone (nothing to resume).
    pub fn abandon(&self, id: i64, why: &str) -> Result<(), StoreError> {
        let why = why.to_string();
        self.run(move |c| {
            c.execute(
                "UPDATE jobs SET active = 0, outcome = 'vanished', reason = ?2, updated_ms = ?3
                   WHERE id = ?1 AND outcome IS NULL",
                params![id, why, now_ms()],
            )?;
            Ok(())
        })
    }

    /// Jobs that are decided but not finished (a crash between steps).
    pub fn decided_unfinished(&self) -> Result<Vec<Job>, StoreError> {
        self.query(
            "SELECT * FROM jobs WHERE active = 1 AND outcome IS NOT NULL ORDER BY id",
            None,
        )
    }

    /// Inputs (inbox name, relative path) whose job in progress remembers
    /// a remote job: paid for, its result still to collect. At most 10 000.
    pub async fn remote_jobs_open(&self) -> Result<Vec<(String, PathBuf)>, StoreError> {
        self.call(|c| {
            let mut st = c.prepare_cached(
                "SELECT inbox, rel_path FROM jobs WHERE active = 1 AND outcome IS NULL
                   AND remote_job IS NOT NULL LIMIT 10000",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, blob_path(r.get(1)?))))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Jobs in progress (not decided).
    pub fn undecided(&self) -> Result<Vec<Job>, StoreError> {
        self.query(
            "SELECT * FROM jobs WHERE active = 1 AND outcome IS NULL ORDER BY id",
            None,
        )
    }

    /// Counts of finished jobs by outcome.
    pub fn counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.run(|c| {
            let mut st = c.prepare(
                "SELECT COALESCE(outcome, 'in-progress'), COUNT(*) FROM jobs
                 GROUP BY COALESCE(outcome, 'in-progress') ORDER BY 1",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// The most recent rejections and failures.
    pub fn last_errors(&self, n: usize) -> Result<Vec<Job>, StoreError> {
        self.query(
            "SELECT * FROM jobs WHERE outcome IN ('rejected','failed') ORDER BY updated_ms DESC, id DESC LIMIT ?1",
            Some(n as i64),
        )
    }

    fn exec<P: rusqlite::Params + Send + 'static>(
        &self,
        sql: &'static str,
        p: P,
    ) -> Result<(), StoreError> {
        self.run(move |c| {
            c.prepare_cached(sql)?.execute(p)?;
            Ok(())
        })
    }

    fn query(&self, sql: &'static str, arg: Option<i64>) -> Result<Vec<Job>, StoreError> {
        self.run(move |c| {
            let mut st = c.prepare(sql)?;
            let rows = match arg {
                Some(a) => st.query_map([a], Self::row)?.collect::<Result<_, _>>()?,
                None => st.query_map([], Self::row)?.collect::<Result<_, _>>()?,
            };
            Ok(rows)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wait for a store call from a plain (test) thread.
    trait Wait: std::future::Future + Sized {
        fn wait(self) -> Self::Output {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime")
                .block_on(self)
        }
    }
    impl<F: std::future::Future> Wait for F {}

    /// Job `id` succeeded with a cut-out at `out` (written now) and is done.
    fn succeed_with_output(s: &Store, id: i64, out: &Path) {
        std::fs::write(out, b"x").expect("write");
        let out = Some(out.to_path_buf());
        s.decide(id, Outcome::Succeeded, out, None, None, None, |_| {
            Ok("{}".into())
        })
        .wait()
        .expect("decide");
        s.finish(id, true).expect("finish");
    }

    /// A rejected job of `rel`, decided (a record to write, not audited).
    fn rejected(s: &Store, rel: &str) -> i64 {
        let j = s
            .insert_untracked("in", Path::new(rel), None, Some(0), Some(1))
            .wait()
            .expect("insert");
        let why = Some("0 bytes".to_string());
        s.decide(
            j.id,
            Outcome::Rejected,
            None,
            Some(Code::EmptyFile),
            why,
            None,
            |_| Ok("{}".into()),
        )
        .wait()
        .expect("decide");
        j.id
    }

    #[test]
    fn a_withdrawn_rejection_is_not_counted_listed_or_recovered() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Store::open(d.path()).expect("open");
        let (a, b) = (rejected(&s, "a.jpg"), rejected(&s, "b.jpg"));
        s.withdraw(a).expect("withdraw");
        // An audited decision stands: withdrawing it changes nothing.
        s.finish(b, true).expect("finish");
        s.withdraw(b).expect("withdraw");
        let counts = s.counts().expect("counts");
        let n = |k: &str| counts.iter().find(|(o, _)| o == k).map(|(_, n)| *n);
        assert_eq!((n("rejected"), n("withdrawn")), (Some(1), Some(1)));
        let errors = s.last_errors(10).expect("errors");
        assert_eq!(errors.iter().map(|j| j.id).collect::<Vec<_>>(), vec![b]);
        assert!(s.decided_unfinished().expect("unfinished").is_empty());
        let ja = s.get(a).expect("get").expect("row");
        assert_eq!((ja.outcome, ja.active), (Some(Outcome::Withdrawn), false));
        assert_eq!((ja.record, ja.move_to), (None, None));
    }

    #[test]
    fn claim_resume_duplicate_busy() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Store::open(d.path()).expect("open");
        let a = match s
            .claim(ClaimRequest {
                inbox: "in".into(),
                rel: Path::new("a.jpg").into(),
                sha256: "h1".to_string(),
                size: 10,
                mtime_ns: 1,
                provider: "local".into(),
                kept_in_place: false,
                output: None,
            })
            .wait()
            .expect("claim")
        {
            Claim::New(j) => j,
            other => panic!("expected New, got {other:?}"),
        };
        // same path, same content, still active → resume
        assert!(matches!(
            s.claim(ClaimRequest {
            inbox: "in".into(),
            rel: Path::new("a.jpg").into(),
            sha256: "h1".to_string(),
            size: 10,
            mtime_ns: 1,
            provider: "local".into(),
            kept_in_place: false,
            output: None,
        }).wait().expect("claim"),
            Claim::Resume(j) if j.id == a.id
        ));
        // same content under another name while active → busy
        assert!(matches!(
            s.claim(ClaimRequest {
                inbox: "in".into(),
                rel: Path::new("b.jpg").into(),
                sha256: "h1".to_string(),
                size: 10,
                mtime_ns: 1,
                provider: "local".into(),
                kept_in_place: false,
                output: None,
            })
            .wait()
            .expect("claim"),
            Claim::Busy
        ));
        succeed_with_output(&s, a.id, &d.path().join("a.png"));
        match s
            .claim(ClaimRequest {
                inbox: "in".into(),
                rel: Path::new("b.jpg").into(),
                sha256: "h1".to_string(),
                size: 10,
                mtime_ns: 1,
                provider: "local".into(),
                kept_in_place: false,
                output: None,
            })
            .wait()
            .expect("claim")
        {
            Claim::Duplicate { earlier, .. } => assert_eq!(earlier.id, a.id),
            other => panic!("expected Duplicate, got {other:?}"),
        }
    }

    #[test]
    fn an_interrupted_duplicate_is_not_resumed_as_a_new_job() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Store::open(d.path()).expect("open");
        let Claim::New(a) = s
            .claim(ClaimRequest {
                inbox: "in".into(),
                rel: Path::new("a.jpg").into(),
                sha256: "h1".to_string(),
                size: 1,
                mtime_ns: 1,
                provider: "p".into(),
                kept_in_place: false,
                output: None,
            })
            .wait()
            .expect("claim")
        else {
            panic!("expected New");
        };
        succeed_with_output(&s, a.id, &d.path().join("a.png"));
        // b.jpg is claimed as a duplicate, then the process dies before deciding
        let Claim::Duplicate { job: b, .. } = s
            .claim(ClaimRequest {
                inbox: "in".into(),
                rel: Path::new("b.jpg").into(),
                sha256: "h1".to_string(),
                size: 1,
                mtime_ns: 1,
                provider: "p".into(),
                kept_in_place: false,
                output: None,
            })
            .wait()
            .expect("claim")
        else {
            panic!("expected Duplicate");
        };
        // after a restart the same file must come back as a duplicate again
        match s
            .claim(ClaimRequest {
                inbox: "in".into(),
                rel: Path::new("b.jpg").into(),
                sha256: "h1".to_string(),
                size: 1,
                mtime_ns: 1,
                provider: "p".into(),
                kept_in_place: false,
                output: None,
            })
            .wait()
            .expect("claim")
        {
            Claim::Duplicate { job, earlier } => {
                assert_eq!(job.id, b.id);
                assert_eq!(earlier.id, a.id);
            }
            other => panic!("expected Duplicate, got {other:?}"),
        }
    }

    #[test]
    fn concurrent_claims_share_batches_and_all_commit() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Store::open(d.path()).expect("open");
        let threads: Vec<_> = (0..32)
            .map(|i| {
                let s = s.clone();
                let out = d.path().join("out");
                std::thread::spawn(move || {
                    let name = format!("p{i}.jpg");
                    let naming = Naming {
                        base: out.join(format!("p{i}.png")),
                        candidate: crate::fsutil::numbered,
                        also_free: |_| true,
                    };
                    let sha = format!("h{i}");
                    match s
                        .claim(ClaimRequest {
                            inbox: "in".into(),
                            rel: Path::new(&name).into(),
                            sha256: sha.clone(),
                            size: 1,
                            mtime_ns: 1,
                            provider: "p".into(),
                            kept_in_place: false,
                            output: Some(naming),
                        })
                        .wait()
                        .expect("claim")
                    {
                        Claim::New(j) => j,
                        other => panic!("expected New, got {other:?}"),
                    }
                })
            })
            .collect();
        let jobs: Vec<Job> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        drop(s);
        // Everything answered is durable: a fresh open sees every claim with
        // its reserved output and first attempt.
        let s = Store::open(d.path()).expect("reopen");
        for j in jobs {
            let row = s.get(j.id).expect("get").expect("row");
            assert_eq!(row.attempts, 1);
            assert_eq!(row.output, j.output);
            assert!(row.output.is_some());
        }
        assert_eq!(s.undecided().expect("undecided").len(), 32);
    }

    #[test]
    fn a_failing_request_rolls_back_alone_and_a_panic_does_not_stop_the_thread() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Store::open(d.path()).expect("open");
        let Claim::New(a) = s
            .claim(ClaimRequest {
                inbox: "in".into(),
                rel: Path::new("a.jpg").into(),
                sha256: "ha".to_string(),
                size: 1,
                mtime_ns: 1,
                provider: "p".into(),
                kept_in_place: false,
                output: None,
            })
            .wait()
            .expect("claim")
        else {
            panic!("expected New");
        };
        // Writes, then fails: its write must not survive.
        let e = s
            .run(move |c| -> OpResult<()> {
                c.execute("UPDATE jobs SET attempts = 99 WHERE id = ?1", [a.id])?;
                Err(OpError::Record("made to fail".into()))
            })
            .expect_err("must fail");
        assert!(e.to_string().contains("made to fail"), "{e}");
        let p = s.run(|_| -> OpResult<()> { panic!("made to panic") });
        assert!(p.is_err());
        // The state thread still serves, and the row is as before.
        s.set_attempts(a.id, 2).wait().expect("still served");
        assert_eq!(s.get(a.id).expect("get").expect("row").attempts, 2);
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let d = tempfile::tempdir().expect("tempdir");
        let _s = Store::open(d.path()).expect("open");
        let e = Store::open(d.path()).err().expect("must be locked");
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
    }
}
