//! Stored cut-outs: a hosted (paid) result kept under
//! `<state_dir>/cutouts/<sha256>` so a later duplicate in an inbox with
//! other outputs is finished from it instead of paying again.
//!
//! Must not: decide an outcome or write to the outbox.

use std::path::{Path, PathBuf};

use crate::provider::Cutout;

/// The stored cut-out of a picture: `<state_dir>/cutouts/<sha256>`.
pub fn stored_cutout(state_dir: &Path, sha256: &str) -> PathBuf {
    state_dir.join("cutouts").join(sha256)
}

/// Keep a hosted (paid) result for later duplicates in inboxes whose
/// outputs differ (durably, before the decision is committed).
pub fn store_cutout(
    state_dir: &Path,
    sha256: Option<&str>,
    cutout: &Cutout,
) -> Result<(), crate::fsutil::FsError> {
    match (sha256, cutout) {
        (Some(sha), Cutout::Encoded { bytes, .. }) => {
            crate::fsutil::write_atomic(&stored_cutout(state_dir, sha), bytes, true)
        }
        _ => Ok(()),
    }
}
