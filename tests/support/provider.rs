//! Shared helpers of the provider tests (tests/hosted.rs, tests/peers.rs,
//! tests/rembg_server.rs): a `cutout process` run that must succeed, the
//! reason file of a failed input, the fake provider's request log by
//! endpoint or file, and the check that no secret reached any file.

use std::process::Output;

use fake_provider::{Endpoint, FakeProvider, LogEntry};

use super::Site;

/// Exit status, stdout and stderr of a finished process, for assertion
/// messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `cutout process` on `site`, which must exit 0.
pub fn run_ok(site: &Site) -> Output {
    let o = site.process(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    o
}

/// The reason file written beside the failed input `rel`.
pub fn reason(site: &Site, rel: &str) -> serde_json::Value {
    let p = site.failed().join(format!("{rel}.reason.json"));
    let t = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&t).expect("reason.json is JSON")
}

/// Requests to `ep`, in arrival order (for rembg.com's `/rmbg` only the
/// uploads, not a paused provider's key-less `GET` probe).
pub fn requests(fake: &FakeProvider, ep: Endpoint) -> Vec<LogEntry> {
    let mut v: Vec<LogEntry> = fake
        .log()
        .into_iter()
        .filter(|e| e.endpoint == ep && (ep != Endpoint::RembgRemove || e.method == "POST"))
        .collect();
    v.sort_by_key(|e| e.at);
    v
}

/// Requests to `ep` that carried a file whose name contains `name`.
pub fn for_file(fake: &FakeProvider, ep: Endpoint, name: &str) -> usize {
    fake.count(|e| e.endpoint == ep && e.file_name.as_deref().is_some_and(|f| f.contains(name)))
}

/// No file of the site (other than the key files and the config) and none
/// of `extra` (process output) holds `secret`.
pub fn no_secret_in(site: &Site, secret: &str, extra: &[&str]) {
    for f in walkdir::WalkDir::new(site.root()).into_iter().flatten() {
        let holds_it = f
            .path()
            .extension()
            .is_some_and(|e| e == "key" || e == "toml");
        if f.file_type().is_file() && !holds_it {
            if let Ok(t) = std::fs::read_to_string(f.path()) {
                assert!(
                    !t.contains(secret),
                    "{} holds the secret",
                    f.path().display()
                );
            }
        }
    }
    for t in extra {
        assert!(!t.contains(secret), "output holds the secret");
    }
}
