//! Which addresses outbound requests (webhooks) may reach: a deny-list of loopback,
//! link-local, private, CGNAT, unspecified, multicast and broadcast ranges (and their
//! IPv4-mapped and IPv4-compatible IPv6 forms), adjusted by configured allow and deny CIDRs.
//!
//! Pure: no IO. The delivery code resolves each hop's host itself, checks every address with
//! [`Policy::check`] and connects only to checked addresses (see `api::subscriptions`).
//!
//! Order of the rules: a configured deny range refuses; else a configured allow range admits;
//! else the built-in ranges refuse; else the address is admitted.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP range such as `10.0.0.0/8` or `fc00::/7` (a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the range. An IPv4 range also holds the IPv4-mapped IPv6 form of
    /// its addresses (callers normalise with [`canonical`] first).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("'{s}': the prefix length must be 0 to {max}")),
            },
        };
        Ok(Cidr { addr, prefix })
    }
}

/// An IPv4-mapped (`::ffff:a.b.c.d`) or IPv4-compatible (`::a.b.c.d`, not `::` or `::1`)
/// IPv6 address as the IPv4 address it carries; any other address unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let seg = v6.segments();
            if seg[..6].iter().all(|s| *s == 0) && u128::from(v6) > 1 {
                let [.., a, b, c, d] = v6.octets();
                return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            }
            ip
        }
        IpAddr::V4(_) => ip,
    }
}

/// Why the built-in deny-list refuses `ip`, or `None` when it does not.
pub fn default_denial(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_unspecified() || o[0] == 0 {
                Some("an unspecified address (0.0.0.0/8)")
            } else if v4.is_loopback() {
                Some("a loopback address (127.0.0.0/8)")
            } else if v4.is_link_local() {
                Some("a link-local address (169.254.0.0/16, including the cloud metadata service)")
            } else if v4.is_private() {
                Some("a private address (RFC 1918: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16)")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("a shared (CGNAT) address (100.64.0.0/10)")
            } else if v4.is_broadcast() {
                Some("the broadcast address (255.255.255.255)")
            } else if v4.is_multicast() {
                Some("a multicast address (224.0.0.0/4)")
            } else if o[0] >= 240 {
                Some("a reserved address (240.0.0.0/4)")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_unspecified() {
                Some("an unspecified address (::)")
            } else if v6.is_loopback() {
                Some("a loopback address (::1)")
            } else if (first & 0xffc0) == 0xfe80 {
                Some("a link-local address (fe80::/10)")
            } else if (first & 0xfe00) == 0xfc00 {
                Some("a private address (unique local, fc00::/7)")
            } else if (first & 0xffc0) == 0xfec0 {
                Some("a site-local address (fec0::/10)")
            } else if v6.is_multicast() {
                Some("a multicast address (ff00::/8)")
            } else if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some("the cloud metadata service")
            } else {
                None
            }
        }
    }
}

/// The deny-list with the configured exceptions.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Ranges admitted although the built-in list refuses them (`--webhook-allow`).
    pub allow: Vec<Cidr>,
    /// Ranges refused in addition (`--webhook-deny`); they win over `allow`.
    pub deny: Vec<Cidr>,
}

impl Policy {
    /// `Ok` when `ip` may be reached; otherwise the reason, naming the address.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let c = canonical(ip);
        if let Some(r) = self.deny.iter().find(|r| r.contains(c)) {
            return Err(format!(
                "{ip} is denied: it is in the configured deny range {r}"
            ));
        }
        if self.allow.iter().any(|r| r.contains(c)) {
            return Ok(());
        }
        match default_denial(ip) {
            Some(why) => Err(format!(
                "{ip} is denied: it is {why} (allow it with --webhook-allow)"
            )),
            None => Ok(()),
        }
    }
}

/// How webhooks are delivered: the address policy, attempts per event and the first retry delay
/// (doubled after each failed attempt).
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub policy: Policy,
    pub attempts: u32,
    pub retry_base: std::time::Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            policy: Policy::default(),
            attempts: 4,
            retry_base: std::time::Duration::from_secs(1),
        }
    }
}

/// The delay before retry number `attempt` (1-based: the delay after the first failure is
/// `base`), doubling, capped at five minutes.
pub fn backoff(base: std::time::Duration, attempt: u32) -> std::time::Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    base.saturating_mul(factor)
        .min(std::time::Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn default_list() {
        let denied = [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "169.254.169.254",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "::10.0.0.1",
            "fd00:ec2::254",
        ];
        for d in denied {
            assert!(default_denial(ip(d)).is_some(), "{d} should be denied");
        }
        let allowed = [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "100.63.255.255",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ];
        for a in allowed {
            assert!(default_denial(ip(a)).is_none(), "{a} should be allowed");
        }
    }

    #[test]
    fn cidr_parse_and_contains() {
        let c: Cidr = "127.0.0.1/32".parse().unwrap_or(Cidr {
            addr: ip("1.1.1.1"),
            prefix: 32,
        });
        assert!(c.contains(ip("127.0.0.1")));
        assert!(c.contains(ip("::ffff:127.0.0.1")));
        assert!(!c.contains(ip("127.0.0.2")));
        assert!(
            "10.0.0.0/8"
                .parse::<Cidr>()
                .is_ok_and(|c| c.contains(ip("10.9.9.9")))
        );
        assert!(
            "fc00::/7"
                .parse::<Cidr>()
                .is_ok_and(|c| c.contains(ip("fd00::1")))
        );
        assert!("[::1]".parse::<Cidr>().is_ok_and(|c| c.contains(ip("::1"))));
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .is_ok_and(|c| c.contains(ip("8.8.8.8")))
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
    }

    #[test]
    fn policy_order() {
        let p = Policy {
            allow: vec!["127.0.0.1/32".parse().unwrap_or(Cidr {
                addr: ip("1.1.1.1"),
                prefix: 32,
            })],
            deny: vec!["8.8.8.0/24".parse().unwrap_or(Cidr {
                addr: ip("1.1.1.1"),
                prefix: 32,
            })],
        };
        assert!(p.check(ip("127.0.0.1")).is_ok());
        assert!(p.check(ip("::ffff:127.0.0.1")).is_ok());
        assert!(p.check(ip("127.0.0.2")).is_err());
        assert!(p.check(ip("::1")).is_err());
        assert!(
            p.check(ip("8.8.8.8"))
                .is_err_and(|e| e.contains("deny range"))
        );
        assert!(p.check(ip("1.1.1.1")).is_ok());
        assert!(
            Policy::default()
                .check(ip("169.254.169.254"))
                .is_err_and(|e| e.contains("link-local"))
        );
    }

    #[test]
    fn backoff_doubles() {
        let b = std::time::Duration::from_secs(1);
        assert_eq!(backoff(b, 1), b);
        assert_eq!(backoff(b, 2), b * 2);
        assert_eq!(backoff(b, 3), b * 4);
        assert_eq!(backoff(b, 40), std::time::Duration::from_secs(300));
    }
}
