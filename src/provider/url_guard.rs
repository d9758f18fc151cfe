//! Where a URL the provider hands back (verging `result_url`, the
//! presigned `url`, a redirect from either) may point: not into our own
//! network. A host that resolves to a private, link-local, loopback,
//! CGNAT, unspecified, multicast or otherwise non-public address (the cloud
//! metadata address 169.254.169.254 among them) is refused, unless the
//! provider's configured `base_url` is itself on loopback (tests, a local
//! mock), where everything it hands back is local too.
//!
//! Owns: the URL as shown in messages ([`display_url`]), the address classifier ([`is_non_public`]), the decision
//! ([`check_addrs`]), the look-up-and-check of one URL ([`check_url`]) and
//! the DNS resolver of the `fetch` client ([`GuardedResolver`]), which
//! applies the same rule to every connection it makes (redirects too, and
//! no second look-up between check and connect: DNS rebinding).
//!
//! Must not: make HTTP requests, resolve on anything but tokio's resolver,
//! or put a URL's query (signatures) into a message.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// A URL as it may appear in logs and errors: scheme, host, port and path,
/// never the query (presigned URLs carry signatures there) or user info.
pub fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Whether an IPv4 address is outside the public internet.
fn v4_non_public(a: Ipv4Addr) -> bool {
    let [b0, b1, b2, _] = a.octets();
    a.is_private() // 10/8, 172.16/12, 192.168/16
        || a.is_loopback() // 127/8
        || a.is_link_local() // 169.254/16, metadata 169.254.169.254
        || a.is_multicast() // 224/4
        || a.is_broadcast()
        || b0 == 0 // 0/8 "this network", incl. 0.0.0.0
        || (b0 == 100 && (b1 & 0xc0) == 64) // 100.64/10 CGNAT
        || (b0 == 192 && b1 == 0 && b2 == 0) // 192.0.0/24 IETF assignments
        || (b0 == 192 && b1 == 0 && b2 == 2) // documentation
        || (b0 == 198 && (b1 & 0xfe) == 18) // 198.18/15 benchmarking
        || (b0 == 198 && b1 == 51 && b2 == 100) // documentation
        || (b0 == 203 && b1 == 0 && b2 == 113) // documentation
        || b0 >= 240 // 240/4 reserved
}

/// Whether an IPv6 address is outside the public internet (an embedded
/// IPv4 address — mapped, NAT64, 6to4 — is judged as IPv4).
fn v6_non_public(a: Ipv6Addr) -> bool {
    if let Some(v4) = a.to_ipv4_mapped() {
        return v4_non_public(v4);
    }
    let s = a.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    // 64:ff9b::/96 NAT64: the IPv4 address in the last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return v4_non_public(embedded(s[6], s[7]));
    }
    // 2002::/16 6to4: the IPv4 address in bits 16..48.
    if s[0] == 0x2002 && v4_non_public(embedded(s[1], s[2])) {
        return true;
    }
    a.is_unspecified() // ::
        || a.is_loopback() // ::1
        || a.is_multicast() // ff00::/8
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local (ULA)
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 old site-local
        || (s[0] == 0 && s[1] == 0 && s[2..6] == [0, 0, 0, 0]) // ::/96 old IPv4-compatible
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // 100::/64 discard
}

/// Whether `ip` is outside the public internet: private, loopback,
/// link-local (metadata), CGNAT, ULA, unspecified, multicast, reserved.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => v4_non_public(a),
        IpAddr::V6(a) => v6_non_public(a),
    }
}

/// The decision for the addresses one host resolved to: every one must be
/// public, unless `allow_local` (the configured `base_url` is on loopback).
/// Err carries the first refused address. No addresses at all is refused.
pub fn check_addrs(allow_local: bool, addrs: &[IpAddr]) -> Result<(), Option<IpAddr>> {
    if allow_local {
        return Ok(());
    }
    if addrs.is_empty() {
        return Err(None);
    }
    match addrs.iter().find(|a| is_non_public(**a)) {
        Some(a) => Err(Some(*a)),
        None => Ok(()),
    }
}

fn refusal(shown: &str, host: &str, bad: Option<IpAddr>) -> String {
    match bad {
        Some(a) => format!(
            "refusing to follow the URL {shown} the provider handed back: its host {host} is at \
             {a}, a private, loopback or link-local address (only public addresses are \
             followed unless base_url itself is on loopback)"
        ),
        None => format!(
            "refusing to follow the URL {shown} the provider handed back: its host {host} \
             resolves to no address"
        ),
    }
}

/// Look the URL's host up (tokio's resolver) and check every address.
/// Err is a message for the operator (no query string in it). A host that
/// cannot be looked up passes here and fails to connect.
pub async fn check_url(allow_local: bool, url: &Url) -> Result<(), String> {
    if allow_local {
        return Ok(());
    }
    let shown = display_url(url);
    let Some(host) = url.host_str() else {
        return Err(format!(
            "the URL {shown} the provider handed back has no host"
        ));
    };
    if let Some(ip) = literal(url) {
        return check_addrs(false, &[ip]).map_err(|bad| refusal(&shown, host, bad));
    }
    let host = host.to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    // A failed look-up is not a refusal: the request then fails to
    // connect by itself (and the resolver checks again).
    let Ok(found) = tokio::net::lookup_host((host.as_str(), port)).await else {
        return Ok(());
    };
    let addrs: Vec<IpAddr> = found.map(|s| s.ip()).collect();
    check_addrs(false, &addrs).map_err(|bad| refusal(&shown, &host, bad))
}

/// The `fetch` client's resolver: tokio's look-up, then [`check_addrs`] on
/// every address, so the connection goes only to addresses that passed
/// (redirect targets included). IP-literal hosts never reach a resolver;
/// the URL rule checks those.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_local: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_local = self.allow_local;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ips: Vec<IpAddr> = addrs.iter().map(|s| s.ip()).collect();
            check_addrs(allow_local, &ips).map_err(|bad| -> Box<dyn std::error::Error + Send + Sync> {
                match bad {
                    Some(a) => format!(
                        "host {host} is at {a}, a private, loopback or link-local address; not followed"
                    )
                    .into(),
                    None => format!("host {host} resolves to no address").into(),
                }
            })?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// An IP-literal host that is not public (for the synchronous URL rule,
/// redirects included; domain names go through [`GuardedResolver`]).
pub fn literal_refused(allow_local: bool, url: &Url) -> Option<IpAddr> {
    check_addrs(allow_local, &[literal(url)?]).err().flatten()
}

/// The URL's host when it is an IP address (`[…]` stripped for IPv6).
fn literal(url: &Url) -> Option<IpAddr> {
    let h = url.host_str()?;
    h.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn non_public_addresses_are_recognised() {
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
            "2002:c0a8:0101::1",  // 6to4 of 192.168.1.1
            "::127.0.0.1",
        ] {
            assert!(is_non_public(ip(a)), "{a} must count as non-public");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "169.253.1.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(!is_non_public(ip(a)), "{a} must count as public");
        }
    }

    #[test]
    fn the_decision_refuses_any_non_public_address_unless_base_is_loopback() {
        let mixed = [ip("93.184.215.14"), ip("10.0.0.5")];
        assert_eq!(check_addrs(false, &mixed), Err(Some(ip("10.0.0.5"))));
        assert_eq!(check_addrs(true, &mixed), Ok(()));
        assert_eq!(check_addrs(false, &[ip("93.184.215.14")]), Ok(()));
        assert_eq!(check_addrs(false, &[]), Err(None));
        assert_eq!(
            check_addrs(false, &[ip("::ffff:169.254.169.254")]),
            Err(Some(ip("::ffff:169.254.169.254")))
        );
    }

    #[tokio::test]
    async fn a_host_is_looked_up_and_every_address_checked() {
        // `localhost` resolves (via tokio's look-up) to loopback only.
        let u = Url::parse("https://localhost:9/files/1.png?sig=secret").expect("url");
        let e = check_url(false, &u).await.expect_err("loopback refused");
        assert!(e.contains("localhost") && e.contains("loopback"), "{e}");
        assert!(!e.contains("secret"), "no query in the message: {e}");
        assert!(check_url(true, &u).await.is_ok());
        let lit = Url::parse("https://169.254.169.254/latest/meta-data").expect("url");
        assert!(check_url(false, &lit).await.is_err());
        assert_eq!(literal_refused(false, &lit), Some(ip("169.254.169.254")));
        assert_eq!(literal_refused(true, &lit), None);
        let v6 = Url::parse("https://[fd00::1]/x").expect("url");
        assert_eq!(literal_refused(false, &v6), Some(ip("fd00::1")));
    }

    #[tokio::test]
    async fn the_resolver_refuses_what_the_rule_refuses() {
        let name: Name = "localhost".parse().expect("name");
        let refused = GuardedResolver { allow_local: false }.resolve(name).await;
        assert!(refused.is_err());
        let name: Name = "localhost".parse().expect("name");
        let ok = GuardedResolver { allow_local: true }
            .resolve(name)
            .await
            .expect("allowed");
        assert!(ok.into_iter().all(|a| a.ip().is_loopback()));
    }
}
