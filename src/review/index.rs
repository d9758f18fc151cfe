//! The review indexer: follows `audit.jsonl` from the offset the index
//! last committed and adds each line to the outcome index
//! (`store::review`). At start it catches up with whatever the file holds
//! beyond that offset (the whole history on the first start after an
//! upgrade); then it wakes on every durable audit append
//! ([`crate::audit::Audit::on_append`]), with a slow poll as a safety net.
//!
//! On the shared PostgreSQL state there is nothing to index (the database
//! fills its index from the `audit` table): [`follow`] only reads the
//! newest id, so the live page hears of every instance's outcomes.
//!
//! Owns: reading the audit file in bounded chunks, parsing lines, the
//! hint from a rejected or failed input's reason file.
//!
//! Must not: write the audit file, index a line that is not complete
//! (no newline yet), or hold more than one chunk in memory.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::store::{IndexLine, ReviewReader, Store};

/// Bytes of the audit file read per step (about 2 000 lines): one state
/// transaction per chunk, so pipeline commits are never held up long.
const CHUNK: usize = 1 << 20;
/// How often the file is looked at without a wake-up.
const POLL: Duration = Duration::from_secs(2);
/// How often the shared index's newest id is read (other instances'
/// outcomes wake no one here).
const FOLLOW: Duration = Duration::from_secs(1);
/// A reason file larger than this is not read for its hint.
const MAX_REASON_FILE: u64 = 64 * 1024;

/// What one step read.
struct Chunk {
    rows: Vec<IndexLine>,
    /// Where the next step starts.
    next: u64,
    /// More complete lines wait beyond `next`.
    more: bool,
}

/// Follow the audit file until `stop` turns true; `newest` gets the
/// newest indexed id after every commit.
pub(super) async fn run(
    store: Store,
    path: PathBuf,
    wake: Arc<Notify>,
    newest: watch::Sender<i64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut offset = match store.review_offset().await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("review page: cannot read the index position ({e}); the page shows no new outcomes until a restart");
            return;
        }
    };
    loop {
        let p = path.clone();
        let step = crate::blocking::run("review index read", move || read_from(&p, offset)).await;
        let mut more = false;
        match step {
            Ok(Ok(chunk)) if chunk.next != offset || !chunk.rows.is_empty() => {
                let n = chunk.rows.len();
                match store.review_add(chunk.rows, chunk.next).await {
                    Ok(id) => {
                        tracing::debug!(lines = n, offset = chunk.next, "review index: added");
                        offset = chunk.next;
                        more = chunk.more;
                        newest.send_if_modified(|v| std::mem::replace(v, id) != id);
                    }
                    Err(e) => tracing::warn!("review index: {e}; trying again shortly"),
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("review index: {}: {e}", path.display()),
            Err(e) => tracing::warn!("review index: {e}"),
        }
        if more {
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// On the shared PostgreSQL state: follow the index's newest id (every
/// instance's outcomes, added by the database itself) so that `/live`
/// wakes for them, until `stop` turns true. `wake` (this instance's own
/// audit appends) makes a look come sooner.
pub(super) async fn follow(
    reader: Arc<ReviewReader>,
    wake: Arc<Notify>,
    newest: watch::Sender<i64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        let r = reader.clone();
        match crate::blocking::run("review index newest", move || r.newest()).await {
            Ok(Ok(id)) => {
                failing = false;
                newest.send_if_modified(|v| std::mem::replace(v, id) != id);
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!("review index: {e}; the live page waits until it answers");
            }
            Ok(Err(_)) => {}
            Err(e) => tracing::warn!("review index: {e}"),
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(FOLLOW) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Read complete lines from `offset` (from the start when the file is now
/// shorter: it was replaced; lines indexed before are skipped by the
/// index's unique key).
fn read_from(path: &Path, offset: u64) -> std::io::Result<Chunk> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Chunk {
                rows: Vec::new(),
                next: offset,
                more: false,
            })
        }
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let start = if len < offset { 0 } else { offset };
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity(CHUNK.min((len - start) as usize));
    (&mut f).take(CHUNK as u64).read_to_end(&mut buf)?;
    let used = match buf.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        // One line longer than a chunk: not an audit line; skip it.
        None if buf.len() == CHUNK => CHUNK,
        None => 0,
    };
    let rows = buf[..used]
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .filter_map(parse_line)
        .collect();
    let next = start + used as u64;
    Ok(Chunk {
        rows,
        next,
        more: used > 0 && next < len,
    })
}

/// One audit line as an index row (None, with a warning, when it is not
/// an audit record).
fn parse_line(raw: &[u8]) -> Option<IndexLine> {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim();
    let mut row: IndexLine = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("review index: an audit line that is not a record is left out ({e})");
            return None;
        }
    };
    row.ts_ms = humantime::parse_rfc3339_weak(&row.ts)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    if matches!(row.event.as_str(), "rejected" | "failed") {
        row.hint = row.moved_to.as_deref().and_then(hint_beside);
    }
    row.line = text.to_string();
    Some(row)
}

/// The `hint` of the reason file beside a moved input.
fn hint_beside(moved_to: &str) -> Option<String> {
    let p = crate::output::reason_path(Path::new(moved_to));
    let f = std::fs::File::open(p).ok()?;
    let mut text = String::new();
    f.take(MAX_REASON_FILE).read_to_string(&mut text).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("hint")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_lines_are_read_and_a_shorter_file_starts_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("audit.jsonl");
        let a = r#"{"ts":"2026-01-02T03:04:05.006Z","event":"succeeded","job":1,"inbox":"in","input":"a.jpg","output":"/o/a.png"}"#;
        let b = r#"{"ts":"2026-01-02T03:04:06.000Z","event":"failed","job":2,"inbox":"in","input":"b.jpg","code":"provider-timeout"}"#;
        std::fs::write(&p, format!("{a}\nnot json\n{b}")).expect("write");
        let c = read_from(&p, 0).expect("read");
        assert_eq!(c.rows.len(), 1, "the unfinished last line waits");
        assert_eq!(c.rows[0].input, "a.jpg");
        assert_eq!(c.rows[0].ts_ms, 1_767_323_045_006);
        assert_eq!(c.rows[0].line, a);
        assert_eq!(c.next as usize, a.len() + "\nnot json\n".len());
        std::fs::write(&p, format!("{a}\nnot json\n{b}\n")).expect("write");
        let d = read_from(&p, c.next).expect("read");
        assert_eq!(d.rows.len(), 1);
        assert_eq!(d.rows[0].code.as_deref(), Some("provider-timeout"));
        let e = read_from(&p, d.next + 100).expect("read");
        assert_eq!(
            e.rows.len(),
            2,
            "a file shorter than the offset is read again"
        );
    }
}
