//! The audit lines of review actions (`review-retry`, `review-redo`,
//! `review-confirm`, `review-approve`, `review-flag`, `review-unmark`),
//! each naming who acted and when, and the search of the audit file's tail
//! that tells recovery whether an action's line was already written.
//!
//! Must not: move files or change the state database.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Serialize;

use crate::audit::{now_rfc3339, Audit, AuditError};

/// What an action line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionEvent {
    ReviewRetry,
    ReviewRedo,
    ReviewConfirm,
    ReviewApprove,
    ReviewFlag,
    ReviewUnmark,
}

impl ActionEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionEvent::ReviewRetry => "review-retry",
            ActionEvent::ReviewRedo => "review-redo",
            ActionEvent::ReviewConfirm => "review-confirm",
            ActionEvent::ReviewApprove => "review-approve",
            ActionEvent::ReviewFlag => "review-flag",
            ActionEvent::ReviewUnmark => "review-unmark",
        }
    }
}

/// One action's audit line (fields left empty are not written).
#[derive(Debug, Clone, Serialize)]
pub struct ActionLine {
    pub ts: String,
    pub event: ActionEvent,
    /// The row in the state database's action log (none for marks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<i64>,
    pub job: i64,
    pub inbox: String,
    pub input: String,
    /// Who acted: the login name, `X-Cutout-User`, `token` or `local`.
    pub by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_provider: Option<String>,
    /// Retry: where the input was, and where it went back to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Redo: the outputs replaced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Redo: the previous outputs, kept until confirmed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
    /// Confirm: the kept copies deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
    /// Redo: credits the provider reported for the picture, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

impl ActionLine {
    pub fn new(event: ActionEvent, job: i64, inbox: &str, input: &str, by: &str) -> ActionLine {
        ActionLine {
            ts: now_rfc3339(),
            event,
            action: None,
            job,
            inbox: inbox.to_string(),
            input: input.to_string(),
            by: by.to_string(),
            provider: None,
            previous_provider: None,
            from: None,
            to: None,
            outputs: Vec::new(),
            kept: Vec::new(),
            deleted: Vec::new(),
            credits: None,
            duration_ms: None,
        }
    }

    /// Append it durably.
    pub fn append(&self, audit: &Audit) -> Result<(), AuditError> {
        let line = serde_json::to_string(self).map_err(|e| AuditError {
            path: Path::new("audit.jsonl").to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        audit.append_json(&line)
    }
}

/// Whether the audit file's tail (last 8 MiB) holds `event`'s line for
/// action `id` (recovery: a crash between the append and the commit).
pub fn has_action_line(state_dir: &Path, id: i64, event: ActionEvent) -> bool {
    let path = state_dir.join("audit.jsonl");
    let Ok(mut f) = std::fs::File::open(&path) else {
        return false;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if f.seek(SeekFrom::Start(len.saturating_sub(8 << 20)))
        .is_err()
    {
        return false;
    }
    let mut raw = Vec::new();
    if f.read_to_end(&mut raw).is_err() {
        return false;
    }
    let text = String::from_utf8_lossy(&raw);
    let (ev, act) = (
        format!("\"event\":\"{}\"", event.as_str()),
        format!("\"action\":{id},"),
    );
    text.lines().any(|l| l.contains(&ev) && l.contains(&act))
}
