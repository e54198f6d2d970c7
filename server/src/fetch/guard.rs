//! The private-network half of the SSRF guard: which IP addresses count as
//! private, and a DNS resolver that never hands them to the HTTP client.
//!
//! Task values come from whoever can create tasks, so a URL like
//! `http://169.254.169.254/latest/meta-data/` or `http://localhost:6379/`
//! must not make this server reach into the network it runs in. Checking
//! the host name is not enough (`localhost`, `127.1`, a DNS name that
//! resolves to `10.0.0.5`, or changes its answer between the check and the
//! connect), so the check runs on the resolved addresses, inside the
//! resolver the connection uses: a refused name is never connected to, and
//! the refusal reads the same whether something listens there or not.
//! Literal-IP URLs skip DNS, so [`literal_ip`] is checked before sending.
//! Which hops need the check (and which are exempt) is decided in
//! `fetch::http`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Whether `ip` is anything but a public unicast address: loopback,
/// private (RFC 1918, `fc00::/7`), link-local (`169.254/16`, which holds
/// cloud metadata services, and `fe80::/10`), carrier-grade NAT
/// (`100.64/10`), unspecified, multicast, broadcast and reserved ranges, and
/// IPv4 addresses of those kinds written in IPv6 form (mapped `::ffff:…`,
/// compatible `::…`, NAT64 `64:ff9b::…`).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => private_v6(v6),
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", including 0.0.0.0
        || a == 10
        || a == 127
        || (a == 100 && (64..=127).contains(&b)) // carrier-grade NAT
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..=31).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 224 // multicast, reserved, broadcast
}

fn private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return private_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed by some)
        || (first & 0xff00) == 0xff00 // multicast
}

/// The IPv4 address an IPv6 address stands for, if it is one of the forms
/// that reach an IPv4 host: mapped (`::ffff:a.b.c.d`), compatible
/// (`::a.b.c.d`, deprecated) or NAT64 (`64:ff9b::a.b.c.d`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let [a, b] = s[6].to_be_bytes();
    let [c, d] = s[7].to_be_bytes();
    let tail = Ipv4Addr::new(a, b, c, d);
    let compatible = s[..6] == [0; 6];
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4];
    (compatible || nat64).then_some(tail)
}

/// The IP address a URL names directly (`http://10.0.0.1/`,
/// `http://[::1]/`), which no resolver sees.
pub(crate) fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        Host::Domain(_) => None,
    }
}

/// Why [`PublicOnly`] refused a name: every address it resolves to is
/// private. `fetch::http` finds this in a request error's causes and turns
/// it into [`super::FetchError::PrivateAddress`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} resolves only to private or loopback addresses")]
pub(crate) struct PrivateDestination {
    /// The name that was resolved.
    pub host: String,
}

/// A resolver that drops private addresses ([`is_private`]) from every
/// answer and fails with [`PrivateDestination`] when none is left. Used by
/// the HTTP client for hops that must stay on the public internet, so the
/// check applies to the address actually connected to (DNS rebinding and
/// redirects included).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = resolved.filter(|a| !is_private(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(PrivateDestination { host }) as _);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The [`PrivateDestination`] among an error's causes, if any.
pub(crate) fn private_destination<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a PrivateDestination> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<PrivateDestination>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal IP")
    }

    #[test]
    fn private_loopback_link_local_and_mapped_addresses_are_private() {
        for private in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_private(ip(private)), "{private}");
        }
    }

    #[test]
    fn public_addresses_are_not_private() {
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!is_private(ip(public)), "{public}");
        }
    }

    #[test]
    fn literal_ips_are_read_from_urls() {
        let url = |s: &str| Url::parse(s).expect("literal URL");
        assert_eq!(
            literal_ip(&url("http://10.0.0.1:8/x")),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(literal_ip(&url("http://[::1]/x")), Some(ip("::1")));
        // The URL parser normalises shorthand IPv4 forms.
        assert_eq!(literal_ip(&url("http://127.1/x")), Some(ip("127.0.0.1")));
        assert_eq!(literal_ip(&url("http://example.com/x")), None);
    }
}
