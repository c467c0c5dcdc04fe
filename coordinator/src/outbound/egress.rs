//! Which addresses the coordinator's outgoing requests (notifications) may
//! reach: the public internet only, unless an admin allows more networks
//! (`--notify-allow-network CIDR`). Loopback, private (RFC 1918, ULA
//! fc00::/7), link-local (cloud metadata at 169.254.169.254 included),
//! CGNAT 100.64/10, unspecified, multicast, broadcast, documentation and
//! other special-purpose ranges are refused, also in the IPv6 forms that
//! carry an IPv4 address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
//! NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`).
//!
//! Pure std and no I/O, so the fuzz target `notify_url` compiles it in as a
//! module: the check runs on addresses *after* name resolution
//! (`client.rs`'s connector resolves, filters with [`Policy::allows`] and
//! connects only to what passed), never on host names.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network: an address and a prefix length (`10.0.0.0/8`, `fc00::/7`;
/// a bare address is a single host). Bits past the prefix are cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The network of `addr` with `prefix` bits (at most 32 for IPv4, 128
    /// for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(CidrError(format!(
                "a prefix length is at most {max} for this address"
            )));
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
        };
        Ok(Cidr { addr, prefix })
    }

    /// The first address of the network.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network (an IPv4 network also holds the
    /// IPv4-mapped IPv6 forms of its addresses).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.prefix) == u128::from(net)
            }
            // An IPv6 network holds mapped IPv4 addresses in their IPv6 form.
            (IpAddr::V6(net), IpAddr::V4(ip)) => {
                u128::from(ip.to_ipv6_mapped()) & mask128(self.prefix) == u128::from(net)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            CidrError(format!(
                "`{}` is not an IP address (expected a network like 10.0.0.0/8 or fc00::/7)",
                clip(addr)
            ))
        })?;
        let prefix = match prefix {
            None => {
                if addr.is_ipv4() {
                    32
                } else {
                    128
                }
            }
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| CidrError(format!("`{}` is not a prefix length", clip(p))))?,
        };
        Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask32(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

fn mask128(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p.min(128))),
    }
}

/// At most 48 characters of operator text, for messages.
fn clip(s: &str) -> String {
    s.chars().take(48).collect()
}

/// What outgoing requests may reach: every public address, and the
/// networks an admin allowed on top.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    allowed: Vec<Cidr>,
}

impl Policy {
    /// Public addresses, and `allowed` besides.
    pub fn new(allowed: Vec<Cidr>) -> Policy {
        Policy { allowed }
    }

    /// The networks allowed besides the public ones.
    pub fn allowed(&self) -> &[Cidr] {
        &self.allowed
    }

    /// Whether a request may go to `ip`: an allowed network holds it, or
    /// it is a public address ([`is_public`]).
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|n| n.contains(ip)) || is_public(ip)
    }
}

/// Whether `ip` is an ordinary public unicast address: not loopback,
/// private, shared (CGNAT), link-local, unspecified, multicast, broadcast,
/// documentation, benchmarking or otherwise reserved; IPv6 forms that
/// carry an IPv4 address are judged by that address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// IPv4 ranges that are not the public internet (IANA's special-purpose
/// registry, those not globally reachable, plus multicast and 240/4).
const V4_SPECIAL: &[(u32, u8)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network", unspecified
    (0x0a00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 shared address space (CGNAT)
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link-local (cloud metadata)
    (0xac10_0000, 12), // 172.16.0.0/12 private
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2.0/24 documentation
    (0xc058_6300, 24), // 192.88.99.0/24 6to4 relay anycast
    (0xc0a8_0000, 16), // 192.168.0.0/16 private
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 documentation
    (0xcb00_7100, 24), // 203.0.113.0/24 documentation
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, 255.255.255.255 broadcast
];

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let n = u32::from(ip);
    !V4_SPECIAL
        .iter()
        .any(|&(net, prefix)| n & mask32(prefix) == net)
}

/// IPv6 ranges inside 2000::/3 (global unicast) that are not the public
/// internet. Everything outside 2000::/3 is refused, except the forms
/// that carry an IPv4 address, judged by it.
const V6_SPECIAL: &[(u128, u8)] = &[
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 23), // IETF protocol assignments (Teredo, ORCHID, ...)
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32), // documentation
    (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20), // documentation
];

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let n = u128::from(ip);
    let in_net = |net: u128, prefix: u8| n & mask128(prefix) == net;
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible; :: and ::1 are
    // in it too, and so refused: 0.0.0.0 and 0.0.0.1 are not public).
    if in_net(0xffff_0000_0000, 96) || in_net(0, 96) {
        return is_public_v4(Ipv4Addr::from(n as u32));
    }
    // NAT64's well-known prefix: the gateway connects to the IPv4 address.
    if in_net(0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96) {
        return is_public_v4(Ipv4Addr::from(n as u32));
    }
    // 6to4: 2002:AABB:CCDD::/48 routes to IPv4 AA.BB.CC.DD.
    if in_net(0x2002_0000_0000_0000_0000_0000_0000_0000, 16) {
        return is_public_v4(Ipv4Addr::from((n >> 80) as u32));
    }
    // Only global unicast; loopback, ULA fc00::/7, link-local fe80::/10,
    // site-local fec0::/10, multicast ff00::/8, discard 100::/64 and the
    // rest of what is not 2000::/3 fall outside it.
    in_net(0x2000_0000_0000_0000_0000_0000_0000_0000, 3)
        && !V6_SPECIAL.iter().any(|&(net, prefix)| in_net(net, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn internal_and_special_addresses_are_not_public() {
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::ffff:0.0.0.0",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:0001::1",
            "2002:c0a8:0101::",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "3fff::1",
        ] {
            assert!(!is_public(ip(s)), "{s} counted as public");
            assert!(!Policy::default().allows(ip(s)), "{s} allowed by default");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.167.255.255",
            "192.169.0.1",
            "169.253.0.1",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
        ] {
            assert!(is_public(ip(s)), "{s} counted as internal");
            assert!(Policy::default().allows(ip(s)), "{s} refused");
        }
    }

    #[test]
    fn networks_parse_mask_and_contain() {
        let lo: Cidr = "127.0.0.0/8".parse().expect("cidr");
        assert_eq!(lo.to_string(), "127.0.0.0/8");
        assert!(lo.contains(ip("127.1.2.3")));
        assert!(lo.contains(ip("::ffff:127.0.0.1")));
        assert!(!lo.contains(ip("128.0.0.1")));
        assert!(!lo.contains(ip("::1")));
        let host: Cidr = "10.1.2.3".parse().expect("cidr");
        assert_eq!(host.to_string(), "10.1.2.3/32");
        assert!(host.contains(ip("10.1.2.3")) && !host.contains(ip("10.1.2.4")));
        let masked: Cidr = "192.168.7.9/16".parse().expect("cidr");
        assert_eq!(masked.to_string(), "192.168.0.0/16");
        let ula: Cidr = "fc00::/7".parse().expect("cidr");
        assert!(ula.contains(ip("fdff::1")) && !ula.contains(ip("fe00::1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains(ip("10.0.0.1")) && !all.contains(ip("fc00::1")));
        let all6: Cidr = "::/0".parse().expect("cidr");
        assert!(all6.contains(ip("fc00::1")) && all6.contains(ip("10.0.0.1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "localhost",
            "10.0.0/8",
            "1.2.3.4/x",
            "/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn an_allowance_opens_its_network_only() {
        let p = Policy::new(vec!["127.0.0.0/8".parse().expect("cidr")]);
        assert!(p.allows(ip("127.0.0.1")));
        assert!(p.allows(ip("::ffff:127.0.0.1")));
        assert!(!p.allows(ip("::1")));
        assert!(!p.allows(ip("10.0.0.1")));
        assert!(!p.allows(ip("169.254.169.254")));
        assert!(p.allows(ip("8.8.8.8")));
    }

    // Generated addresses (`scripts/fuzz` runs these when there is no
    // nightly toolchain; the fuzz target `notify_url` checks the same).
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed, TestRunner};

    fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    fn runner() -> TestRunner {
        TestRunner::new(Config {
            cases: env_number("FERRY_PROPTEST_CASES", 2_000),
            rng_seed: RngSeed::Fixed(env_number("FERRY_PROPTEST_SEED", 7)),
            failure_persistence: None,
            ..Config::default()
        })
    }

    /// IPv4 addresses, half of them inside a special range.
    fn v4() -> impl Strategy<Value = Ipv4Addr> {
        prop_oneof![
            any::<u32>(),
            (0..V4_SPECIAL.len(), any::<u32>()).prop_map(|(i, low)| {
                let (net, prefix) = V4_SPECIAL[i];
                net | (low & !mask32(prefix))
            }),
        ]
        .prop_map(Ipv4Addr::from)
    }

    #[test]
    fn proptest_egress_an_ipv4_address_and_its_ipv6_forms_agree() {
        let outcome = runner().run(&v4(), |a| {
            let public = is_public(IpAddr::V4(a));
            let std_internal = a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_documentation();
            prop_assert!(!(public && std_internal), "{a} public");
            let n = u128::from(u32::from(a));
            for v6 in [
                a.to_ipv6_mapped(),
                Ipv6Addr::from((0x0064_ff9b_u128 << 96) | n),
                Ipv6Addr::from((0x2002_u128 << 112) | (n << 80) | 1),
            ] {
                prop_assert_eq!(is_public(IpAddr::V6(v6)), public, "{} vs {}", v6, a);
            }
            let host = Policy::new(vec![
                Cidr::new(IpAddr::V4(a), 32).map_err(|e| TestCaseError::fail(e.to_string()))?,
            ]);
            prop_assert!(host.allows(IpAddr::V4(a)) && host.allows(IpAddr::V6(a.to_ipv6_mapped())));
            Ok(())
        });
        assert!(outcome.is_ok(), "{outcome:?}");
    }

    #[test]
    fn proptest_egress_ipv6_verdicts_agree_with_std() {
        let v6 = prop_oneof![
            any::<u128>(),
            // Around the prefixes that matter.
            (
                prop::sample::select(vec![
                    0u128,
                    0xffff_0000_0000,
                    0xfc00 << 112,
                    0xfe80 << 112,
                    0xff00 << 112,
                    0x2001 << 112,
                    0x2002 << 112,
                    0x0064_ff9b << 96
                ]),
                any::<u64>()
            )
                .prop_map(|(net, low)| net | u128::from(low)),
        ];
        let outcome = runner().run(&v6, |n| {
            let a = Ipv6Addr::from(n);
            let public = is_public(IpAddr::V6(a));
            let std_internal = a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_unique_local()
                || a.is_unicast_link_local();
            prop_assert!(!(public && std_internal), "{a} public");
            if let Some(v4) = a.to_ipv4_mapped() {
                prop_assert_eq!(public, is_public(IpAddr::V4(v4)));
            }
            Ok(())
        });
        assert!(outcome.is_ok(), "{outcome:?}");
    }

    #[test]
    fn proptest_egress_networks_print_back_and_hold_their_address() {
        let nets = prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, p)| (IpAddr::V4(Ipv4Addr::from(a)), p)),
            (any::<u128>(), 0u8..=128).prop_map(|(a, p)| (IpAddr::V6(Ipv6Addr::from(a)), p)),
        ];
        let outcome = runner().run(&nets, |(addr, prefix)| {
            let net = Cidr::new(addr, prefix).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(net.contains(addr), "{} not in {}", addr, net);
            prop_assert_eq!(net.to_string().parse::<Cidr>(), Ok(net));
            prop_assert!(Policy::new(vec![net]).allows(addr));
            Ok(())
        });
        assert!(outcome.is_ok(), "{outcome:?}");
    }
}
