//! Building providers from the checked config: one `[providers.NAME]`
//! table into a running [`Provider`], and the set an inbox list needs
//! (each inbox's `options` were checked for its provider's kind with the config). Used at start by
//! `commands` and on SIGHUP by `reload`.
//!
//! Must not: keep state (a reload decides which providers to reuse and
//! passes them in), or log config values (they may hold secrets).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{local, rembg_com, rembg_server, remove_bg, verging, BuildError, Provider};
use crate::config::{Config, ProviderConfig, ProviderKind};

/// Build the provider for one `[providers.NAME]` entry.
pub fn build(name: &str, cfg: &ProviderConfig) -> Result<Arc<dyn Provider>, BuildError> {
    match &cfg.kind {
        ProviderKind::Local(local) => Ok(Arc::new(local::LocalProvider::new(name, local)?)),
        ProviderKind::RembgCom(c) => Ok(Arc::new(rembg_com::RembgCom::build(name, c)?)),
        ProviderKind::Verging(c) => Ok(Arc::new(verging::Verging::build(name, c)?)),
        ProviderKind::RemoveBg(c) => Ok(Arc::new(remove_bg::RemoveBg::build(name, c)?)),
        ProviderKind::RembgServer(c) => Ok(Arc::new(rembg_server::RembgServer::build(name, c)?)),
    }
}

/// The providers the inboxes of `cfg` use, by name: `reuse(name)` hands
/// back a running one to keep, otherwise it is built afresh.
pub fn build_all(
    cfg: &Config,
    mut reuse: impl FnMut(&str) -> Option<Arc<dyn Provider>>,
) -> Result<BTreeMap<String, Arc<dyn Provider>>, String> {
    let mut providers = BTreeMap::new();
    let used: BTreeSet<&str> = cfg.inboxes.iter().map(|i| i.provider.as_str()).collect();
    for (name, pc) in &cfg.providers {
        if !used.contains(name.as_str()) {
            continue;
        }
        let p = match reuse(name) {
            Some(p) => p,
            None => build(name, pc).map_err(|e| e.to_string())?,
        };
        providers.insert(name.clone(), p);
    }
    Ok(providers)
}
