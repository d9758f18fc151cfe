//! Which names are never taken: partial uploads, hidden files, OS litter
//! and the inbox's own `ignore` globs.
//!
//! Must not: look at the disk (names only).

use std::path::Path;

use crate::config::Inbox;

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
