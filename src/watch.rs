//! Watch: find files in the inboxes. `notify` events are only triggers; a
//! `walkdir` scan at start finds what arrived while we were down, and
//! periodic rescans catch whatever a watcher missed. `watch = "poll"` inboxes
//! are only scanned (network mounts where inotify is silent).
//!
//! Owns: the notify watchers and the scans. Sends plain `Found` messages,
//! telling a rename into the inbox (`Seen::Arrived`) from other changes.
//!
//! Must not: follow symlinks (a link is reported as itself, never entered),
//! look outside the configured inbox folders, or decide readiness (settle
//! does).

use std::path::{Path, PathBuf};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;
use walkdir::WalkDir;

use crate::config::Inbox;
use crate::settle::{self, Seen};

/// A message from a watcher or a scan.
#[derive(Debug)]
pub enum Found {
    /// A candidate file (or symlink, FIFO…) in inbox `inbox`.
    File {
        inbox: usize,
        path: PathBuf,
        how: Seen,
    },
    /// A folder appeared: scan it (files may predate its watch).
    Folder { inbox: usize, path: PathBuf },
    /// A scan of the whole inbox finished.
    ScanDone { inbox: usize, files: usize },
    /// The watcher reported a problem (e.g. the inbox folder vanished).
    WatchError { inbox: usize, message: String },
}

/// Walk `root` (the inbox or a folder inside it) and report every file that
/// is not ignored. Blocking; run it on a blocking thread.
pub fn scan(idx: usize, inbox: &Inbox, root: &Path, tx: &UnboundedSender<Found>) -> usize {
    let mut n = 0;
    let depth = if inbox.recursive { usize::MAX } else { 1 };
    let base_depth = root
        .strip_prefix(&inbox.path)
        .map(|r| r.components().count())
        .unwrap_or(0);
    let walker = WalkDir::new(root)
        .follow_links(false)
        .min_depth(1)
        .max_depth(depth.saturating_sub(base_depth).max(1))
        .into_iter()
        .filter_entry(|e| !settle::ignored_name(&e.file_name().to_string_lossy()));
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(inbox = %inbox.name, "scan: {e}");
                continue;
            }
        };
        if entry.file_type().is_dir() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(&inbox.path) else {
            continue;
        };
        if settle::ignored(inbox, rel) {
            continue;
        }
        n += 1;
        if tx
            .send(Found::File {
                inbox: idx,
                path: entry.path().to_path_buf(),
                how: Seen::Scan,
            })
            .is_err()
        {
            break;
        }
    }
    n
}

/// Start a notify watcher on one inbox. Dropping it stops watching.
pub fn watch(
    idx: usize,
    inbox: &Inbox,
    tx: UnboundedSender<Found>,
) -> notify::Result<notify::RecommendedWatcher> {
    let root = inbox.path.clone();
    let recursive = inbox.recursive;
    let inbox_for_filter = inbox.clone();
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        Ok(ev) => {
            if matches!(
                ev.kind,
                EventKind::Access(notify::event::AccessKind::Open(_))
            ) || matches!(ev.kind, EventKind::Access(notify::event::AccessKind::Read))
            {
                return;
            }
            // A rename into the inbox brings a complete file (an uploader's
            // temp name renamed, a move from another folder).
            let how = match ev.kind {
                EventKind::Modify(notify::event::ModifyKind::Name(
                    notify::event::RenameMode::To | notify::event::RenameMode::Both,
                )) => Seen::Arrived,
                _ => Seen::Event,
            };
            for path in ev.paths {
                let Ok(rel) = path.strip_prefix(&root) else {
                    continue;
                };
                if rel.as_os_str().is_empty() {
                    continue;
                }
                if !recursive && rel.components().count() > 1 {
                    continue;
                }
                if settle::ignored(&inbox_for_filter, rel) {
                    continue;
                }
                let is_dir = std::fs::symlink_metadata(&path)
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
                let msg = if is_dir {
                    if !recursive {
                        continue;
                    }
                    Found::Folder { inbox: idx, path }
                } else {
                    Found::File {
                        inbox: idx,
                        path,
                        how,
                    }
                };
                let _ = tx.send(msg);
            }
        }
        Err(e) => {
            let _ = tx.send(Found::WatchError {
                inbox: idx,
                message: e.to_string(),
            });
        }
    })?;
    let mode = if inbox.recursive {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    };
    w.watch(&inbox.path, mode)?;
    Ok(w)
}

/// The identity of a folder (device, inode, birth time), to notice it was
/// deleted and created again: a new folder may get the old inode number, but
/// not the old birth time (where the filesystem records one).
pub fn folder_identity(p: &Path) -> Option<(u64, u64, u128)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| {
        let born = m
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        (m.dev(), m.ino(), born)
    })
}
