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
//! Files: `mod.rs` the `Settler`; `ignore.rs` the names never taken;
//! `stamp.rs` what is read from the disk (size, mtime, age); `tests.rs`.
//!
//! Must not: read file contents, move files, or know about providers.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod ignore;
mod stamp;

pub use ignore::{ignored, ignored_name};
pub use stamp::{stamp, unchanged_for, Stamp};

/// The re-check interval for files that were already old when seen.
pub const BACKLOG_RECHECK: Duration = Duration::from_millis(250);

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

    /// Put `path` first in the ready queue now (a dead instance's job to
    /// take over): any settling or `later` delay it waited for is over. A
    /// path a worker has is left alone.
    pub fn hurry(&mut self, inbox: usize, path: PathBuf) {
        if self.in_flight.contains_key(&path) {
            return;
        }
        self.pending.remove(&path);
        if self.queued.remove(&path).is_some() {
            self.ready.retain(|r| r.path != path);
        }
        self.queued.insert(path.clone(), inbox);
        self.ready.push_front(Ready { inbox, path });
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
mod tests;
