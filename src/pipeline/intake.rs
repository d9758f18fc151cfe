//! Intake: the first look at a settled file. Finishes a decision made
//! earlier (never decides twice), skips a file finished and kept in place,
//! rejects what is not a regular file, is too large, or is empty and has
//! not changed for `empty_grace` (every upload starts empty: a younger empty
//! file is looked at again once its grace is over), and reads
//! the rest (bounded by `limits.max_file_size`) with its sha256, making sure
//! it did not change while it was read.
//!
//! Must not: decode the picture (the check stage does) or claim a job.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::ctx::{blocking, state_trouble, Picture};
use super::{decide, finish};
use crate::job::{FileResult, FileStat, Reason};
use crate::store::Known;
use crate::validate::Rejection;

/// A file read whole, unchanged while it was read.
pub(super) struct Read {
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub stat: FileStat,
}

/// Read the file at `path`, or say what became of it instead.
pub(super) async fn read(pic: &Picture<'_>, path: &Path) -> Result<Read, FileResult> {
    let p = path.to_path_buf();
    let meta = match blocking("stat input", move || std::fs::symlink_metadata(&p)).await {
        Ok(Ok(m)) => m,
        Ok(Err(_)) => return Err(FileResult::Vanished),
        Err(e) => return Err(FileResult::Trouble(e)),
    };
    let ft = meta.file_type();
    let st = FileStat::of(&meta);
    if !pic.ctx.dry_run {
        known_earlier(pic, ft.is_file().then_some(st)).await?;
    }
    if !ft.is_file() {
        let what = if ft.is_symlink() {
            "a symbolic link".to_string()
        } else if ft.is_dir() {
            return Err(FileResult::Vanished);
        } else {
            "a pipe, socket or device".to_string()
        };
        let why = Rejection::NotRegular { what };
        return Err(decide::reject(pic, None, None, why).await);
    }
    let max = pic.ctx.cfg.limits.max_file_size;
    if st.size == 0 {
        // Every upload starts empty: only a file left empty for
        // `empty_grace` since its last change is judged.
        let wait = pic
            .inbox
            .empty_grace
            .saturating_sub(crate::settle::unchanged_for(&meta));
        if !wait.is_zero() {
            // Look again within `settle` (not only when the grace ends): the
            // write that ends the wait may have come while this worker held
            // the file, and its event must not be the only way back.
            let again = wait.min(pic.inbox.settle.max(Duration::from_millis(250)));
            return Err(FileResult::Later(again.max(Duration::from_millis(100))));
        }
        // The hash of empty input is well defined (e3b0c442…b855).
        let sha = hex::encode(Sha256::digest(b""));
        return Err(decide::reject(pic, Some(&sha), Some(st), Rejection::Empty).await);
    }
    if st.size > max {
        let why = Rejection::TooLarge { size: st.size, max };
        return Err(decide::reject(pic, None, Some(st), why).await);
    }
    let p = path.to_path_buf();
    match blocking("read input", move || read_unchanged(&p, st, max)).await {
        Ok(Ok(Some(read))) => Ok(read),
        Ok(Ok(None)) => Err(FileResult::Later(
            pic.inbox.settle.max(Duration::from_millis(200)),
        )),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(FileResult::Vanished),
        Ok(Err(e)) => Err(FileResult::Trouble(Reason::new(
            crate::fsutil::io_code(&e),
            format_args!("cannot read {}: {e}", path.display()),
        ))),
        Err(e) => Err(FileResult::Trouble(e)),
    }
}

/// A decision made earlier whose finishing steps failed (e.g. the target
/// folder was full or read-only) is finished now, never decided again: one
/// outcome, one audit line. A file finished earlier and kept in place
/// unchanged is not read again.
async fn known_earlier(pic: &Picture<'_>, stat: Option<FileStat>) -> Result<(), FileResult> {
    let stat = stat.map(|s| (s.size, s.mtime_ns));
    let store = &pic.ctx.store;
    match store.lookup(&pic.inbox.name, &pic.rel, stat).await {
        Ok(Known::Decided(job)) => Err(finish::finish_decided(pic.ctx, *job).await),
        Ok(Known::DoneUnchanged) => Err(FileResult::AlreadyDone),
        Ok(Known::Unknown) => Ok(()),
        Err(e) => Err(state_trouble(e)),
    }
}

/// Read `p` (at most `max + 1` bytes) and hash it; None when it changed
/// while being read. Blocking.
fn read_unchanged(p: &Path, st: FileStat, max: u64) -> std::io::Result<Option<Read>> {
    use std::io::Read as _;
    let f = std::fs::File::open(p)?;
    let mut buf = Vec::with_capacity(st.size as usize);
    f.take(max + 1).read_to_end(&mut buf)?;
    let after = FileStat::of(&std::fs::symlink_metadata(p)?);
    if after != st || buf.len() as u64 != st.size {
        return Ok(None);
    }
    let sha256 = hex::encode(Sha256::digest(&buf));
    Ok(Some(Read {
        bytes: buf,
        sha256,
        stat: st,
    }))
}
