//! What the settle rules read from the disk: a file's [`Stamp`] (size,
//! mtime, already old?) and how long it has been unchanged.
//!
//! Must not: read file contents or keep state between calls.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// What we remember of a file's metadata between checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i64,
    /// True when mtime was older than `settle` at the time of the stat.
    pub old: bool,
}

/// How long since the file last changed: its content (mtime) or its entry
/// (ctime: created, renamed or linked in), whichever is later. Zero for a
/// time in the future.
pub fn unchanged_for(m: &std::fs::Metadata) -> Duration {
    let at = |secs: i64, nsec: i64| {
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(secs.max(0) as u64)
            + Duration::from_nanos(nsec.clamp(0, 999_999_999) as u64)
    };
    let last = at(m.mtime(), m.mtime_nsec()).max(at(m.ctime(), m.ctime_nsec()));
    SystemTime::now()
        .duration_since(last)
        .unwrap_or(Duration::ZERO)
}

/// Stat a path without following symlinks. None: gone or unreadable.
pub fn stamp(path: &Path, settle: Duration) -> Option<Stamp> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let mtime_ns = m.mtime() * 1_000_000_000 + m.mtime_nsec();
    let old = m
        .modified()
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age >= settle);
    Some(Stamp {
        size: m.len(),
        mtime_ns,
        old,
    })
}
