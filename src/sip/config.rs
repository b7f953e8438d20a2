//! Settings of the [`Proxy`](super::Proxy), with the defaults LCS 2003 and RFC 3261 suggest.
//!
//! Plain data with public fields: the `config` module of the crate maps `lcs.toml` onto it,
//! tests build it with struct-update syntax from [`ProxyConfig::default`].

use std::time::Duration;

use super::framer::DEFAULT_MAX_MESSAGE_SIZE;
use super::transaction::CompletedCaps;
use super::uri::Uri;

/// Identifies a static route (an outgoing mutual-TLS connection to a federation peer). The shell
/// knows the route's next hop and certificate; the SIP core only knows this number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId(pub u32);

/// A static route: requests for `domain` (or any subdomain of it) go over `route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    /// The domain matched against the Request-URI host, e.g. `fabrikam.com`.
    pub domain: String,
    /// The route connection to use.
    pub route: RouteId,
}

/// Proxy and registrar settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Domains this server is registrar and final proxy for. The first is the domain proper;
    /// any others are aliases of it (`127.0.0.1` for SIP tools on the same machine), so
    /// `alice@127.0.0.1` is the same address of record as `alice@contoso.com`.
    /// Default: `["contoso.com"]`.
    pub local_domains: Vec<String>,
    /// This server's host name: written in the Via it adds, and a Request-URI host that means
    /// "this server" (like a local domain). Default: `lcs.contoso.com`.
    pub server_host: String,
    /// Static routes to federated domains, e.g. `fabrikam.com` → `RouteId(0)`. Default: none.
    pub routes: Vec<StaticRoute>,
    /// RFC 3261 T1, the round-trip estimate. Timer F (non-INVITE transaction timeout) is
    /// 64 × T1 and completed server transactions are kept as long. Default: 500 ms (so 32 s).
    pub t1: Duration,
    /// Largest accepted message, headers plus body; larger ones get 513 and the connection is
    /// closed. Default: 64 KiB.
    pub max_message_size: usize,
    /// How long a message (head and body) may take to arrive whole from its first byte; past
    /// it the connection is closed. Default: 10 s.
    pub message_timeout: Duration,
    /// The most completed server transactions held, per connection and in total; past a cap
    /// the oldest is released before its linger ends. Default: 4,096 and 32,768.
    pub completed: CompletedCaps,
    /// Shortest registration accepted; shorter non-zero requests get 423 Interval Too Brief
    /// with Min-Expires. Default: 60 s.
    pub min_expires: u32,
    /// Longest registration granted; longer requests are shortened. Default: 7200 s.
    pub max_expires: u32,
    /// Registration length when the REGISTER gives none. Default: 3600 s.
    pub default_expires: u32,
    /// Value of the Server header on responses this server generates. Default: `lcs-sim`.
    pub server_name: String,
    /// Most requests that may wait for one route connection; beyond, 503. Default: 1000.
    pub max_route_queue: usize,
    /// Least time between two attempts to open a route connection after one failed, while
    /// requests wait for it. Default: 5 s.
    pub route_retry_interval: Duration,
    /// Mixed into Via branches and tags so two server instances (before and after a restart)
    /// never reuse an identifier. The shell passes something unique per start, from its seeded
    /// RNG. Default: 0.
    pub instance: u64,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            local_domains: vec!["contoso.com".to_owned()],
            server_host: "lcs.contoso.com".to_owned(),
            routes: Vec::new(),
            t1: Duration::from_millis(500),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            message_timeout: Duration::from_secs(10),
            completed: CompletedCaps::default(),
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
            server_name: "lcs-sim".to_owned(),
            max_route_queue: 1000,
            route_retry_interval: Duration::from_secs(5),
            instance: 0,
        }
    }
}

impl ProxyConfig {
    /// Timer F: how long a forwarded non-INVITE request may wait for a final response.
    pub fn timer_f(&self) -> Duration {
        self.t1 * 64
    }

    /// Whether `host` is this server or one of its domains.
    pub fn is_local(&self, host: &str) -> bool {
        host.eq_ignore_ascii_case(&self.server_host)
            || self
                .local_domains
                .iter()
                .any(|d| host.eq_ignore_ascii_case(d))
    }

    /// The address of record `uri` names, as the registrar keys it: `user@host`, with a local
    /// host (an alias, or this server's name) written as the domain proper, so a user registered
    /// through an alias is found under the domain and the other way round.
    pub fn aor(&self, uri: &Uri) -> String {
        match (&uri.user, self.local_domains.first()) {
            (Some(user), Some(domain)) if self.is_local(&uri.host) => {
                format!("{user}@{}", domain.to_ascii_lowercase())
            }
            _ => uri.aor(),
        }
    }

    /// The static route for `host`: exact domain match or subdomain (`sip.fabrikam.com`).
    pub fn route_for(&self, host: &str) -> Option<RouteId> {
        let host = host.to_ascii_lowercase();
        self.routes
            .iter()
            .find(|r| {
                let domain = r.domain.to_ascii_lowercase();
                host == domain
                    || host
                        .strip_suffix(&domain)
                        .is_some_and(|sub| sub.ends_with('.'))
            })
            .map(|r| r.route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_matching() {
        let config = ProxyConfig {
            routes: vec![StaticRoute {
                domain: "fabrikam.com".into(),
                route: RouteId(3),
            }],
            ..ProxyConfig::default()
        };
        assert_eq!(config.timer_f(), Duration::from_secs(32));
        assert!(config.is_local("CONTOSO.com") && config.is_local("lcs.contoso.com"));
        assert!(!config.is_local("fabrikam.com"));
        assert_eq!(config.route_for("Fabrikam.com"), Some(RouteId(3)));
        assert_eq!(config.route_for("sip.fabrikam.com"), Some(RouteId(3)));
        assert_eq!(config.route_for("notfabrikam.com"), None);
        let aliased = ProxyConfig {
            local_domains: vec!["Contoso.com".into(), "127.0.0.1".into(), "localhost".into()],
            ..ProxyConfig::default()
        };
        for uri in [
            "sip:alice@contoso.com",
            "sip:alice@127.0.0.1:5061",
            "sip:alice@LOCALHOST",
            "sip:alice@lcs.contoso.com",
        ] {
            assert_eq!(aliased.aor(&Uri::parse(uri).unwrap()), "alice@contoso.com");
        }
        let remote = Uri::parse("sip:bob@Fabrikam.com").unwrap();
        assert_eq!(aliased.aor(&remote), "bob@fabrikam.com");
    }
}
