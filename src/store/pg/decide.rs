//! A job's later steps on PostgreSQL (fenced: only the owner at its epoch
//! may write), the audit table, recovery's lists (taking over a dead
//! instance's jobs), and what `status` reads (counts, errors, instances).
//!
//! Must not: claim jobs or reserve names (`claim.rs`).

use std::path::PathBuf;
use std::sync::Arc;

use postgres::Transaction;

use super::schema::{self, OWNER_DEAD};
use super::{fence, Instance, Pg, PgResult};
use crate::store::types::{blob_path, now_ms, Audit, Job, StoreError};

/// Copy job `id`'s audit record into the `audit` table (once).
fn audit_row(tx: &mut Transaction<'_>, me: &str, id: i64) -> PgResult<()> {
    tx.execute(
        "INSERT INTO audit (job_id, instance, record)
         SELECT id, $2, record FROM jobs WHERE id = $1 AND record IS NOT NULL
         ON CONFLICT (job_id) DO NOTHING",
        &[&id, &me],
    )?;
    Ok(())
}

impl Pg {
    pub(in crate::store) fn mark_audited(self: &Arc<Self>, id: i64) -> Result<(), StoreError> {
        let pg = self.clone();
        self.run(move |tx| {
            let me = pg.me()?;
            fence(tx, &me, pg.held_epoch(id), id)?;
            tx.execute(
                "UPDATE jobs SET audited = TRUE, updated_ms = $2 WHERE id = $1",
                &[&id, &now_ms()],
            )?;
            audit_row(tx, &me, id)
        })
    }

    pub(in crate::store) fn finish(
        self: &Arc<Self>,
        id: i64,
        audit: Audit,
    ) -> Result<(), StoreError> {
        let pg = self.clone();
        self.run(move |tx| {
            let me = pg.me()?;
            fence(tx, &me, pg.held_epoch(id), id)?;
            let written = audit == Audit::Written;
            tx.execute(
                "UPDATE jobs SET active = FALSE, audited = audited OR $2, updated_ms = $3 WHERE id = $1",
                &[&id, &written, &now_ms()],
            )?;
            if written {
                audit_row(tx, &me, id)?;
            }
            Ok(())
        })?;
        self.release(id);
        Ok(())
    }

    pub(in crate::store) fn set_record(
        self: &Arc<Self>,
        id: i64,
        record: &str,
    ) -> Result<(), StoreError> {
        let f = self.fenced_exec(
            id,
            "UPDATE jobs SET record = $2 WHERE id = $1 AND NOT audited",
            vec![Box::new(record.to_string())],
        );
        self.run(f)?;
        Ok(())
    }

    pub(in crate::store) fn withdraw(self: &Arc<Self>, id: i64) -> Result<(), StoreError> {
        let f = self.fenced_exec(
            id,
            "UPDATE jobs SET active = FALSE, outcome = 'withdrawn', record = NULL, move_to = NULL,
                    updated_ms = $2
               WHERE id = $1 AND active AND outcome IN ('rejected','failed') AND NOT audited",
            vec![Box::new(now_ms())],
        );
        if self.run(f)? > 0 {
            self.release(id);
        }
        Ok(())
    }

    pub(in crate::store) fn abandon(
        self: &Arc<Self>,
        id: i64,
        why: &str,
    ) -> Result<(), StoreError> {
        let f = self.fenced_exec(
            id,
            "UPDATE jobs SET active = FALSE, outcome = 'vanished', reason = $2, updated_ms = $3
               WHERE id = $1 AND outcome IS NULL",
            vec![Box::new(why.to_string()), Box::new(now_ms())],
        );
        if self.run(f)? > 0 {
            self.release(id);
        }
        Ok(())
    }

    /// Active jobs matching `cond` that are this instance's, after taking
    /// over those of dead instances (read-only: all of them, nothing taken).
    fn mine(self: &Arc<Self>, cond: &'static str) -> Result<Vec<Job>, StoreError> {
        let pg = self.clone();
        let jobs = self.run(move |tx| {
            let Some(me) = pg.me.clone() else {
                let sql = format!("SELECT * FROM jobs WHERE active AND {cond} ORDER BY id");
                let rows = tx.query(&sql, &[])?;
                return rows.iter().map(|r| Ok((schema::row(r)?, 0))).collect();
            };
            let take = format!(
                "UPDATE jobs SET owner = $1, epoch = epoch + 1
                   WHERE active AND {cond} AND owner IS DISTINCT FROM $1 AND {OWNER_DEAD}"
            );
            tx.execute(&take, &[&me])?;
            let sql =
                format!("SELECT * FROM jobs WHERE active AND {cond} AND owner = $1 ORDER BY id");
            let rows = tx.query(&sql, &[&me])?;
            rows.iter()
                .map(|r| {
                    let (job, _, epoch) = schema::owned(r)?;
                    Ok((job, epoch))
                })
                .collect::<PgResult<Vec<_>>>()
        })?;
        if self.me.is_some() {
            for (job, epoch) in &jobs {
                self.hold(job.id, *epoch);
            }
        }
        Ok(jobs.into_iter().map(|(j, _)| j).collect())
    }

    /// Active jobs of dead instances in `inboxes` (not taken: see
    /// [`Pg::adopt`]), oldest first, at most `limit` (empty on a read-only
    /// handle).
    pub(in crate::store) async fn orphans(
        self: &Arc<Self>,
        inboxes: Vec<String>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let (me, limit) = (self.me.clone(), limit as i64);
        let Some(me) = me else {
            return Ok(Vec::new());
        };
        self.call(move |tx| {
            let sql = format!(
                "SELECT * FROM jobs WHERE active AND owner IS DISTINCT FROM $1
                   AND inbox = ANY($3) AND {OWNER_DEAD} ORDER BY id LIMIT $2"
            );
            let rows = tx.query(&sql, &[&me, &limit, &inboxes])?;
            rows.iter().map(schema::row).collect()
        })
        .await
    }

    /// Take job `id` over from its dead owner (owner = me, epoch + 1) and
    /// hold it; None when it is no longer a dead instance's active job.
    pub(in crate::store) async fn adopt(
        self: &Arc<Self>,
        id: i64,
    ) -> Result<Option<Job>, StoreError> {
        let pg = self.clone();
        self.call(move |tx| {
            let me = pg.me()?;
            let sql = format!(
                "UPDATE jobs SET owner = $2, epoch = epoch + 1 WHERE id = $1 AND active
                   AND owner IS DISTINCT FROM $2 AND {OWNER_DEAD} RETURNING *"
            );
            let Some(r) = tx.query_opt(&sql, &[&id, &me])? else {
                return Ok(None);
            };
            let (job, _, epoch) = schema::owned(&r)?;
            pg.hold(job.id, epoch);
            Ok(Some(job))
        })
        .await
    }

    pub(in crate::store) fn decided_unfinished(self: &Arc<Self>) -> Result<Vec<Job>, StoreError> {
        self.mine("outcome IS NOT NULL")
    }

    pub(in crate::store) fn undecided(self: &Arc<Self>) -> Result<Vec<Job>, StoreError> {
        self.mine("outcome IS NULL")
    }

    /// This instance's (or a dead one's) open remote jobs.
    pub(in crate::store) async fn remote_jobs_open(
        self: &Arc<Self>,
    ) -> Result<Vec<(String, PathBuf)>, StoreError> {
        let me = self.me.clone();
        self.call(move |tx| {
            let sql = format!(
                "SELECT inbox, rel_path FROM jobs WHERE active AND outcome IS NULL
                   AND remote_job IS NOT NULL AND ($1::text IS NULL OR owner = $1 OR {OWNER_DEAD})
                   LIMIT 10000"
            );
            let rows = tx.query(&sql, &[&me])?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, blob_path(r.try_get(1)?))))
                .collect()
        })
        .await
    }

    pub(in crate::store) fn counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.run(|tx| {
            let rows = tx.query(
                "SELECT COALESCE(outcome, 'in-progress'), COUNT(*) FROM jobs
                 GROUP BY COALESCE(outcome, 'in-progress') ORDER BY 1",
                &[],
            )?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    pub(in crate::store) fn last_errors(&self, n: usize) -> Result<Vec<Job>, StoreError> {
        let n = n as i64;
        self.run(move |tx| {
            let rows = tx.query(
                "SELECT * FROM jobs WHERE outcome IN ('rejected','failed')
                 ORDER BY updated_ms DESC, id DESC LIMIT $1",
                &[&n],
            )?;
            rows.iter().map(schema::row).collect()
        })
    }

    /// Every instance that has registered, newest heartbeat first.
    pub(in crate::store) fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        self.run(|tx| {
            let rows = tx.query(
                "SELECT i.id, i.host, i.pid,
                        (EXTRACT(EPOCH FROM clock_timestamp() - i.heartbeat) * 1000)::BIGINT,
                        i.stopped IS NULL
                          AND i.heartbeat + i.lease_ms * INTERVAL '1 millisecond' > clock_timestamp(),
                        (SELECT COUNT(*) FROM jobs j WHERE j.active AND j.owner = i.id)
                   FROM instances i ORDER BY i.heartbeat DESC, i.id",
                &[],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(Instance {
                        id: r.try_get(0)?,
                        host: r.try_get(1)?,
                        pid: r.try_get(2)?,
                        heartbeat_age_ms: r.try_get(3)?,
                        alive: r.try_get(4)?,
                        jobs_held: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }

    /// The newest `n` audit records of every instance, oldest first.
    pub(in crate::store) fn audit_tail(
        &self,
        n: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let n = n as i64;
        self.run(move |tx| {
            let rows = tx.query(
                "SELECT instance, record FROM (SELECT * FROM audit ORDER BY at DESC, job_id DESC LIMIT $1) a
                 ORDER BY at, job_id",
                &[&n],
            )?;
            rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
        })
    }
}
