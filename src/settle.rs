//! Settle: decide when a file seen in an inbox is fully written and may be
//! taken, and which names are never taken at all.
//!
//! Owns: the ignore rules (partial uploads, hidden files, OS litter, user
//! globs), and the `Settler`, a plain state machine over (path → last change,
//! last stat) with time passed in, so it is testable without sleeping. A file
//! is ready once it has had no events for `settle` and its size and mtime are
//! unchanged when checked; a file whose mtime is already older than `settle`
//! when first seen (a backlog), or that was renamed into the inbox (it
//! arrives complete), only needs a short re-check. A file that changes while
//! it waits in the ready queue goes back to settling; one that changes while
//! a worker has it is settled again once the worker is done. It also knows
//! the earliest moment anything pending can be ready (`next_due`), so the
//! queue sleeps until then instead of polling. The README's "How files
//! arrive" table is the contract these rules keep.
//!
//! Must not: read file contents, move files, or know about providers.

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::config::Inbox;

/// The re-check interval for files that were already old when seen.
pub const BACKLOG_RECHECK: Duration = Duration::from_millis(250);

const LITTER: &[&str] = &[
    "Thumbs.db",
    "thumbs.db",
    "desktop.ini",
    "Desktop.ini",
    "@eaDir",
    "#recycle",
    "$RECYCLE.BIN",
    "System Volume Information",
    "lost+found",
];
const PARTIAL_SUFFIXES: &[&str] = &[
    ".part",
    ".partial",
    ".tmp",
    ".temp",
    ".crdownload",
    ".download",
    ".filepart",
    ".swp",
    "~",
];

/// Whether one path component (file or folder name) is never processed.
pub fn ignored_name(name: &str) -> bool {
    if name.starts_with('.') || name.starts_with("~$") {
        return true; // hidden files/folders: .DS_Store, ._x, .stfolder, .sync…
    }
    if LITTER.contains(&name) {
        return true;
    }
    let lower = name.to_ascii_lowercase();
    PARTIAL_SUFFIXES.iter().any(|s| lower.ends_with(s))
}

/// Whether a path relative to its inbox is ignored (any component, or a
/// user glob on the relative path or the file name).
pub fn ignored(inbox: &Inbox, rel: &Path) -> bool {
    if rel
        .components()
        .any(|c| ignored_name(&c.as_os_str().to_string_lossy()))
    {
        return true;
    }
    if inbox.ignore_set.is_empty() {
        return false;
    }
    if inbox.ignore_set.is_match(rel) {
        return true;
    }
    rel.file_name()
        .map(|n| inbox.ignore_set.is_match(Path::new(n)))
        .unwrap_or(false)
}

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

#[derive(Debug)]
struct Pending {
    inbox: usize,
    last_change: Instant,
    stamp: Option<Stamp>,
    not_before: Option<Instant>,
    /// Renamed in: it arrived complete, a short re-check is enough.
    arrived: bool,
}

/// A file ready to be processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub inbox: usize,
    pub path: PathBuf,
}

/// How a path came to our attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A watcher event: the file changed just now.
    Event,
    /// A scan found it (no change implied).
    Scan,
    /// A watcher event: renamed (or moved) into the inbox just now, so it
    /// arrived complete.
    Arrived,
}

/// The settle state machine.
#[derive(Debug, Default)]
pub struct Settler {
    pending: HashMap<PathBuf, Pending>,
    ready: VecDeque<Ready>,
    /// Paths in `ready`, with their inbox.
    queued: HashMap<PathBuf, usize>,
    /// Paths a worker has → whether they changed since it took them.
    in_flight: HashMap<PathBuf, Option<usize>>,
    /// No pending file can mature before this (never later than the true
    /// earliest deadline; a renewed quiet period only makes it early).
    due: Option<Instant>,
}

impl Pending {
    /// When this file's quiet period (and any `later` delay) ends.
    fn due(&self, settle: Duration) -> Instant {
        let quiet = match self.stamp {
            _ if self.arrived => settle.min(BACKLOG_RECHECK),
            Some(s) if s.old => settle.min(BACKLOG_RECHECK),
            _ => settle,
        };
        let end = self.last_change + quiet;
        self.not_before.map_or(end, |t| t.max(end))
    }
}

impl Settler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Note a path. A change to a path a worker has is remembered and the
    /// path settles again when the worker is done; a change to a path in the
    /// ready queue takes it back to settling. Scans of those are ignored.
    pub fn observe(
        &mut self,
        inbox: usize,
        path: PathBuf,
        how: Seen,
        now: Instant,
        settle: Duration,
    ) {
        if let Some(changed) = self.in_flight.get_mut(&path) {
            if how != Seen::Scan {
                *changed = Some(inbox);
            }
            return;
        }
        if self.queued.contains_key(&path) {
            if how == Seen::Scan {
                return;
            }
            self.queued.remove(&path);
            self.ready.retain(|r| r.path != path);
        }
        match self.pending.get_mut(&path) {
            Some(p) => {
                if how != Seen::Scan {
                    // A change is news: whatever delay `later` set (an
                    // empty file's grace, trouble) gives way to settling.
                    p.last_change = now;
                    p.not_before = None;
                    p.arrived = how == Seen::Arrived;
                    let t = p.due(settle);
                    self.note_due(t);
                }
            }
            None => {
                let st = stamp(&path, settle);
                let p = Pending {
                    inbox,
                    last_change: now,
                    stamp: st,
                    not_before: None,
                    arrived: how == Seen::Arrived,
                };
                self.note_due(p.due(settle));
                self.pending.insert(path, p);
            }
        }
    }

    fn note_due(&mut self, t: Instant) {
        self.due = Some(self.due.map_or(t, |d| d.min(t)));
    }

    /// The earliest moment a pending file may be ready: call `tick` then
    /// (None: nothing pending).
    pub fn next_due(&self) -> Option<Instant> {
        self.due
    }

    /// Look at every pending file on the next `tick` (settle times changed).
    pub fn recheck_all(&mut self, now: Instant) {
        if !self.pending.is_empty() {
            self.due = Some(now);
        }
    }

    /// Look again at `path` no sooner than `after` (busy or deferred).
    pub fn later(&mut self, inbox: usize, path: PathBuf, now: Instant, after: Duration) {
        self.note_due(now + after);
        self.pending.insert(
            path,
            Pending {
                inbox,
                last_change: now,
                stamp: None,
                not_before: Some(now + after),
                arrived: false,
            },
        );
    }

    /// Move settled files to the ready queue. `settle_of` gives an inbox's
    /// settle time. Stats only files whose quiet period has passed.
    pub fn tick(&mut self, now: Instant, settle_of: impl Fn(usize) -> Duration) {
        if self.due.is_none_or(|d| now < d) {
            return;
        }
        let mut matured = Vec::new();
        let mut due: Option<Instant> = None;
        for (path, p) in &self.pending {
            let t = p.due(settle_of(p.inbox));
            if t <= now {
                matured.push(path.clone());
            } else {
                due = Some(due.map_or(t, |d| d.min(t)));
            }
        }
        self.due = due;
        for path in matured {
            let Some(p) = self.pending.get_mut(&path) else {
                continue;
            };
            let settle = settle_of(p.inbox);
            match stamp(&path, settle) {
                None => {
                    self.pending.remove(&path);
                }
                Some(now_st) => {
                    let same = p
                        .stamp
                        .is_some_and(|s| s.size == now_st.size && s.mtime_ns == now_st.mtime_ns);
                    if same {
                        let inbox = p.inbox;
                        self.pending.remove(&path);
                        self.queued.insert(path.clone(), inbox);
                        self.ready.push_back(Ready { inbox, path });
                    } else {
                        p.stamp = Some(now_st);
                        p.last_change = now;
                        p.not_before = None;
                        let t = p.due(settle);
                        self.note_due(t);
                    }
                }
            }
        }
    }

    /// Take the next ready file, marking it in flight. `skip` lets the
    /// caller hold back files (e.g. of a paused provider); they stay queued.
    pub fn next(&mut self, mut skip: impl FnMut(&Ready) -> bool) -> Option<Ready> {
        let idx = self.ready.iter().position(|r| !skip(r))?;
        let r = self.ready.remove(idx)?;
        self.queued.remove(&r.path);
        self.in_flight.insert(r.path.clone(), None);
        Some(r)
    }

    /// A worker finished with `path`. If it changed meanwhile, whatever is
    /// there now settles again (a new version, or nothing when it is gone).
    pub fn done(&mut self, path: &Path) {
        self.done_at(path, Instant::now());
    }

    /// `done` with the time passed in.
    pub fn done_at(&mut self, path: &Path, now: Instant) {
        if let Some(Some(inbox)) = self.in_flight.remove(path) {
            // Gone (moved to its place, deleted): nothing to settle.
            let Some(st) = stamp(path, Duration::MAX) else {
                return;
            };
            let p = Pending {
                inbox,
                last_change: now,
                stamp: Some(st),
                not_before: None,
                arrived: false,
            };
            self.note_due(p.due(Duration::ZERO));
            self.pending.insert(path.to_path_buf(), p);
        }
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.ready.is_empty() && self.in_flight.is_empty()
    }
    /// Forget everything of an inbox (it was removed from the config).
    pub fn drop_inbox(&mut self, inbox: usize) {
        self.pending.retain(|_, p| p.inbox != inbox);
        let removed: Vec<PathBuf> = self
            .ready
            .iter()
            .filter(|r| r.inbox == inbox)
            .map(|r| r.path.clone())
            .collect();
        self.ready.retain(|r| r.inbox != inbox);
        for p in removed {
            self.queued.remove(&p);
        }
        for changed in self.in_flight.values_mut() {
            if *changed == Some(inbox) {
                *changed = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn ignore_rules() {
        for n in [
            ".DS_Store",
            "._shoe.jpg",
            "Thumbs.db",
            "@eaDir",
            ".stfolder",
            "shoe.jpg.part",
            "shoe.crdownload",
            "x.tmp",
            "~$draft.jpg",
            "a.partial",
        ] {
            assert!(ignored_name(n), "{n} should be ignored");
        }
        for n in ["shoe.jpg", "bag 2.PNG", "ü.webp", "tmp.jpg", "part.png"] {
            assert!(!ignored_name(n), "{n} should be taken");
        }
    }

    #[test]
    fn a_growing_file_is_not_ready_until_quiet_and_stable() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("slow.jpg");
        let mut f = std::fs::File::create(&p).expect("create");
        f.write_all(b"abc").expect("write");
        let settle = Duration::from_secs(2);
        let mut s = Settler::new();
        let t0 = Instant::now();
        s.observe(0, p.clone(), Seen::Event, t0, settle);
        s.tick(t0 + Duration::from_secs(1), |_| settle);
        assert_eq!(s.ready_len(), 0, "not quiet yet");
        f.write_all(b"more").expect("write");
        f.sync_all().expect("sync");
        // quiet long enough, but the size changed since the first stat
        s.tick(t0 + Duration::from_secs(3), |_| settle);
        assert_eq!(s.ready_len(), 0, "changed: must wait again");
        s.tick(t0 + Duration::from_secs(4), |_| settle);
        assert_eq!(s.ready_len(), 0, "quiet period restarted");
        s.tick(t0 + Duration::from_secs(6), |_| settle);
        assert_eq!(s.ready_len(), 1, "stable now");
        let r = s.next(|_| false).expect("ready");
        assert_eq!(r.path, p);
        // events while in flight do not queue it twice; the file is still
        // there after the worker, so it settles again
        s.observe(0, p.clone(), Seen::Event, t0, settle);
        assert_eq!(s.pending_len(), 0);
        s.done(&p);
        assert_eq!(s.pending_len(), 1);
        // gone after the worker (moved to its place): nothing to settle
        let r = {
            s.tick(Instant::now() + 2 * settle, |_| settle);
            s.next(|_| false).expect("ready again")
        };
        s.observe(0, r.path.clone(), Seen::Event, t0, settle);
        std::fs::remove_file(&p).expect("rm");
        s.done(&p);
        assert!(s.is_idle());
    }

    #[test]
    fn next_due_is_the_earliest_deadline_and_clears_when_nothing_waits() {
        let d = tempfile::tempdir().expect("tempdir");
        let (a, b) = (d.path().join("a.jpg"), d.path().join("b.jpg"));
        std::fs::write(&a, b"a").expect("write");
        std::fs::write(&b, b"b").expect("write");
        let settle = Duration::from_secs(2);
        let mut s = Settler::new();
        assert_eq!(s.next_due(), None);
        let t0 = Instant::now();
        s.observe(0, a.clone(), Seen::Event, t0, settle);
        assert_eq!(s.next_due(), Some(t0 + settle));
        s.later(0, b.clone(), t0, Duration::from_millis(500));
        assert_eq!(s.next_due(), Some(t0 + Duration::from_millis(500)));
        // Before the deadline a tick does nothing.
        s.tick(t0 + Duration::from_millis(100), |_| settle);
        assert_eq!(s.pending_len(), 2);
        // b's delay is over but its quiet period (from `later`) is not:
        // the pass finds nothing ready and moves the deadline on.
        s.tick(t0 + Duration::from_millis(600), |_| settle);
        assert_eq!(s.ready_len(), 0);
        assert_eq!(s.next_due(), Some(t0 + settle));
        s.tick(t0 + settle, |_| settle);
        assert_eq!(s.ready_len(), 1, "a is ready; b was never stamped");
        assert!(s.next_due().is_some_and(|t| t > t0 + settle));
        s.tick(t0 + 3 * settle, |_| settle);
        assert_eq!(s.ready_len(), 2);
        assert_eq!(s.next_due(), None, "nothing pending: no wake-up");
    }

    #[test]
    fn a_file_renamed_in_needs_only_a_short_recheck() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("moved.jpg");
        std::fs::write(&p, b"whole").expect("write");
        let settle = Duration::from_secs(5);
        let mut s = Settler::new();
        let t0 = Instant::now();
        s.observe(0, p.clone(), Seen::Arrived, t0, settle);
        assert_eq!(s.next_due(), Some(t0 + BACKLOG_RECHECK));
        s.tick(t0 + BACKLOG_RECHECK, |_| settle);
        assert_eq!(
            s.ready_len(),
            1,
            "arrived complete: taken after the re-check"
        );
    }

    #[test]
    fn a_write_after_the_rename_means_a_full_quiet_period() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("moved.jpg");
        std::fs::write(&p, b"whole").expect("write");
        let settle = Duration::from_secs(5);
        let mut s = Settler::new();
        let t0 = Instant::now();
        s.observe(0, p.clone(), Seen::Arrived, t0, settle);
        s.observe(0, p.clone(), Seen::Event, t0, settle);
        s.tick(t0 + BACKLOG_RECHECK, |_| settle);
        assert_eq!(s.ready_len(), 0, "written to after it arrived");
    }

    #[test]
    fn a_change_while_queued_takes_the_file_back_to_settling() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("q.jpg");
        std::fs::write(&p, b"v1").expect("write");
        let settle = Duration::from_secs(1);
        let mut s = Settler::new();
        let t0 = Instant::now();
        s.observe(0, p.clone(), Seen::Event, t0, settle);
        s.tick(t0 + settle, |_| settle);
        assert_eq!(s.ready_len(), 1);
        // A scan changes nothing; a write does.
        s.observe(0, p.clone(), Seen::Scan, t0 + settle, settle);
        assert_eq!(s.ready_len(), 1);
        s.observe(0, p.clone(), Seen::Event, t0 + settle, settle);
        assert_eq!((s.ready_len(), s.pending_len()), (0, 1));
        s.tick(t0 + 2 * settle, |_| settle);
        assert_eq!(s.ready_len(), 1, "quiet and stable again");
        assert!(s.next(|_| false).is_some());
        assert_eq!(s.ready_len(), 0, "queued once");
    }

    #[test]
    fn a_change_while_a_worker_has_the_file_settles_it_again_after() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("w.jpg");
        std::fs::write(&p, b"v1").expect("write");
        let settle = Duration::from_secs(1);
        let mut s = Settler::new();
        let t0 = Instant::now();
        s.observe(0, p.clone(), Seen::Scan, t0, settle);
        s.tick(t0 + settle, |_| settle);
        let r = s.next(|_| false).expect("ready");
        s.observe(0, r.path.clone(), Seen::Event, t0 + settle, settle);
        assert_eq!(s.pending_len(), 0, "not while the worker has it");
        let t1 = t0 + 2 * settle;
        s.done_at(&r.path, t1);
        assert_eq!(s.pending_len(), 1, "the new version settles");
        s.tick(t1 + settle, |_| settle);
        assert_eq!(s.ready_len(), 1);
        // Unchanged while in work: nothing comes back.
        let r = s.next(|_| false).expect("ready");
        s.done_at(&r.path, t1 + settle);
        assert!(s.is_idle());
    }

    #[test]
    fn unchanged_for_counts_from_the_later_of_mtime_and_ctime() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("e.jpg");
        std::fs::write(&p, b"").expect("write");
        // An old mtime (as `cp -p` or `touch -d` leave) does not make a
        // file that just arrived look old: ctime is now.
        let f = std::fs::File::options().write(true).open(&p).expect("open");
        f.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .expect("set mtime");
        let m = std::fs::symlink_metadata(&p).expect("stat");
        assert!(unchanged_for(&m) < Duration::from_secs(60));
    }

    #[test]
    fn a_change_ends_a_delay_set_by_later() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("empty.jpg");
        std::fs::write(&p, b"").expect("write");
        let settle = Duration::from_secs(1);
        let mut s = Settler::new();
        let t0 = Instant::now();
        // An empty file sent back for its grace period, then written.
        s.later(0, p.clone(), t0, Duration::from_secs(60));
        std::fs::write(&p, b"bytes").expect("write");
        s.observe(0, p.clone(), Seen::Event, t0 + settle, settle);
        s.tick(t0 + 2 * settle, |_| settle);
        s.tick(t0 + 3 * settle, |_| settle);
        assert_eq!(s.ready_len(), 1, "settled, not held for the grace period");
    }

    #[test]
    fn vanished_files_are_dropped() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("gone.jpg");
        std::fs::write(&p, b"x").expect("write");
        let mut s = Settler::new();
        let t0 = Instant::now();
        let settle = Duration::from_millis(10);
        s.observe(0, p.clone(), Seen::Scan, t0, settle);
        std::fs::remove_file(&p).expect("rm");
        s.tick(t0 + Duration::from_secs(1), |_| settle);
        assert!(s.is_idle());
    }
}
