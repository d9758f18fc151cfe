//! The review page's handlers: parse the query, run the index queries and
//! file checks off the executor, render (`pages`), answer.
//!
//! Must not: build a path from the request (ids only, [`super::files`]),
//! or block the executor (queries and reads go through
//! [`crate::blocking::run`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::files::{self, FileError, Which};
use super::{pages, PageError, Review, LIVE_MAX, LIVE_WAIT_MAX, MAX_SERVE, PAGE};
use crate::provider::PauseReason;
use crate::store::{Entry, ReviewFilter, ReviewReader, StoreError};

type Answer = Result<Response, PageError>;

/// Run a reader query off the executor.
async fn read<T: Send + 'static>(
    r: &Arc<Review>,
    f: impl FnOnce(&ReviewReader) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, PageError> {
    let me = r.clone();
    crate::blocking::run("review query", move || f(&me.reader))
        .await
        .map_err(PageError::index)?
        .map_err(PageError::index)
}

/// The grid's (and the live request's) query string as typed.
#[derive(Debug, Default, Deserialize)]
pub(super) struct GridQuery {
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
fn day_ms(key: &'static str, v: &str) -> Result<i64, PageError> {
    humantime::parse_rfc3339(&format!("{v}T00:00:00Z"))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| PageError::BadDate {
            key,
            value: v.to_string(),
        })
}

fn number(key: &'static str, v: &Option<String>) -> Result<Option<i64>, PageError> {
    given(v)
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| PageError::BadNumber { key, value: s })
        })
        .transpose()
}

impl GridQuery {
    fn filter(&self) -> Result<ReviewFilter, PageError> {
        const DAY: i64 = 86_400_000;
        let from_ms = match given(&self.from) {
            Some(v) => Some(day_ms("from", &v)?),
            None => None,
        };
        let to_ms = match given(&self.to) {
            Some(v) => Some(day_ms("to", &v)? + DAY),
            None => None,
        };
        Ok(ReviewFilter {
            inbox: given(&self.inbox),
            event: given(&self.outcome),
            provider: given(&self.provider),
            from_ms,
            to_ms,
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

/// Since-start counts (as `/metrics` has them) and paused providers.
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
            .filter_map(|(n, p)| {
                let why = p.paused.clone()?;
                let todo = match p.pause_reason {
                    Some(PauseReason::Quota) => "RECHARGE the account",
                    Some(PauseReason::Auth) => "FIX THE KEY",
                    Some(PauseReason::Unreachable) => {
                        "unreachable: check the network and the provider's status"
                    }
                    None => "paused",
                };
                Some(pages::Paused {
                    name: n.clone(),
                    todo,
                    why,
                })
            })
            .collect(),
    }
}

pub(super) async fn grid(State(r): State<Arc<Review>>, Query(q): Query<GridQuery>) -> Answer {
    let filter = q.filter()?;
    let before = number("before", &q.before)?;
    let newest = *r.newest.borrow();
    let f = filter.clone();
    let cached = r.cached_names();
    let (entries, counts, names, fresh) = read(&r, move |db| {
        let entries = db.page(&f, before, PAGE)?;
        let counts = db.counts(&f)?;
        let (names, fresh) = match cached {
            Some(n) => (n, false),
            None => (Arc::new(db.names()?), true),
        };
        Ok((entries, counts, names, fresh))
    })
    .await?;
    if fresh {
        r.keep_names(names.clone());
    }
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
        inboxes: &names.0,
        providers: &names.1,
        live_after: before
            .is_none()
            .then(|| newest.max(entries.first().map_or(0, |e| e.id))),
        older,
    });
    Ok(Html(page.into_string()).into_response())
}

pub(super) async fn picture(State(r): State<Arc<Review>>, Path(id): Path<i64>) -> Answer {
    let found = read(&r, move |db| {
        let Some(e) = db.entry(id)? else {
            return Ok(None);
        };
        let history = db.history(&e)?;
        Ok(Some((e, history)))
    })
    .await?;
    let (e, history) =
        found.ok_or_else(|| PageError::NotFound(format!("no outcome with id {id}")))?;
    Ok(Html(pages::picture(&top(), &e, &history).into_string()).into_response())
}

/// The checked, canonical path of picture `which` of entry `id`.
async fn checked_path(r: &Arc<Review>, id: i64, which: &str) -> Result<PathBuf, PageError> {
    let which = Which::parse(which).ok_or(PageError::BadPicture)?;
    let entry: Option<Entry> = read(r, move |db| db.entry(id)).await?;
    let entry = entry.ok_or_else(|| PageError::NotFound(format!("no outcome with id {id}")))?;
    let path = files::locate(&entry, which, &r.cfg).ok_or_else(|| {
        PageError::NotFound(format!(
            "outcome {id} has no {} (an input deleted after success has no original)",
            which.as_param()
        ))
    })?;
    let roots = r.roots.clone();
    let checked = crate::blocking::run("review file check", move || files::resolve(&path, &roots))
        .await
        .map_err(PageError::index)?;
    checked.map_err(|e| match e {
        FileError::Outside => PageError::Outside,
        FileError::Missing(what) => PageError::NotFound(format!("no such picture: {what}")),
    })
}

pub(super) async fn file(
    State(r): State<Arc<Review>>,
    Path((id, which)): Path<(i64, String)>,
) -> Answer {
    let path = checked_path(&r, id, &which).await?;
    let kind = files::content_type(&path);
    let bytes = crate::blocking::run("review file read", move || {
        let len = std::fs::metadata(&path)?.len();
        if len > MAX_SERVE {
            return Err(std::io::Error::other(
                "larger than the page serves (256 MiB)",
            ));
        }
        std::fs::read(&path)
    })
    .await
    .map_err(PageError::index)?
    .map_err(|e| PageError::Unreadable(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "private, max-age=60"),
        ],
        bytes,
    )
        .into_response())
}

pub(super) async fn thumb(
    State(r): State<Arc<Review>>,
    Path((id, which)): Path<(i64, String)>,
) -> Answer {
    let path = checked_path(&r, id, &which).await?;
    let bytes = r
        .thumbs
        .get(path)
        .await
        .map_err(|e| PageError::Thumbnail(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/webp"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        bytes,
    )
        .into_response())
}

pub(super) async fn live(State(r): State<Arc<Review>>, Query(q): Query<GridQuery>) -> Answer {
    let filter = q.filter()?;
    let after = number("after", &q.after)?.unwrap_or(0);
    let wait = number("wait", &q.wait)?
        .unwrap_or(25)
        .clamp(0, LIVE_WAIT_MAX as i64) as u64;
    let (mut newest, mut stop) = (r.newest.clone(), r.stop.clone());
    tokio::select! {
        _ = newest.wait_for(|v| *v > after) => {}
        _ = stop.wait_for(|s| *s) => {}
        _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
    }
    let now = *newest.borrow();
    let entries = read(&r, move |db| db.newer(&filter, after, LIVE_MAX)).await?;
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
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response())
}

pub(super) async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/review.css"),
    )
}

pub(super) async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/review.js"),
    )
}

/// The review routes, ready to merge into the HTTP router.
pub fn router(review: Arc<Review>) -> axum::Router {
    axum::Router::new()
        .route("/", axum::routing::get(grid))
        .route("/p/{id}", axum::routing::get(picture))
        .route("/file/{id}/{which}", axum::routing::get(file))
        .route("/thumb/{id}/{which}", axum::routing::get(thumb))
        .route("/live", axum::routing::get(live))
        .route("/assets/review.css", axum::routing::get(css))
        .route("/assets/review.js", axum::routing::get(js))
        .with_state(review)
}
