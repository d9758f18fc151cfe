//! Reload (SIGHUP, `systemctl reload cutout`): re-read the config file, check
//! it and build what it needs (folders, providers), then hand it to the
//! queue, which switches inboxes without dropping work in flight. A config
//! that fails any check is rejected with one log line naming the file and
//! the key, and the running config stays.
//!
//! Owns: the SIGHUP listener, deciding which providers can be kept (their
//! table is unchanged) and which are rebuilt, and the settings that only
//! take effect at the next start (`state_dir`, `log_dir`, `http.listen`, `http.review`, `http.thumbnail_cache`).
//!
//! Must not: open another store or audit log, touch files in the inboxes,
//! or log config values (they may hold secrets): errors name keys only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{self, Config, ConfigError};
use crate::pipeline::Ctx;
use crate::provider::Provider;
use crate::queue::{Reload, ReloadReport};
use crate::{metrics, service};

/// Why a reload was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Provider(String),
    #[error("the daemon is stopping")]
    Stopping,
    #[error("checking the new config failed unexpectedly: {0}")]
    Internal(String),
}

/// What a successful reload did.
#[derive(Debug)]
pub struct Applied {
    pub report: ReloadReport,
    /// Providers built afresh (new, or their settings changed).
    pub rebuilt: Vec<String>,
    /// Settings that changed but wait for a restart.
    pub deferred: Vec<String>,
}

/// The state a reload starts from.
pub struct Reloader {
    /// The config file (None: built-in defaults, which never change).
    pub path: Option<PathBuf>,
    /// Digests of the `[providers.*]` tables the running providers were
    /// built from.
    pub digests: BTreeMap<String, String>,
    /// The running context.
    pub current: Arc<Ctx>,
    /// The queue's reload inbox.
    pub queue: mpsc::UnboundedSender<Reload>,
    /// The running `shutdown_grace` in milliseconds (read when stopping).
    pub grace_ms: Arc<AtomicU64>,
}

struct Prepared {
    cfg: Config,
    digests: BTreeMap<String, String>,
    providers: BTreeMap<String, Arc<dyn Provider>>,
    rebuilt: Vec<String>,
    deferred: Vec<String>,
    created: Vec<String>,
}

/// Load and check the new config, keeping what must not change while
/// running. Blocking (file reads, folder checks, provider set-up).
fn prepare(
    path: Option<PathBuf>,
    old: &Config,
    old_providers: &BTreeMap<String, Arc<dyn Provider>>,
    old_digests: &BTreeMap<String, String>,
) -> Result<Prepared, ReloadError> {
    let (mut cfg, text) = config::load_with_text(path.as_deref())?;
    let digests = config::provider_digests(&text);
    let mut deferred = Vec::new();
    if cfg.state_dir != old.state_dir {
        deferred.push(format!(
            "`state_dir` ({} → {})",
            old.state_dir.display(),
            cfg.state_dir.display()
        ));
        cfg.state_dir = old.state_dir.clone();
    }
    if cfg.log_dir != old.log_dir {
        deferred.push("`log_dir`".to_string());
        cfg.log_dir = old.log_dir.clone();
    }
    if cfg.http != old.http {
        deferred.push(if cfg.http.listen != old.http.listen {
            "`http.listen`".to_string()
        } else {
            "`http.review`/`http.thumbnail_cache`/`http.actions`/`http.token_file`".to_string()
        });
        cfg.http = old.http.clone();
    }
    let created = config::prepare_folders(&cfg)?;
    let mut rebuilt = Vec::new();
    let providers = crate::provider::build::build_all(&cfg, |name| {
        let same = digests.get(name) == old_digests.get(name);
        match old_providers.get(name) {
            Some(p) if same => Some(p.clone()),
            _ => {
                rebuilt.push(name.to_string());
                None
            }
        }
    })
    .map_err(ReloadError::Provider)?;
    Ok(Prepared {
        cfg,
        digests,
        providers,
        rebuilt,
        deferred,
        created,
    })
}

impl Reloader {
    /// Re-read the config and switch to it, or say why not.
    pub async fn reload(&mut self) -> Result<Applied, ReloadError> {
        if *self.current.shutdown.borrow() {
            return Err(ReloadError::Stopping);
        }
        let (path, old, old_providers, old_digests) = (
            self.path.clone(),
            self.current.cfg.clone(),
            self.current.providers.clone(),
            self.digests.clone(),
        );
        let p = crate::blocking::run("prepare reload", move || {
            prepare(path, &old, &old_providers, &old_digests)
        })
        .await
        .map_err(|e| ReloadError::Internal(e.to_string()))??;
        for line in &p.created {
            tracing::info!("{line}");
        }
        // Same concurrency: the same slots, so pictures at the engine right
        // now still count.
        let engine_slots = if p.cfg.queue.concurrency == self.current.cfg.queue.concurrency {
            self.current.engine_slots.clone()
        } else {
            Ctx::engine_slots(p.cfg.queue.concurrency)
        };
        let ctx = Arc::new(Ctx {
            engine_slots,
            cfg: Arc::new(p.cfg),
            store: self.current.store.clone(),
            audit: self.current.audit.clone(),
            providers: p.providers,
            dry_run: false,
            shutdown: self.current.shutdown.clone(),
        });
        let (done_tx, done_rx) = oneshot::channel();
        self.queue
            .send(Reload {
                ctx: ctx.clone(),
                done: done_tx,
            })
            .map_err(|_| ReloadError::Stopping)?;
        let report = done_rx.await.map_err(|_| ReloadError::Stopping)?;
        for name in ctx.providers.keys() {
            metrics::global().register_provider(name);
        }
        self.grace_ms
            .store(ctx.cfg.shutdown_grace.as_millis() as u64, Ordering::Relaxed);
        self.current = ctx;
        self.digests = p.digests;
        Ok(Applied {
            report,
            rebuilt: p.rebuilt,
            deferred: p.deferred,
        })
    }

    /// Reload once and log the outcome (one line either way), telling the
    /// service manager `RELOADING=1` before and `READY=1` after.
    pub async fn reload_and_log(&mut self) {
        service::reloading();
        let origin = self
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in defaults".into());
        match self.reload().await {
            Ok(a) => {
                metrics::global().record_reload(true);
                let r = &a.report;
                let list = |v: &[String]| {
                    if v.is_empty() {
                        "none".to_string()
                    } else {
                        v.join(", ")
                    }
                };
                tracing::info!(
                    "config reloaded from {origin}: inboxes added: {}; removed: {}; watched afresh: {}; providers rebuilt: {}; {} picture(s) in flight finish with the previous settings",
                    list(&r.added),
                    list(&r.removed),
                    list(&r.rewatched),
                    list(&a.rebuilt),
                    r.in_flight
                );
                for ib in self
                    .current
                    .cfg
                    .inboxes
                    .iter()
                    .filter(|i| r.added.contains(&i.name) || r.rewatched.contains(&i.name))
                {
                    tracing::info!(
                        "inbox {} → {} (provider {})",
                        ib.path.display(),
                        ib.outbox.display(),
                        ib.provider
                    );
                }
                if !a.deferred.is_empty() {
                    tracing::warn!(
                        "{} changed in {origin}: takes effect at the next restart (systemctl restart cutout); the running values stay until then",
                        a.deferred.join(", ")
                    );
                }
            }
            Err(ReloadError::Stopping) => {
                tracing::info!("SIGHUP ignored: the daemon is stopping");
                return;
            }
            Err(e) => {
                metrics::global().record_reload(false);
                tracing::error!("reload rejected, still running with the previous config: {e}");
            }
        }
        service::ready(&service::status_line(&metrics::global().snapshot()));
    }
}

/// Listen for SIGHUP and reload on each. Install before the daemon reports
/// ready: SIGHUP's default action would end the process.
pub fn spawn_on_sighup(
    mut reloader: Reloader,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading the config");
                    reloader.reload_and_log().await;
                }
            }
        }
    }))
}
