//! Check: the picture itself — sniffed type, size caps, a full decode
//! (`crate::validate`, on a blocking thread). A picture that fails is
//! rejected with its code; one that passes goes on as [`Validated`].
//!
//! Must not: touch the state database before a rejection is decided (the
//! decide stage records it).

use super::ctx::{blocking, Picture};
use super::decide;
use super::intake::Read;
use crate::job::FileResult;
use crate::validate::{self, Validated};

/// Validate the bytes of `read` (taken out of it; its hash and stat stay).
pub(super) async fn validate(
    pic: &Picture<'_>,
    read: &mut Read,
    want_pixels: bool,
) -> Result<Validated, FileResult> {
    let limits = pic.ctx.cfg.limits;
    let bytes = bytes::Bytes::from(std::mem::take(&mut read.bytes));
    match blocking("validate", move || {
        validate::validate(bytes, &limits, want_pixels)
    })
    .await
    {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(why)) => Err(decide::reject(pic, Some(&read.sha256), Some(read.stat), why).await),
        Err(e) => Err(FileResult::Trouble(e)),
    }
}
