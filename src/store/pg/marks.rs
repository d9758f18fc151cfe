//! Review marks (approved / flagged) on the shared PostgreSQL state: the
//! port of the marks half of `store/marks.rs`, so approve and flag work
//! from the page of any instance and `cutout status` lists them all.
//! One row per job, set with one upsert (the job id is global here, so
//! two instances marking the same job simply leave the later mark).
//!
//! The action log (retry, redo, confirm) has no PostgreSQL port: those
//! actions move files another instance may be moving and are refused on
//! the shared state (`review::actions_ops`).
//!
//! Must not: touch `jobs`, or read files.

use std::sync::Arc;

use super::{Pg, PgResult};
use crate::store::marks::{Mark, MarkRow};
use crate::store::types::{blob_path, now_ms, StoreError};

fn parse(s: &str) -> Mark {
    Mark::parse(s).unwrap_or(Mark::Flagged)
}

impl Pg {
    pub(in crate::store) async fn set_mark(
        self: &Arc<Self>,
        id: i64,
        mark: Option<Mark>,
        by: String,
    ) -> Result<(), StoreError> {
        self.call(move |tx| {
            match mark {
                Some(m) => tx.execute(
                    "INSERT INTO marks (job, mark, by_whom, at_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (job) DO UPDATE SET mark = $2, by_whom = $3, at_ms = $4",
                    &[&id, &m.as_str(), &by, &now_ms()],
                )?,
                None => tx.execute("DELETE FROM marks WHERE job = $1", &[&id])?,
            };
            Ok(())
        })
        .await
    }

    pub(in crate::store) fn marks(&self, limit: i64) -> Result<Vec<MarkRow>, StoreError> {
        self.run(move |tx| {
            let rows = tx.query(
                "SELECT m.job, m.mark, m.by_whom, m.at_ms, j.inbox, j.rel_path, j.outcome, j.output
                   FROM marks m JOIN jobs j ON j.id = m.job
                   ORDER BY m.at_ms DESC, m.job DESC LIMIT $1",
                &[&limit],
            )?;
            rows.iter()
                .map(|r| -> PgResult<MarkRow> {
                    Ok(MarkRow {
                        job: r.try_get(0)?,
                        mark: parse(r.try_get(1)?),
                        by: r.try_get(2)?,
                        at_ms: r.try_get(3)?,
                        inbox: r.try_get(4)?,
                        input: blob_path(r.try_get(5)?).to_string_lossy().into_owned(),
                        outcome: r.try_get(6)?,
                        output: r
                            .try_get::<_, Option<Vec<u8>>>(7)?
                            .map(|b| blob_path(b).to_string_lossy().into_owned()),
                    })
                })
                .collect()
        })
    }

    pub(in crate::store) fn marks_for(
        &self,
        jobs: Vec<i64>,
    ) -> Result<Vec<(i64, Mark)>, StoreError> {
        self.run(move |tx| {
            let rows = tx.query(
                "SELECT job, mark FROM marks WHERE job = ANY($1) ORDER BY job",
                &[&jobs],
            )?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, parse(r.try_get(1)?))))
                .collect()
        })
    }

    pub(in crate::store) fn mark_of(&self, id: i64) -> Result<Option<Mark>, StoreError> {
        self.run(move |tx| {
            let row = tx.query_opt("SELECT mark FROM marks WHERE job = $1", &[&id])?;
            row.map(|r| r.try_get::<_, String>(0).map(|m| parse(&m)))
                .transpose()
                .map_err(Into::into)
        })
    }
}
