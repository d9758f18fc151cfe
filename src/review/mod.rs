//! The review page (issue 15). This part: its actions — who may act
//! (`auth`), what each action does on disk and in the state database
//! (`actions_ops`, `actions_redo`), their audit lines (`actions_log`),
//! crash recovery (`actions_recover`) and the HTTP endpoints (`actions`).
//!
//! Must not: serve files by a path taken from a request.

pub mod actions;
pub mod actions_log;
pub mod actions_ops;
pub mod actions_recover;
pub mod actions_redo;
pub mod auth;
