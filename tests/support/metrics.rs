//! Reading a running daemon's `/metrics` (its `[http] listen` endpoint on
//! 127.0.0.1:0): the address it logged, and one sample by name. Plain
//! HTTP/1.1 over a TCP stream, so tests need no client crate.

use std::io::{Read, Write};
use std::time::Duration;

use super::{wait_until, Daemon};

/// The address the daemon's HTTP endpoint listens on (waits for its line).
pub fn listen_addr(d: &Daemon, limit: Duration) -> String {
    let mut addr = String::new();
    wait_until(limit, "the http endpoint to listen", || {
        match d
            .log_text()
            .lines()
            .find_map(|l| l.split("listening on http://").nth(1))
        {
            Some(a) => {
                addr = a.trim().to_string();
                true
            }
            None => false,
        }
    });
    addr
}

/// The body of `GET {path}` (empty when the answer has none).
pub fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the http endpoint");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    raw.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The value of the first sample whose line starts with `name` (the name
/// with its labels, e.g. `cutout_provider_rate_per_second{provider="r"}`).
pub fn sample(addr: &str, name: &str) -> Option<f64> {
    http_get(addr, "/metrics")
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

/// Turn on the site's HTTP endpoint on a free port (`[http] listen`).
pub fn listen_on_any_port(site: &super::Site) {
    let text = std::fs::read_to_string(site.config()).expect("config");
    std::fs::write(
        site.config(),
        format!("{text}\n[http]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .expect("config");
}

/// Sample `name` every 100 ms until `done` (at most `limit`): the values
/// seen, in order.
pub fn sample_until(
    addr: &str,
    name: &str,
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Vec<f64> {
    let mut seen = Vec::new();
    wait_until(limit, what, || {
        if let Some(v) = sample(addr, name) {
            seen.push(v);
        }
        std::thread::sleep(Duration::from_millis(100));
        done()
    });
    seen
}
