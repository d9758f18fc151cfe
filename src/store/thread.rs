//! The state thread: opening the database (and its single-writer lock on the
//! state folder), the one thread that owns the connection and serves
//! requests in batches (group commit), and `submit`/`run`, which hand it a
//! request and await the answer on a oneshot reply.
//!
//! Must not: hold query logic (the sibling files do) or block the caller
//! beyond the commit of its batch.

use super::*;

/// The state thread: take what is waiting, run it in one transaction (one
/// savepoint per request, so a failing request leaves the others alone),
/// commit, then answer everyone. Ends when the last `Store` clone is gone.
pub(super) fn serve(conn: Connection, ops: mpsc::Receiver<Op>) {
    let step = |sql: &str| conn.execute_batch(sql);
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let begun = step("BEGIN").map_err(|e| format!("cannot begin a transaction: {e}"));
        let mut replies = Vec::with_capacity(batch.len());
        for op in batch {
            let c = match begun {
                Ok(()) if step("SAVEPOINT op").is_ok() => Some(&conn),
                _ => None,
            };
            let ran = std::panic::catch_unwind(AssertUnwindSafe(|| op(c)));
            let ok = matches!(ran, Ok((true, _)));
            if c.is_some() {
                if !ok {
                    let _ = step("ROLLBACK TO op");
                }
                let _ = step("RELEASE op");
            }
            // A request that panicked drops its reply: its caller gets
            // "stopped" instead of hanging.
            if let Ok((_, reply)) = ran {
                replies.push(reply);
            }
        }
        let done = match begun {
            Ok(()) => step("COMMIT").map_err(|e| {
                let _ = step("ROLLBACK");
                format!("cannot commit: {e}")
            }),
            Err(e) => Err(e),
        };
        for reply in replies {
            reply(done.as_ref().map(|_| ()).map_err(String::as_str));
        }
    }
}

impl Store {
    /// Open (creating) the database for the daemon or a batch: takes the
    /// exclusive lock on the state folder.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Io {
            dir: state_dir.to_path_buf(),
            source,
        })?;
        let lock = Self::lock(state_dir)?;
        let path = state_dir.join("state.sqlite3");
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        // FULL: a committed decision survives power loss, not just a crash.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.set_prepared_statement_cache_capacity(64);
        Self::migrate(&conn, &path)?;
        let mut s = Self::serve_on(conn, path)?;
        s._lock = Some(Arc::new(lock));
        Ok(s)
    }

    /// Open for reading only (`cutout status`), without the lock.
    pub fn open_read_only(state_dir: &Path) -> Result<Option<Store>, StoreError> {
        let path = state_dir.join("state.sqlite3");
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
        Self::serve_on(conn, path).map(Some)
    }

    pub(super) fn serve_on(conn: Connection, path: PathBuf) -> Result<Store, StoreError> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("cutout-state".into())
            .spawn(move || serve(conn, rx))
            .map_err(|source| StoreError::Io {
                dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                source,
            })?;
        Ok(Store {
            ops: Some(tx),
            path,
            _lock: None,
            pg: None,
        })
    }

    pub(super) fn lock(state_dir: &Path) -> Result<LockFile, StoreError> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let lock_path = state_dir.join("cutout.lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::Io {
                dir: state_dir.to_path_buf(),
                source,
            })?;
        // SAFETY: valid fd for the lifetime of `file`.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(StoreError::Locked {
                dir: state_dir.to_path_buf(),
                lock: lock_path,
            });
        }
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(LockFile { file })
    }

    /// Run `f` in the state thread's next batch and wait until that batch
    /// is committed. Called from blocking threads (it blocks).
    /// Queue `f` for the state thread; `deliver` gets its result once its
    /// batch is committed (or failed).
    pub(super) fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> OpResult<T> + Send + 'static,
        deliver: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let op: Op = Box::new(move |c| {
            let r = match c {
                Some(c) => f(c).map_err(|e| e.at(path.clone())),
                None => Err(StoreError::Batch {
                    path: path.clone(),
                    what: "the transaction could not be begun".into(),
                }),
            };
            let ok = r.is_ok();
            let reply: Reply = Box::new(move |done| {
                let out = match (r, done) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Ok(_), Err(what)) => Err(StoreError::Batch {
                        path,
                        what: what.to_string(),
                    }),
                    (Err(e), _) => Err(e),
                };
                deliver(out);
            });
            (ok, reply)
        });
        let ops = self.ops.as_ref().ok_or(StoreError::Unsupported {
            what: "this SQLite query",
        })?;
        ops.send(op).map_err(|_| self.stopped())
    }

    pub(super) fn stopped(&self) -> StoreError {
        StoreError::Batch {
            path: self.path.clone(),
            what:
                "the request was lost in the state thread (it failed inside or the thread stopped)"
                    .into(),
        }
    }

    /// Run `f` on the state thread and wait for it (blocking callers:
    /// finishing steps, recovery, the CLI).
    pub(super) fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> OpResult<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel::<Result<T, StoreError>>(1);
        self.submit(f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv().map_err(|_| self.stopped())?
    }

    /// Run `f` on the state thread; async callers wait on a oneshot reply
    /// and tie up no thread meanwhile.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> OpResult<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, StoreError>>();
        self.submit(f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.await.map_err(|_| self.stopped())?
    }
}
