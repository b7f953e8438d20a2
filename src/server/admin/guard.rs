//! What a request must show before any handler runs: that it is meant for this endpoint, does
//! not come from a web page, and (when it changes something) says it is JSON and carries the
//! run's token.
//!
//! Listening on loopback alone does not keep browsers out. Any page can post an HTML form to
//! `http://127.0.0.1:5080/rebind` (no preflight: a form's content types are "simple"), and a
//! page whose DNS name is re-pointed at 127.0.0.1 can read `/certs` as its own origin. So, in
//! this order:
//! 1. `Host` (and an absolute request target's authority) must name this endpoint: the bound
//!    address or `localhost`, with no port or the bound one. Otherwise 421: a rebound DNS name
//!    arrives with the attacker's host name.
//! 2. An `Origin`, when present, must be a loopback one (`127.0.0.0/8`, `[::1]`, `localhost`).
//!    Otherwise 403: browsers add it to cross-origin requests and form posts.
//! 3. A state-changing request (any method but GET and HEAD) needs `Content-Type:
//!    application/json`, even with an empty body, or 415: a form cannot send it, and a page
//!    that wants to must ask first (a CORS preflight, which nothing here answers).
//! 4. It also needs `Authorization: Bearer <token>` (the token `serve` writes to `serve.json`), or
//!    401: other local processes that cannot read the deployment cannot change it either.
//!
//! `GET /healthz`, `/metrics` and `/certs` need no token (probes and Prometheus scrape them),
//! but do pass 1 and 2. Each refusal is counted in `/metrics`
//! (`lcs_admin_requests_refused_total{reason}`) and changes nothing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::token::Token;

/// Why a request was refused before it reached a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `Host` does not name this endpoint (421).
    Host,
    /// `Origin` is present and not loopback (403).
    Origin,
    /// A state-changing request without `Content-Type: application/json` (415).
    ContentType,
    /// A state-changing request without the run's bearer token (401).
    Token,
}

impl Refusal {
    /// Every refusal, in the order the checks run.
    pub const ALL: [Refusal; 4] = [
        Refusal::Host,
        Refusal::Origin,
        Refusal::ContentType,
        Refusal::Token,
    ];

    /// The stable name (`/metrics` label).
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Host => "host",
            Refusal::Origin => "origin",
            Refusal::ContentType => "content_type",
            Refusal::Token => "token",
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Host => StatusCode::MISDIRECTED_REQUEST,
            Refusal::Origin => StatusCode::FORBIDDEN,
            Refusal::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Token => StatusCode::UNAUTHORIZED,
        }
    }

    fn message(self, local: SocketAddr) -> String {
        match self {
            Refusal::Host => format!(
                "this is the admin endpoint at {local} (or localhost:{}); a request for another host is not answered",
                local.port()
            ),
            Refusal::Origin => {
                "a request from a web page that is not on loopback is refused".to_owned()
            }
            Refusal::ContentType => {
                "a request that changes something needs Content-Type: application/json, even with an empty body"
                    .to_owned()
            }
            Refusal::Token => {
                "a request that changes something needs `Authorization: Bearer <token>` with the token in DIR/serve.json (`lcs-sim fix DIR --live` sends it)"
                    .to_owned()
            }
        }
    }
}

/// The checks of one endpoint: its bound address and the run's token.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The address the endpoint listens on.
    pub local: SocketAddr,
    /// The run's token.
    pub token: Token,
}

impl Guard {
    /// The first check `method`, `uri` and `headers` fail, in the module's order.
    pub fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        let mut hosts = headers.get_all(header::HOST).iter();
        let host_ok = match (hosts.next(), hosts.next()) {
            (Some(h), None) => h.to_str().is_ok_and(|h| self.names_us(h)),
            _ => false,
        };
        let target_ok = uri.authority().is_none_or(|a| self.names_us(a.as_str()));
        if !(host_ok && target_ok) {
            return Err(Refusal::Host);
        }
        if headers
            .get_all(header::ORIGIN)
            .iter()
            .any(|o| !loopback_origin(o))
        {
            return Err(Refusal::Origin);
        }
        if method == Method::GET || method == Method::HEAD {
            return Ok(());
        }
        if !is_json(headers) {
            return Err(Refusal::ContentType);
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .is_some_and(|(_, token)| self.token.matches(token.trim()));
        if !bearer {
            return Err(Refusal::Token);
        }
        Ok(())
    }

    /// Whether an authority (`host[:port]`) names this endpoint.
    fn names_us(&self, authority: &str) -> bool {
        let Ok(a) = authority.parse::<axum::http::uri::Authority>() else {
            return false;
        };
        let host = a.host();
        let ours = host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip == self.local.ip());
        !authority.contains('@') && ours && a.port_u16().is_none_or(|p| p == self.local.port())
    }
}

/// Whether an `Origin` value is an http(s) origin on a loopback host (`null` is not).
fn loopback_origin(origin: &HeaderValue) -> bool {
    let Some(uri) = origin.to_str().ok().and_then(|o| o.parse::<Uri>().ok()) else {
        return false;
    };
    let web = matches!(uri.scheme_str(), Some("http" | "https"));
    let loopback = uri.host().is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    web && loopback
}

/// Whether the request says its body is JSON (parameters such as `charset` allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The middleware: refuses (and counts) what [`Guard::check`] refuses, passes the rest on.
pub(super) async fn layer(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let refusal = match shared
        .guard
        .check(request.method(), request.uri(), request.headers())
    {
        Ok(()) => return next.run(request).await,
        Err(r) => r,
    };
    shared.connections.refused_requests[refusal as usize]
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let body = axum::Json(serde_json::json!({
        "error": refusal.message(shared.guard.local),
        "reason": refusal.name(),
    }));
    let mut response = (refusal.status(), body).into_response();
    if refusal == Refusal::Token {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"lcs-sim admin\""),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard {
            local: "127.0.0.1:5080".parse().unwrap(),
            token: Token::generate(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                k.parse::<header::HeaderName>().unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn get(g: &Guard, pairs: &[(&str, &str)]) -> Result<(), Refusal> {
        g.check(&Method::GET, &Uri::from_static("/certs"), &headers(pairs))
    }

    #[test]
    fn the_host_must_be_the_bound_address_or_localhost_with_our_port_or_none() {
        let g = guard();
        for ok in ["127.0.0.1:5080", "localhost:5080", "LOCALHOST", "127.0.0.1"] {
            assert_eq!(get(&g, &[("host", ok)]), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:5080",
            "127.0.0.1:5081",
            "localhost:80",
            "127.0.0.2:5080",
            "[::1]:5080",
            "user@127.0.0.1:5080",
            "",
        ] {
            assert_eq!(get(&g, &[("host", bad)]), Err(Refusal::Host), "{bad}");
        }
        assert_eq!(get(&g, &[]), Err(Refusal::Host), "no Host");
        let two = [("host", "127.0.0.1:5080"), ("host", "evil.example")];
        assert_eq!(get(&g, &two), Err(Refusal::Host));
        let absolute = Uri::from_static("http://evil.example/certs");
        let host = headers(&[("host", "127.0.0.1:5080")]);
        assert_eq!(g.check(&Method::GET, &absolute, &host), Err(Refusal::Host));
    }

    #[test]
    fn an_origin_present_must_be_loopback() {
        let g = guard();
        let host = ("host", "127.0.0.1:5080");
        for ok in [
            "http://127.0.0.1:5080",
            "http://localhost:3000",
            "https://127.1.2.3",
            "http://[::1]:8080",
        ] {
            assert_eq!(get(&g, &[host, ("origin", ok)]), Ok(()), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "null",
            "http://10.0.0.1:5080",
            "file://localhost",
            "",
        ] {
            assert_eq!(
                get(&g, &[host, ("origin", bad)]),
                Err(Refusal::Origin),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_state_changing_request_needs_json_then_the_token() {
        let g = guard();
        let bearer = format!("Bearer {}", g.token.as_str());
        let post = |pairs: &[(&str, &str)]| {
            g.check(&Method::POST, &Uri::from_static("/rebind"), &headers(pairs))
        };
        let host = ("host", "127.0.0.1:5080");
        let form = ("content-type", "application/x-www-form-urlencoded");
        let json = ("content-type", "application/json; charset=utf-8");
        let auth = ("authorization", bearer.as_str());
        assert_eq!(post(&[host, auth]), Err(Refusal::ContentType));
        assert_eq!(post(&[host, form, auth]), Err(Refusal::ContentType));
        assert_eq!(post(&[host, json]), Err(Refusal::Token));
        let wrong = ("authorization", "Bearer 00");
        assert_eq!(post(&[host, json, wrong]), Err(Refusal::Token));
        let basic = format!("Basic {}", g.token.as_str());
        assert_eq!(
            post(&[host, json, ("authorization", basic.as_str())]),
            Err(Refusal::Token)
        );
        assert_eq!(post(&[host, json, auth]), Ok(()));
        let lower = format!("bearer {}", g.token.as_str());
        assert_eq!(
            post(&[host, json, ("authorization", lower.as_str())]),
            Ok(())
        );
        // The earlier checks still come first.
        let evil = ("origin", "http://evil.example");
        assert_eq!(post(&[host, json, auth, evil]), Err(Refusal::Origin));
        assert_eq!(
            post(&[("host", "evil.example"), json, auth]),
            Err(Refusal::Host)
        );
        // Reads need no token.
        assert_eq!(get(&g, &[host]), Ok(()));
    }
}
