//! Persistent job state in SQLite under `state_dir`: what has been done to
//! which picture (keyed by SHA-256), so a restart resumes, a crash re-runs
//! only the job it interrupted, and the same picture is never paid for twice.
//!
//! Owns: the schema and its migrations, the single-writer lock on the state
//! folder, and every query. A job row goes claimed (output name reserved,
//! first attempt counted) → outcome decided (with where the input goes) →
//! `done`; each step is one committed transaction, so recovery can finish
//! whatever a crash left half-way. Every commit is an fsync and all of them
//! queue on one connection, so a picture's happy path takes three: claim,
//! decide, finish.
//!
//! Must not: do file I/O other than the database and its lock, or hold image
//! bytes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Row};

const SCHEMA_VERSION: i64 = 2;

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
    #[error("state database {} was written by a newer cutout (schema {found}, this build knows {SCHEMA_VERSION})", path.display())]
    TooNew { path: PathBuf, found: i64 },
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Duplicate,
    Rejected,
    Failed,
    /// The input disappeared before a decision (not a user-visible outcome).
    Vanished,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::Vanished => "vanished",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "succeeded" => Outcome::Succeeded,
            "duplicate" => Outcome::Duplicate,
            "rejected" => Outcome::Rejected,
            "failed" => Outcome::Failed,
            "vanished" => Outcome::Vanished,
            _ => return None,
        })
    }
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
    /// The audit record prepared when the outcome was decided.
    pub record: Option<String>,
    pub audited: bool,
    pub reason_code: Option<String>,
    pub reason: Option<String>,
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
pub struct Naming<'a> {
    pub base: &'a Path,
    pub candidate: &'a dyn Fn(&Path, u32) -> PathBuf,
    pub also_free: &'a dyn Fn(&Path) -> bool,
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
    Decided(Job),
    /// This exact file (path, size, mtime) already finished and was kept in
    /// place.
    DoneUnchanged,
    /// Nothing that saves reading it.
    Unknown,
}

/// The state database. Cheap to clone; one connection behind a mutex
/// (queries take microseconds; callers run them on blocking threads).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
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

fn now_ms() -> i64 {
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

impl Store {
    /// Open (creating) the database for the daemon or a batch: takes the
    /// exclusive lock on the state folder.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Io {
            dir: state_dir.to_path_buf(),
            source,
        })?;
        let lock = Self::lock(state_dir)?;
        let mut s = Self::open_unlocked(state_dir)?;
        s._lock = Some(Arc::new(lock));
        s.migrate()?;
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
        Ok(Some(Store {
            conn: Arc::new(Mutex::new(conn)),
            path,
            _lock: None,
        }))
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

    fn open_unlocked(state_dir: &Path) -> Result<Store, StoreError> {
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
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path,
            _lock: None,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (transactions roll back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn e(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let c = self.conn();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.e(e))?;
        if v > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: v,
            });
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
            )
            .map_err(|e| self.e(e))?;
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
            )
            .map_err(|e| self.e(e))?;
        }
        Ok(())
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
            record: r.get("record")?,
            audited: r.get::<_, i64>("audited")? != 0,
            reason_code: r.get("reason_code")?,
            reason: r.get("reason")?,
        })
    }

    pub fn get(&self, id: i64) -> Result<Option<Job>, StoreError> {
        self.conn()
            .query_row("SELECT * FROM jobs WHERE id = ?1", [id], Self::row)
            .optional()
            .map_err(|e| self.e(e))
    }

    /// What is known about this input before reading it: a decision whose
    /// finishing steps are still to run, or (for a regular file, `stat` =
    /// size and mtime) a finished job that kept it in place unchanged, so
    /// rescans skip it without reading it. One read under the lock.
    pub fn lookup(
        &self,
        inbox: &str,
        rel: &Path,
        stat: Option<(u64, i64)>,
    ) -> Result<Known, StoreError> {
        let c = self.conn();
        let decided = c
            .query_row(
                "SELECT * FROM jobs WHERE inbox = ?1 AND rel_path = ?2 AND active = 1
                   AND outcome IS NOT NULL",
                params![inbox, path_blob(rel)],
                Self::row,
            )
            .optional()
            .map_err(|e| self.e(e))?;
        if let Some(job) = decided {
            return Ok(Known::Decided(job));
        }
        let Some((size, mtime_ns)) = stat else {
            return Ok(Known::Unknown);
        };
        let n: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM jobs WHERE inbox = ?1 AND rel_path = ?2 AND active = 0
                   AND size = ?3 AND mtime_ns = ?4 AND outcome IN ('succeeded','duplicate')
                   AND move_to IS NULL",
                params![inbox, path_blob(rel), size as i64, mtime_ns],
                |r| r.get(0),
            )
            .map_err(|e| self.e(e))?;
        Ok(if n > 0 {
            Known::DoneUnchanged
        } else {
            Known::Unknown
        })
    }

    /// Find or create the job for this file and content. `kept_in_place`
    /// tells whether successful inputs stay in the inbox (then a finished job
    /// for the same path and content means "nothing to do"). With `output`,
    /// a new job (not a duplicate) gets its output name reserved and its
    /// first attempt counted in the same commit; a resumed job without a
    /// reserved name gets one.
    #[allow(clippy::too_many_arguments)]
    pub fn claim(
        &self,
        inbox: &str,
        rel: &Path,
        sha: &str,
        size: u64,
        mtime_ns: i64,
        provider: &str,
        kept_in_place: bool,
        output: Option<&Naming<'_>>,
    ) -> Result<Claim, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(|e| self.e(e))?;
        let rel_b = path_blob(rel);
        let active: Option<Job> = tx
            .query_row(
                "SELECT * FROM jobs WHERE inbox = ?1 AND rel_path = ?2 AND active = 1",
                params![inbox, rel_b],
                Self::row,
            )
            .optional()
            .map_err(|e| self.e(e))?;
        if let Some(job) = active {
            if job.sha256.as_deref() == Some(sha) && job.outcome.is_none() {
                tx.execute(
                    "UPDATE jobs SET size = ?2, mtime_ns = ?3, updated_ms = ?4 WHERE id = ?1",
                    params![job.id, size as i64, mtime_ns, now_ms()],
                )
                .map_err(|e| self.e(e))?;
                // A job interrupted while it was being handled as a duplicate
                // stays a duplicate: resuming it as a new job would pay again.
                let earlier = Self::earlier_success(&tx, sha, job.id).map_err(|e| self.e(e))?;
                let mut job = job;
                if let (None, None, Some(naming)) = (&earlier, &job.output, output) {
                    let p = Self::pick_name(&tx, job.id, NameColumn::Output, naming)
                        .map_err(|e| self.e(e))?;
                    job.output = Some(p);
                }
                tx.commit().map_err(|e| self.e(e))?;
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
            tx.execute(
                "UPDATE jobs SET active = 0, outcome = 'vanished', reason = 'replaced by new content',
                        updated_ms = ?2 WHERE id = ?1",
                params![job.id, now_ms()],
            )
            .map_err(|e| self.e(e))?;
        }
        if kept_in_place {
            let done: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM jobs WHERE inbox = ?1 AND rel_path = ?2 AND sha256 = ?3
                       AND active = 0 AND outcome IN ('succeeded','duplicate')",
                    params![inbox, rel_b, sha],
                    |r| r.get(0),
                )
                .map_err(|e| self.e(e))?;
            if done > 0 {
                // Refresh size/mtime so the next rescan skips without reading.
                tx.execute(
                    "UPDATE jobs SET size = ?4, mtime_ns = ?5 WHERE inbox = ?1 AND rel_path = ?2
                       AND sha256 = ?3 AND active = 0 AND outcome IN ('succeeded','duplicate')",
                    params![inbox, rel_b, sha, size as i64, mtime_ns],
                )
                .map_err(|e| self.e(e))?;
                tx.commit().map_err(|e| self.e(e))?;
                return Ok(Claim::AlreadyDone);
            }
        }
        let busy: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM jobs WHERE sha256 = ?1 AND active = 1 AND outcome IS NULL",
                [sha],
                |r| r.get(0),
            )
            .map_err(|e| self.e(e))?;
        if busy > 0 {
            return Ok(Claim::Busy);
        }
        let earlier = Self::earlier_success(&tx, sha, -1).map_err(|e| self.e(e))?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO jobs (inbox, rel_path, sha256, size, mtime_ns, provider, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![inbox, rel_b, sha, size as i64, mtime_ns, provider, now],
        )
        .map_err(|e| self.e(e))?;
        let id = tx.last_insert_rowid();
        if let (None, Some(naming)) = (&earlier, output) {
            // The output name is reserved before any request is sent (after
            // a crash, a file there is this job's paid result), and the
            // request about to be sent is counted.
            Self::pick_name(&tx, id, NameColumn::Output, naming).map_err(|e| self.e(e))?;
            tx.execute("UPDATE jobs SET attempts = 1 WHERE id = ?1", [id])
                .map_err(|e| self.e(e))?;
        }
        let job = tx
            .query_row("SELECT * FROM jobs WHERE id = ?1", [id], Self::row)
            .map_err(|e| self.e(e))?;
        tx.commit().map_err(|e| self.e(e))?;
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
    fn earlier_success(
        tx: &rusqlite::Transaction<'_>,
        sha: &str,
        not: i64,
    ) -> rusqlite::Result<Option<Job>> {
        let earlier: Option<Job> = tx
            .query_row(
                "SELECT * FROM jobs WHERE sha256 = ?1 AND outcome = 'succeeded' AND output IS NOT NULL
                   AND id != ?2 ORDER BY id DESC LIMIT 1",
                params![sha, not],
                Self::row,
            )
            .optional()?;
        Ok(earlier.filter(|j| j.output.as_deref().is_some_and(Path::exists)))
    }

    /// A job for a file rejected before it could be hashed (or claimed).
    pub fn insert_untracked(
        &self,
        inbox: &str,
        rel: &Path,
        sha: Option<&str>,
        size: Option<u64>,
        mtime_ns: Option<i64>,
    ) -> Result<Job, StoreError> {
        let mut c = self.conn();
        let c = c.transaction().map_err(|e| self.e(e))?;
        let now = now_ms();
        // An earlier undecided row for this path (e.g. a file that turned
        // corrupt) yields to the new one.
        c.execute(
            "UPDATE jobs SET active = 0, outcome = 'vanished', updated_ms = ?3
               WHERE inbox = ?1 AND rel_path = ?2 AND active = 1 AND outcome IS NULL",
            params![inbox, path_blob(rel), now],
        )
        .map_err(|e| self.e(e))?;
        c.execute(
            "INSERT INTO jobs (inbox, rel_path, sha256, size, mtime_ns, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![
                inbox,
                path_blob(rel),
                sha,
                size.map(|s| s as i64),
                mtime_ns,
                now
            ],
        )
        .map_err(|e| self.e(e))?;
        let id = c.last_insert_rowid();
        let job = c
            .query_row("SELECT * FROM jobs WHERE id = ?1", [id], Self::row)
            .map_err(|e| self.e(e))?;
        c.commit().map_err(|e| self.e(e))?;
        Ok(job)
    }

    pub fn set_attempts(&self, id: i64, attempts: u32) -> Result<(), StoreError> {
        self.exec(
            "UPDATE jobs SET attempts = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, attempts as i64, now_ms()],
        )
    }

    pub fn set_remote_job(&self, id: i64, remote: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE jobs SET remote_job = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, remote, now_ms()],
        )
    }

    /// Pick the first free name of `naming` and store it in `col` of job
    /// `id` (inside the caller's transaction).
    fn pick_name(
        tx: &rusqlite::Transaction<'_>,
        id: i64,
        col: NameColumn,
        naming: &Naming<'_>,
    ) -> rusqlite::Result<PathBuf> {
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
        let mut n = 1;
        let chosen = loop {
            let p = (naming.candidate)(naming.base, n);
            let held: i64 = tx.query_row(held_sql, params![path_blob(&p), id], |r| r.get(0))?;
            if held == 0 && std::fs::symlink_metadata(&p).is_err() && (naming.also_free)(&p) {
                break p;
            }
            n += 1;
        };
        tx.execute(set_sql, params![id, path_blob(&chosen), now_ms()])?;
        Ok(chosen)
    }

    /// Reserve an output name for job `id` (a duplicate that needs its own
    /// copy of the earlier cut-out). Returns the reserved path.
    pub fn reserve_output(&self, id: i64, naming: &Naming<'_>) -> Result<PathBuf, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(|e| self.e(e))?;
        let chosen = Self::pick_name(&tx, id, NameColumn::Output, naming).map_err(|e| self.e(e))?;
        tx.commit().map_err(|e| self.e(e))?;
        Ok(chosen)
    }

    /// Record the decision in one commit: the outcome, where the input goes
    /// (`move_to`: a free name is reserved; None for delete/keep) and the
    /// audit record to write, built by `record` once that name is known.
    /// From here on the job is finished by `finish_job`, also after a crash.
    /// Returns the reserved input target.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &self,
        id: i64,
        outcome: Outcome,
        output: Option<&Path>,
        reason_code: Option<&str>,
        reason: Option<&str>,
        move_to: Option<&Naming<'_>>,
        record: impl FnOnce(Option<&Path>) -> Result<String, String>,
    ) -> Result<Option<PathBuf>, StoreError> {
        let mut c = self.conn();
        let tx = c.transaction().map_err(|e| self.e(e))?;
        let target = match move_to {
            Some(naming) => {
                Some(Self::pick_name(&tx, id, NameColumn::MoveTo, naming).map_err(|e| self.e(e))?)
            }
            None => None,
        };
        let record = record(target.as_deref()).map_err(|why| StoreError::Record {
            path: self.path.clone(),
            why,
        })?;
        tx.execute(
            "UPDATE jobs SET outcome = ?2, output = COALESCE(?3, output), reason_code = ?4,
                    reason = ?5, record = ?6, updated_ms = ?7 WHERE id = ?1",
            params![
                id,
                outcome.as_str(),
                output.map(path_blob),
                reason_code,
                reason,
                record,
                now_ms()
            ],
        )
        .map_err(|e| self.e(e))?;
        tx.commit().map_err(|e| self.e(e))?;
        Ok(target)
    }

    /// The audit line is written (used when a later finishing step fails,
    /// so the retry need not search the audit file).
    pub fn mark_audited(&self, id: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE jobs SET audited = 1, updated_ms = ?2 WHERE id = ?1",
            params![id, now_ms()],
        )
    }

    /// The job is done. `audited`: its audit line is written (a crash
    /// between that append and this commit is covered by recovery's search
    /// of the audit file).
    pub fn finish(&self, id: i64, audited: bool) -> Result<(), StoreError> {
        self.exec(
            "UPDATE jobs SET active = 0, audited = MAX(audited, ?2), updated_ms = ?3 WHERE id = ?1",
            params![id, audited as i64, now_ms()],
        )
    }

    /// Drop an undecided job whose input is gone (nothing to resume).
    pub fn abandon(&self, id: i64, why: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE jobs SET active = 0, outcome = 'vanished', reason = ?2, updated_ms = ?3
               WHERE id = ?1 AND outcome IS NULL",
            params![id, why, now_ms()],
        )
    }

    /// Jobs that are decided but not finished (a crash between steps).
    pub fn decided_unfinished(&self) -> Result<Vec<Job>, StoreError> {
        self.query(
            "SELECT * FROM jobs WHERE active = 1 AND outcome IS NOT NULL ORDER BY id",
            [],
        )
    }

    /// Jobs in progress (not decided).
    pub fn undecided(&self) -> Result<Vec<Job>, StoreError> {
        self.query(
            "SELECT * FROM jobs WHERE active = 1 AND outcome IS NULL ORDER BY id",
            [],
        )
    }

    /// Counts of finished jobs by outcome.
    pub fn counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let c = self.conn();
        let mut st = c
            .prepare(
                "SELECT COALESCE(outcome, 'in-progress'), COUNT(*) FROM jobs
                 GROUP BY COALESCE(outcome, 'in-progress') ORDER BY 1",
            )
            .map_err(|e| self.e(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.e(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.e(e))
    }

    /// The most recent rejections and failures.
    pub fn last_errors(&self, n: usize) -> Result<Vec<Job>, StoreError> {
        self.query(
            "SELECT * FROM jobs WHERE outcome IN ('rejected','failed') ORDER BY updated_ms DESC, id DESC LIMIT ?1",
            [n as i64],
        )
    }

    fn exec(&self, sql: &str, p: impl rusqlite::Params) -> Result<(), StoreError> {
        self.conn()
            .execute(sql, p)
            .map(|_| ())
            .map_err(|e| self.e(e))
    }

    fn query(&self, sql: &str, p: impl rusqlite::Params) -> Result<Vec<Job>, StoreError> {
        let c = self.conn();
        let mut st = c.prepare(sql).map_err(|e| self.e(e))?;
        let rows = st.query_map(p, Self::row).map_err(|e| self.e(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.e(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_resume_duplicate_busy() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Store::open(d.path()).expect("open");
        let a = match s
            .claim("in", Path::new("a.jpg"), "h1", 10, 1, "local", false, None)
            .expect("claim")
        {
            Claim::New(j) => j,
            other => panic!("expected New, got {other:?}"),
        };
        // same path, same content, still active → resume
        assert!(matches!(
            s.claim("in", Path::new("a.jpg"), "h1", 10, 1, "local", false, None).expect("claim"),
            Claim::Resume(j) if j.id == a.id
        ));
        // same content under another name while active → busy
        assert!(matches!(
            s.claim("in", Path::new("b.jpg"), "h1", 10, 1, "local", false, None)
                .expect("claim"),
            Claim::Busy
        ));
        let out = d.path().join("a.png");
        std::fs::write(&out, b"x").expect("write");
        s.decide(
            a.id,
            Outcome::Succeeded,
            Some(&out),
            None,
            None,
            None,
            |_| Ok("{}".into()),
        )
        .expect("decide");
        s.finish(a.id, true).expect("finish");
        match s
            .claim("in", Path::new("b.jpg"), "h1", 10, 1, "local", false, None)
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
            .claim("in", Path::new("a.jpg"), "h1", 1, 1, "p", false, None)
            .expect("claim")
        else {
            panic!("expected New");
        };
        let out = d.path().join("a.png");
        std::fs::write(&out, b"x").expect("write");
        s.decide(
            a.id,
            Outcome::Succeeded,
            Some(&out),
            None,
            None,
            None,
            |_| Ok("{}".into()),
        )
        .expect("decide");
        s.finish(a.id, true).expect("finish");
        // b.jpg is claimed as a duplicate, then the process dies before deciding
        let Claim::Duplicate { job: b, .. } = s
            .claim("in", Path::new("b.jpg"), "h1", 1, 1, "p", false, None)
            .expect("claim")
        else {
            panic!("expected Duplicate");
        };
        // after a restart the same file must come back as a duplicate again
        match s
            .claim("in", Path::new("b.jpg"), "h1", 1, 1, "p", false, None)
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
    fn second_open_is_refused_while_locked() {
        let d = tempfile::tempdir().expect("tempdir");
        let _s = Store::open(d.path()).expect("open");
        let e = Store::open(d.path()).err().expect("must be locked");
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
    }
}
