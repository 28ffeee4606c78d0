//! IPv4 and IPv6 address ranges, as Envoy's `CidrRange` holds them: an address and a
//! prefix length, the address masked to the prefix (`10.1.2.3/8` is `10.0.0.0/8`).
//! A bare address is a one-address range (`/32`, `/128`), as Higress's
//! `AddrStrToCidrRange` makes it. An IPv4 range never matches an IPv6 peer and the other
//! way round, except that an IPv4-mapped IPv6 peer (`::ffff:a.b.c.d`, what a dual-stack
//! socket reports for an IPv4 client) is compared as its IPv4 address.

use std::fmt;
use std::net::IpAddr;

/// One address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cidr {
    V4 { addr: u32, mask: u32, len: u8 },
    V6 { addr: u128, mask: u128, len: u8 },
}

impl Cidr {
    /// `a.b.c.d`, `a.b.c.d/n`, `x::y` or `x::y/n`; `None` when it is neither.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => {
                // Digits only: `u8::from_str` would take `+8`.
                if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (ip, Some(len.parse::<u8>().ok()?))
            }
            None => (s, None),
        };
        match ip.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) => {
                let len = len.unwrap_or(32);
                if len > 32 {
                    return None;
                }
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                Some(Cidr::V4 {
                    addr: u32::from(a) & mask,
                    mask,
                    len,
                })
            }
            IpAddr::V6(a) => {
                let len = len.unwrap_or(128);
                if len > 128 {
                    return None;
                }
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                Some(Cidr::V6 {
                    addr: u128::from(a) & mask,
                    mask,
                    len,
                })
            }
        }
    }

    /// Whether `ip` is in this range.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self, ip) {
            (Cidr::V4 { addr, mask, .. }, IpAddr::V4(a)) => u32::from(a) & mask == *addr,
            (Cidr::V6 { addr, mask, .. }, IpAddr::V6(a)) => u128::from(a) & mask == *addr,
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cidr::V4 { addr, len, .. } => write!(f, "{}/{len}", std::net::Ipv4Addr::from(addr)),
            Cidr::V6 { addr, len, .. } => write!(f, "{}/{len}", std::net::Ipv6Addr::from(addr)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_ranges_are_masked_and_matched() {
        let c = Cidr::parse("10.1.2.3/8").unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        let one = Cidr::parse("192.168.1.7").unwrap();
        assert_eq!(one.to_string(), "192.168.1.7/32");
        assert!(one.contains(ip("192.168.1.7")));
        assert!(!one.contains(ip("192.168.1.8")));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("1.2.3.4")));
        assert!(!all.contains(ip("::1")), "an IPv4 range never matches IPv6");
        // A dual-stack socket's IPv4 client.
        assert!(Cidr::parse("127.0.0.0/8")
            .unwrap()
            .contains(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn v6_ranges_are_masked_and_matched() {
        let c = Cidr::parse("2001:db8::1/32").unwrap();
        assert_eq!(c.to_string(), "2001:db8::/32");
        assert!(c.contains(ip("2001:db8:ffff::1")));
        assert!(!c.contains(ip("2001:db9::1")));
        assert!(!c.contains(ip("10.0.0.1")));
        let lo = Cidr::parse("::1").unwrap();
        assert_eq!(lo.to_string(), "::1/128");
        assert!(lo.contains(ip("::1")));
        assert!(!lo.contains(ip("127.0.0.1")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("fe80::1")));
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in [
            "",
            "abc",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0/8",
            "1.2.3.4/8/8",
            " 1.2.3.4",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad:?}");
        }
    }
}
