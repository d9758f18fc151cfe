//! A job's later steps and what recovery and `status` ask: marking the
//! audit line written, finishing, abandoning, the jobs a crash left
//! decided or undecided, counts by outcome and the last errors.
//!
//! Must not: claim jobs or reserve names (`claim`).

use super::*;

impl Store {
    /// The audit line is written (used when a later finishing step fails,
    /// so the retry need not search the audit file).
    pub fn mark_audited(&self, id: i64) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.mark_audited(id);
        }
        self.exec(
            "UPDATE jobs SET audited = 1, updated_ms = ?2 WHERE id = ?1",
            (id, now_ms()),
        )
    }

    /// The job is done. [`Audit::Written`]: its audit line is written (a
    /// crash between that append and this commit is covered by recovery's
    /// search of the audit file).
    pub fn finish(&self, id: i64, audit: Audit) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.finish(id, audit);
        }
        let audited = i64::from(audit == Audit::Written);
        self.exec(
            "UPDATE jobs SET active = 0, audited = MAX(audited, ?2), updated_ms = ?3 WHERE id = ?1",
            (id, audited, now_ms()),
        )
    }

    /// Keep the audit record as it is written (`finish` took `moved_to` out
    /// of it: the input was not moved), so the `audit` table of the shared
    /// state says what the file says. Only before the line is written.
    pub fn set_record(&self, id: i64, record: &str) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.set_record(id, record);
        }
        self.exec(
            "UPDATE jobs SET record = ?2 WHERE id = ?1 AND audited = 0",
            (id, record.to_string()),
        )
    }

    /// Take back a rejection or failure whose finishing steps have not
    /// taken effect (its input changed after it was judged): the job ends
    /// as `withdrawn`, with no audit record to write and no target held, so
    /// it is neither counted nor listed as an error, and recovery leaves it
    /// alone. A job whose audit line is written is not touched.
    pub fn withdraw(&self, id: i64) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.withdraw(id);
        }
        self.exec(
            "UPDATE jobs SET active = 0, outcome = 'withdrawn', record = NULL, move_to = NULL,
                    updated_ms = ?2
               WHERE id = ?1 AND active = 1 AND outcome IN ('rejected','failed') AND audited = 0",
            (id, now_ms()),
        )
    }

    /// Drop an undecided job whose input is gone (nothing to resume).
    pub fn abandon(&self, id: i64, why: &str) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.abandon(id, why);
        }
        let why = why.to_string();
        self.run(move |c| {
            c.execute(
                "UPDATE jobs SET active = 0, outcome = 'vanished', reason = ?2, updated_ms = ?3
                   WHERE id = ?1 AND outcome IS NULL",
                params![id, why, now_ms()],
            )?;
            Ok(())
        })
    }

    /// Jobs that are decided but not finished (a crash between steps).
    pub fn decided_unfinished(&self) -> Result<Vec<Job>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.decided_unfinished();
        }
        self.query(
            "SELECT * FROM jobs WHERE active = 1 AND outcome IS NOT NULL ORDER BY id",
            None,
        )
    }

    /// Inputs (inbox name, relative path) whose job in progress remembers
    /// a remote job: paid for, its result still to collect. At most 10 000.
    pub async fn remote_jobs_open(&self) -> Result<Vec<(String, PathBuf)>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.remote_jobs_open().await;
        }
        self.call(|c| {
            let mut st = c.prepare_cached(
                "SELECT inbox, rel_path FROM jobs WHERE active = 1 AND outcome IS NULL
                   AND remote_job IS NOT NULL LIMIT 10000",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, blob_path(r.get(1)?))))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Active jobs of instances that died (their lease ran out) in the
    /// named inboxes, oldest first, at most `limit`; nothing is taken over
    /// (always empty on SQLite: one instance, its own jobs are recovered at
    /// start).
    pub async fn orphans(&self, inboxes: &[String], limit: usize) -> Result<Vec<Job>, StoreError> {
        match &self.pg {
            Some(pg) => pg.orphans(inboxes.to_vec(), limit).await,
            None => Ok(Vec::new()),
        }
    }

    /// Take a dead instance's job over now (see [`Store::orphans`]): it is
    /// this instance's from here on, fenced at a new epoch. None when it is
    /// no longer an orphan (another instance took it, or it ended).
    pub async fn adopt(&self, id: i64) -> Result<Option<Job>, StoreError> {
        match &self.pg {
            Some(pg) => pg.adopt(id).await,
            None => Ok(None),
        }
    }

    /// Jobs in progress (not decided).
    pub fn undecided(&self) -> Result<Vec<Job>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.undecided();
        }
        self.query(
            "SELECT * FROM jobs WHERE active = 1 AND outcome IS NULL ORDER BY id",
            None,
        )
    }

    /// Counts of finished jobs by outcome.
    pub fn counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.counts();
        }
        self.run(|c| {
            let mut st = c.prepare(
                "SELECT COALESCE(outcome, 'in-progress'), COUNT(*) FROM jobs
                 GROUP BY COALESCE(outcome, 'in-progress') ORDER BY 1",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// The most recent rejections and failures.
    pub fn last_errors(&self, n: usize) -> Result<Vec<Job>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.last_errors(n);
        }
        self.query(
            "SELECT * FROM jobs WHERE outcome IN ('rejected','failed') ORDER BY updated_ms DESC, id DESC LIMIT ?1",
            Some(n as i64),
        )
    }

    pub(super) fn exec<P: rusqlite::Params + Send + 'static>(
        &self,
        sql: &'static str,
        p: P,
    ) -> Result<(), StoreError> {
        self.run(move |c| {
            c.prepare_cached(sql)?.execute(p)?;
            Ok(())
        })
    }

    pub(super) fn query(
        &self,
        sql: &'static str,
        arg: Option<i64>,
    ) -> Result<Vec<Job>, StoreError> {
        self.run(move |c| {
            let mut st = c.prepare(sql)?;
            let rows = match arg {
                Some(a) => st.query_map([a], Self::row)?.collect::<Result<_, _>>()?,
                None => st.query_map([], Self::row)?.collect::<Result<_, _>>()?,
            };
            Ok(rows)
        })
    }
}
