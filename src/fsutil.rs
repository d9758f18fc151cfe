//! Durable file operations shared by the output stage and the state/audit
//! writers: atomic writes (temp file in the target folder → fsync → rename →
//! fsync folder), moves that never overwrite, and writability checks.
//!
//! Must not: decide *where* things go (the output stage does) or swallow
//! errors: every failure is returned with the path it concerns.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::job::Code;

/// An I/O error with the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct FsError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl FsError {
    pub fn new(op: &'static str, path: &Path, source: io::Error) -> Self {
        FsError {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// True when the disk (or quota) is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self.source.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        )
    }

    /// A stable kebab-case code for reason files and the audit log.
    pub fn code(&self) -> Code {
        io_code(&self.source)
    }
}

/// The reason code of an I/O error: `disk-full`, `folder-not-writable`,
/// `file-vanished`, else `io-error`.
pub fn io_code(e: &io::Error) -> Code {
    if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
        Code::DiskFull
    } else if e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EROFS) {
        Code::FolderNotWritable
    } else if e.kind() == io::ErrorKind::NotFound {
        Code::FileVanished
    } else {
        Code::IoError
    }
}

type Result<T> = std::result::Result<T, FsError>;

/// fsync a directory so a rename or unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| FsError::new("open folder", dir, e))?;
    f.sync_all()
        .map_err(|e| FsError::new("fsync folder", dir, e))
}

fn temp_name(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag = fastrand::u64(..);
    target.with_file_name(format!(".{name}.{tag:016x}.cutout-tmp"))
}

/// Write `bytes` to `target` atomically and durably. With `replace = false`
/// an existing `target` is never overwritten (error `AlreadyExists`).
pub fn write_atomic(target: &Path, bytes: &[u8], replace: bool) -> Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| FsError::new("create folder", dir, e))?;
    let tmp = temp_name(target);
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| FsError::new("create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| FsError::new("write", &tmp, e))?;
        f.sync_all().map_err(|e| FsError::new("fsync", &tmp, e))?;
        drop(f);
        if replace {
            fs::rename(&tmp, target).map_err(|e| FsError::new("rename into", target, e))?;
        } else {
            rename_noreplace(&tmp, target)?;
        }
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Rename without ever replacing an existing `to`.
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let f = CString::new(from.as_os_str().as_bytes())
            .map_err(|_| FsError::new("rename", from, io::ErrorKind::InvalidInput.into()))?;
        let t = CString::new(to.as_os_str().as_bytes())
            .map_err(|_| FsError::new("rename", to, io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: both pointers are valid NUL-terminated strings for the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOSYS) => {} // fs without RENAME_NOREPLACE
            _ => return Err(FsError::new("rename into", to, err)),
        }
    }
    // Fallback: a hard link fails if `to` exists; then drop the old name.
    match fs::hard_link(from, to) {
        Ok(()) => fs::remove_file(from).map_err(|e| FsError::new("remove", from, e)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(FsError::new("rename into", to, e))
        }
        Err(_) => {
            if to.exists() {
                return Err(FsError::new(
                    "rename into",
                    to,
                    io::ErrorKind::AlreadyExists.into(),
                ));
            }
            fs::rename(from, to).map_err(|e| FsError::new("rename into", to, e))
        }
    }
}

/// Move `from` to `to` durably and without overwriting: rename when both are
/// on one filesystem, else copy to a temp file beside `to`, fsync, rename,
/// and only then remove `from`. Symlinks and other non-regular files are
/// moved as themselves (never followed).
pub fn move_durably(from: &Path, to: &Path) -> Result<()> {
    let to_dir = to.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(to_dir).map_err(|e| FsError::new("create folder", to_dir, e))?;
    match rename_noreplace(from, to) {
        Ok(()) => {
            sync_dir(to_dir)?;
            if let Some(d) = from.parent() {
                sync_dir(d)?;
            }
            Ok(())
        }
        Err(e) if e.source.raw_os_error() == Some(libc::EXDEV) => {
            let meta = fs::symlink_metadata(from).map_err(|e| FsError::new("stat", from, e))?;
            if meta.is_file() {
                let tmp = temp_name(to);
                let res = (|| {
                    fs::copy(from, &tmp).map_err(|e| FsError::new("copy to", &tmp, e))?;
                    let f = File::open(&tmp).map_err(|e| FsError::new("open", &tmp, e))?;
                    f.sync_all().map_err(|e| FsError::new("fsync", &tmp, e))?;
                    rename_noreplace(&tmp, to)
                })();
                if res.is_err() {
                    let _ = fs::remove_file(&tmp);
                }
                res?;
            } else if meta.file_type().is_symlink() {
                let target = fs::read_link(from).map_err(|e| FsError::new("read link", from, e))?;
                std::os::unix::fs::symlink(&target, to)
                    .map_err(|e| FsError::new("create link", to, e))?;
            } else {
                return Err(FsError::new(
                    "move",
                    from,
                    io::Error::other("cannot move a special file across filesystems"),
                ));
            }
            sync_dir(to_dir)?;
            fs::remove_file(from).map_err(|e| FsError::new("remove", from, e))?;
            if let Some(d) = from.parent() {
                sync_dir(d)?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Remove a file and make the removal durable.
pub fn remove_durably(path: &Path) -> Result<()> {
    fs::remove_file(path).map_err(|e| FsError::new("remove", path, e))?;
    if let Some(d) = path.parent() {
        sync_dir(d)?;
    }
    Ok(())
}

/// Prove a folder is writable by creating and removing a probe file.
pub fn check_writable(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".cutout-probe-{:016x}", fastrand::u64(..)));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    fs::remove_file(&probe)
}

/// `dir/<stem><suffix>.<ext>` candidates: `name.ext`, `name-2.ext`, …
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    if n <= 1 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}

/// Remove our own leftover temp and writability-probe files (from a crash
/// mid-write or mid-start) in `dir`.
pub fn sweep_temps(dir: &Path) -> usize {
    let mut n = 0;
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy();
        if entry.file_type().is_file()
            && name.starts_with('.')
            && (name.ends_with(".cutout-tmp") || name.starts_with(".cutout-probe-"))
            && fs::remove_file(entry.path()).is_ok()
        {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_never_replaces_when_asked_not_to() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("a.png");
        write_atomic(&p, b"one", false).expect("first write");
        let e = write_atomic(&p, b"two", false).expect_err("second write must fail");
        assert_eq!(e.source.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).expect("read"), b"one");
        write_atomic(&p, b"three", true).expect("replace");
        assert_eq!(fs::read(&p).expect("read"), b"three");
        // no temp files left behind
        let names: Vec<_> = fs::read_dir(d.path()).expect("ls").flatten().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn move_keeps_existing_targets() {
        let d = tempfile::tempdir().expect("tempdir");
        let a = d.path().join("a");
        let b = d.path().join("sub/b");
        fs::write(&a, b"A").expect("write");
        move_durably(&a, &b).expect("move");
        assert!(!a.exists());
        assert_eq!(fs::read(&b).expect("read"), b"A");
        fs::write(&a, b"A2").expect("write");
        assert!(move_durably(&a, &b).is_err());
        assert_eq!(fs::read(&b).expect("read"), b"A");
        assert!(a.exists());
    }

    #[test]
    fn numbered_names() {
        assert_eq!(
            numbered(Path::new("/o/shoe.png"), 1),
            Path::new("/o/shoe.png")
        );
        assert_eq!(
            numbered(Path::new("/o/shoe.png"), 3),
            Path::new("/o/shoe-3.png")
        );
    }
}
