//! Settings and live state of the two peer APIs the fake also speaks —
//! remove.bg (`/v1.0/…`) and rembg's own server (`/api/remove`): remove.bg
//! credits, free calls and its megapixel-image rate window; the models
//! and query parameters the rembg server was asked for. Plain data plus
//! the window arithmetic; the handlers are `remove_bg.rs` and
//! `rembg_server.rs`.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// remove.bg's rate limit: `limit` megapixel-images per `window` (the real
/// API: 500 per minute). A picture counts its megapixels, at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MegapixelWindow {
    pub limit: u32,
    pub window: Duration,
}

/// The peer APIs' switches (part of [`crate::Config`]).
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// remove.bg `credits.total` (default 1000). Full-size pictures cost 1,
    /// preview sizes 0.25 (or a free call while there are any).
    pub remove_bg_credits: f64,
    /// remove.bg `api.free_calls` (default 50).
    pub remove_bg_free_calls: u64,
    /// remove.bg's rate window (None: unlimited, headers still sent with a
    /// 500/minute budget that is never enforced).
    pub remove_bg_window: Option<MegapixelWindow>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            remove_bg_credits: 1000.0,
            remove_bg_free_calls: 50,
            remove_bg_window: None,
        }
    }
}

/// One rembg-server call as the fake understood it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RembgServerCall {
    /// `model` form field as sent (None: not sent).
    pub model: Option<String>,
    /// Every text form field, in order.
    pub fields: Vec<(String, String)>,
    /// Every query parameter, in order.
    pub query: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct Window {
    start: Option<(Instant, SystemTime)>,
    used: f64,
}

/// Live state of the peer APIs (held in `Shared`).
#[derive(Debug, Default)]
pub(crate) struct PeerState {
    window: Mutex<Window>,
    pub calls: Mutex<Vec<RembgServerCall>>,
}

/// What the rate-limit headers say after one request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub limit: u32,
    pub remaining: f64,
    /// Unix seconds (rounded up) when the window ends.
    pub reset: u64,
    /// Set when the request was refused: seconds until the reset.
    pub refused_for: Option<u64>,
}

impl PeerState {
    /// Count `cost` in the current window (or refuse it).
    pub(crate) fn take(&self, w: Option<MegapixelWindow>, cost: f64) -> Budget {
        let now = Instant::now();
        let now_sys = SystemTime::now();
        let spec = w.unwrap_or(MegapixelWindow {
            limit: 500,
            window: Duration::from_secs(60),
        });
        let mut st = self.window.lock().unwrap();
        let expired = st
            .start
            .is_none_or(|(s, _)| now.saturating_duration_since(s) >= spec.window);
        if expired {
            st.start = Some((now, now_sys));
            st.used = 0.0;
        }
        let (start, start_sys) = st.start.expect("set above");
        let ends = start_sys + spec.window;
        let reset = ends
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .unwrap_or(0);
        let left = f64::from(spec.limit) - st.used;
        let enforced = w.is_some();
        if enforced && left < cost && st.used > 0.0 {
            let wait = (start + spec.window).saturating_duration_since(now);
            let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
            return Budget {
                limit: spec.limit,
                remaining: left.max(0.0),
                reset,
                refused_for: Some(secs),
            };
        }
        st.used += cost;
        Budget {
            limit: spec.limit,
            remaining: (f64::from(spec.limit) - st.used).max(0.0),
            reset,
            refused_for: None,
        }
    }

    /// Forget the window (full again).
    pub(crate) fn reset_window(&self) {
        *self.window.lock().unwrap() = Window::default();
    }
}
