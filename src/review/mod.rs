//! The review page (`[http] review`, on by default beside `/healthz` and
//! `/metrics`): a read-only view of every outcome for a team checking a
//! day's batch.
//!
//! Routes (all GET):
//! - `/` — the grid, newest first; query `inbox`, `outcome`, `provider`,
//!   `from`, `to` (YYYY-MM-DD, UTC), `q` (part of the name), `before` (an
//!   id: keyset pagination).
//! - `/p/{id}` — one outcome: original, every output, audit line, history.
//! - `/file/{id}/{which}`, `/thumb/{id}/{which}` — `which` is `original`
//!   or `out<N>`; files by id only ([`files`]), thumbnails from [`thumbs`].
//! - `/live?after={id}&wait={s}` + the grid's filters — long poll: JSON
//!   `{newest, cards, since_start}` as soon as an outcome newer than
//!   `after` is indexed (or after `wait` seconds, default 25).
//! - `/assets/review.css`, `/assets/review.js` — vendored into the binary.
//!
//! Ids are the outcome index's (`store::review`), which [`index`] fills
//! from `audit.jsonl`; on the shared PostgreSQL state the index fills
//! itself from the `audit` table of every instance and [`index`] only
//! watches it grow (for `/live`).
//!
//! Actions (retry, redo, approve, flag, confirm; `[http] actions`) are in
//! `actions*` and `auth` (see docs/review.md).
//!
//! Must not: change anything on disk but the thumbnail cache (the actions
//! modules do, gated by `auth`), take a file path from a request, run
//! queries or file reads on the executor, or read the whole audit file per
//! request.

pub mod actions;
pub mod actions_log;
pub mod actions_ops;
pub mod actions_recover;
pub mod actions_redo;
pub mod auth;
mod error;
mod files;
mod index;
mod pages;
pub mod routes;
mod thumbs;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::audit::Audit;
use crate::config::Config;
use crate::store::{ReviewReader, Store};

pub use error::PageError;

/// Cards per page.
const PAGE: usize = 48;
/// Most cards one live answer carries.
const LIVE_MAX: usize = 100;
/// Longest a live request waits (seconds).
const LIVE_WAIT_MAX: u64 = 60;
/// Larger files are not served.
const MAX_SERVE: u64 = 256 << 20;

/// What the review handlers share.
pub struct Review {
    reader: Arc<ReviewReader>,
    cfg: Arc<Config>,
    /// Canonical folders pictures may come from.
    roots: Arc<Vec<PathBuf>>,
    thumbs: thumbs::Thumbs,
    /// The newest indexed id.
    newest: watch::Receiver<i64>,
    /// True once the daemon stops (live requests end at once).
    stop: watch::Receiver<bool>,
    /// The filters' inbox and provider names, and when they were read.
    names: Mutex<Option<(Instant, Arc<Names>)>>,
}

/// Inbox and provider names seen in the index.
type Names = (Vec<String>, Vec<String>);

/// How long the filters' name lists are reused.
const NAMES_FOR: Duration = Duration::from_secs(30);

impl Review {
    fn cached_names(&self) -> Option<Arc<Names>> {
        let g = self.names.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .filter(|(t, _)| t.elapsed() < NAMES_FOR)
            .map(|(_, n)| n.clone())
    }

    fn keep_names(&self, n: Arc<Names>) {
        *self.names.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), n));
    }
}

/// Start the indexer (a task on the current runtime) and return what the
/// router serves from.
pub async fn start(
    cfg: Arc<Config>,
    store: Store,
    audit: &Audit,
    stop: watch::Receiver<bool>,
) -> Arc<Review> {
    let reader = Arc::new(ReviewReader::for_store(&store, &cfg.state_dir));
    let c = cfg.clone();
    let roots = crate::blocking::run("review roots", move || files::roots(&c))
        .await
        .unwrap_or_default();
    let (tx, newest) = watch::channel(0);
    let wake = Arc::new(Notify::new());
    let w = wake.clone();
    audit.on_append(move || w.notify_one());
    if store.is_shared() {
        // The index fills itself from the `audit` table (store::pg::review):
        // only watch it grow, for the live page.
        tokio::spawn(index::follow(reader.clone(), wake, tx, stop.clone()));
    } else {
        tokio::spawn(index::run(
            store,
            audit.path().to_path_buf(),
            wake,
            tx,
            stop.clone(),
        ));
    }
    Arc::new(Review {
        reader,
        thumbs: thumbs::Thumbs::new(&cfg.state_dir, cfg.http.thumbnail_cache),
        cfg,
        roots: Arc::new(roots),
        newest,
        stop,
        names: Mutex::new(None),
    })
}
