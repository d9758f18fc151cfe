//! The review page's durable state: one mark per job (approved or
//! flagged) and the action log. An action that moves files (retry, redo,
//! confirm) is written here as `pending` BEFORE any file moves, and ends
//! `done` or `abandoned`; recovery completes what a crash left pending.
//!
//! On the shared PostgreSQL state the marks live in `pg/marks.rs`; there
//! is no action log there (retry, redo and confirm are refused on it), so
//! its lists are empty.
//!
//! Must not: touch files or decide what an action does (`review::actions`).

use serde::Serialize;

use super::*;

/// A reviewer's verdict on a job's cut-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mark {
    Approved,
    Flagged,
}

impl Mark {
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Approved => "approved",
            Mark::Flagged => "flagged",
        }
    }
    pub fn parse(s: &str) -> Option<Mark> {
        match s {
            "approved" => Some(Mark::Approved),
            "flagged" => Some(Mark::Flagged),
            _ => None,
        }
    }
}

/// What a logged action did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    Retry,
    Redo,
    Confirm,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Retry => "retry",
            ActionKind::Redo => "redo",
            ActionKind::Confirm => "confirm",
        }
    }
    pub fn parse(s: &str) -> Option<ActionKind> {
        match s {
            "retry" => Some(ActionKind::Retry),
            "redo" => Some(ActionKind::Redo),
            "confirm" => Some(ActionKind::Confirm),
            _ => None,
        }
    }
}

/// Where an action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionState {
    /// Recorded, files may be half-way: recovery completes or undoes it.
    Pending,
    Done,
    /// Given up (its effects undone, or none took place).
    Abandoned,
}

impl ActionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Pending => "pending",
            ActionState::Done => "done",
            ActionState::Abandoned => "abandoned",
        }
    }
    fn parse(s: &str) -> ActionState {
        match s {
            "pending" => ActionState::Pending,
            "done" => ActionState::Done,
            _ => ActionState::Abandoned,
        }
    }
}

/// One row of `actions`.
#[derive(Debug, Clone)]
pub struct Action {
    pub id: i64,
    pub kind: ActionKind,
    pub job: i64,
    pub state: ActionState,
    pub by: String,
    pub provider: Option<String>,
    /// Retry: where the input was; redo: unused.
    pub src: Option<PathBuf>,
    /// Retry: where the input goes back to.
    pub dst: Option<PathBuf>,
    /// JSON the action keeps for itself (redo: outputs and kept copies).
    pub detail: Option<String>,
    pub created_ms: i64,
}

/// A mark with what `status` and the exports show beside it.
#[derive(Debug, Clone, Serialize)]
pub struct MarkRow {
    pub job: i64,
    pub mark: Mark,
    pub by: String,
    pub at_ms: i64,
    pub inbox: String,
    pub input: String,
    pub outcome: Option<String>,
    pub output: Option<String>,
}

impl Store {
    /// Set (or with None clear) job `id`'s mark.
    pub async fn set_mark(&self, id: i64, mark: Option<Mark>, by: &str) -> Result<(), StoreError> {
        let by = by.to_string();
        if let Some(pg) = &self.pg {
            return pg.set_mark(id, mark, by).await;
        }
        self.call(move |c| {
            match mark {
                Some(m) => c.execute(
                    "INSERT INTO marks (job, mark, by_whom, at_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(job) DO UPDATE SET mark = ?2, by_whom = ?3, at_ms = ?4",
                    params![id, m.as_str(), by, now_ms()],
                )?,
                None => c.execute("DELETE FROM marks WHERE job = ?1", [id])?,
            };
            Ok(())
        })
        .await
    }

    /// Every mark, newest first (at most `limit`), with its job's input.
    pub fn marks(&self, limit: i64) -> Result<Vec<MarkRow>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.marks(limit);
        }
        self.run(move |c| {
            let mut st = c.prepare(
                "SELECT m.job, m.mark, m.by_whom, m.at_ms, j.inbox, j.rel_path, j.outcome, j.output
                   FROM marks m JOIN jobs j ON j.id = m.job
                   ORDER BY m.at_ms DESC, m.job DESC LIMIT ?1",
            )?;
            let rows = st.query_map([limit], |r| {
                Ok(MarkRow {
                    job: r.get(0)?,
                    mark: Mark::parse(&r.get::<_, String>(1)?).unwrap_or(Mark::Flagged),
                    by: r.get(2)?,
                    at_ms: r.get(3)?,
                    inbox: r.get(4)?,
                    input: blob_path(r.get(5)?).to_string_lossy().into_owned(),
                    outcome: r.get(6)?,
                    output: r
                        .get::<_, Option<Vec<u8>>>(7)?
                        .map(|b| blob_path(b).to_string_lossy().into_owned()),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// The marks of the listed jobs (those that have one).
    pub fn marks_for(&self, jobs: Vec<i64>) -> Result<Vec<(i64, Mark)>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.marks_for(jobs);
        }
        self.run(move |c| {
            let mut st = c.prepare_cached("SELECT mark FROM marks WHERE job = ?1")?;
            let mut out = Vec::new();
            for j in jobs {
                let m: Option<String> = st.query_row([j], |r| r.get(0)).optional()?;
                if let Some(m) = m.as_deref().and_then(Mark::parse) {
                    out.push((j, m));
                }
            }
            Ok(out)
        })
    }

    /// The mark of one job.
    pub fn mark_of(&self, id: i64) -> Result<Option<Mark>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.mark_of(id);
        }
        self.run(move |c| {
            let m: Option<String> = c
                .prepare_cached("SELECT mark FROM marks WHERE job = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?;
            Ok(m.as_deref().and_then(Mark::parse))
        })
    }

    /// Record an action's intent (state `pending`) in one commit, unless
    /// `exclusive` and the job already has a pending or done action of the
    /// same kind (then None: a retry is never done twice).
    #[allow(clippy::too_many_arguments)]
    pub async fn begin_action(
        &self,
        kind: ActionKind,
        job: i64,
        by: &str,
        provider: Option<String>,
        src: Option<PathBuf>,
        dst: Option<PathBuf>,
        detail: Option<String>,
        exclusive: bool,
    ) -> Result<Option<i64>, StoreError> {
        let by = by.to_string();
        self.call(move |c| {
            if exclusive {
                let n: i64 = c.query_row(
                    "SELECT COUNT(*) FROM actions WHERE job = ?1 AND kind = ?2
                       AND state IN ('pending','done')",
                    params![job, kind.as_str()],
                    |r| r.get(0),
                )?;
                if n > 0 {
                    return Ok(None);
                }
            }
            c.execute(
                "INSERT INTO actions (kind, job, state, by_whom, provider, src, dst, detail,
                                      created_ms, updated_ms)
                 VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                params![
                    kind.as_str(),
                    job,
                    by,
                    provider,
                    src.as_deref().map(path_blob),
                    dst.as_deref().map(path_blob),
                    detail,
                    now_ms()
                ],
            )?;
            Ok(Some(c.last_insert_rowid()))
        })
        .await
    }

    /// End an action (`done` or `abandoned`), replacing its detail when
    /// given. Blocking (recovery and the blocking helpers call it).
    pub fn end_action(
        &self,
        id: i64,
        state: ActionState,
        detail: Option<String>,
    ) -> Result<(), StoreError> {
        self.run(move |c| {
            c.execute(
                "UPDATE actions SET state = ?2, detail = COALESCE(?3, detail), updated_ms = ?4
                   WHERE id = ?1",
                params![id, state.as_str(), detail, now_ms()],
            )?;
            Ok(())
        })
    }

    /// Actions a crash left pending, oldest first.
    pub fn pending_actions(&self) -> Result<Vec<Action>, StoreError> {
        self.actions_where("state = 'pending' ORDER BY id", None)
    }

    /// Every action of one job, oldest first.
    pub fn actions_of(&self, job: i64) -> Result<Vec<Action>, StoreError> {
        self.actions_where("job = ?1 ORDER BY id", Some(job))
    }

    fn actions_where(
        &self,
        cond: &'static str,
        arg: Option<i64>,
    ) -> Result<Vec<Action>, StoreError> {
        if self.pg.is_some() {
            // No action log on the shared state: the actions that need one
            // are refused there (review::actions_ops).
            return Ok(Vec::new());
        }
        self.run(move |c| {
            let sql = format!("SELECT * FROM actions WHERE {cond}");
            let mut st = c.prepare(&sql)?;
            let rows = match arg {
                Some(a) => st
                    .query_map([a], Self::action_row)?
                    .collect::<Result<_, _>>()?,
                None => st
                    .query_map([], Self::action_row)?
                    .collect::<Result<_, _>>()?,
            };
            Ok(rows)
        })
    }

    fn action_row(r: &Row<'_>) -> rusqlite::Result<Action> {
        let kind: String = r.get("kind")?;
        Ok(Action {
            id: r.get("id")?,
            kind: ActionKind::parse(&kind).unwrap_or(ActionKind::Confirm),
            job: r.get("job")?,
            state: ActionState::parse(&r.get::<_, String>("state")?),
            by: r.get("by_whom")?,
            provider: r.get("provider")?,
            src: r.get::<_, Option<Vec<u8>>>("src")?.map(blob_path),
            dst: r.get::<_, Option<Vec<u8>>>("dst")?.map(blob_path),
            detail: r.get("detail")?,
            created_ms: r.get("created_ms")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn marks_and_exclusive_actions_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).expect("open");
            let job = s
                .insert_untracked("in", Path::new("a.jpg"), Some("ab"), Some(1), Some(1))
                .await
                .expect("job");
            s.set_mark(job.id, Some(Mark::Flagged), "ann")
                .await
                .expect("mark");
            s.set_mark(job.id, Some(Mark::Approved), "bob")
                .await
                .expect("mark");
            let a = s
                .begin_action(
                    ActionKind::Retry,
                    job.id,
                    "bob",
                    None,
                    None,
                    None,
                    None,
                    true,
                )
                .await
                .expect("begin");
            assert!(a.is_some());
            let again = s
                .begin_action(
                    ActionKind::Retry,
                    job.id,
                    "bob",
                    None,
                    None,
                    None,
                    None,
                    true,
                )
                .await
                .expect("begin");
            assert!(again.is_none(), "a second retry of one job is refused");
        }
        let s = Store::open(dir.path()).expect("reopen");
        let marks = s.marks(10).expect("marks");
        assert_eq!(marks.len(), 1);
        assert_eq!(
            (marks[0].mark, marks[0].by.as_str()),
            (Mark::Approved, "bob")
        );
        let pending = s.pending_actions().expect("pending");
        assert_eq!(pending.len(), 1);
        s.end_action(pending[0].id, ActionState::Done, None)
            .expect("end");
        assert!(s.pending_actions().expect("pending").is_empty());
    }
}
