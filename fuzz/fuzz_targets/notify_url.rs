//! Fuzzes what decides where a notification may go: the target URL check
//! (`ferry_pipeline::notify::check_notify_url`, which also checks the value
//! of a `url_secret`) and the coordinator's address filter
//! (`coordinator/src/outbound/egress.rs`, compiled in as a module, as
//! `git_webhook` does with `webhook.rs`).
//!
//! The input is read three ways: as a URL (its error must be one of the
//! check's fixed sentences, quoting nothing of the URL, which may be a
//! secret; an accepted URL's IP literal host goes through the filter), as
//! a network (`10.0.0.0/8`: no panic, and what parses prints back the same
//! and holds its own address), and its first bytes as an IPv4 and an IPv6
//! address, where the filter's verdict must agree with std's own
//! classification and judge an IPv4 address and its IPv6 forms alike.
//! Seeds are in `fuzz/seeds/notify_url/`.
#![no_main]

#[path = "../../coordinator/src/outbound/egress.rs"]
#[allow(dead_code)]
mod egress;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use egress::{Cidr, Policy, is_public};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_url(&text);
    check_cidr(&text);
    let mut v4 = [0u8; 4];
    let mut v6 = [0u8; 16];
    for (i, b) in data.iter().take(16).enumerate() {
        if i < 4 {
            v4[i] = *b;
        }
        v6[i] = *b;
    }
    check_v4(Ipv4Addr::from(v4));
    check_v6(Ipv6Addr::from(v6));
});

/// The sentences `check_notify_url` may answer, and url's parse errors.
const URL_ERRORS: &[&str] = &[
    "`url` must not contain whitespace or control characters",
    "`url` must be an http:// or https:// address",
    "`url` has no host",
];
const PARSE_ERRORS: &[&str] = &[
    "empty host",
    "invalid international domain name",
    "invalid port number",
    "invalid IPv4 address",
    "invalid IPv6 address",
    "invalid domain character",
    "relative URL without a base",
    "relative URL with a cannot-be-a-base base",
    "a cannot-be-a-base URL doesn\u{2019}t have a host to set",
    "URLs more than 4 GB are not supported",
];

fn check_url(text: &str) {
    match ferry_pipeline::notify::check_notify_url(text) {
        Err(message) => {
            let fixed = URL_ERRORS.contains(&message.as_str())
                || message
                    .strip_prefix("invalid `url`: ")
                    .is_some_and(|e| PARSE_ERRORS.contains(&e))
                || message
                    .strip_prefix("`url` is at most 2048 bytes long, found ")
                    .is_some_and(|n| n == text.len().to_string());
            assert!(fixed, "an error of its own words only, got {message:?}");
        }
        Ok(()) => {
            let url = url::Url::parse(text).expect("an accepted URL parses");
            assert!(matches!(url.scheme(), "http" | "https"));
            let ip = match url.host() {
                Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
                Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
                _ => None,
            };
            if let Some(ip) = ip {
                check_ip(ip);
            }
        }
    }
}

fn check_cidr(text: &str) {
    let Ok(net) = text.parse::<Cidr>() else {
        return;
    };
    let shown = net.to_string();
    assert_eq!(shown.parse::<Cidr>().ok(), Some(net), "{shown} round trip");
    assert!(net.contains(net.addr()), "{net} does not hold its address");
    let allowed = Policy::new(vec![net]);
    assert!(allowed.allows(net.addr()), "{net} allowed but refused");
}

/// What must hold of the verdict on any address.
fn check_ip(ip: IpAddr) {
    let public = is_public(ip);
    assert_eq!(Policy::default().allows(ip), public);
    let obviously_internal = match ip {
        IpAddr::V4(a) => {
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_documentation()
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_unique_local()
                || a.is_unicast_link_local()
        }
    };
    if obviously_internal {
        assert!(!public, "{ip} counted as public");
    }
    if let IpAddr::V6(a) = ip
        && let Some(v4) = a.to_ipv4_mapped()
    {
        assert_eq!(public, is_public(IpAddr::V4(v4)), "{ip} vs {v4}");
    }
}

fn check_v4(a: Ipv4Addr) {
    check_ip(IpAddr::V4(a));
    let public = is_public(IpAddr::V4(a));
    let mapped = IpAddr::V6(a.to_ipv6_mapped());
    assert_eq!(is_public(mapped), public, "{a} mapped");
    let nat64 = Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(u32::from(a)));
    assert_eq!(is_public(IpAddr::V6(nat64)), public, "{a} via NAT64");
    let sixtofour = Ipv6Addr::from((0x2002_u128 << 112) | (u128::from(u32::from(a)) << 80) | 1);
    assert_eq!(is_public(IpAddr::V6(sixtofour)), public, "{a} via 6to4");
    // An allowance for exactly this address opens it, in both forms.
    let host = Policy::new(vec![Cidr::new(IpAddr::V4(a), 32).expect("a /32")]);
    assert!(host.allows(IpAddr::V4(a)) && host.allows(mapped));
}

fn check_v6(a: Ipv6Addr) {
    check_ip(IpAddr::V6(a));
}
