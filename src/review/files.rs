//! Which file on disk an indexed outcome's picture is, and the check that
//! makes serving it safe: a request names an entry id and `original` or
//! `out<N>`, never a path; the path comes from the audit line, is
//! canonicalised (symlinks resolved) and must lie under one of the
//! configured inbox, outbox, archive, rejected or failed folders.
//!
//! Owns: [`Which`], the path of a picture, the root check, content types.
//!
//! Must not: take a path from the request, follow a symlink out of the
//! configured folders, or read a file (callers read what [`resolve`]
//! allowed).

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::store::Entry;

/// Most outputs per input the page addresses (`out0`…`out63`).
const MAX_OUTPUTS: usize = 64;

/// Which picture of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Original,
    /// The N-th output in config order (`out0` is the cut-out).
    Output(usize),
}

impl Which {
    /// `original` or `out<N>`; anything else is None.
    pub fn parse(s: &str) -> Option<Which> {
        if s == "original" {
            return Some(Which::Original);
        }
        let n = s.strip_prefix("out")?;
        if n.is_empty() || n.len() > 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: usize = n.parse().ok()?;
        (n < MAX_OUTPUTS).then_some(Which::Output(n))
    }

    pub fn as_param(self) -> String {
        match self {
            Which::Original => "original".into(),
            Which::Output(n) => format!("out{n}"),
        }
    }
}

/// Why a picture is not served.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("no such picture: {0}")]
    Missing(String),
    #[error("refused: the picture is not under the configured folders")]
    Outside,
}

/// The outputs an audit line names, in config order (`outputs`, or the
/// one `output` of lines written before outputs existed).
pub fn outputs(e: &Entry) -> Vec<String> {
    let listed = serde_json::from_str::<serde_json::Value>(&e.line)
        .ok()
        .and_then(|v| {
            v.get("outputs")?.as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
        })
        .unwrap_or_default();
    if listed.is_empty() {
        e.output.iter().cloned().collect()
    } else {
        listed
    }
}

/// Where the picture should be (not yet checked): an output by its audit
/// path; the original where the audit line says it went, else still in
/// its inbox (kept), else nowhere (deleted after success).
pub fn locate(e: &Entry, which: Which, cfg: &Config) -> Option<PathBuf> {
    match which {
        Which::Output(n) => outputs(e).get(n).map(PathBuf::from),
        Which::Original => {
            if let Some(m) = &e.moved_to {
                return Some(PathBuf::from(m));
            }
            let inbox = cfg.inboxes.iter().find(|i| i.name == e.inbox)?;
            Some(inbox.path.join(&e.input))
        }
    }
}

/// The canonical folders pictures may be served from.
pub fn roots(cfg: &Config) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = cfg
        .inboxes
        .iter()
        .flat_map(|i| i.managed_folders().map(|(_, p)| p.to_path_buf()))
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `path` made canonical and checked: a regular file under one of
/// `roots` (blocking: it touches the disk).
pub fn resolve(path: &Path, roots: &[PathBuf]) -> Result<PathBuf, FileError> {
    let missing = || FileError::Missing(name_of(path));
    let real = std::fs::canonicalize(path).map_err(|_| missing())?;
    if !roots.iter().any(|r| real.starts_with(r)) {
        return Err(FileError::Outside);
    }
    match std::fs::metadata(&real) {
        Ok(m) if m.is_file() => Ok(real),
        _ => Err(missing()),
    }
}

/// The file name only (error messages never show folders).
fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The `Content-Type` for a picture by its extension.
pub fn content_type(p: &Path) -> &'static str {
    let ext = p
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "webp" => "image/webp",
        "jpg" | "jpeg" => "image/jpeg",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_takes_only_its_two_shapes() {
        assert_eq!(Which::parse("original"), Some(Which::Original));
        assert_eq!(Which::parse("out0"), Some(Which::Output(0)));
        assert_eq!(Which::parse("out12"), Some(Which::Output(12)));
        for bad in [
            "", "out", "out-1", "out+1", "out123", "../x", "out1/..", "Original",
        ] {
            assert_eq!(Which::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_symlink_out_of_the_roots_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("outbox");
        let outside = dir.path().join("secret.png");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::write(&outside, b"x").expect("write");
        std::fs::write(root.join("ok.png"), b"x").expect("write");
        std::os::unix::fs::symlink(&outside, root.join("link.png")).expect("symlink");
        let roots = vec![std::fs::canonicalize(&root).expect("canon")];
        assert!(resolve(&root.join("ok.png"), &roots).is_ok());
        assert!(matches!(
            resolve(&root.join("link.png"), &roots),
            Err(FileError::Outside)
        ));
        assert!(matches!(
            resolve(&root.join("../secret.png"), &roots),
            Err(FileError::Outside)
        ));
        assert!(matches!(
            resolve(&root.join("gone.png"), &roots),
            Err(FileError::Missing(_))
        ));
    }
}
