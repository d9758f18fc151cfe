//! What the pipeline asks before a step another instance may have made
//! moot: whether this instance still holds a job (fencing, asked right
//! before an output is renamed into place and before the audit line), and,
//! when the input vanished under a move, whether someone else finished it.
//!
//! On SQLite there is one instance: a job is always still held; "someone
//! else" can only be another job of this same instance.
//!
//! Must not: write anything (these are questions; the writes that follow
//! are fenced on their own).

use super::*;

/// Why an input that vanished under its move is nobody's trouble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elsewhere {
    /// This instance no longer holds the job: `holder` took it over.
    TakenOver { holder: String },
    /// Another job for the same input path finished after this one was
    /// created (and so moved or deleted the input).
    FinishedBy { job: i64 },
}

impl Store {
    /// `Err(StoreError::Fenced)` when another instance took job `id` over
    /// since this instance took it (blocking; one short transaction on
    /// PostgreSQL, nothing on SQLite).
    pub fn check_held(&self, id: i64) -> Result<(), StoreError> {
        match &self.pg {
            Some(pg) => pg.check_held(id),
            None => Ok(()),
        }
    }

    /// Job `id` (None when there is no such row), once this instance is
    /// known to still hold it: [`Store::get`] and [`Store::check_held`] in
    /// one round trip (blocking).
    pub fn get_held(&self, id: i64) -> Result<Option<Job>, StoreError> {
        match &self.pg {
            Some(pg) => pg.get_held(id),
            None => self.get(id),
        }
    }

    /// [`Store::check_held`] for async callers.
    pub async fn still_held(&self, id: i64) -> Result<(), StoreError> {
        match &self.pg {
            Some(pg) => pg.still_held(id).await,
            None => Ok(()),
        }
    }

    /// The input of job `id` was gone when it was to be moved or deleted:
    /// is that because someone else finished it ([`Elsewhere`]), or did it
    /// just vanish (None)? Blocking.
    pub fn finished_elsewhere(&self, id: i64) -> Result<Option<Elsewhere>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.finished_elsewhere(id);
        }
        self.run(move |c| {
            let other: Option<i64> = c
                .query_row(
                    "SELECT o.id FROM jobs j JOIN jobs o ON o.inbox = j.inbox
                       AND o.rel_path = j.rel_path AND o.id != j.id
                     WHERE j.id = ?1 AND NOT o.active
                       AND o.outcome IN ('succeeded','duplicate','rejected','failed')
                       AND o.updated_ms >= j.created_ms
                     ORDER BY o.id DESC LIMIT 1",
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(other.map(|job| Elsewhere::FinishedBy { job }))
        })
    }
}
