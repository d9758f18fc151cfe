//! Small pure rules about network addresses, shared by the config checker
//! and the provider HTTP clients.
//!
//! Owns: deciding what counts as a loopback address. Must not: import
//! anything from this crate, do I/O or resolve names.

use std::net::IpAddr;

use reqwest::Url;

/// Whether the URL's host is a loopback address (`127.0.0.0/8`, `::1`,
/// `localhost`).
pub fn is_loopback(url: &Url) -> bool {
    let Some(h) = url.host_str() else {
        return false;
    };
    let h = h.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for (u, want) in [
            ("http://127.0.0.1:8080/", true),
            ("http://127.9.9.9/", true),
            ("http://[::1]:1/", true),
            ("http://LOCALHOST/", true),
            ("http://10.0.0.1/", false),
            ("http://localhost.example.com/", false),
            ("http://[::2]/", false),
        ] {
            let url = Url::parse(u).expect("url");
            assert_eq!(is_loopback(&url), want, "{u}");
        }
    }
}
