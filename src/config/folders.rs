//! Folder preparation: the one part of config that touches the disk,
//! called explicitly by the commands that run the pipeline.
//!
//! Owns: creating missing folders and checking each is a writable folder.
//! Must not: be called while checking a config (`cutout check` and reloads
//! stay free of side effects), or remove anything.

use std::path::PathBuf;

use super::types::{Config, ConfigError};

// Folders.

/// Create missing folders and check that every configured folder is a
/// writable directory. Returns one line per folder created.
pub fn prepare_folders(cfg: &Config) -> Result<Vec<String>, ConfigError> {
    let origin = cfg
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults".into());
    let mut created = Vec::new();
    let mut all: Vec<(String, PathBuf)> = vec![("state_dir".into(), cfg.state_dir.clone())];
    if let Some(l) = &cfg.log_dir {
        all.push(("log_dir".into(), l.clone()));
    }
    for (i, ib) in cfg.inboxes.iter().enumerate() {
        for (key, dir) in ib.managed_folders() {
            all.push((format!("inbox[{i}].{key}"), dir.to_path_buf()));
        }
    }
    for (key, dir) in all {
        let folder_err = |message: String| ConfigError::Folder {
            origin: origin.clone(),
            key: key.clone(),
            path: dir.clone(),
            message,
        };
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => match std::fs::metadata(&dir) {
                Ok(t) if t.is_dir() => {}
                _ => {
                    return Err(folder_err(
                        "is a symlink that does not lead to a folder".into(),
                    ))
                }
            },
            Ok(_) => return Err(folder_err("exists but is not a folder".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| folder_err(format!("cannot create it: {e}")))?;
                created.push(format!("created folder {} ({key})", dir.display()));
            }
            Err(e) => return Err(folder_err(format!("cannot read it: {e}"))),
        }
        crate::fsutil::check_writable(&dir).map_err(|e| {
            folder_err(format!(
                "is not writable by this user ({e}); fix its permissions or point `{key}` elsewhere"
            ))
        })?;
    }
    Ok(created)
}
