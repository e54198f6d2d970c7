//! Forward proxies for downloads (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`,
//! `NO_PROXY`, upper or lower case) and what they change for the SSRF guard.
//!
//! Through a forward proxy the *proxy* resolves the destination's name, so
//! the guarded client's resolver ([`super::guard::PublicOnly`]) would only
//! ever see the proxy's name: `http://localhost:6379/` would be fetched by
//! the proxy on our behalf. So the client that must stay on the public
//! internet never uses a proxy, and a guarded hop that the proxy settings
//! send through a proxy is checked here first: its name is resolved and the
//! hop refused when *any* address is private (the proxy picks among them,
//! not us). The proxy resolves the name again, so a name that changes its
//! answer between the two lookups (DNS rebinding) can still lead the proxy
//! to a private address; the proxy's own access rules are the defence
//! there, as for every client behind it.
//!
//! The settings are read once, and the same [`ProxySettings`] both build
//! the client that proxies and decide which hops are proxied, so the check
//! and the transport cannot disagree.

use std::fmt;

use hyper_util::client::proxy::matcher::Matcher;
use url::{Host, Url};

use super::error::FetchError;
use super::guard::{is_private, literal_ip};
use super::http::private_address;

/// reqwest's constructor for one kind of proxy (HTTP, HTTPS or all).
type MakeProxy = fn(&str) -> reqwest::Result<reqwest::Proxy>;

/// Where downloads go through a forward proxy. Proxy URLs may hold
/// credentials, so `Debug` shows only which settings are present.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// `ALL_PROXY`: for both schemes when the scheme's own is unset.
    pub all: Option<String>,
    /// `HTTP_PROXY`: for `http://` URLs.
    pub http: Option<String>,
    /// `HTTPS_PROXY`: for `https://` URLs.
    pub https: Option<String>,
    /// `NO_PROXY`: hosts, domains (`example.com` covers its subdomains),
    /// IPs and CIDR ranges reached directly; `*` for all.
    pub no: Option<String>,
}

impl fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "set" } else { "unset" };
        f.debug_struct("ProxySettings")
            .field("all", &set(&self.all))
            .field("http", &set(&self.http))
            .field("https", &set(&self.https))
            .field("no", &self.no)
            .finish()
    }
}

impl ProxySettings {
    /// The settings in this process's environment, as curl and most HTTP
    /// clients read them (upper case first, empty values ignored).
    pub fn from_env() -> Self {
        let var = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        };
        Self {
            all: var(["ALL_PROXY", "all_proxy"]),
            http: var(["HTTP_PROXY", "http_proxy"]),
            https: var(["HTTPS_PROXY", "https_proxy"]),
            no: var(["NO_PROXY", "no_proxy"]),
        }
    }

    /// Whether any proxy is configured.
    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.http.is_none() && self.https.is_none()
    }

    /// Configures `builder` to use exactly these proxies (and not also the
    /// environment's, which reqwest would read by default).
    pub(crate) fn apply(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, FetchError> {
        let mut builder = builder.no_proxy();
        let scheme_proxies: [(&Option<String>, MakeProxy); 3] = [
            (&self.http, |p| reqwest::Proxy::http(p)),
            (&self.https, |p| reqwest::Proxy::https(p)),
            (&self.all, |p| reqwest::Proxy::all(p)),
        ];
        for (setting, make) in scheme_proxies {
            if let Some(proxy) = setting {
                let proxy = make(proxy).map_err(|_| FetchError::Setup {
                    // The value may hold a password: name the setting only.
                    reason: "a proxy URL in HTTP_PROXY/HTTPS_PROXY/ALL_PROXY is not a valid URL"
                        .into(),
                })?;
                let no = self.no.as_deref().and_then(reqwest::NoProxy::from_string);
                builder = builder.proxy(proxy.no_proxy(no));
            }
        }
        Ok(builder)
    }

    /// The decision half of [`ProxySettings::apply`].
    pub(crate) fn routes(&self) -> ProxyRoutes {
        if self.is_empty() {
            return ProxyRoutes(None);
        }
        let mut builder = Matcher::builder();
        if let Some(all) = &self.all {
            builder = builder.all(all.as_str());
        }
        if let Some(http) = &self.http {
            builder = builder.http(http.as_str());
        }
        if let Some(https) = &self.https {
            builder = builder.https(https.as_str());
        }
        if let Some(no) = &self.no {
            builder = builder.no(no.as_str());
        }
        ProxyRoutes(Some(builder.build()))
    }
}

/// Which URLs the configured proxies carry.
pub(crate) struct ProxyRoutes(Option<Matcher>);

impl ProxyRoutes {
    /// Whether a request for `url` goes through a proxy.
    pub(crate) fn carries(&self, url: &Url) -> bool {
        let Some(matcher) = &self.0 else {
            return false;
        };
        url.as_str()
            .parse::<::http::Uri>()
            .is_ok_and(|uri| matcher.intercept(&uri).is_some())
    }
}

/// Refuses a proxied hop whose host resolves to any private address (see
/// the module docs for why any, not all).
pub(crate) async fn check_public(url: &Url, shown: &str) -> Result<(), FetchError> {
    let refused = || private_address(shown, url.host_str().unwrap_or_default());
    if let Some(ip) = literal_ip(url) {
        return if is_private(ip) {
            Err(refused())
        } else {
            Ok(())
        };
    }
    let Some(Host::Domain(host)) = url.host() else {
        return Err(refused());
    };
    let port = url.port_or_known_default().unwrap_or(0);
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| FetchError::Request {
            url: shown.to_owned(),
            reason: format!("cannot resolve {host}: {e}"),
        })?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| is_private(a.ip())) {
        return Err(refused());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("test URL")
    }

    #[test]
    fn routes_follow_the_scheme_and_no_proxy() {
        let settings = ProxySettings {
            http: Some("http://proxy.internal:3128".into()),
            no: Some("images.internal, 10.0.0.0/8".into()),
            ..ProxySettings::default()
        };
        let routes = settings.routes();
        assert!(routes.carries(&url("http://example.com/a.png")));
        assert!(
            !routes.carries(&url("https://example.com/a.png")),
            "no HTTPS proxy"
        );
        assert!(!routes.carries(&url("http://images.internal/a.png")));
        assert!(!routes.carries(&url("http://cdn.images.internal/a.png")));
        assert!(!routes.carries(&url("http://10.1.2.3/a.png")));

        let all = ProxySettings {
            all: Some("socks5://proxy.internal:1080".into()),
            ..ProxySettings::default()
        };
        assert!(all.routes().carries(&url("https://example.com/a.png")));
        assert!(
            !ProxySettings::default()
                .routes()
                .carries(&url("http://example.com/"))
        );
    }

    #[test]
    fn proxy_credentials_are_not_shown() {
        let settings = ProxySettings {
            https: Some("http://user:hunter2@proxy.internal:3128".into()),
            ..ProxySettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("https: \"set\""), "{shown}");
    }

    #[tokio::test]
    async fn proxied_hops_to_private_names_are_refused_before_sending() {
        for target in [
            "http://localhost:9/",
            "http://127.0.0.1:9/",
            "http://[::1]:9/",
        ] {
            let err = check_public(&url(target), target).await.expect_err(target);
            assert!(matches!(err, FetchError::PrivateAddress { .. }), "{err}");
        }
    }
}
