//! Errors of one PostgreSQL request, before the place is known
//! (`PgOpError`), and how a server error reads as one line.
//!
//! Must not: run a query.

use crate::store::types::StoreError;

/// Why one request failed (the place is added when it becomes a
/// [`StoreError`]).
#[derive(Debug)]
pub enum PgOpError {
    Pg(postgres::Error),
    Record(String),
    Fenced { id: i64, holder: String },
    ReadOnly,
}

impl From<postgres::Error> for PgOpError {
    fn from(e: postgres::Error) -> Self {
        PgOpError::Pg(e)
    }
}

/// A PostgreSQL error as one line: the server's code and message when it
/// sent one (the bare `Display` says only "db error").
pub fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} {}: {}", d.severity(), d.code().code(), d.message()),
        None => {
            use std::error::Error;
            match e.source() {
                Some(s) => format!("{e}: {s}"),
                None => e.to_string(),
            }
        }
    }
}

impl PgOpError {
    pub(super) fn at(self, at: &str) -> StoreError {
        match self {
            PgOpError::Pg(e) => StoreError::Postgres {
                at: at.to_string(),
                what: pg_message(&e),
            },
            PgOpError::Record(why) => StoreError::Record {
                path: at.into(),
                why,
            },
            PgOpError::Fenced { id, holder } => StoreError::Fenced { id, holder },
            PgOpError::ReadOnly => StoreError::Postgres {
                at: at.to_string(),
                what: "opened read-only (`cutout status`): this request writes".into(),
            },
        }
    }
}

pub type PgResult<T> = Result<T, PgOpError>;
