//! The inboxes as the dispatcher watches them: each one's settings, its
//! notify watcher, its folder's identity and when it was last rescanned;
//! starting watchers and scans, and noticing a deleted or replaced folder.
//!
//! Must not: read files (scans only list them, on a blocking thread) or
//! decide what happens to them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::config::Inbox;
use crate::watch::{self, Found};

/// One inbox as the dispatcher knows it. Settler entries, watcher and scan
/// messages, and worker results carry its id; ids are never reused, so
/// nothing from an inbox removed by a reload is mistaken for another's.
pub(super) struct Watched {
    pub inbox: Arc<Inbox>,
    pub watcher: Option<notify::RecommendedWatcher>,
    pub identity: Option<(u64, u64, u128)>,
    pub last_rescan: Instant,
}

impl Watched {
    pub(super) fn new(inbox: &Inbox) -> Watched {
        Watched {
            inbox: Arc::new(inbox.clone()),
            watcher: None,
            identity: watch::folder_identity(&inbox.path),
            last_rescan: Instant::now(),
        }
    }
}

/// The watched inboxes by id.
pub(super) type WatchedInboxes = BTreeMap<usize, Watched>;

/// The inbox id a finished file belongs to now: its own, if the inbox is still
/// there, else the current inbox whose folder holds it.
pub(super) fn current_inbox(slots: &WatchedInboxes, id: usize, path: &Path) -> Option<usize> {
    if slots.contains_key(&id) {
        return Some(id);
    }
    slots
        .iter()
        .find(|(_, s)| path.starts_with(&s.inbox.path))
        .map(|(id, _)| *id)
}

pub(super) fn spawn_scan(
    idx: usize,
    inbox: &Arc<Inbox>,
    root: PathBuf,
    tx: mpsc::UnboundedSender<Found>,
    report_done: bool,
) {
    let inbox = inbox.clone();
    tokio::spawn(crate::blocking::run("scan inbox", move || {
        let n = watch::scan(idx, &inbox, &root, &tx);
        if report_done {
            let _ = tx.send(Found::ScanDone {
                inbox: idx,
                files: n,
            });
        }
    }));
}

pub(super) fn start_watcher(
    i: usize,
    ib: &Inbox,
    tx: &mpsc::UnboundedSender<Found>,
) -> Option<notify::RecommendedWatcher> {
    if ib.watch != crate::config::WatchMode::Notify {
        return None;
    }
    match watch::watch(i, ib, tx.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(inbox = %ib.name, "cannot watch {}: {e}; relying on rescans every few minutes (set watch = \"poll\" to scan more often)", ib.path.display());
            None
        }
    }
}

/// Notice inbox folders that were deleted (re-create them) or replaced
/// (re-watch and rescan them). The folder checks run on a blocking thread.
pub(super) async fn check_folders(slots: &mut WatchedInboxes, tx: &mpsc::UnboundedSender<Found>) {
    let inboxes: Vec<(usize, Arc<Inbox>)> =
        slots.iter().map(|(i, s)| (*i, s.inbox.clone())).collect();
    let Ok(found) = crate::blocking::run("check inbox folders", move || {
        inboxes
            .into_iter()
            .filter_map(|(i, ib)| folder_now(&ib).map(|id| (i, id)))
            .collect::<Vec<_>>()
    })
    .await
    else {
        return;
    };
    for (i, id) in found {
        let Some(s) = slots.get_mut(&i) else { continue };
        if id != s.identity {
            let ib = s.inbox.clone();
            tracing::info!(inbox = %ib.name, "inbox folder {} was replaced; watching it again", ib.path.display());
            s.identity = id;
            s.watcher = start_watcher(i, &ib, tx);
            spawn_scan(i, &ib, ib.path.clone(), tx.clone(), false);
        }
    }
}

/// The inbox folder's identity now, creating it again when it is missing;
/// None (after logging) when it cannot be. Blocking.
fn folder_now(ib: &Inbox) -> Option<Option<(u64, u64, u128)>> {
    let id = watch::folder_identity(&ib.path);
    if id.is_some() {
        return Some(id);
    }
    match std::fs::create_dir_all(&ib.path) {
        Ok(()) => {
            tracing::warn!(inbox = %ib.name, "inbox folder {} was missing; created it again", ib.path.display());
            Some(watch::folder_identity(&ib.path))
        }
        Err(e) => {
            tracing::error!(inbox = %ib.name, "inbox folder {} is missing and cannot be created: {e}", ib.path.display());
            None
        }
    }
}
