//! The schema, its migrations, and reading a job row.
//!
//! Must not: change rows other than by a migration.

use super::*;

impl Store {
    pub(super) fn migrate(c: &Connection, path: &Path) -> Result<(), StoreError> {
        Self::migrate_in(c)
            .map_err(|e| e.at(path.to_path_buf()))?
            .map_or(Ok(()), |found| {
                Err(StoreError::TooNew {
                    path: path.to_path_buf(),
                    found,
                })
            })
    }

    /// Bring the schema up to date; Some(version) when the database is newer
    /// than this build.
    pub(super) fn migrate_in(c: &Connection) -> OpResult<Option<i64>> {
        let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if v > SCHEMA_VERSION {
            return Ok(Some(v));
        }
        if v < 1 {
            c.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS jobs (
                    id          INTEGER PRIMARY KEY,
                    inbox       TEXT NOT NULL,
                    rel_path    BLOB NOT NULL,
                    sha256      TEXT,
                    size        INTEGER,
                    mtime_ns    INTEGER,
                    active      INTEGER NOT NULL DEFAULT 1,
                    outcome     TEXT,
                    attempts    INTEGER NOT NULL DEFAULT 0,
                    provider    TEXT,
                    output      BLOB,
                    move_to     BLOB,
                    remote_job  TEXT,
                    record      TEXT,
                    audited     INTEGER NOT NULL DEFAULT 0,
                    reason_code TEXT,
                    reason      TEXT,
                    created_ms  INTEGER NOT NULL,
                    updated_ms  INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS jobs_sha ON jobs(sha256);
                 CREATE INDEX IF NOT EXISTS jobs_path ON jobs(inbox, rel_path);
                 CREATE INDEX IF NOT EXISTS jobs_output ON jobs(output);
                 CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active_per_path
                    ON jobs(inbox, rel_path) WHERE active = 1;
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        if v < 2 {
            // Name reservations look only at unfinished jobs: small partial
            // indexes keep them O(log n) however many jobs the table holds
            // (a full scan per picture before).
            c.execute_batch(
                "BEGIN;
                 CREATE INDEX IF NOT EXISTS jobs_active_move_to ON jobs(move_to) WHERE active = 1;
                 CREATE INDEX IF NOT EXISTS jobs_active_output ON jobs(output) WHERE active = 1;
                 PRAGMA user_version = 2;
                 COMMIT;",
            )?;
        }
        if v < 3 {
            // When the remote job was created: its `job_timeout` counts
            // from there, across restarts.
            c.execute_batch(
                "BEGIN;
                 ALTER TABLE jobs ADD COLUMN remote_since_ms INTEGER;
                 PRAGMA user_version = 3;
                 COMMIT;",
            )?;
        }
        if v < 4 {
            // The outcome index of the review page (store/review.rs).
            review::migrate_v4(c)?;
        }
        if v < 5 {
            // The review page's actions (SCHEMA 5; 4 is the review index):
            // one mark per job (approved/flagged) and the action log, whose
            // `pending` rows are intents recovery completes after a crash.
            c.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS marks (
                    job         INTEGER PRIMARY KEY,
                    mark        TEXT NOT NULL,
                    by_whom     TEXT NOT NULL,
                    at_ms       INTEGER NOT NULL
                 );
                 CREATE TABLE IF NOT EXISTS actions (
                    id          INTEGER PRIMARY KEY,
                    kind        TEXT NOT NULL,
                    job         INTEGER NOT NULL,
                    state       TEXT NOT NULL,
                    by_whom     TEXT NOT NULL,
                    provider    TEXT,
                    src         BLOB,
                    dst         BLOB,
                    detail      TEXT,
                    created_ms  INTEGER NOT NULL,
                    updated_ms  INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS actions_job ON actions(job);
                 CREATE INDEX IF NOT EXISTS actions_pending ON actions(state) WHERE state = 'pending';
                 PRAGMA user_version = 5;
                 COMMIT;",
            )?;
        }
        Ok(None)
    }

    pub(super) fn row(r: &Row<'_>) -> rusqlite::Result<Job> {
        Ok(Job {
            id: r.get("id")?,
            inbox: r.get("inbox")?,
            rel_path: blob_path(r.get("rel_path")?),
            sha256: r.get("sha256")?,
            size: r.get::<_, Option<i64>>("size")?.map(|v| v as u64),
            mtime_ns: r.get("mtime_ns")?,
            active: r.get::<_, i64>("active")? != 0,
            outcome: r
                .get::<_, Option<String>>("outcome")?
                .as_deref()
                .and_then(Outcome::parse),
            attempts: r.get::<_, i64>("attempts")? as u32,
            provider: r.get("provider")?,
            output: r.get::<_, Option<Vec<u8>>>("output")?.map(blob_path),
            move_to: r.get::<_, Option<Vec<u8>>>("move_to")?.map(blob_path),
            remote_job: r.get("remote_job")?,
            remote_since_ms: r.get("remote_since_ms")?,
            record: r.get("record")?,
            audited: r.get::<_, i64>("audited")? != 0,
            reason_code: r
                .get::<_, Option<String>>("reason_code")?
                .as_deref()
                .and_then(Code::parse),
            reason: r.get("reason")?,
        })
    }

    /// One row by id.
    pub(super) fn job(c: &Connection, id: i64) -> OpResult<Option<Job>> {
        Ok(c.prepare_cached("SELECT * FROM jobs WHERE id = ?1")?
            .query_row([id], Self::row)
            .optional()?)
    }
}
