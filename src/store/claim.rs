//! Finding or creating the job for an input: `lookup` before reading it,
//! `claim` (duplicate detection by SHA-256, resuming, reserving the output
//! name, counting the first attempt) and `get`.
//!
//! Must not: decide outcomes or finish jobs (`decide`).

use super::*;

impl Store {
    pub fn get(&self, id: i64) -> Result<Option<Job>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.get(id);
        }
        self.run(move |c| Self::job(c, id))
    }

    /// What is known about this input before reading it: a decision whose
    /// finishing steps are still to run, or (for a regular file, `stat` =
    /// size and mtime) a finished job that kept it in place unchanged, so
    /// rescans skip it without reading it.
    pub async fn lookup(
        &self,
        inbox: &str,
        rel: &Path,
        stat: Option<(u64, i64)>,
    ) -> Result<Known, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.lookup(inbox, rel, stat).await;
        }
        let (inbox, rel) = (inbox.to_string(), rel.to_path_buf());
        self.call(move |c| {
            let decided = c
                .prepare_cached(
                    "SELECT * FROM jobs WHERE inbox = ?1 AND rel_path = ?2 AND active = 1
                       AND outcome IS NOT NULL",
                )?
                .query_row(params![inbox, path_blob(&rel)], Self::row)
                .optional()?;
            if let Some(job) = decided {
                return Ok(Known::Decided(Box::new(job)));
            }
            let Some((size, mtime_ns)) = stat else {
                return Ok(Known::Unknown);
            };
            let n: i64 = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM jobs WHERE inbox = ?1 AND rel_path = ?2 AND active = 0
                       AND size = ?3 AND mtime_ns = ?4 AND outcome IN ('succeeded','duplicate')
                       AND move_to IS NULL",
                )?
                .query_row(
                    params![inbox, path_blob(&rel), size as i64, mtime_ns],
                    |r| r.get(0),
                )?;
            Ok(if n > 0 {
                Known::DoneUnchanged
            } else {
                Known::Unknown
            })
        })
        .await
    }

    /// Find or create the job for this file and content (see
    /// [`ClaimRequest`]): a new job (not a duplicate) gets its output name
    /// reserved and its first attempt counted in the same commit; a resumed
    /// job without a reserved name gets one.
    pub async fn claim(&self, req: ClaimRequest) -> Result<Claim, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.claim(req).await;
        }
        self.call(move |c| {
            Self::claim_in(
                c,
                &req.inbox,
                &req.rel,
                &req.sha256,
                (req.size, req.mtime_ns),
                &req.provider,
                req.kept_in_place,
                req.output.as_ref(),
            )
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn claim_in(
        c: &Connection,
        inbox: &str,
        rel: &Path,
        sha: &str,
        (size, mtime_ns): (u64, i64),
        provider: &str,
        kept_in_place: bool,
        output: Option<&Naming>,
    ) -> OpResult<Claim> {
        let rel_b = path_blob(rel);
        let active: Option<Job> = c
            .prepare_cached("SELECT * FROM jobs WHERE inbox = ?1 AND rel_path = ?2 AND active = 1")?
            .query_row(params![inbox, rel_b], Self::row)
            .optional()?;
        if let Some(job) = active {
            if let Some(claim) = Self::claim_active(c, job, sha, (size, mtime_ns), output)? {
                return Ok(claim);
            }
        }
        if kept_in_place && Self::done_in_place(c, inbox, rel_b, sha, (size, mtime_ns))? {
            return Ok(Claim::AlreadyDone);
        }
        let busy: i64 = c
            .prepare_cached(
                "SELECT COUNT(*) FROM jobs WHERE sha256 = ?1 AND active = 1 AND outcome IS NULL",
            )?
            .query_row([sha], |r| r.get(0))?;
        if busy > 0 {
            return Ok(Claim::Busy);
        }
        let earlier = Self::earlier_success(c, sha, -1)?;
        c.prepare_cached(
            "INSERT INTO jobs (inbox, rel_path, sha256, size, mtime_ns, provider, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        )?
        .execute(params![inbox, rel_b, sha, size as i64, mtime_ns, provider, now_ms()])?;
        let id = c.last_insert_rowid();
        if let (None, Some(naming)) = (&earlier, output) {
            // The output name is reserved before any request is sent (after
            // a crash, a file there is this job's paid result), and the
            // request about to be sent is counted.
            Self::pick_name(c, id, NameColumn::Output, naming)?;
            c.prepare_cached("UPDATE jobs SET attempts = 1 WHERE id = ?1")?
                .execute([id])?;
        }
        let job = Self::job(c, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        Ok(match earlier {
            Some(earlier) => Claim::Duplicate {
                job,
                earlier: Box::new(earlier),
            },
            None => Claim::New(job),
        })
    }

    /// The active job already at this path: resumed (same content, not yet
    /// decided; a duplicate stays a duplicate), busy (decided, recovery owns
    /// it), or ended as replaced by new content (None: claim afresh).
    pub(super) fn claim_active(
        c: &Connection,
        mut job: Job,
        sha: &str,
        (size, mtime_ns): (u64, i64),
        output: Option<&Naming>,
    ) -> OpResult<Option<Claim>> {
        if job.sha256.as_deref() == Some(sha) && job.outcome.is_none() {
            c.execute(
                "UPDATE jobs SET size = ?2, mtime_ns = ?3, updated_ms = ?4 WHERE id = ?1",
                params![job.id, size as i64, mtime_ns, now_ms()],
            )?;
            // A job interrupted while it was being handled as a duplicate
            // stays a duplicate: resuming it as a new job would pay again.
            let earlier = Self::earlier_success(c, sha, job.id)?;
            if let (None, None, Some(naming)) = (&earlier, &job.output, output) {
                job.output = Some(Self::pick_name(c, job.id, NameColumn::Output, naming)?);
            }
            return Ok(Some(match earlier {
                Some(earlier) => Claim::Duplicate {
                    job,
                    earlier: Box::new(earlier),
                },
                None => Claim::Resume(job),
            }));
        }
        if job.outcome.is_some() {
            // Decided but not finished: recovery owns it.
            return Ok(Some(Claim::Busy));
        }
        // The file was replaced by other content before the old job ended.
        c.execute(
            "UPDATE jobs SET active = 0, outcome = 'vanished', reason = 'replaced by new content',
                    updated_ms = ?2 WHERE id = ?1",
            params![job.id, now_ms()],
        )?;
        Ok(None)
    }

    /// Whether this content at this path already finished and was kept in
    /// place (its size and mtime are refreshed then).
    pub(super) fn done_in_place(
        c: &Connection,
        inbox: &str,
        rel_b: &[u8],
        sha: &str,
        (size, mtime_ns): (u64, i64),
    ) -> OpResult<bool> {
        let done: i64 = c.query_row(
            "SELECT COUNT(*) FROM jobs WHERE inbox = ?1 AND rel_path = ?2 AND sha256 = ?3
               AND active = 0 AND outcome IN ('succeeded','duplicate')",
            params![inbox, rel_b, sha],
            |r| r.get(0),
        )?;
        if done > 0 {
            // Refresh size/mtime so the next rescan skips without reading.
            c.execute(
                "UPDATE jobs SET size = ?4, mtime_ns = ?5 WHERE inbox = ?1 AND rel_path = ?2
                   AND sha256 = ?3 AND active = 0 AND outcome IN ('succeeded','duplicate')",
                params![inbox, rel_b, sha, size as i64, mtime_ns],
            )?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The latest success for this content (other than job `not`) whose
    /// cut-out is still on disk.
    pub(super) fn earlier_success(c: &Connection, sha: &str, not: i64) -> OpResult<Option<Job>> {
        let earlier: Option<Job> = c
            .prepare_cached(
                "SELECT * FROM jobs WHERE sha256 = ?1 AND outcome = 'succeeded' AND output IS NOT NULL
                   AND id != ?2 ORDER BY id DESC LIMIT 1",
            )?
            .query_row(params![sha, not], Self::row)
            .optional()?;
        Ok(earlier.filter(|j| j.output.as_deref().is_some_and(Path::exists)))
    }

    /// A job for a file rejected before it could be hashed (or claimed).
    pub async fn insert_untracked(
        &self,
        inbox: &str,
        rel: &Path,
        sha: Option<&str>,
        size: Option<u64>,
        mtime_ns: Option<i64>,
    ) -> Result<Job, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.insert_untracked(inbox, rel, sha, size, mtime_ns).await;
        }
        let (inbox, rel, sha) = (
            inbox.to_string(),
            rel.to_path_buf(),
            sha.map(str::to_string),
        );
        self.call(move |c| {
            let now = now_ms();
            // An earlier undecided row for this path (e.g. a file that turned
            // corrupt) yields to the new one.
            c.execute(
                "UPDATE jobs SET active = 0, outcome = 'vanished', updated_ms = ?3
                   WHERE inbox = ?1 AND rel_path = ?2 AND active = 1 AND outcome IS NULL",
                params![inbox, path_blob(&rel), now],
            )?;
            c.execute(
                "INSERT INTO jobs (inbox, rel_path, sha256, size, mtime_ns, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![
                    inbox,
                    path_blob(&rel),
                    sha,
                    size.map(|s| s as i64),
                    mtime_ns,
                    now
                ],
            )?;
            let id = c.last_insert_rowid();
            Ok(Self::job(c, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?)
        })
        .await
    }

    pub async fn set_attempts(&self, id: i64, attempts: u32) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.set_attempts(id, attempts).await;
        }
        self.call(move |c| {
            c.prepare_cached("UPDATE jobs SET attempts = ?2, updated_ms = ?3 WHERE id = ?1")?
                .execute((id, attempts as i64, now_ms()))?;
            Ok(())
        })
        .await
    }

    pub async fn set_remote_job(&self, id: i64, remote: &str) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.set_remote_job(id, remote).await;
        }
        let remote = remote.to_string();
        self.call(move |c| {
            c.prepare_cached(
                "UPDATE jobs SET remote_job = ?2, remote_since_ms = ?3, updated_ms = ?3 WHERE id = ?1",
            )?
            .execute(params![id, remote, now_ms()])?;
            Ok(())
        })
        .await
    }

    /// Pick the first free name of `naming` and store it in `col` of job
    /// `id` (inside the batch's transaction).
    pub(super) fn pick_name(
        c: &Connection,
        id: i64,
        col: NameColumn,
        naming: &Naming,
    ) -> OpResult<PathBuf> {
        let (held_sql, set_sql) = match col {
            NameColumn::Output => (
                "SELECT COUNT(*) FROM jobs WHERE output = ?1 AND id != ?2 AND active = 1",
                "UPDATE jobs SET output = ?2, updated_ms = ?3 WHERE id = ?1",
            ),
            NameColumn::MoveTo => (
                "SELECT COUNT(*) FROM jobs WHERE move_to = ?1 AND id != ?2 AND active = 1",
                "UPDATE jobs SET move_to = ?2, updated_ms = ?3 WHERE id = ?1",
            ),
        };
        let mut held = c.prepare_cached(held_sql)?;
        let group = match &naming.all_names {
            Some(all) => Some((all, Self::names_held(c, id, all)?, Self::job(c, id)?)),
            None => None,
        };
        let mut n = 1;
        let chosen = loop {
            let p = (naming.candidate)(&naming.base, n);
            let taken: i64 = held.query_row(params![path_blob(&p), id], |r| r.get(0))?;
            let free = |q: &Path| std::fs::symlink_metadata(q).is_err();
            let group_free = match &group {
                Some((all, others, Some(job))) => all(&job.inbox, &job.rel_path, &p)
                    .iter()
                    .all(|q| free(q) && !others.contains(q)),
                _ => true,
            };
            if taken == 0 && free(&p) && group_free && (naming.also_free)(&p) {
                break p;
            }
            n += 1;
        };
        c.prepare_cached(set_sql)?
            .execute(params![id, path_blob(&chosen), now_ms()])?;
        Ok(chosen)
    }

    /// Every name held by the other unfinished jobs with a reserved output,
    /// as `all` expands each (a handful: only jobs in flight are active).
    fn names_held(
        c: &Connection,
        id: i64,
        all: &AllNames,
    ) -> OpResult<std::collections::HashSet<PathBuf>> {
        let mut stmt = c.prepare_cached(
            "SELECT inbox, rel_path, output FROM jobs
               WHERE active = 1 AND output IS NOT NULL AND id != ?1",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                blob_path(r.get(1)?),
                blob_path(r.get(2)?),
            ))
        })?;
        let mut held = std::collections::HashSet::new();
        for row in rows {
            let (inbox, rel, out) = row?;
            held.extend(all(&inbox, &rel, &out));
        }
        Ok(held)
    }

    /// The latest successes for this content whose first output is still on
    /// disk (at most `limit`, newest first): a duplicate picks the one whose
    /// inbox wrote the same outputs.
    pub async fn successes(&self, sha: &str, limit: u32) -> Result<Vec<Job>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.successes(sha, limit).await;
        }
        let sha = sha.to_string();
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT * FROM jobs WHERE sha256 = ?1 AND outcome = 'succeeded'
                   AND output IS NOT NULL ORDER BY id DESC LIMIT ?2",
            )?;
            let jobs = stmt
                .query_map(params![sha, limit], Self::row)?
                .collect::<rusqlite::Result<Vec<Job>>>()?;
            Ok(jobs
                .into_iter()
                .filter(|j| j.output.as_deref().is_some_and(Path::exists))
                .collect())
        })
        .await
    }

    /// Reserve an output name for job `id` (a duplicate that needs its own
    /// copy of the earlier cut-out). Returns the reserved path.
    pub async fn reserve_output(&self, id: i64, naming: Naming) -> Result<PathBuf, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.reserve_output(id, naming).await;
        }
        self.call(move |c| Self::pick_name(c, id, NameColumn::Output, &naming))
            .await
    }

    /// Record the decision in one commit: the outcome, where the input goes
    /// (`move_to`: a free name is reserved; None for delete/keep) and the
    /// audit record to write, built by `record` once that name is known (on
    /// PostgreSQL `record` runs again when the transaction is retried after
    /// a serialization failure or deadlock: it must only build the text).
    /// From here on the job is finished by `finish_job`, also after a crash.
    /// Returns the reserved input target.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide(
        &self,
        id: i64,
        outcome: Outcome,
        output: Option<PathBuf>,
        reason_code: Option<Code>,
        reason: Option<String>,
        move_to: Option<Naming>,
        mut record: impl FnMut(Option<&Path>) -> Result<String, String> + Send + 'static,
    ) -> Result<Option<PathBuf>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg
                .decide(id, outcome, output, reason_code, reason, move_to, record)
                .await;
        }
        self.call(move |c| {
            let target = match &move_to {
                Some(naming) => Some(Self::pick_name(c, id, NameColumn::MoveTo, naming)?),
                None => None,
            };
            let record = record(target.as_deref()).map_err(OpError::Record)?;
            c.prepare_cached(
                "UPDATE jobs SET outcome = ?2, output = COALESCE(?3, output), reason_code = ?4,
                        reason = ?5, record = ?6, updated_ms = ?7 WHERE id = ?1",
            )?
            .execute(params![
                id,
                outcome.as_str(),
                output.as_deref().map(path_blob),
                reason_code.map(Code::as_str),
                reason,
                record,
                now_ms()
            ])?;
            Ok(target)
        })
        .await
    }
}
