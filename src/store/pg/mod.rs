//! The PostgreSQL backend of [`Store`](super::Store): the same jobs, shared
//! by several cutout instances (one per machine) watching one inbox.
//!
//! Owns: the connection pool (a few threads, each with its own connection;
//! every request is one transaction, run again in a fresh one when
//! PostgreSQL refuses it for a serialization failure or deadlock: see
//! `retrying`), the instance row and its heartbeat thread, and the per-job
//! fencing tokens this instance holds.
//!
//! Shapes (other modules build on these):
//! - `instances(id, host, pid, started, heartbeat, lease_ms, stopped)`: an
//!   instance is alive while `heartbeat + lease_ms > clock_timestamp()` and
//!   `stopped` is NULL (all times by the database's clock, so the machines'
//!   clocks need not agree).
//! - `jobs`: the SQLite columns plus `owner` (instance id) and `epoch` (the
//!   fencing token, bumped on every takeover). Unique partial indexes give
//!   one active job per (inbox, path) and one claimed, undecided job per
//!   SHA-256; claims insert with `ON CONFLICT DO NOTHING`, so exactly one
//!   instance takes a file and the others hear `Busy`.
//! - Takeover: a job whose owner is dead is taken (owner = me, epoch + 1)
//!   when this instance looks it up, claims it, or recovers at start; its
//!   `remote_job` is kept, so the paid remote job is collected, not paid
//!   again.
//! - Fencing: every write to a job first locks its row and checks that this
//!   instance still owns it at the epoch it took it with; otherwise
//!   [`StoreError::Fenced`](super::StoreError::Fenced).
//! - `audit(job_id, instance, at, record)`: the job's audit record, copied
//!   when its line is written (`finish(.., Written)` / `mark_audited`).
//! - `outcomes`/`outcome_lines`: the review page's index, filled from
//!   `audit` by a trigger (`review.rs`); `marks`: approvals and flags
//!   (`marks.rs`).
//! - `schema_version`: migrations in [`schema::MIGRATIONS`], applied under an
//!   advisory lock; append new versions there.
//! - A provider's shared rate/cool-down/pause row lives in `pg_limits.rs`,
//!   on its own connection (not this pool).
//!
//! TLS is not supported by this build: the host must be a unix socket or
//! loopback, or the URL must say `sslmode=disable` (plain text, a trusted
//! network). The password never appears in errors or logs.
//!
//! Must not: do file I/O other than the name checks of a reservation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use postgres::{Client, NoTls, Transaction};

use crate::store::types::StoreError;

mod error;
pub use error::{pg_message, PgOpError, PgResult};

mod claim;
mod decide;
mod fencing;
mod marks;
mod review;
mod schema;
#[cfg(test)]
mod tests;

pub use review::PgReader;

/// How to reach the shared state and who this instance is.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/db` (no password in it).
    pub url: String,
    /// The password, read from a file by the config.
    pub password: Option<String>,
    /// This instance's id: stable across restarts (default the host name).
    pub instance: String,
    /// How long a silent instance keeps its jobs.
    pub lease: Duration,
    /// Connections (and threads) in the pool.
    pub connections: usize,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("instance", &self.instance)
            .field("lease", &self.lease)
            .field("connections", &self.connections)
            .finish()
    }
}

/// One cutout instance as `cutout status` lists it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub host: String,
    pub pid: i64,
    /// Milliseconds since the last heartbeat, by the database's clock.
    pub heartbeat_age_ms: i64,
    pub alive: bool,
    /// Active jobs it owns.
    pub jobs_held: i64,
}

type PgOp = Box<dyn FnOnce(&mut Client) + Send>;

/// The shared state of one instance's handle (behind an `Arc` in `Store`).
pub struct Pg {
    ops: mpsc::Sender<PgOp>,
    /// How to connect (the review page's readers open their own).
    cfg: postgres::Config,
    /// host:port/db, for messages (never the password).
    pub(super) at: String,
    /// This instance (None: read-only, no instance row).
    pub(super) me: Option<String>,
    /// Fencing tokens: job id → the epoch this instance took it at.
    held: Mutex<HashMap<i64, i64>>,
    stop: Arc<AtomicBool>,
    /// The heartbeat thread, joined on drop so the instance is marked
    /// stopped before the process goes on (its jobs are free at once).
    heartbeat: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.heartbeat.lock().ok().and_then(|mut h| h.take()) {
            let _ = h.join();
        }
    }
}

/// Where `cfg` points, without the password: `host:port/db`.
fn describe(cfg: &postgres::Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", cfg.get_dbname().unwrap_or("(default)"))
}

/// Plain text only where nobody can listen: a unix socket or loopback, or
/// where the URL says `sslmode=disable`.
fn check_tls(cfg: &postgres::Config, at: &str) -> Result<(), StoreError> {
    use postgres::config::{Host, SslMode};
    let local = cfg.get_hosts().iter().all(|h| match h {
        Host::Unix(_) => true,
        Host::Tcp(h) => {
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    });
    let why = match cfg.get_ssl_mode() {
        SslMode::Require => Some("the URL asks for sslmode=require, but this build has no TLS for PostgreSQL"),
        SslMode::Disable => None,
        _ if local => None,
        _ => Some("the host is not loopback and this build has no TLS for PostgreSQL; reach it through a tunnel (SSH, WireGuard) on loopback, or add sslmode=disable to the URL on a trusted network"),
    };
    match why {
        Some(w) => Err(StoreError::Postgres {
            at: at.to_string(),
            what: w.into(),
        }),
        None => Ok(()),
    }
}

fn parse(opts: &PgOptions) -> Result<(postgres::Config, String), StoreError> {
    let mut cfg: postgres::Config =
        opts.url
            .parse()
            .map_err(|e: postgres::Error| StoreError::Postgres {
                at: "state URL".into(),
                what: format!(
                    "cannot read it ({}); expected postgres://user@host:port/database",
                    pg_message(&e)
                ),
            })?;
    let at = describe(&cfg);
    check_tls(&cfg, &at)?;
    if let Some(pw) = &opts.password {
        cfg.password(pw.trim_end_matches(['\n', '\r']));
    }
    cfg.application_name("cutout");
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(10));
    }
    Ok((cfg, at))
}

fn connect(cfg: &postgres::Config, at: &str) -> Result<Client, StoreError> {
    cfg.connect(NoTls).map_err(|e| StoreError::Postgres {
        at: at.to_string(),
        what: format!("cannot connect: {}", pg_message(&e)),
    })
}

impl Pg {
    /// Connect, migrate, register this instance and start its heartbeat.
    pub(super) fn open(opts: &PgOptions) -> Result<Arc<Pg>, StoreError> {
        let (cfg, at) = parse(opts)?;
        let mut first = connect(&cfg, &at)?;
        schema::migrate(&mut first).map_err(|e| e.at(&at))?;
        let lease_ms = opts.lease.as_millis().clamp(1, i64::MAX as u128) as i64;
        schema::register(&mut first, &opts.instance, lease_ms).map_err(|e| e.at(&at))?;
        let pg = Self::start(
            cfg.clone(),
            first,
            &at,
            Some(opts.instance.clone()),
            opts.connections,
        )?;
        let hb_client = connect(&cfg, &at)?;
        let (stop, me, every) = (pg.stop.clone(), opts.instance.clone(), opts.lease / 4);
        let handle = std::thread::Builder::new()
            .name("cutout-heartbeat".into())
            .spawn(move || schema::heartbeat(cfg, hb_client, &me, every, &stop))
            .map_err(|source| StoreError::Io {
                dir: at.clone().into(),
                source,
            })?;
        if let Ok(mut h) = pg.heartbeat.lock() {
            *h = Some(handle);
        }
        Ok(pg)
    }

    /// Connect without registering an instance (`cutout status`).
    pub(super) fn open_read_only(opts: &PgOptions) -> Result<Arc<Pg>, StoreError> {
        let (cfg, at) = parse(opts)?;
        let first = connect(&cfg, &at)?;
        Self::start(cfg, first, &at, None, 1)
    }

    fn start(
        cfg: postgres::Config,
        first: Client,
        at: &str,
        me: Option<String>,
        connections: usize,
    ) -> Result<Arc<Pg>, StoreError> {
        let (tx, rx) = mpsc::channel::<PgOp>();
        let rx = Arc::new(Mutex::new(rx));
        let mut clients = vec![first];
        for _ in 1..connections.max(1) {
            clients.push(connect(&cfg, at)?);
        }
        for client in clients {
            let (rx, cfg) = (rx.clone(), cfg.clone());
            std::thread::Builder::new()
                .name("cutout-state-pg".into())
                .spawn(move || serve(cfg, client, &rx))
                .map_err(|source| StoreError::Io {
                    dir: at.into(),
                    source,
                })?;
        }
        Ok(Arc::new(Pg {
            ops: tx,
            cfg,
            at: at.to_string(),
            me,
            held: Mutex::new(HashMap::new()),
            stop: Arc::new(AtomicBool::new(false)),
            heartbeat: Mutex::new(None),
        }))
    }

    fn lost(&self) -> StoreError {
        StoreError::Postgres {
            at: self.at.clone(),
            what: "the request was lost in the state threads (it failed inside or they stopped)"
                .into(),
        }
    }

    fn submit<T: Send + 'static>(
        &self,
        mut f: impl FnMut(&mut Transaction<'_>) -> PgResult<T> + Send + 'static,
        deliver: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        let at = self.at.clone();
        let op: PgOp = Box::new(move |client| {
            let r = retrying(client, &mut f);
            deliver(r.map_err(|e| e.at(&at)));
        });
        self.ops.send(op).map_err(|_| self.lost())
    }

    /// Run `f` in its own transaction and wait (blocking callers). `f` runs
    /// again, in a fresh transaction, when the transaction is refused for a
    /// serialization failure or a deadlock (see [`retrying`]).
    pub(super) fn run<T: Send + 'static>(
        &self,
        f: impl FnMut(&mut Transaction<'_>) -> PgResult<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv().map_err(|_| self.lost())?
    }

    /// Run `f` in its own transaction; async callers await a oneshot.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        f: impl FnMut(&mut Transaction<'_>) -> PgResult<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.map_err(|_| self.lost())?
    }

    /// A reader for the review page, on connections of its own.
    pub(super) fn review_reader(&self) -> PgReader {
        PgReader::new(self.cfg.clone(), self.at.clone())
    }

    /// This instance's id, or `ReadOnly` for a status handle.
    pub(super) fn me(&self) -> PgResult<String> {
        self.me.clone().ok_or(PgOpError::ReadOnly)
    }

    pub(super) fn hold(&self, id: i64, epoch: i64) {
        if let Ok(mut h) = self.held.lock() {
            h.insert(id, epoch);
        }
    }

    pub(super) fn held_epoch(&self, id: i64) -> Option<i64> {
        self.held.lock().ok().and_then(|h| h.get(&id).copied())
    }

    pub(super) fn release(&self, id: i64) {
        if let Ok(mut h) = self.held.lock() {
            h.remove(&id);
        }
    }
}

/// Times a transaction refused for a transient conflict is tried again.
const CONFLICT_RETRIES: usize = 5;

/// Whether PostgreSQL refused the transaction for a conflict with another
/// one that goes away when it is simply run again: `serialization_failure`
/// (40001) or `deadlock_detected` (40P01). Matched on the SQLSTATE code.
pub(super) fn is_transient(e: &PgOpError) -> bool {
    use postgres::error::SqlState;
    match e {
        PgOpError::Pg(e) => e.code().is_some_and(|c| {
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        }),
        _ => false,
    }
}

/// Run `f` in one transaction on `client` and commit it; when PostgreSQL
/// refuses it for a transient conflict ([`is_transient`], at any statement
/// or at the commit), roll back and run `f` again in a fresh transaction,
/// up to [`CONFLICT_RETRIES`] times after a short jittered backoff (10 ms
/// doubling to 200 ms, `backon`). Other errors (and `Fenced`) are final.
/// Blocking: runs on a pool thread.
fn retrying<T>(
    client: &mut Client,
    f: &mut impl FnMut(&mut Transaction<'_>) -> PgResult<T>,
) -> PgResult<T> {
    use backon::{BlockingRetryable, ExponentialBuilder};
    let once = || {
        let mut tx = client.transaction()?;
        let v = f(&mut tx)?;
        tx.commit()?;
        Ok(v)
    };
    let backoff = ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(10))
        .with_max_delay(Duration::from_millis(200))
        .with_max_times(CONFLICT_RETRIES)
        .with_jitter();
    once.retry(backoff)
        .sleep(std::thread::sleep)
        .when(is_transient)
        .notify(|e, after| {
            tracing::debug!(
                "state database: transaction refused ({}); running it again in {after:?}",
                match e {
                    PgOpError::Pg(e) => pg_message(e),
                    _ => String::new(),
                }
            )
        })
        .call()
}

/// One pool thread: run requests until every `Store` clone is gone,
/// reconnecting when the connection broke.
fn serve(cfg: postgres::Config, mut client: Client, rx: &Mutex<mpsc::Receiver<PgOp>>) {
    loop {
        let op = match rx.lock() {
            Ok(r) => match r.recv() {
                Ok(op) => op,
                Err(_) => return,
            },
            Err(_) => return,
        };
        if client.is_closed() {
            match cfg.connect(NoTls) {
                Ok(c) => client = c,
                Err(e) => tracing::warn!("state database: cannot reconnect: {}", pg_message(&e)),
            }
        }
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(&mut client)));
    }
}

/// Lock job `id`'s row and check this instance still owns it at the epoch
/// it took it with (`Fenced` otherwise). A missing row passes: the write
/// that follows changes nothing, as on SQLite.
pub(super) fn fence(
    tx: &mut Transaction<'_>,
    me: &str,
    epoch: Option<i64>,
    id: i64,
) -> PgResult<()> {
    let row = tx.query_opt(
        "SELECT owner, epoch FROM jobs WHERE id = $1 FOR UPDATE",
        &[&id],
    )?;
    let Some(row) = row else { return Ok(()) };
    let owner: Option<String> = row.try_get(0)?;
    let now: i64 = row.try_get(1)?;
    if owner.as_deref() == Some(me) && epoch.is_none_or(|e| e == now) {
        return Ok(());
    }
    Err(PgOpError::Fenced {
        id,
        holder: owner.unwrap_or_else(|| "(none)".into()),
    })
}
