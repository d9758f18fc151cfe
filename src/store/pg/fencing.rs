//! The fencing questions on PostgreSQL (see `store::fencing`): does this
//! instance still hold a job at the epoch it took it with, and who finished
//! an input that vanished under its move.
//!
//! Must not: write to a job (a question locks nothing it keeps).

use std::sync::Arc;

use super::{fence, schema, Pg, PgOpError};
use crate::store::fencing::Elsewhere;
use crate::store::types::{Job, StoreError};

impl Pg {
    pub(in crate::store) fn check_held(self: &Arc<Self>, id: i64) -> Result<(), StoreError> {
        let pg = self.clone();
        self.run(move |tx| fence(tx, &pg.me()?, pg.held_epoch(id), id))
    }

    pub(in crate::store) fn get_held(self: &Arc<Self>, id: i64) -> Result<Option<Job>, StoreError> {
        let pg = self.clone();
        self.run(move |tx| {
            fence(tx, &pg.me()?, pg.held_epoch(id), id)?;
            schema::job(tx, id)
        })
    }

    pub(in crate::store) async fn still_held(self: &Arc<Self>, id: i64) -> Result<(), StoreError> {
        let pg = self.clone();
        self.call(move |tx| fence(tx, &pg.me()?, pg.held_epoch(id), id))
            .await
    }

    pub(in crate::store) fn finished_elsewhere(
        self: &Arc<Self>,
        id: i64,
    ) -> Result<Option<Elsewhere>, StoreError> {
        let pg = self.clone();
        self.run(move |tx| {
            match fence(tx, &pg.me()?, pg.held_epoch(id), id) {
                Err(PgOpError::Fenced { holder, .. }) => {
                    return Ok(Some(Elsewhere::TakenOver { holder }))
                }
                r => r?,
            }
            let other = tx.query_opt(
                "SELECT o.id FROM jobs j JOIN jobs o ON o.inbox = j.inbox
                   AND o.rel_path = j.rel_path AND o.id != j.id
                 WHERE j.id = $1 AND NOT o.active
                   AND o.outcome IN ('succeeded','duplicate','rejected','failed')
                   AND o.updated_ms >= j.created_ms
                 ORDER BY o.id DESC LIMIT 1",
                &[&id],
            )?;
            Ok(other
                .map(|r| r.try_get(0))
                .transpose()?
                .map(|job| Elsewhere::FinishedBy { job }))
        })
    }
}
