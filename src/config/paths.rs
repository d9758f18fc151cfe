//! Lexical path helpers: `~` expansion, `a/./b/../c` normalisation and
//! absolute paths, all without touching the disk.
//!
//! Must not: read or create anything on disk.

use std::path::{Path, PathBuf};

/// `p` made absolute against the current directory (unchanged when that
/// cannot be read).
pub(super) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub(super) fn expand_home(p: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    p.to_path_buf()
}

/// Lexical normalisation (`a/./b/../c` → `a/c`) without touching the disk.
pub fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}
