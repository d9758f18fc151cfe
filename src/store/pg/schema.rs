//! The PostgreSQL schema and its migrations, the instance row (register,
//! heartbeat, stop) and reading a job row.
//!
//! Must not: change job rows other than by a migration.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::{Client, Row, Transaction};

use super::error::{pg_message, PgOpError, PgResult};
use crate::job::{Code, Outcome};
use crate::store::types::{blob_path, Job};

/// The advisory lock key held while migrating ("cutout" in ASCII).
const MIGRATE_LOCK: i64 = 0x6375_746f_7574;

/// Version n is `MIGRATIONS[n - 1]`; append, never edit.
pub(super) const MIGRATIONS: &[&str] = &[
    "CREATE TABLE instances (
        id        TEXT PRIMARY KEY,
        host      TEXT NOT NULL,
        pid       BIGINT NOT NULL,
        started   TIMESTAMPTZ NOT NULL,
        heartbeat TIMESTAMPTZ NOT NULL,
        lease_ms  BIGINT NOT NULL,
        stopped   TIMESTAMPTZ
     );
     CREATE TABLE jobs (
        id              BIGSERIAL PRIMARY KEY,
        inbox           TEXT NOT NULL,
        rel_path        BYTEA NOT NULL,
        sha256          TEXT,
        size            BIGINT,
        mtime_ns        BIGINT,
        active          BOOLEAN NOT NULL DEFAULT TRUE,
        outcome         TEXT,
        attempts        BIGINT NOT NULL DEFAULT 0,
        provider        TEXT,
        output          BYTEA,
        move_to         BYTEA,
        remote_job      TEXT,
        remote_since_ms BIGINT,
        record          TEXT,
        audited         BOOLEAN NOT NULL DEFAULT FALSE,
        reason_code     TEXT,
        reason          TEXT,
        created_ms      BIGINT NOT NULL,
        updated_ms      BIGINT NOT NULL,
        owner           TEXT,
        epoch           BIGINT NOT NULL DEFAULT 1
     );
     CREATE INDEX jobs_sha ON jobs(sha256);
     CREATE INDEX jobs_path ON jobs(inbox, rel_path);
     CREATE INDEX jobs_output ON jobs(output);
     CREATE INDEX jobs_active_owner ON jobs(owner) WHERE active;
     CREATE INDEX jobs_active_move_to ON jobs(move_to) WHERE active;
     CREATE INDEX jobs_active_output ON jobs(output) WHERE active;
     CREATE INDEX jobs_updated ON jobs(updated_ms);
     CREATE UNIQUE INDEX jobs_one_active_per_path ON jobs(inbox, rel_path) WHERE active;
     CREATE UNIQUE INDEX jobs_one_claim_per_sha ON jobs(sha256)
        WHERE active AND outcome IS NULL AND provider IS NOT NULL;
     CREATE TABLE audit (
        job_id   BIGINT PRIMARY KEY REFERENCES jobs(id),
        instance TEXT NOT NULL,
        at       TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
        record   TEXT NOT NULL
     );
     CREATE INDEX audit_at ON audit(at);",
    // 2: the review page's outcome index, filled from `audit` (review.rs).
    super::review::MIGRATION,
];

/// Bring the schema up to date (one instance at a time, under an advisory
/// lock); refuses a database newer than this build.
pub(super) fn migrate(c: &mut Client) -> PgResult<()> {
    let mut tx = c.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let v: i64 = tx
        .query_opt("SELECT version FROM schema_version", &[])?
        .map(|r| r.try_get(0))
        .transpose()?
        .unwrap_or(0);
    let known = MIGRATIONS.len() as i64;
    if v > known {
        return Err(PgOpError::Record(format!(
            "the database was written by a newer cutout (schema {v}, this build knows {known})"
        )));
    }
    for sql in &MIGRATIONS[v as usize..] {
        tx.batch_execute(sql)?;
    }
    tx.execute("DELETE FROM schema_version", &[])?;
    tx.execute("INSERT INTO schema_version VALUES ($1)", &[&known])?;
    tx.commit()?;
    Ok(())
}

/// This machine's name (the default instance id, and the `host` column).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // when the name fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether process `pid` exists on this machine.
fn pid_alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Take the instance row: free when new, stopped, silent past its lease,
/// or left by a process of this host that no longer exists (a restart
/// after kill -9 need not wait out the lease).
pub(super) fn register(c: &mut Client, me: &str, lease_ms: i64) -> PgResult<()> {
    let host = host_name();
    let pid = i64::from(std::process::id());
    let mut tx = c.transaction()?;
    let old = tx.query_opt(
        "SELECT host, pid, stopped IS NULL
                AND heartbeat + lease_ms * INTERVAL '1 millisecond' > clock_timestamp()
           FROM instances WHERE id = $1 FOR UPDATE",
        &[&me],
    )?;
    if let Some(r) = old {
        let (h, p, alive): (String, i64, bool) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        if alive && !(h == host && (p == pid || !pid_alive(p))) {
            return Err(PgOpError::Record(format!(
                "instance id {me:?} is in use by pid {p} on {h} (its heartbeat is fresh); give this instance another [state] instance, or stop that one first"
            )));
        }
    }
    tx.execute(
        "INSERT INTO instances (id, host, pid, started, heartbeat, lease_ms)
         VALUES ($1, $2, $3, clock_timestamp(), clock_timestamp(), $4)
         ON CONFLICT (id) DO UPDATE SET host = $2, pid = $3, started = clock_timestamp(),
            heartbeat = clock_timestamp(), lease_ms = $4, stopped = NULL",
        &[&me, &host, &pid, &lease_ms],
    )?;
    tx.commit()?;
    Ok(())
}

/// The heartbeat thread: refresh the instance row every `every` until the
/// handle is dropped, then mark the instance stopped (its jobs may be taken
/// over at once).
pub(super) fn heartbeat(
    cfg: postgres::Config,
    mut c: Client,
    me: &str,
    every: Duration,
    stop: &AtomicBool,
) {
    let tick = Duration::from_millis(50).min(every);
    let mut waited = Duration::ZERO;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(tick);
        waited += tick;
        if waited < every {
            continue;
        }
        waited = Duration::ZERO;
        if c.is_closed() {
            match cfg.connect(postgres::NoTls) {
                Ok(n) => c = n,
                Err(e) => {
                    tracing::warn!(
                        "state database: heartbeat cannot reconnect: {}",
                        pg_message(&e)
                    );
                    continue;
                }
            }
        }
        if let Err(e) = c.execute(
            "UPDATE instances SET heartbeat = clock_timestamp() WHERE id = $1",
            &[&me],
        ) {
            tracing::warn!("state database: heartbeat failed: {}", pg_message(&e));
        }
    }
    let _ = c.execute(
        "UPDATE instances SET stopped = clock_timestamp() WHERE id = $1",
        &[&me],
    );
}

/// The SQL condition "instance `owner_expr` is dead or absent".
pub(super) const OWNER_DEAD: &str = "NOT EXISTS (SELECT 1 FROM instances i WHERE i.id = jobs.owner
      AND i.stopped IS NULL
      AND i.heartbeat + i.lease_ms * INTERVAL '1 millisecond' > clock_timestamp())";

/// A job row.
pub(super) fn row(r: &Row) -> PgResult<Job> {
    Ok(Job {
        id: r.try_get("id")?,
        inbox: r.try_get("inbox")?,
        rel_path: blob_path(r.try_get("rel_path")?),
        sha256: r.try_get("sha256")?,
        size: r.try_get::<_, Option<i64>>("size")?.map(|v| v as u64),
        mtime_ns: r.try_get("mtime_ns")?,
        active: r.try_get("active")?,
        outcome: r
            .try_get::<_, Option<String>>("outcome")?
            .as_deref()
            .and_then(Outcome::parse),
        attempts: r
            .try_get::<_, i64>("attempts")?
            .clamp(0, i64::from(u32::MAX)) as u32,
        provider: r.try_get("provider")?,
        output: r.try_get::<_, Option<Vec<u8>>>("output")?.map(blob_path),
        move_to: r.try_get::<_, Option<Vec<u8>>>("move_to")?.map(blob_path),
        remote_job: r.try_get("remote_job")?,
        remote_since_ms: r.try_get("remote_since_ms")?,
        record: r.try_get("record")?,
        audited: r.try_get("audited")?,
        reason_code: r
            .try_get::<_, Option<String>>("reason_code")?
            .as_deref()
            .and_then(Code::parse),
        reason: r.try_get("reason")?,
    })
}

/// One row by id.
pub(super) fn job(tx: &mut Transaction<'_>, id: i64) -> PgResult<Option<Job>> {
    tx.query_opt("SELECT * FROM jobs WHERE id = $1", &[&id])?
        .map(|r| row(&r))
        .transpose()
}

/// A job row with its owner and epoch.
pub(super) fn owned(r: &Row) -> PgResult<(Job, Option<String>, i64)> {
    Ok((row(r)?, r.try_get("owner")?, r.try_get("epoch")?))
}
