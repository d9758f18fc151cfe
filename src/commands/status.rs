//! `cutout status`: counts by outcome, what is waiting and in progress, the
//! last errors and the review page's approvals and flags, read from the
//! state store without taking its lock; on the shared PostgreSQL state also
//! every instance (id, host, last heartbeat, jobs held).
//!
//! Must not: write to the state folder or an inbox.

use std::path::Path;

use super::error::{exit, CommandError, CommandResult};
use crate::config::Config;
use crate::store::Store;

fn count_waiting(cfg: &Config) -> Vec<(String, usize)> {
    cfg.inboxes
        .iter()
        .enumerate()
        .map(|(i, ib)| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let n = if ib.path.is_dir() {
                crate::watch::scan(i, ib, &ib.path, &tx)
            } else {
                0
            };
            rx.close();
            (ib.name.clone(), n)
        })
        .collect()
}

pub(super) fn status(cfg: Config, errors: usize) -> CommandResult {
    if let Some(shared) = &cfg.shared_state {
        return shared_status(&cfg, shared, errors);
    }
    println!("state_dir: {}", cfg.state_dir.display());
    let store = match Store::open_read_only(&cfg.state_dir) {
        Ok(Some(s)) => s,
        Ok(None) => {
            println!("no state yet: cutout has not processed anything with this state_dir");
            for (name, n) in count_waiting(&cfg) {
                println!("waiting in inbox {name}: {n} file(s)");
            }
            return Ok(exit::OK);
        }
        Err(e) => return Err(CommandError::runtime(e.to_string())),
    };
    match daemon_pid(&cfg.state_dir) {
        Some(pid) => println!("daemon: running (pid {pid})"),
        None => println!("daemon: not running"),
    }
    let counts = store
        .counts()
        .map_err(|e| CommandError::runtime(e.to_string()))?;
    println!("outcomes:");
    for (k, n) in counts {
        println!("  {k:<12} {n}");
    }
    for (name, n) in count_waiting(&cfg) {
        println!("waiting in inbox {name}: {n} file(s)");
    }
    print_in_progress(&store);
    print_last_errors(&store, errors);
    print_marks(&store);
    Ok(exit::OK)
}

/// `status` on the shared PostgreSQL state: the instances, then the same
/// counts and lists for the whole line.
fn shared_status(
    cfg: &Config,
    shared: &crate::config::SharedState,
    errors: usize,
) -> CommandResult {
    let opts = super::shared::pg_options(shared)?;
    let store =
        Store::open_postgres_read_only(&opts).map_err(|e| CommandError::runtime(e.to_string()))?;
    println!(
        "state: PostgreSQL {} (this config: instance {})",
        redacted(&shared.url),
        shared.instance
    );
    let instances = store
        .instances()
        .map_err(|e| CommandError::runtime(e.to_string()))?;
    println!("instances ({}):", instances.len());
    for i in &instances {
        println!(
            "  {:<20} host {} pid {}  last heartbeat {:.1}s ago  {}  jobs held {}",
            i.id,
            i.host,
            i.pid,
            i.heartbeat_age_ms as f64 / 1000.0,
            if i.alive { "alive" } else { "gone" },
            i.jobs_held
        );
    }
    let counts = store
        .counts()
        .map_err(|e| CommandError::runtime(e.to_string()))?;
    println!("outcomes:");
    for (k, n) in counts {
        println!("  {k:<12} {n}");
    }
    for (name, n) in count_waiting(cfg) {
        println!("waiting in inbox {name}: {n} file(s)");
    }
    print_in_progress(&store);
    print_last_errors(&store, errors);
    print_marks(&store);
    Ok(exit::OK)
}

/// The URL without any user-info (the config refuses a password there).
fn redacted(url: &str) -> String {
    match url
        .split_once("://")
        .and_then(|(s, rest)| Some((s, rest.split_once('@')?.1)))
    {
        Some((scheme, host)) => format!("{scheme}://{host}"),
        None => url.to_string(),
    }
}

/// Approvals and flags from the review page (newest first, at most 50;
/// `/export.csv` lists them all).
fn print_marks(store: &Store) {
    let Ok(marks) = store.marks(50) else {
        return;
    };
    if marks.is_empty() {
        return;
    }
    println!("review marks (newest first):");
    for m in marks {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(m.at_ms.max(0) as u64);
        println!(
            "  {:<8} {}/{} (job {}) by {} at {}",
            m.mark.as_str(),
            m.inbox,
            m.input,
            m.job,
            m.by,
            humantime::format_rfc3339_seconds(at)
        );
    }
}

fn print_in_progress(store: &Store) {
    match store.undecided() {
        Ok(jobs) if !jobs.is_empty() => {
            println!("in progress ({}):", jobs.len());
            for j in jobs.iter().take(20) {
                println!(
                    "  {} ({} attempt(s){})",
                    j.rel_path.display(),
                    j.attempts,
                    j.remote_job
                        .as_ref()
                        .map(|r| format!(", remote job {r}"))
                        .unwrap_or_default()
                );
            }
        }
        _ => {}
    }
}

fn print_last_errors(store: &Store, errors: usize) {
    let Ok(errs) = store.last_errors(errors) else {
        return;
    };
    if errs.is_empty() {
        return;
    }
    println!("last errors:");
    for j in errs {
        println!(
            "  {} {}: {} ({})",
            j.outcome.map(|o| o.as_str()).unwrap_or("?"),
            j.rel_path.display(),
            j.reason.as_deref().unwrap_or(""),
            j.reason_code.map_or("", crate::job::Code::as_str)
        );
    }
}

/// The pid in the state folder's lock file, if that process holds the lock.
fn daemon_pid(state_dir: &Path) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let lock = state_dir.join("cutout.lock");
    let f = std::fs::File::open(&lock).ok()?;
    // SAFETY: valid fd while `f` lives.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc == 0 {
        // SAFETY: as above.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        return None;
    }
    std::fs::read_to_string(&lock).ok()?.trim().parse().ok()
}
