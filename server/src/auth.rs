//! Who may call what: HTTP basic auth for the Label Studio routes and
//! `/metrics` ([`basic_auth`]), and the admin check ([`admin_auth`]): a
//! bearer `ADMIN_TOKEN` when one is set, else loopback clients only.
//!
//! "Loopback" means the client, not the TCP peer: a reverse proxy on the
//! same host makes every peer loopback. So a request is judged by its
//! client address ([`client_address`]): when the peer is one of the
//! [`TrustedProxies`] (`--trusted-proxies`), the right-most address of
//! `X-Forwarded-For` that is not itself a trusted proxy; when the peer is not
//! trusted but the request carries forwarding headers (`X-Forwarded-For`,
//! `Forwarded`, `X-Real-IP`), the client is unknown and the request is not
//! treated as loopback.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use crate::error::ApiError;
use crate::secret::Secret;

/// Who may call what, as configured at start (`serve`'s flags).
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Guards the Label Studio routes and `/metrics` when set.
    pub basic_auth: Option<BasicAuth>,
    /// Bearer token for admin routes; without it they accept loopback only.
    pub admin_token: Option<Secret>,
    /// Reverse proxies whose `X-Forwarded-For` names the client for the
    /// admin loopback check (`--trusted-proxies`); none by default.
    pub trusted_proxies: TrustedProxies,
}

/// HTTP basic auth credentials for the protocol routes.
#[derive(Debug, Clone)]
pub struct BasicAuth {
    pub user: String,
    pub password: Secret,
}

/// Compares secrets without an early exit on the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware: HTTP basic auth with `BASIC_AUTH_USER`/`BASIC_AUTH_PASS`
/// when they are configured; a pass-through otherwise.
pub async fn basic_auth(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &access.basic_auth else {
        return next.run(request).await;
    };
    if basic_auth_matches(request.headers(), expected) {
        return next.run(request).await;
    }
    let mut response =
        ApiError::Unauthorized("basic auth credentials missing or wrong".into()).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Login required\""),
    );
    response
}

/// Whether `Authorization: Basic …` carries exactly `expected`.
fn basic_auth_matches(headers: &HeaderMap, expected: &BasicAuth) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        });
    given.is_some_and(|g| {
        let want = format!("{}:{}", expected.user, expected.password.expose());
        constant_time_eq(&g, want.as_bytes())
    })
}

/// Whether `Authorization: Bearer …` carries exactly `token`.
fn bearer_matches(headers: &HeaderMap, token: &Secret) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.expose().as_bytes()))
}

/// Middleware for the admin routes: [`admin_check`], with the body of a
/// refused request drained (up to `DRAIN_LIMIT`) so a client still
/// uploading gets the 401/403 instead of a reset connection, without
/// letting unauthenticated clients make the server read large bodies.
pub async fn admin_auth(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    match admin_check(&access, peer, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.answer_after_draining(request, DRAIN_LIMIT).await,
    }
}

/// See [`admin_auth`].
const DRAIN_LIMIT: usize = 4 << 20;

/// The admin rule: with `ADMIN_TOKEN` set, the bearer token and nothing
/// else; without it, only requests whose client ([`client_address`]) is a
/// loopback address.
pub fn admin_check(
    access: &Access,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if let Some(token) = &access.admin_token {
        return if bearer_matches(headers, token) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized(
                "admin routes need Authorization: Bearer <ADMIN_TOKEN>".into(),
            ))
        };
    }
    match client_address(peer, headers, &access.trusted_proxies) {
        ClientAddress::Known(ip) if ip.is_loopback() => Ok(()),
        ClientAddress::Forwarded { peer } if peer.is_loopback() => Err(ApiError::Forbidden(
            "admin routes accept only loopback clients, and this request came through a proxy (it carries X-Forwarded-For, Forwarded or X-Real-IP) that is not trusted, so its client is unknown: set ADMIN_TOKEN, or list the proxy in CLS_TRUSTED_PROXIES (--trusted-proxies)".into(),
        )),
        _ => Err(ApiError::Forbidden(
            "admin routes accept only loopback clients unless ADMIN_TOKEN is set (behind a reverse proxy, also list it in CLS_TRUSTED_PROXIES)".into(),
        )),
    }
}

/// Where a request comes from, as far as the server can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddress {
    /// The client's address: the peer, or what a trusted proxy forwarded.
    Known(IpAddr),
    /// An untrusted peer sent forwarding headers: the real client is
    /// somewhere behind it and unknown.
    Forwarded {
        /// The peer that sent the headers.
        peer: IpAddr,
    },
    /// No peer address, or a trusted proxy forwarded something that is not
    /// an IP address.
    Unknown,
}

/// Headers that say a request was relayed by a proxy.
const FORWARDING_HEADERS: [&str; 3] = ["x-forwarded-for", "forwarded", "x-real-ip"];

/// The client of a request from `peer`: see the module docs.
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    proxies: &TrustedProxies,
) -> ClientAddress {
    let Some(peer) = peer.map(|p| p.to_canonical()) else {
        return ClientAddress::Unknown;
    };
    if !proxies.contains(peer) {
        return if FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h)) {
            ClientAddress::Forwarded { peer }
        } else {
            ClientAddress::Known(peer)
        };
    }
    let hops = forwarded_for(headers);
    let Some(leftmost) = hops.first() else {
        // The proxy itself made the request.
        return ClientAddress::Known(peer);
    };
    // Entries left of the first untrusted one may be forged by the client.
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) if proxies.contains(*ip) => continue,
            Some(ip) => return ClientAddress::Known(*ip),
            None => return ClientAddress::Unknown,
        }
    }
    // Every hop is a trusted proxy: the left-most is the client.
    leftmost.map_or(ClientAddress::Unknown, ClientAddress::Known)
}

/// The addresses of every `X-Forwarded-For` header, left to right; entries
/// that are not IP addresses (`unknown`, obfuscated names) are `None`.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("unknown").split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.parse::<IpAddr>()
                .or_else(|_| e.parse::<SocketAddr>().map(|s| s.ip()))
                .ok()
                .map(|ip| ip.to_canonical())
        })
        .collect()
}

/// An IP network, `10.0.0.0/8` or `fd00::/8`; a bare address is a network
/// of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a `--trusted-proxies` entry does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid trusted proxy {value:?} in CLS_TRUSTED_PROXIES (--trusted-proxies): {reason}; give IP addresses or CIDR networks, comma-separated, e.g. 127.0.0.1,10.0.0.0/8"
)]
pub struct InvalidProxy {
    /// The entry as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FromStr for IpNet {
    type Err = InvalidProxy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| InvalidProxy {
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| fail("not an IP address"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| fail(&format!("the prefix length must be 0-{max}")))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl IpNet {
    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as
    /// their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(net.to_bits()),
                u128::from(ip.to_bits()),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(net.to_bits(), ip.to_bits(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` of `width` bits of `a` and `b` are equal.
fn prefix_eq(a: u128, b: u128, width: u8, prefix: u8) -> bool {
    let ignored = u32::from(width - prefix.min(width));
    a.checked_shr(ignored).unwrap_or(0) == b.checked_shr(ignored).unwrap_or(0)
}

/// The reverse proxies whose `X-Forwarded-For` is believed
/// (`--trusted-proxies`, `CLS_TRUSTED_PROXIES`; none by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses entries such as `127.0.0.1`, `10.0.0.0/8`, `::1`; blank entries
    /// are skipped.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, InvalidProxy> {
        entries
            .iter()
            .map(AsRef::as_ref)
            .filter(|e| !e.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<IpNet>, _>>()
            .map(Self)
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("literal IP")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("header value"));
        }
        map
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(list).expect("valid proxies")
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net: IpNet = "10.0.0.0/8".parse().expect("net");
        assert!(net.contains(ip("10.255.1.2")));
        assert!(net.contains(ip("::ffff:10.1.1.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        let one: IpNet = "::1".parse().expect("host");
        assert!(one.contains(ip("::1")));
        assert!(!one.contains(ip("::2")));
        let all: IpNet = "0.0.0.0/0".parse().expect("all");
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("::1")));
    }

    #[test]
    fn bad_proxy_entries_say_what_to_write() {
        for bad in ["localhost", "10.0.0.0/33", "::1/129", "1.2.3.4/x"] {
            let err = TrustedProxies::parse(&[bad]).expect_err(bad);
            assert!(err.to_string().contains("CLS_TRUSTED_PROXIES"), "{err}");
        }
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_hide_the_client() {
        let none = TrustedProxies::default();
        for name in FORWARDING_HEADERS {
            let h = headers(&[(name, "127.0.0.1")]);
            assert_eq!(
                client_address(Some(ip("127.0.0.1")), &h, &none),
                ClientAddress::Forwarded {
                    peer: ip("127.0.0.1")
                },
                "{name}"
            );
        }
        assert_eq!(
            client_address(Some(ip("::ffff:127.0.0.1")), &HeaderMap::new(), &none),
            ClientAddress::Known(ip("127.0.0.1"))
        );
    }

    #[test]
    fn a_trusted_proxy_forwards_the_right_most_untrusted_address() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = Some(ip("127.0.0.1"));
        let client = |xff: &[&str]| {
            let pairs: Vec<(&'static str, &str)> =
                xff.iter().map(|v| ("x-forwarded-for", *v)).collect();
            client_address(peer, &headers(&pairs), &trusted)
        };
        // A client can prepend anything; only the proxies' own entries count.
        assert_eq!(
            client(&["127.0.0.1, 203.0.113.7, 10.0.0.2"]),
            ClientAddress::Known(ip("203.0.113.7"))
        );
        assert_eq!(
            client(&["127.0.0.1", "203.0.113.7:5000"]),
            ClientAddress::Known(ip("203.0.113.7"))
        );
        assert_eq!(
            client(&["127.0.0.1"]),
            ClientAddress::Known(ip("127.0.0.1"))
        );
        assert_eq!(client(&[]), ClientAddress::Known(ip("127.0.0.1")));
        assert_eq!(client(&["unknown"]), ClientAddress::Unknown);
    }
}
