//! Claims on PostgreSQL: `lookup`, `claim` (exactly one instance takes a
//! file: `INSERT … ON CONFLICT DO NOTHING`; a dead owner's job is taken
//! over and resumed), untracked rows, name reservations (serialised across
//! instances by advisory locks on the candidate name) and `decide`.
//!
//! Must not: finish jobs (`decide.rs`).

use std::path::{Path, PathBuf};

use postgres::Transaction;

use super::schema::{self, OWNER_DEAD};
use super::{fence, Pg, PgOpError, PgResult};
use crate::job::{Code, Outcome};
use crate::store::types::{now_ms, path_blob, Claim, ClaimRequest, Job, Known, NameColumn, Naming};

/// Take job `id` over from its dead owner: owner = `me`, epoch + 1.
/// Returns the new epoch, or None when the owner is alive (or it is ours).
fn take_over(tx: &mut Transaction<'_>, me: &str, id: i64) -> PgResult<Option<i64>> {
    let sql = format!(
        "UPDATE jobs SET owner = $2, epoch = epoch + 1 WHERE id = $1 AND active
           AND owner IS DISTINCT FROM $2 AND {OWNER_DEAD} RETURNING epoch"
    );
    Ok(tx
        .query_opt(&sql, &[&id, &me])?
        .map(|r| r.try_get(0))
        .transpose()?)
}

/// Whether this instance may act on a job owned by `owner` (its own, or
/// taken over now); the epoch to hold it at.
fn mine_or_take(
    tx: &mut Transaction<'_>,
    me: &str,
    id: i64,
    owner: Option<&str>,
    epoch: i64,
) -> PgResult<Option<i64>> {
    if owner == Some(me) {
        return Ok(Some(epoch));
    }
    take_over(tx, me, id)
}

impl Pg {
    pub(in crate::store) fn get(
        &self,
        id: i64,
    ) -> Result<Option<Job>, crate::store::types::StoreError> {
        self.run(move |tx| schema::job(tx, id))
    }

    pub(in crate::store) async fn lookup(
        self: &std::sync::Arc<Self>,
        inbox: &str,
        rel: &Path,
        stat: Option<(u64, i64)>,
    ) -> Result<Known, crate::store::types::StoreError> {
        let (inbox, rel, me, pg) = (
            inbox.to_string(),
            rel.to_path_buf(),
            self.me.clone(),
            self.clone(),
        );
        self.call(move |tx| {
            let decided = tx.query_opt(
                "SELECT * FROM jobs WHERE inbox = $1 AND rel_path = $2 AND active
                   AND outcome IS NOT NULL FOR UPDATE",
                &[&inbox, &path_blob(&rel)],
            )?;
            if let Some(r) = decided {
                let (job, owner, epoch) = schema::owned(&r)?;
                let me = me.clone().ok_or(PgOpError::ReadOnly)?;
                // Another live instance is finishing it: not ours to touch.
                return Ok(
                    match mine_or_take(tx, &me, job.id, owner.as_deref(), epoch)? {
                        Some(e) => {
                            pg.hold(job.id, e);
                            Known::Decided(Box::new(job))
                        }
                        None => Known::Unknown,
                    },
                );
            }
            let Some((size, mtime_ns)) = stat else {
                return Ok(Known::Unknown);
            };
            let n: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM jobs WHERE inbox = $1 AND rel_path = $2 AND NOT active
                       AND size = $3 AND mtime_ns = $4 AND outcome IN ('succeeded','duplicate')
                       AND move_to IS NULL",
                    &[&inbox, &path_blob(&rel), &(size as i64), &mtime_ns],
                )?
                .try_get(0)?;
            Ok(if n > 0 {
                Known::DoneUnchanged
            } else {
                Known::Unknown
            })
        })
        .await
    }

    pub(in crate::store) async fn claim(
        self: &std::sync::Arc<Self>,
        req: ClaimRequest,
    ) -> Result<Claim, crate::store::types::StoreError> {
        let pg = self.clone();
        self.call(move |tx| {
            let me = pg.me()?;
            let (claim, epoch) = claim_in(tx, &me, &req)?;
            if let (Some(e), Claim::New(j) | Claim::Resume(j) | Claim::Duplicate { job: j, .. }) =
                (epoch, &claim)
            {
                pg.hold(j.id, e);
            }
            Ok(claim)
        })
        .await
    }

    pub(in crate::store) async fn insert_untracked(
        self: &std::sync::Arc<Self>,
        inbox: &str,
        rel: &Path,
        sha: Option<&str>,
        size: Option<u64>,
        mtime_ns: Option<i64>,
    ) -> Result<Job, crate::store::types::StoreError> {
        let (inbox, rel, sha, pg) = (
            inbox.to_string(),
            rel.to_path_buf(),
            sha.map(str::to_string),
            self.clone(),
        );
        self.call(move |tx| {
            let me = pg.me()?;
            let now = now_ms();
            let rel_b = path_blob(&rel);
            // An earlier undecided row for this path yields, unless a live
            // instance holds it.
            let sql = format!(
                "UPDATE jobs SET active = FALSE, outcome = 'vanished', updated_ms = $3
                   WHERE inbox = $1 AND rel_path = $2 AND active AND outcome IS NULL
                     AND (owner = $4 OR {OWNER_DEAD})"
            );
            tx.execute(&sql, &[&inbox, &rel_b, &now, &me])?;
            let r = tx.query_one(
                "INSERT INTO jobs (inbox, rel_path, sha256, size, mtime_ns, created_ms, updated_ms, owner)
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7) RETURNING *",
                &[&inbox, &rel_b, &sha, &size.map(|s| s as i64), &mtime_ns, &now, &me],
            )?;
            let (job, _, epoch) = schema::owned(&r)?;
            pg.hold(job.id, epoch);
            Ok(job)
        })
        .await
    }

    /// A fenced update of one job: `sql` with `$1` = id and `params` after.
    pub(in crate::store) fn fenced_exec(
        self: &std::sync::Arc<Self>,
        id: i64,
        sql: &'static str,
        params: Vec<Box<dyn postgres::types::ToSql + Sync + Send>>,
    ) -> impl FnMut(&mut Transaction<'_>) -> PgResult<u64> + Send + 'static {
        let pg = self.clone();
        move |tx| {
            fence(tx, &pg.me()?, pg.held_epoch(id), id)?;
            let mut all: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&id];
            all.extend(
                params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn postgres::types::ToSql + Sync)),
            );
            Ok(tx.execute(sql, &all)?)
        }
    }

    pub(in crate::store) async fn set_attempts(
        self: &std::sync::Arc<Self>,
        id: i64,
        attempts: u32,
    ) -> Result<(), crate::store::types::StoreError> {
        let f = self.fenced_exec(
            id,
            "UPDATE jobs SET attempts = $2, updated_ms = $3 WHERE id = $1",
            vec![Box::new(i64::from(attempts)), Box::new(now_ms())],
        );
        self.call(f).await.map(|_| ())
    }

    pub(in crate::store) async fn set_remote_job(
        self: &std::sync::Arc<Self>,
        id: i64,
        remote: &str,
    ) -> Result<(), crate::store::types::StoreError> {
        let f = self.fenced_exec(
            id,
            "UPDATE jobs SET remote_job = $2, remote_since_ms = $3, updated_ms = $3 WHERE id = $1",
            vec![Box::new(remote.to_string()), Box::new(now_ms())],
        );
        self.call(f).await.map(|_| ())
    }

    pub(in crate::store) async fn reserve_output(
        self: &std::sync::Arc<Self>,
        id: i64,
        naming: Naming,
    ) -> Result<PathBuf, crate::store::types::StoreError> {
        let pg = self.clone();
        self.call(move |tx| {
            fence(tx, &pg.me()?, pg.held_epoch(id), id)?;
            pick_name(tx, id, NameColumn::Output, &naming)
        })
        .await
    }

    /// The latest successes for this content whose first output is still
    /// on disk (at most `limit`, newest first).
    pub(in crate::store) async fn successes(
        &self,
        sha: &str,
        limit: u32,
    ) -> Result<Vec<Job>, crate::store::types::StoreError> {
        let (sha, limit) = (sha.to_string(), i64::from(limit));
        self.call(move |tx| {
            let rows = tx.query(
                "SELECT * FROM jobs WHERE sha256 = $1 AND outcome = 'succeeded'
                   AND output IS NOT NULL ORDER BY id DESC LIMIT $2",
                &[&sha, &limit],
            )?;
            let jobs = rows
                .iter()
                .map(schema::row)
                .collect::<PgResult<Vec<Job>>>()?;
            Ok(jobs
                .into_iter()
                .filter(|j| j.output.as_deref().is_some_and(Path::exists))
                .collect())
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(in crate::store) async fn decide(
        self: &std::sync::Arc<Self>,
        id: i64,
        outcome: Outcome,
        output: Option<PathBuf>,
        reason_code: Option<Code>,
        reason: Option<String>,
        move_to: Option<Naming>,
        mut record: impl FnMut(Option<&Path>) -> Result<String, String> + Send + 'static,
    ) -> Result<Option<PathBuf>, crate::store::types::StoreError> {
        let pg = self.clone();
        self.call(move |tx| {
            fence(tx, &pg.me()?, pg.held_epoch(id), id)?;
            let target = match &move_to {
                Some(naming) => Some(pick_name(tx, id, NameColumn::MoveTo, naming)?),
                None => None,
            };
            let record = record(target.as_deref()).map_err(PgOpError::Record)?;
            tx.execute(
                "UPDATE jobs SET outcome = $2, output = COALESCE($3, output), reason_code = $4,
                        reason = $5, record = $6, updated_ms = $7 WHERE id = $1",
                &[
                    &id,
                    &outcome.as_str(),
                    &output.as_deref().map(path_blob),
                    &reason_code.map(Code::as_str),
                    &reason,
                    &record,
                    &now_ms(),
                ],
            )?;
            Ok(target)
        })
        .await
    }
}

/// The claim itself (see `Store::claim`), with the epoch this instance now
/// holds the job at (None: no job to hold).
fn claim_in(
    tx: &mut Transaction<'_>,
    me: &str,
    req: &ClaimRequest,
) -> PgResult<(Claim, Option<i64>)> {
    let rel_b = path_blob(&req.rel);
    let active = tx.query_opt(
        "SELECT * FROM jobs WHERE inbox = $1 AND rel_path = $2 AND active FOR UPDATE",
        &[&req.inbox, &rel_b],
    )?;
    if let Some(r) = active {
        let (job, owner, epoch) = schema::owned(&r)?;
        if let Some(done) = claim_active(tx, me, job, owner.as_deref(), epoch, req)? {
            return Ok(done);
        }
    }
    let (size, mtime) = (req.size as i64, req.mtime_ns);
    if req.kept_in_place {
        let n = tx.execute(
            "UPDATE jobs SET size = $4, mtime_ns = $5 WHERE inbox = $1 AND rel_path = $2
               AND sha256 = $3 AND NOT active AND outcome IN ('succeeded','duplicate')",
            &[&req.inbox, &rel_b, &req.sha256, &size, &mtime],
        )?;
        if n > 0 {
            return Ok((Claim::AlreadyDone, None));
        }
    }
    let busy: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM jobs WHERE sha256 = $1 AND active AND outcome IS NULL",
            &[&req.sha256],
        )?
        .try_get(0)?;
    if busy > 0 {
        return Ok((Claim::Busy, None));
    }
    let earlier = earlier_success(tx, &req.sha256, -1)?;
    // Exactly one instance inserts; the others wait for its commit, then
    // insert nothing and hear Busy.
    let inserted = tx.query_opt(
        "INSERT INTO jobs (inbox, rel_path, sha256, size, mtime_ns, provider, created_ms, updated_ms, owner)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) ON CONFLICT DO NOTHING RETURNING id, epoch",
        &[&req.inbox, &rel_b, &req.sha256, &size, &mtime, &req.provider, &now_ms(), &me],
    )?;
    let Some(r) = inserted else {
        return Ok((Claim::Busy, None));
    };
    let (id, epoch): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
    if let (None, Some(naming)) = (&earlier, &req.output) {
        pick_name(tx, id, NameColumn::Output, naming)?;
        tx.execute("UPDATE jobs SET attempts = 1 WHERE id = $1", &[&id])?;
    }
    let job = schema::job(tx, id)?
        .ok_or_else(|| PgOpError::Record(format!("job {id} vanished inside its own claim")))?;
    Ok((
        match earlier {
            Some(earlier) => Claim::Duplicate {
                job,
                earlier: Box::new(earlier),
            },
            None => Claim::New(job),
        },
        Some(epoch),
    ))
}

/// The active job at the claimed path (its row locked): resumed when ours
/// or its owner is dead, Busy while a live instance holds it or it is
/// decided, or ended as replaced by new content (None: claim afresh).
fn claim_active(
    tx: &mut Transaction<'_>,
    me: &str,
    mut job: Job,
    owner: Option<&str>,
    epoch: i64,
    req: &ClaimRequest,
) -> PgResult<Option<(Claim, Option<i64>)>> {
    if job.outcome.is_some() {
        return Ok(Some((Claim::Busy, None)));
    }
    let Some(epoch) = mine_or_take(tx, me, job.id, owner, epoch)? else {
        return Ok(Some((Claim::Busy, None)));
    };
    if job.sha256.as_deref() == Some(req.sha256.as_str()) {
        tx.execute(
            "UPDATE jobs SET size = $2, mtime_ns = $3, updated_ms = $4 WHERE id = $1",
            &[&job.id, &(req.size as i64), &req.mtime_ns, &now_ms()],
        )?;
        let earlier = earlier_success(tx, &req.sha256, job.id)?;
        if let (None, None, Some(naming)) = (&earlier, &job.output, &req.output) {
            job.output = Some(pick_name(tx, job.id, NameColumn::Output, naming)?);
        }
        let claim = match earlier {
            Some(earlier) => Claim::Duplicate {
                job,
                earlier: Box::new(earlier),
            },
            None => Claim::Resume(job),
        };
        return Ok(Some((claim, Some(epoch))));
    }
    tx.execute(
        "UPDATE jobs SET active = FALSE, outcome = 'vanished', reason = 'replaced by new content',
                updated_ms = $2 WHERE id = $1",
        &[&job.id, &now_ms()],
    )?;
    Ok(None)
}

/// The latest success for this content (other than job `not`) whose
/// cut-out is still on disk.
fn earlier_success(tx: &mut Transaction<'_>, sha: &str, not: i64) -> PgResult<Option<Job>> {
    let r = tx.query_opt(
        "SELECT * FROM jobs WHERE sha256 = $1 AND outcome = 'succeeded' AND output IS NOT NULL
           AND id != $2 ORDER BY id DESC LIMIT 1",
        &[&sha, &not],
    )?;
    let earlier = r.map(|r| schema::row(&r)).transpose()?;
    Ok(earlier.filter(|j| j.output.as_deref().is_some_and(Path::exists)))
}

/// Pick the first free name of `naming` for job `id`. Each candidate is
/// locked (transaction advisory lock on its name) before it is checked, so
/// two instances never reserve the same name.
fn pick_name(
    tx: &mut Transaction<'_>,
    id: i64,
    col: NameColumn,
    naming: &Naming,
) -> PgResult<PathBuf> {
    let (held_sql, set_sql) = match col {
        NameColumn::Output => (
            "SELECT COUNT(*) FROM jobs WHERE output = $1 AND id != $2 AND active",
            "UPDATE jobs SET output = $2, updated_ms = $3 WHERE id = $1",
        ),
        NameColumn::MoveTo => (
            "SELECT COUNT(*) FROM jobs WHERE move_to = $1 AND id != $2 AND active",
            "UPDATE jobs SET move_to = $2, updated_ms = $3 WHERE id = $1",
        ),
    };
    let group = match &naming.all_names {
        Some(all) => Some((all, names_held(tx, id, all)?, schema::job(tx, id)?)),
        None => None,
    };
    let free = |q: &Path| std::fs::symlink_metadata(q).is_err();
    let mut n = 1;
    let chosen = loop {
        let p = (naming.candidate)(&naming.base, n);
        let b = path_blob(&p);
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(encode($1, 'hex'), 0))",
            &[&b],
        )?;
        let taken: i64 = tx.query_one(held_sql, &[&b, &id])?.try_get(0)?;
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
    tx.execute(set_sql, &[&id, &path_blob(&chosen), &now_ms()])?;
    Ok(chosen)
}

/// Every name held by the other unfinished jobs with a reserved output, as
/// `all` expands each (only jobs in flight are active: a handful).
fn names_held(
    tx: &mut Transaction<'_>,
    id: i64,
    all: &crate::store::types::AllNames,
) -> PgResult<std::collections::HashSet<PathBuf>> {
    let rows = tx.query(
        "SELECT * FROM jobs WHERE active AND output IS NOT NULL AND id != $1",
        &[&id],
    )?;
    let mut held = std::collections::HashSet::new();
    for r in &rows {
        let job = schema::row(r)?;
        if let Some(out) = &job.output {
            held.extend(all(&job.inbox, &job.rel_path, out));
        }
    }
    Ok(held)
}
