//! Thumbnails for the review page: made on demand off the executor
//! (through [`crate::blocking::run`], at most two at a time so a burst of
//! large pictures leaves cores for the pipeline), kept as WebP files in
//! `state_dir/review-thumbs/` under a size bound (`[http]
//! thumbnail_cache`; the oldest files go first when it is passed).
//!
//! A cached thumbnail is keyed by the source's canonical path, size and
//! modification time, so a replaced file gets a new one.
//!
//! Must not: take a path from a request (callers pass a path
//! [`super::files::resolve`] allowed), or write outside its folder.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// The longest side of a thumbnail, in pixels.
pub const SIDE: u32 = 480;
/// Thumbnails made at the same time.
const AT_ONCE: usize = 2;
/// Pictures whose decoded pixels would take more than this are not
/// thumbnailed.
const MAX_DECODE_BYTES: u64 = 1 << 30;

/// Why there is no thumbnail.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error("cannot read the picture: {0}")]
    Read(String),
    #[error("cannot make the thumbnail: {0}")]
    Make(String),
    #[error(transparent)]
    Lost(#[from] crate::blocking::Lost),
}

/// The thumbnail cache. Cheap to clone.
#[derive(Clone)]
pub struct Thumbs {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    bound: u64,
    /// Bytes in the folder (None until first counted).
    used: Mutex<Option<u64>>,
    gate: Semaphore,
}

impl Thumbs {
    pub fn new(state_dir: &Path, bound: u64) -> Thumbs {
        Thumbs {
            inner: Arc::new(Inner {
                dir: state_dir.join("review-thumbs"),
                bound,
                used: Mutex::new(None),
                gate: Semaphore::new(AT_ONCE),
            }),
        }
    }

    /// The WebP thumbnail of `src` (a checked, canonical path).
    pub async fn get(&self, src: PathBuf) -> Result<Vec<u8>, ThumbError> {
        let me = self.clone();
        let key = src.clone();
        let cached = crate::blocking::run("review thumbnail lookup", move || {
            let p = me.inner.cache_path(&key)?;
            Ok::<_, ThumbError>((std::fs::read(&p).ok(), p))
        })
        .await??;
        if let (Some(bytes), _) = cached {
            return Ok(bytes);
        }
        let _permit = self
            .inner
            .gate
            .acquire()
            .await
            .map_err(|e| ThumbError::Make(e.to_string()))?;
        let me = self.clone();
        let (_, cache) = cached;
        crate::blocking::run("review thumbnail", move || {
            let bytes = make(&src)?;
            me.inner.store(&cache, &bytes);
            Ok(bytes)
        })
        .await?
    }
}

impl Inner {
    fn cache_path(&self, src: &Path) -> Result<PathBuf, ThumbError> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(src).map_err(|e| ThumbError::Read(e.to_string()))?;
        let mut h = Sha256::new();
        h.update(src.as_os_str().as_bytes());
        h.update(m.len().to_le_bytes());
        h.update(m.mtime().to_le_bytes());
        h.update(m.mtime_nsec().to_le_bytes());
        h.update(SIDE.to_le_bytes());
        let hex = hex::encode(&h.finalize()[..16]);
        Ok(self.dir.join(format!("{hex}.webp")))
    }

    /// Keep `bytes` at `path` (temp file, rename) and evict the oldest
    /// thumbnails when the folder passes its bound. Failures only cost a
    /// later re-make.
    fn store(&self, path: &Path, bytes: &[u8]) {
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let tmp = path.with_extension(format!("tmp{}", fastrand::u32(..)));
        if std::fs::write(&tmp, bytes).is_err() || std::fs::rename(&tmp, path).is_err() {
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let now = match *used {
            Some(n) => n + bytes.len() as u64,
            None => self.evict(u64::MAX),
        };
        *used = Some(if now > self.bound {
            self.evict(self.bound / 4 * 3)
        } else {
            now
        });
    }

    /// Delete the oldest thumbnails until at most `keep` bytes are left;
    /// returns the bytes left.
    fn evict(&self, keep: u64) -> u64 {
        let Ok(list) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = list
            .flatten()
            .filter_map(|d| {
                let m = d.metadata().ok()?;
                let t = m.modified().ok()?;
                m.is_file().then(|| (t, m.len(), d.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, p) in files {
            if total <= keep {
                break;
            }
            if std::fs::remove_file(&p).is_ok() {
                total -= len;
            }
        }
        total
    }
}

/// Decode, scale to fit [`SIDE`], encode as WebP (alpha kept).
fn make(src: &Path) -> Result<Vec<u8>, ThumbError> {
    let read = |e: &dyn std::fmt::Display| ThumbError::Read(e.to_string());
    let mut reader = image::ImageReader::open(src)
        .map_err(|e| read(&e))?
        .with_guessed_format()
        .map_err(|e| read(&e))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let rgba = reader.decode().map_err(|e| read(&e))?.to_rgba8();
    let (w, h) = rgba.dimensions();
    let scale = (SIDE as f64 / w.max(h) as f64).min(1.0);
    let (tw, th) = (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    );
    let make_err = |e: &dyn std::fmt::Display| ThumbError::Make(e.to_string());
    let pixels = if (tw, th) == (w, h) {
        rgba.into_raw()
    } else {
        let from = ImageRef::new(w, h, rgba.as_raw(), PixelType::U8x4).map_err(|e| make_err(&e))?;
        let mut to = Image::new(tw, th, PixelType::U8x4);
        let opts = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
            .use_alpha(true);
        Resizer::new()
            .resize(&from, &mut to, &opts)
            .map_err(|e| make_err(&e))?;
        to.into_vec()
    };
    let webp = webp::Encoder::from_rgba(&pixels, tw, th)
        .encode_simple(false, 80.0)
        .map_err(|e| ThumbError::Make(format!("{e:?}")))?;
    Ok(webp.to_vec())
}
