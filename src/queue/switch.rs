//! Config switching (SIGHUP): the dispatcher's side of a reload. The new
//! config arrives built and checked (`crate::reload`); here the inbox set
//! is switched by name without disturbing work in flight.
//!
//! Must not: build providers or read the config file (reload does), or
//! touch files in the inboxes.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::inboxes::{spawn_scan, start_watcher, Watched, WatchedInboxes};
use crate::config::Inbox;
use crate::pipeline::Ctx;
use crate::settle::Settler;
use crate::watch::Found;

/// A new configuration to switch to, with everything already built and
/// checked for it (providers, folders).
pub struct Reload {
    /// The new context. The store, audit log and shutdown signal must be the
    /// running ones; in-flight work keeps the context it started with.
    pub ctx: Arc<Ctx>,
    /// Told what changed once the dispatcher has switched.
    pub done: oneshot::Sender<ReloadReport>,
}

/// What a reload changed, by inbox name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Same name, but a new folder or watch setting: watched afresh.
    pub rewatched: Vec<String>,
    /// Pictures still being processed with the previous settings.
    pub in_flight: usize,
}

/// Whether two versions of an inbox can share a watcher and settle state.
fn same_watch(a: &Inbox, b: &Inbox) -> bool {
    a.path == b.path && a.recursive == b.recursive && a.watch == b.watch && a.ignore == b.ignore
}

/// Switch the inbox set to `new`'s, by inbox name: removed inboxes stop
/// being watched and their waiting files are forgotten (they stay in the
/// folder, untouched); added ones are watched and scanned; kept ones take
/// the new settings for work not yet started.
pub(super) fn switch_config(
    new: &Arc<Ctx>,
    slots: &mut WatchedInboxes,
    next_slot: &mut usize,
    settler: &mut Settler,
    tx: &mpsc::UnboundedSender<Found>,
) -> ReloadReport {
    let mut rep = ReloadReport::default();
    let ids: Vec<usize> = slots.keys().copied().collect();
    for id in ids {
        let Some(slot) = slots.get_mut(&id) else {
            continue;
        };
        match new.cfg.inboxes.iter().find(|n| n.name == slot.inbox.name) {
            Some(n) if same_watch(&slot.inbox, n) => slot.inbox = Arc::new(n.clone()),
            found => {
                let name = slot.inbox.name.clone();
                slots.remove(&id); // drops its watcher
                settler.drop_inbox(id);
                if found.is_some() {
                    rep.rewatched.push(name);
                } else {
                    rep.removed.push(name);
                }
            }
        }
    }
    for ib in &new.cfg.inboxes {
        if slots.values().any(|s| s.inbox.name == ib.name) {
            continue;
        }
        let id = *next_slot;
        *next_slot += 1;
        let mut s = Watched::new(ib);
        s.watcher = start_watcher(id, &s.inbox, tx);
        spawn_scan(id, &s.inbox, s.inbox.path.clone(), tx.clone(), false);
        if !rep.rewatched.contains(&ib.name) {
            rep.added.push(ib.name.clone());
        }
        slots.insert(id, s);
    }
    rep
}
