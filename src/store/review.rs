//! The outcome index behind the review page: one row per audit line
//! (`outcomes`, schema version 4), filled from `audit.jsonl` by the review
//! indexer, and the read-only queries the page runs (keyset pages newest
//! first, filters, counts, one entry, a picture's history).
//!
//! Writes go through the state thread like every other write (the rows and
//! the audit offset they reach commit together, so a crash re-reads from
//! the last committed offset and `UNIQUE(job, event, ts)` drops what was
//! already indexed). Reads use their own read-only connections
//! ([`ReviewReader`], WAL), so a slow page never delays a pipeline commit.
//!
//! On the shared PostgreSQL state the same interface reads `pg/review.rs`
//! (filled from the `audit` table; no indexer, no offset): the routes see
//! one [`ReviewReader`] whichever backend answers.
//!
//! Must not: touch `jobs`, read image files, or run reads on the state
//! thread. Every SQLite text of the review page lives here; its
//! PostgreSQL port lives in `pg/review.rs`.

use std::sync::Mutex;

use rusqlite::types::Value;

use super::*;

/// One audit line as the index keeps it (what the indexer parsed).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct IndexLine {
    pub ts: String,
    /// Filled by the indexer from `ts` (ms since the epoch).
    #[serde(skip)]
    pub ts_ms: i64,
    pub event: String,
    pub job: i64,
    pub inbox: String,
    pub input: String,
    pub provider: Option<String>,
    pub code: Option<String>,
    pub reason: Option<String>,
    /// From the reason file beside a rejected or failed input.
    #[serde(skip)]
    pub hint: Option<String>,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    pub output: Option<String>,
    pub moved_to: Option<String>,
    /// The whole line, as written.
    #[serde(skip)]
    pub line: String,
}

/// One indexed line, as the page reads it (`line` is empty in lists:
/// only [`ReviewReader::entry`] and [`ReviewReader::history`] read it).
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: i64,
    pub ts: String,
    pub ts_ms: i64,
    pub event: String,
    pub job: i64,
    pub inbox: String,
    pub input: String,
    pub provider: Option<String>,
    pub code: Option<String>,
    pub reason: Option<String>,
    pub hint: Option<String>,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    pub output: Option<String>,
    pub moved_to: Option<String>,
    pub line: String,
}

/// What the grid is narrowed to (every field optional; `event: None`
/// means every outcome, retry lines excluded).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReviewFilter {
    pub inbox: Option<String>,
    pub event: Option<String>,
    pub provider: Option<String>,
    /// Inclusive lower bound, ms since the epoch.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound, ms since the epoch.
    pub to_ms: Option<i64>,
    /// Part of the input's path (case-insensitive for ASCII).
    pub name: Option<String>,
}

pub(super) fn migrate_v4(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "BEGIN;
         CREATE TABLE IF NOT EXISTS outcomes (
            id        INTEGER PRIMARY KEY,
            ts        TEXT NOT NULL,
            ts_ms     INTEGER NOT NULL,
            event     TEXT NOT NULL,
            job       INTEGER NOT NULL,
            inbox     TEXT NOT NULL,
            input     TEXT NOT NULL,
            provider  TEXT,
            code      TEXT,
            reason    TEXT,
            hint      TEXT,
            bytes     INTEGER,
            sha256    TEXT,
            output    TEXT,
            moved_to  TEXT,
            UNIQUE (job, event, ts)
         );
         -- The whole lines apart: scans of `outcomes` (name search,
         -- counts) stay small.
         CREATE TABLE IF NOT EXISTS outcome_lines (
            id    INTEGER PRIMARY KEY,
            line  TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS outcomes_event ON outcomes(event, id);
         CREATE INDEX IF NOT EXISTS outcomes_inbox ON outcomes(inbox, id);
         CREATE INDEX IF NOT EXISTS outcomes_provider ON outcomes(provider, id);
         CREATE INDEX IF NOT EXISTS outcomes_time ON outcomes(ts_ms);
         CREATE INDEX IF NOT EXISTS outcomes_job ON outcomes(job);
         CREATE INDEX IF NOT EXISTS outcomes_input ON outcomes(inbox, input);
         CREATE TABLE IF NOT EXISTS review_meta (
            key   TEXT PRIMARY KEY,
            value INTEGER NOT NULL
         );
         PRAGMA user_version = 4;
         COMMIT;",
    )
}

impl Store {
    /// How far into `audit.jsonl` (bytes) the index has read.
    pub async fn review_offset(&self) -> Result<u64, StoreError> {
        self.call(|c| {
            let v: Option<i64> = c
                .prepare_cached("SELECT value FROM review_meta WHERE key = 'audit_offset'")?
                .query_row([], |r| r.get(0))
                .optional()?;
            Ok(v.unwrap_or(0).max(0) as u64)
        })
        .await
    }

    /// Index `rows` and move the offset to `offset`, in one transaction.
    /// Returns the newest row id (0 for an empty index).
    pub async fn review_add(&self, rows: Vec<IndexLine>, offset: u64) -> Result<i64, StoreError> {
        self.call(move |c| {
            let mut ins = c.prepare_cached(
                "INSERT OR IGNORE INTO outcomes (ts, ts_ms, event, job, inbox, input, provider,
                    code, reason, hint, bytes, sha256, output, moved_to)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            let mut line =
                c.prepare_cached("INSERT INTO outcome_lines (id, line) VALUES (?1, ?2)")?;
            for r in &rows {
                let added = ins.execute(params![
                    r.ts,
                    r.ts_ms,
                    r.event,
                    r.job,
                    r.inbox,
                    r.input,
                    r.provider,
                    r.code,
                    r.reason,
                    r.hint,
                    r.bytes.map(|b| b as i64),
                    r.sha256,
                    r.output,
                    r.moved_to,
                ])?;
                if added == 1 {
                    line.execute(params![c.last_insert_rowid(), r.line])?;
                }
            }
            c.prepare_cached(
                "INSERT INTO review_meta (key, value) VALUES ('audit_offset', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute([offset as i64])?;
            let newest: Option<i64> = c
                .prepare_cached("SELECT MAX(id) FROM outcomes")?
                .query_row([], |r| r.get(0))?;
            Ok(newest.unwrap_or(0))
        })
        .await
    }
}

/// The review page's queries, on whichever backend holds the state: one
/// interface for the routes, two implementations (read-only SQLite
/// connections here, [`pg::PgReader`] on PostgreSQL). Blocking: call
/// through [`crate::blocking::run`].
pub struct ReviewReader {
    backend: Backend,
}

enum Backend {
    Sqlite(SqliteReader),
    Pg(Box<pg::PgReader>),
}

/// Read-only connections to the SQLite state database (a few kept open;
/// opened on demand).
struct SqliteReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// Each query of the page, on either backend.
macro_rules! both {
    ($self:ident, $r:ident => $e:expr) => {
        match &$self.backend {
            Backend::Sqlite($r) => $e,
            Backend::Pg($r) => $e,
        }
    };
}

impl ReviewReader {
    /// A reader of the SQLite state in `state_dir`.
    pub fn new(state_dir: &Path) -> ReviewReader {
        ReviewReader {
            backend: Backend::Sqlite(SqliteReader {
                path: state_dir.join("state.sqlite3"),
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A reader of `store`'s outcome index: the shared PostgreSQL state's
    /// when `store` is on it, else the SQLite state in `state_dir`.
    pub fn for_store(store: &Store, state_dir: &Path) -> ReviewReader {
        match &store.pg {
            Some(pg) => ReviewReader {
                backend: Backend::Pg(Box::new(pg.review_reader())),
            },
            None => Self::new(state_dir),
        }
    }

    /// Up to `limit` entries matching `f`, newest first, older than
    /// `before` (an id) when given: keyset pagination, O(limit) per page.
    pub fn page(
        &self,
        f: &ReviewFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        both!(self, r => r.page(f, before, limit))
    }

    /// Entries matching `f` newer than `after` (oldest first, at most
    /// `limit`): what a live page has not shown yet.
    pub fn newer(
        &self,
        f: &ReviewFilter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        both!(self, r => r.newer(f, after, limit))
    }

    /// Outcome lines matching `f` (its `event` ignored), counted by event.
    pub fn counts(&self, f: &ReviewFilter) -> Result<Vec<(String, i64)>, StoreError> {
        both!(self, r => r.counts(f))
    }

    /// One entry by id.
    pub fn entry(&self, id: i64) -> Result<Option<Entry>, StoreError> {
        both!(self, r => r.entry(id))
    }

    /// Every line about the same job or the same input (retries, earlier
    /// and later outcomes), oldest first, at most 200.
    pub fn history(&self, e: &Entry) -> Result<Vec<Entry>, StoreError> {
        both!(self, r => r.history(e))
    }

    /// The inbox and provider names seen in the index (for the filters).
    pub fn names(&self) -> Result<(Vec<String>, Vec<String>), StoreError> {
        both!(self, r => r.names())
    }

    /// The newest id (0 when empty).
    pub fn newest(&self) -> Result<i64, StoreError> {
        both!(self, r => r.newest())
    }
}

/// Connections kept open between requests.
const IDLE_READERS: usize = 4;
/// Columns every list query selects, in [`entry_row`]'s order (`line`
/// left empty: lists do not need it).
const COLS: &str = "id, ts, ts_ms, event, job, inbox, input, provider, code, reason, hint,
    bytes, sha256, output, moved_to, '' AS line";
/// The same with the whole line, from `outcomes o JOIN outcome_lines l`.
const FULL_COLS: &str = "o.id, o.ts, o.ts_ms, o.event, o.job, o.inbox, o.input, o.provider,
    o.code, o.reason, o.hint, o.bytes, o.sha256, o.output, o.moved_to, l.line";
const FULL_FROM: &str = "outcomes o JOIN outcome_lines l ON l.id = o.id";

fn entry_row(r: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: r.get(0)?,
        ts: r.get(1)?,
        ts_ms: r.get(2)?,
        event: r.get(3)?,
        job: r.get(4)?,
        inbox: r.get(5)?,
        input: r.get(6)?,
        provider: r.get(7)?,
        code: r.get(8)?,
        reason: r.get(9)?,
        hint: r.get(10)?,
        bytes: r.get::<_, Option<i64>>(11)?.map(|b| b.max(0) as u64),
        sha256: r.get(12)?,
        output: r.get(13)?,
        moved_to: r.get(14)?,
        line: r.get(15)?,
    })
}

/// One parameter of a filter's conditions, for either backend.
pub(super) enum FilterArg {
    Text(String),
    Int(i64),
}

impl ReviewFilter {
    /// The filter as a WHERE clause (without the keyword) and its
    /// parameters, for both backends: `mark(n)` writes the n-th
    /// placeholder (`?n`, `$n`), `like` is the backend's case-insensitive
    /// match (`LIKE` on SQLite for ASCII, `ILIKE` on PostgreSQL).
    pub(super) fn conditions(
        &self,
        with_event: bool,
        mark: fn(usize) -> String,
        like: &str,
    ) -> (String, Vec<FilterArg>) {
        let mut sql = Vec::new();
        let mut args = Vec::new();
        if self.event.is_none() || !with_event {
            // review actions' own lines (`review-*`) show in a picture's
            // history, not as cards
            sql.push("event <> 'retry' AND event NOT LIKE 'review-%'".to_string());
        }
        let mut add = |clause: &str, v: FilterArg| {
            args.push(v);
            sql.push(clause.replace('?', &mark(args.len())));
        };
        let text = |v: &String| FilterArg::Text(v.clone());
        if let (Some(e), true) = (&self.event, with_event) {
            add("event = ?", text(e));
        }
        if let Some(v) = &self.inbox {
            add("inbox = ?", text(v));
        }
        if let Some(v) = &self.provider {
            add("provider = ?", text(v));
        }
        if let Some(v) = self.from_ms {
            add("ts_ms >= ?", FilterArg::Int(v));
        }
        if let Some(v) = self.to_ms {
            add("ts_ms < ?", FilterArg::Int(v));
        }
        if let Some(v) = &self.name {
            let escaped = v
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            add(
                &format!("input {like} ? ESCAPE '\\'"),
                FilterArg::Text(format!("%{escaped}%")),
            );
        }
        (sql.join(" AND "), args)
    }
}

/// `filter` as a SQLite WHERE clause (without the keyword) and its
/// parameters.
fn filter_sql(f: &ReviewFilter, with_event: bool) -> (String, Vec<Value>) {
    let (sql, args) = f.conditions(with_event, |n| format!("?{n}"), "LIKE");
    let args = args
        .into_iter()
        .map(|a| match a {
            FilterArg::Text(t) => Value::Text(t),
            FilterArg::Int(i) => Value::Integer(i),
        })
        .collect();
    (sql, args)
}

impl SqliteReader {
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(err)?;
                c.busy_timeout(std::time::Duration::from_secs(5))
                    .map_err(err)?;
                c
            }
        };
        let out = f(&conn).map_err(err);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        out
    }

    /// Up to `limit` entries matching `f`, newest first, older than
    /// `before` (an id) when given: keyset pagination, O(limit) per page.
    fn page(
        &self,
        f: &ReviewFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let (mut clause, mut args) = filter_sql(f, true);
        if let Some(b) = before {
            args.push(Value::Integer(b));
            clause.push_str(&format!(" AND id < ?{}", args.len()));
        }
        args.push(Value::Integer(limit as i64));
        let sql = format!(
            "SELECT {COLS} FROM outcomes WHERE {clause} ORDER BY id DESC LIMIT ?{}",
            args.len()
        );
        self.with(|c| {
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), entry_row)?;
            rows.collect()
        })
    }

    /// Entries matching `f` newer than `after` (oldest first, at most
    /// `limit`): what a live page has not shown yet.
    fn newer(&self, f: &ReviewFilter, after: i64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let (clause, mut args) = filter_sql(f, true);
        args.push(Value::Integer(after));
        let n = args.len();
        args.push(Value::Integer(limit as i64));
        let sql = format!(
            "SELECT {COLS} FROM outcomes WHERE {clause} AND id > ?{n} ORDER BY id ASC LIMIT ?{}",
            n + 1
        );
        self.with(|c| {
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), entry_row)?;
            rows.collect()
        })
    }

    /// Outcome lines matching `f` (its `event` ignored), counted by event.
    fn counts(&self, f: &ReviewFilter) -> Result<Vec<(String, i64)>, StoreError> {
        let (clause, args) = filter_sql(f, false);
        let sql = format!(
            "SELECT event, COUNT(*) FROM outcomes WHERE {clause} GROUP BY event ORDER BY 1"
        );
        self.with(|c| {
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            rows.collect()
        })
    }

    /// One entry by id.
    fn entry(&self, id: i64) -> Result<Option<Entry>, StoreError> {
        let sql = format!("SELECT {FULL_COLS} FROM {FULL_FROM} WHERE o.id = ?1");
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_row([id], entry_row)
                .optional()
        })
    }

    /// Every line about the same job or the same input (retries, earlier
    /// and later outcomes), oldest first, at most 200.
    fn history(&self, e: &Entry) -> Result<Vec<Entry>, StoreError> {
        let sql = format!(
            "SELECT {FULL_COLS} FROM {FULL_FROM} WHERE o.job = ?1
             UNION SELECT {FULL_COLS} FROM {FULL_FROM} WHERE o.inbox = ?2 AND o.input = ?3
             ORDER BY 1 LIMIT 200"
        );
        let (job, inbox, input) = (e.job, e.inbox.clone(), e.input.clone());
        self.with(|c| {
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(params![job, inbox, input], entry_row)?;
            rows.collect()
        })
    }

    /// The inbox and provider names seen in the index (for the filters).
    fn names(&self) -> Result<(Vec<String>, Vec<String>), StoreError> {
        self.with(|c| {
            let list = |sql: &str| -> rusqlite::Result<Vec<String>> {
                let mut st = c.prepare_cached(sql)?;
                let rows = st.query_map([], |r| r.get(0))?;
                rows.collect()
            };
            Ok((
                list("SELECT DISTINCT inbox FROM outcomes ORDER BY 1 LIMIT 500")?,
                list(
                    "SELECT DISTINCT provider FROM outcomes WHERE provider IS NOT NULL
                     ORDER BY 1 LIMIT 500",
                )?,
            ))
        })
    }

    /// The newest id (0 when empty).
    fn newest(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            c.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM outcomes")?
                .query_row([], |r| r.get(0))
        })
    }
}
