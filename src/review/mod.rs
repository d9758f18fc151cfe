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
//! from `audit.jsonl`.
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
mod files;
mod index;
mod pages;
mod thumbs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tokio::sync::{watch, Notify};

use crate::audit::Audit;
use crate::config::Config;
use crate::store::{Entry, ReviewFilter, ReviewReader, Store};
use files::Which;

pub use files::FileError;

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
    reader: ReviewReader,
    cfg: Arc<Config>,
    /// Canonical folders pictures may come from.
    roots: Arc<Vec<PathBuf>>,
    thumbs: thumbs::Thumbs,
    /// The newest indexed id.
    newest: watch::Receiver<i64>,
    /// True once the daemon stops (live requests end at once).
    stop: watch::Receiver<bool>,
}

/// Start the indexer (a task on the current runtime) and return what the
/// router serves from.
pub async fn start(
    cfg: Arc<Config>,
    store: Store,
    audit: &Audit,
    stop: watch::Receiver<bool>,
) -> Arc<Review> {
    let reader = ReviewReader::new(&cfg.state_dir);
    let c = cfg.clone();
    let roots = crate::blocking::run("review roots", move || files::roots(&c))
        .await
        .unwrap_or_default();
    let (tx, newest) = watch::channel(0);
    let wake = Arc::new(Notify::new());
    let w = wake.clone();
    audit.on_append(move || w.notify_one());
    tokio::spawn(index::run(
        store,
        audit.path().to_path_buf(),
        wake,
        tx,
        stop.clone(),
    ));
    Arc::new(Review {
        reader,
        thumbs: thumbs::Thumbs::new(&cfg.state_dir, cfg.http.thumbnail_cache),
        cfg,
        roots: Arc::new(roots),
        newest,
        stop,
    })
}

/// The review routes, ready to merge into the HTTP router.
pub fn router(review: Arc<Review>) -> Router {
    Router::new()
        .route("/", get(grid))
        .route("/p/{id}", get(picture))
        .route("/file/{id}/{which}", get(file))
        .route("/thumb/{id}/{which}", get(thumb))
        .route("/live", get(live))
        .route("/assets/review.css", get(css))
        .route("/assets/review.js", get(js))
        .with_state(review)
}

/// An answer that is not the page asked for.
fn fail(code: StatusCode, title: &str, text: &str) -> Response {
    (code, Html(pages::message(title, text).into_string())).into_response()
}

fn store_failed(e: impl std::fmt::Display) -> Response {
    tracing::warn!("review page: {e}");
    fail(
        StatusCode::INTERNAL_SERVER_ERROR,
        "cannot read the outcome index",
        "the state database could not be read; see the daemon's log",
    )
}

/// Run a reader query off the executor.
async fn read<T: Send + 'static>(
    r: &Arc<Review>,
    f: impl FnOnce(&ReviewReader) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    let me = r.clone();
    match crate::blocking::run("review query", move || f(&me.reader)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(store_failed(e)),
        Err(e) => Err(store_failed(e)),
    }
}

/// The grid's query string as typed.
#[derive(Debug, Default, Deserialize)]
struct GridQuery {
    inbox: Option<String>,
    outcome: Option<String>,
    provider: Option<String>,
    from: Option<String>,
    to: Option<String>,
    q: Option<String>,
    before: Option<String>,
    after: Option<String>,
    wait: Option<String>,
}

fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A `YYYY-MM-DD` (UTC) as ms since the epoch.
fn day_ms(key: &str, v: &str) -> Result<i64, Response> {
    humantime::parse_rfc3339(&format!("{v}T00:00:00Z"))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| {
            fail(
                StatusCode::BAD_REQUEST,
                "bad filter",
                &format!("`{key}` = {v:?} is not a date; write it as YYYY-MM-DD"),
            )
        })
}

fn optional_id(key: &str, v: &Option<String>) -> Result<Option<i64>, Response> {
    given(v)
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                fail(
                    StatusCode::BAD_REQUEST,
                    "bad parameter",
                    &format!("`{key}` = {s:?} is not a number"),
                )
            })
        })
        .transpose()
}

impl GridQuery {
    fn filter(&self) -> Result<ReviewFilter, Response> {
        const DAY: i64 = 86_400_000;
        Ok(ReviewFilter {
            inbox: given(&self.inbox),
            event: given(&self.outcome),
            provider: given(&self.provider),
            from_ms: given(&self.from).map(|v| day_ms("from", &v)).transpose()?,
            to_ms: given(&self.to)
                .map(|v| day_ms("to", &v).map(|t| t + DAY))
                .transpose()?,
            name: given(&self.q),
        })
    }

    /// The filters as a query string (for links and the live request).
    fn query_string(&self) -> String {
        let pairs = [
            ("inbox", &self.inbox),
            ("outcome", &self.outcome),
            ("provider", &self.provider),
            ("from", &self.from),
            ("to", &self.to),
            ("q", &self.q),
        ];
        pairs
            .iter()
            .filter_map(|(k, v)| given(v).map(|v| format!("{k}={}", encode(&v))))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Percent-encode a query value.
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn top() -> pages::Top {
    let s = crate::metrics::global().snapshot();
    pages::Top {
        since_start: vec![
            ("succeeded", s.succeeded),
            ("duplicate", s.duplicates),
            ("rejected", s.rejected),
            ("failed", s.failed),
        ],
        paused: s
            .providers
            .iter()
            .filter_map(|(n, p)| p.paused.clone().map(|why| (n.clone(), why)))
            .collect(),
    }
}

async fn grid(State(r): State<Arc<Review>>, Query(q): Query<GridQuery>) -> Response {
    let filter = match q.filter() {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let before = match optional_id("before", &q.before) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let newest = *r.newest.borrow();
    let f = filter.clone();
    let got = read(&r, move |db| {
        let entries = db.page(&f, before, PAGE)?;
        let counts = db.counts(&f)?;
        let (inboxes, providers) = db.names()?;
        Ok((entries, counts, inboxes, providers))
    })
    .await;
    let (entries, counts, inboxes, providers) = match got {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let older = (entries.len() == PAGE)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let page = pages::grid(&pages::Grid {
        top: top(),
        filter: &filter,
        query: q.query_string(),
        from: q.from.as_deref().unwrap_or(""),
        to: q.to.as_deref().unwrap_or(""),
        entries: &entries,
        counts: &counts,
        inboxes: &inboxes,
        providers: &providers,
        live_after: before
            .is_none()
            .then(|| newest.max(entries.first().map_or(0, |e| e.id))),
        older,
    });
    Html(page.into_string()).into_response()
}

async fn picture(State(r): State<Arc<Review>>, Path(id): Path<i64>) -> Response {
    let got = read(&r, move |db| {
        let Some(e) = db.entry(id)? else {
            return Ok(None);
        };
        let history = db.history(&e)?;
        Ok(Some((e, history)))
    })
    .await;
    match got {
        Ok(Some((e, history))) => {
            Html(pages::picture(&top(), &e, &history).into_string()).into_response()
        }
        Ok(None) => fail(
            StatusCode::NOT_FOUND,
            "not found",
            &format!("no outcome with id {id}"),
        ),
        Err(resp) => resp,
    }
}

/// The checked, canonical path of picture `which` of entry `id`.
async fn checked_path(r: &Arc<Review>, id: i64, which: &str) -> Result<PathBuf, Response> {
    let which = Which::parse(which).ok_or_else(|| {
        fail(
            StatusCode::BAD_REQUEST,
            "bad picture name",
            "ask for `original` or `out<N>` (N = 0, 1, …)",
        )
    })?;
    let entry: Option<Entry> = read(r, move |db| db.entry(id)).await?;
    let missing = |what: String| fail(StatusCode::NOT_FOUND, "not found", &what);
    let entry = entry.ok_or_else(|| missing(format!("no outcome with id {id}")))?;
    let path = files::locate(&entry, which, &r.cfg).ok_or_else(|| {
        missing(format!(
            "outcome {id} has no {} (an input deleted after success has no original)",
            which.as_param()
        ))
    })?;
    let roots = r.roots.clone();
    let checked =
        crate::blocking::run("review file check", move || files::resolve(&path, &roots)).await;
    match checked {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e @ FileError::Outside)) => {
            Err(fail(StatusCode::FORBIDDEN, "refused", &e.to_string()))
        }
        Ok(Err(e)) => Err(missing(e.to_string())),
        Err(e) => Err(store_failed(e)),
    }
}

async fn file(State(r): State<Arc<Review>>, Path((id, which)): Path<(i64, String)>) -> Response {
    let path = match checked_path(&r, id, &which).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let kind = files::content_type(&path);
    let got = crate::blocking::run("review file read", move || {
        let len = std::fs::metadata(&path)?.len();
        if len > MAX_SERVE {
            return Err(std::io::Error::other(
                "larger than the page serves (256 MiB)",
            ));
        }
        std::fs::read(&path)
    })
    .await;
    match got {
        Ok(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "private, max-age=60"),
            ],
            bytes,
        )
            .into_response(),
        Ok(Err(e)) => fail(
            StatusCode::NOT_FOUND,
            "cannot read the picture",
            &e.to_string(),
        ),
        Err(e) => store_failed(e),
    }
}

async fn thumb(State(r): State<Arc<Review>>, Path((id, which)): Path<(i64, String)>) -> Response {
    let path = match checked_path(&r, id, &which).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    match r.thumbs.get(path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "image/webp"),
                (header::CACHE_CONTROL, "private, max-age=300"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no thumbnail",
            &e.to_string(),
        ),
    }
}

async fn live(State(r): State<Arc<Review>>, Query(q): Query<GridQuery>) -> Response {
    let filter = match q.filter() {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let (after, wait) = match (optional_id("after", &q.after), optional_id("wait", &q.wait)) {
        (Ok(a), Ok(w)) => (
            a.unwrap_or(0),
            w.unwrap_or(25).clamp(0, LIVE_WAIT_MAX as i64) as u64,
        ),
        (Err(resp), _) | (_, Err(resp)) => return resp,
    };
    let (mut newest, mut stop) = (r.newest.clone(), r.stop.clone());
    tokio::select! {
        _ = newest.wait_for(|v| *v > after) => {}
        _ = stop.wait_for(|s| *s) => {}
        _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
    }
    let now = *newest.borrow();
    let entries = match read(&r, move |db| db.newer(&filter, after, LIVE_MAX)).await {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let next = match entries.last() {
        Some(e) if entries.len() == LIVE_MAX => e.id,
        _ => now.max(after),
    };
    let since: serde_json::Map<String, serde_json::Value> = top()
        .since_start
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    let body = serde_json::json!({
        "newest": next,
        "cards": pages::cards(&entries),
        "since_start": since,
    });
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/review.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/review.js"),
    )
}
