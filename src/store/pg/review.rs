//! The review page's outcome index on the shared PostgreSQL state: the
//! tables (schema version 2) and the read-only queries behind
//! [`ReviewReader`](crate::store::ReviewReader) (keyset pages newest
//! first, filters, counts, one entry, a picture's history), the port of
//! `store/review.rs`.
//!
//! Filled from the `audit` table, not from each instance's audit file: a
//! trigger on `audit` adds one `outcomes` row (and its `outcome_lines`
//! line) in the same transaction that inserts the audit row. That row is
//! written once per job (`audit.job_id` is its key, inserted `ON CONFLICT
//! DO NOTHING`) and only by the instance that holds the job at its epoch
//! (the insert follows the fencing check), so every instance's outcomes
//! appear exactly once, whichever instance wrote them and whether or not
//! it serves the page, with nothing to catch up after a crash: no offsets,
//! no indexer racing another. An instance fenced out after writing its
//! audit file line never reaches the table, so the page does not show a
//! second outcome for a job taken over. `UNIQUE (instance, job, event,
//! ts)` guards the backfill of rows written before this version. A record
//! the trigger cannot read is left out with a server warning; it never
//! fails the pipeline's commit.
//!
//! What the SQLite index has and this one does not: retry lines (they
//! stay in each instance's audit file) and the reason file's hint (the
//! database does not read files).
//!
//! Reads use their own connections (read-only sessions, at most
//! [`READERS`], kept open), never the pipeline's pool, so a slow page does
//! not delay a claim. Blocking: call through [`crate::blocking::run`].
//!
//! Must not: write anything, touch `jobs`, or read files.

use std::sync::{Condvar, Mutex};

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row};

use super::error::pg_message;
use crate::store::review::{Entry, FilterArg, ReviewFilter};
use crate::store::types::StoreError;

/// Schema version 2: the outcome index and the trigger that fills it
/// (and fills it with what `audit` already holds), and the review marks
/// (`marks.rs`).
pub(super) const MIGRATION: &str = "CREATE TABLE outcomes (
        id        BIGSERIAL PRIMARY KEY,
        instance  TEXT NOT NULL,
        ts        TEXT NOT NULL,
        ts_ms     BIGINT NOT NULL,
        event     TEXT NOT NULL,
        job       BIGINT NOT NULL,
        inbox     TEXT NOT NULL,
        input     TEXT NOT NULL,
        provider  TEXT,
        code      TEXT,
        reason    TEXT,
        hint      TEXT,
        bytes     BIGINT,
        sha256    TEXT,
        output    TEXT,
        moved_to  TEXT,
        UNIQUE (instance, job, event, ts)
     );
     CREATE TABLE outcome_lines (
        id    BIGINT PRIMARY KEY REFERENCES outcomes(id),
        line  TEXT NOT NULL
     );
     CREATE INDEX outcomes_event ON outcomes(event, id);
     CREATE INDEX outcomes_inbox ON outcomes(inbox, id);
     CREATE INDEX outcomes_provider ON outcomes(provider, id);
     CREATE INDEX outcomes_time ON outcomes(ts_ms);
     CREATE INDEX outcomes_job ON outcomes(job);
     CREATE INDEX outcomes_input ON outcomes(inbox, input);
     CREATE FUNCTION cutout_index_outcome(who TEXT, rec TEXT) RETURNS VOID
     LANGUAGE plpgsql AS $fn$
     DECLARE
        r JSONB;
        new_id BIGINT;
     BEGIN
        r := rec::jsonb;
        INSERT INTO outcomes (instance, ts, ts_ms, event, job, inbox, input, provider,
                              code, reason, bytes, sha256, output, moved_to)
        VALUES (who, r->>'ts',
                COALESCE((EXTRACT(EPOCH FROM (r->>'ts')::timestamptz) * 1000)::BIGINT, 0),
                r->>'event', (r->>'job')::BIGINT, r->>'inbox', r->>'input',
                r->>'provider', r->>'code', r->>'reason', (r->>'bytes')::BIGINT,
                r->>'sha256', r->>'output', r->>'moved_to')
        ON CONFLICT DO NOTHING
        RETURNING id INTO new_id;
        IF new_id IS NOT NULL THEN
           INSERT INTO outcome_lines (id, line) VALUES (new_id, rec);
        END IF;
     EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'cutout: an audit record is left out of the review index: %', SQLERRM;
     END
     $fn$;
     CREATE FUNCTION cutout_audit_indexed() RETURNS TRIGGER
     LANGUAGE plpgsql AS $fn$
     BEGIN
        PERFORM cutout_index_outcome(NEW.instance, NEW.record);
        RETURN NULL;
     END
     $fn$;
     CREATE TRIGGER audit_indexed AFTER INSERT ON audit
        FOR EACH ROW EXECUTE FUNCTION cutout_audit_indexed();
     CREATE TABLE marks (
        job      BIGINT PRIMARY KEY REFERENCES jobs(id),
        mark     TEXT NOT NULL,
        by_whom  TEXT NOT NULL,
        at_ms    BIGINT NOT NULL
     );
     CREATE INDEX marks_at ON marks(at_ms);
     SELECT cutout_index_outcome(instance, record)
       FROM (SELECT instance, record FROM audit ORDER BY at, job_id) a;";

/// Read connections open at most (kept open between requests): the page's
/// queries beyond that wait for one, so the page never takes more of the
/// server's `max_connections`.
const READERS: usize = 4;
/// Columns every list query selects, in [`entry_row`]'s order.
const COLS: &str = "id, ts, ts_ms, event, job, inbox, input, provider, code, reason, hint,
    bytes, sha256, output, moved_to, ''::TEXT AS line";
const FULL_COLS: &str = "o.id, o.ts, o.ts_ms, o.event, o.job, o.inbox, o.input, o.provider,
    o.code, o.reason, o.hint, o.bytes, o.sha256, o.output, o.moved_to, l.line";
const FULL_FROM: &str = "outcomes o JOIN outcome_lines l ON l.id = o.id";

type Arg = Box<dyn ToSql + Sync + Send>;

/// The page's reader on PostgreSQL.
pub struct PgReader {
    cfg: postgres::Config,
    at: String,
    pool: Mutex<Pool>,
    /// Signalled when a connection is given back (or given up).
    freed: Condvar,
}

/// A connection in use: given back when dropped (also by a panic).
struct Lease<'a> {
    reader: &'a PgReader,
    conn: Option<Client>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.reader.give_back(self.conn.take());
    }
}

#[derive(Default)]
struct Pool {
    idle: Vec<Client>,
    /// Connections made and not given up (idle or in use).
    open: usize,
}

fn entry_row(r: &Row) -> Result<Entry, postgres::Error> {
    Ok(Entry {
        id: r.try_get(0)?,
        ts: r.try_get(1)?,
        ts_ms: r.try_get(2)?,
        event: r.try_get(3)?,
        job: r.try_get(4)?,
        inbox: r.try_get(5)?,
        input: r.try_get(6)?,
        provider: r.try_get(7)?,
        code: r.try_get(8)?,
        reason: r.try_get(9)?,
        hint: r.try_get(10)?,
        bytes: r.try_get::<_, Option<i64>>(11)?.map(|b| b.max(0) as u64),
        sha256: r.try_get(12)?,
        output: r.try_get(13)?,
        moved_to: r.try_get(14)?,
        line: r.try_get(15)?,
    })
}

/// `f` as a PostgreSQL WHERE clause (without the keyword) and its
/// parameters: the SQLite version's conditions (`ReviewFilter::conditions`).
fn filter_sql(f: &ReviewFilter, with_event: bool) -> (String, Vec<Arg>) {
    let (sql, args) = f.conditions(with_event, |n| format!("${n}"), "ILIKE");
    let args = args
        .into_iter()
        .map(|a| -> Arg {
            match a {
                FilterArg::Text(t) => Box::new(t),
                FilterArg::Int(i) => Box::new(i),
            }
        })
        .collect();
    (sql, args)
}

fn refs(args: &[Arg]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

impl PgReader {
    pub(in crate::store) fn new(cfg: postgres::Config, at: String) -> PgReader {
        PgReader {
            cfg,
            at,
            pool: Mutex::new(Pool::default()),
            freed: Condvar::new(),
        }
    }

    /// A connection: an idle one, a new one while fewer than
    /// [`READERS`] are open, else the next one given back.
    fn take(&self) -> Result<Client, postgres::Error> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(c) = pool.idle.pop() {
                if !c.is_closed() {
                    return Ok(c);
                }
                pool.open -= 1;
                continue;
            }
            if pool.open < READERS {
                pool.open += 1;
                drop(pool);
                let made = self.cfg.connect(NoTls).and_then(|mut c| {
                    c.batch_execute("SET default_transaction_read_only = on")?;
                    Ok(c)
                });
                if made.is_err() {
                    self.give_back(None);
                }
                return made;
            }
            pool = self.freed.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Return a connection taken (None: it was not made, or broke).
    fn give_back(&self, conn: Option<Client>) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        match conn.filter(|c| !c.is_closed()) {
            Some(c) => pool.idle.push(c),
            None => pool.open -= 1,
        }
        self.freed.notify_one();
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let err = |e: &postgres::Error| StoreError::Postgres {
            at: self.at.clone(),
            what: format!("review page: {}", pg_message(e)),
        };
        let mut lease = Lease {
            reader: self,
            conn: Some(self.take().map_err(|e| err(&e))?),
        };
        let Some(c) = lease.conn.as_mut() else {
            return Err(StoreError::Postgres {
                at: self.at.clone(),
                what: "review page: no connection".into(),
            });
        };
        f(c).map_err(|e| err(&e))
    }

    fn entries(&self, sql: &str, args: &[Arg]) -> Result<Vec<Entry>, StoreError> {
        self.with(|c| c.query(sql, &refs(args))?.iter().map(entry_row).collect())
    }

    pub(in crate::store) fn page(
        &self,
        f: &ReviewFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let (mut clause, mut args) = filter_sql(f, true);
        if let Some(b) = before {
            args.push(Box::new(b));
            clause.push_str(&format!(" AND id < ${}", args.len()));
        }
        args.push(Box::new(limit as i64));
        let sql = format!(
            "SELECT {COLS} FROM outcomes WHERE {clause} ORDER BY id DESC LIMIT ${}",
            args.len()
        );
        self.entries(&sql, &args)
    }

    pub(in crate::store) fn newer(
        &self,
        f: &ReviewFilter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let (clause, mut args) = filter_sql(f, true);
        args.push(Box::new(after));
        let n = args.len();
        args.push(Box::new(limit as i64));
        let sql = format!(
            "SELECT {COLS} FROM outcomes WHERE {clause} AND id > ${n} ORDER BY id ASC LIMIT ${}",
            n + 1
        );
        self.entries(&sql, &args)
    }

    pub(in crate::store) fn counts(
        &self,
        f: &ReviewFilter,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let (clause, args) = filter_sql(f, false);
        let sql = format!(
            "SELECT event, COUNT(*) FROM outcomes WHERE {clause} GROUP BY event ORDER BY 1"
        );
        self.with(|c| {
            c.query(&sql, &refs(&args))?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    pub(in crate::store) fn entry(&self, id: i64) -> Result<Option<Entry>, StoreError> {
        let sql = format!("SELECT {FULL_COLS} FROM {FULL_FROM} WHERE o.id = $1");
        self.with(|c| {
            c.query_opt(&sql, &[&id])?
                .as_ref()
                .map(entry_row)
                .transpose()
        })
    }

    pub(in crate::store) fn history(&self, e: &Entry) -> Result<Vec<Entry>, StoreError> {
        let sql = format!(
            "SELECT {FULL_COLS} FROM {FULL_FROM} WHERE o.job = $1
             UNION SELECT {FULL_COLS} FROM {FULL_FROM} WHERE o.inbox = $2 AND o.input = $3
             ORDER BY 1 LIMIT 200"
        );
        let args: Vec<Arg> = vec![
            Box::new(e.job),
            Box::new(e.inbox.clone()),
            Box::new(e.input.clone()),
        ];
        self.entries(&sql, &args)
    }

    pub(in crate::store) fn names(&self) -> Result<(Vec<String>, Vec<String>), StoreError> {
        self.with(|c| {
            let mut list = |sql: &str| -> Result<Vec<String>, postgres::Error> {
                c.query(sql, &[])?.iter().map(|r| r.try_get(0)).collect()
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

    pub(in crate::store) fn newest(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            c.query_one("SELECT COALESCE(MAX(id), 0)::BIGINT FROM outcomes", &[])?
                .try_get(0)
        })
    }
}
