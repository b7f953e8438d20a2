//! SIP and SIPS URIs (RFC 3261 §19.1), just as much as routing needs.
//!
//! The proxy routes on the user and host of a URI and compares domains; everything after the
//! host and port (URI parameters and headers) is kept verbatim so that a URI survives
//! parse → display unchanged. Other schemes (`tel:`, `im:`) are rejected with a typed error so
//! the proxy can answer 416 Unsupported URI Scheme rather than a generic 400.

use std::fmt;

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Uri {
    /// `true` for `sips:`, `false` for `sip:`.
    pub secure: bool,
    /// The user part (before `@`), including any `:password`, if present.
    pub user: Option<String>,
    /// The host: a domain name, an IPv4 address or a bracketed IPv6 reference.
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
    /// Everything after host and port (`;params` and `?headers`), verbatim; often empty.
    pub params: String,
}

/// Why a string is not an acceptable SIP URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// The URI has a well-formed scheme other than `sip` or `sips`.
    #[error("unsupported URI scheme {scheme:?} (only sip and sips are supported)")]
    UnsupportedScheme {
        /// The scheme found, as written.
        scheme: String,
    },
    /// The URI is syntactically wrong.
    #[error("malformed URI {uri:?}: {reason}")]
    Malformed {
        /// The offending text (truncated if long).
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl Uri {
    /// A `sip:user@host` URI without port or parameters.
    pub fn sip(user: Option<&str>, host: &str) -> Uri {
        Uri {
            secure: false,
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port: None,
            params: String::new(),
        }
    }

    /// Parses a SIP or SIPS URI.
    pub fn parse(text: &str) -> Result<Uri, UriError> {
        let malformed = |reason| UriError::Malformed {
            uri: truncate(text, 200),
            reason,
        };
        let has_forbidden = if text.is_ascii() {
            text.bytes().any(forbidden_ascii)
        } else {
            text.chars().any(forbidden)
        };
        if has_forbidden {
            return Err(malformed(
                "contains whitespace, control characters, quotes or brackets",
            ));
        }
        let (scheme, rest) = text.split_once(':').ok_or_else(|| malformed("no scheme"))?;
        let secure = if scheme.eq_ignore_ascii_case("sip") {
            false
        } else if scheme.eq_ignore_ascii_case("sips") {
            true
        } else if is_scheme(scheme) {
            return Err(UriError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            });
        } else {
            return Err(malformed("invalid scheme"));
        };
        let (user, hostpart) = match rest.split_once('@') {
            Some(("", _)) => return Err(malformed("empty user part")),
            Some((user, hostpart)) => (Some(user.to_owned()), hostpart),
            None => (None, rest),
        };
        let (host, after_host) = if let Some(v6) = hostpart.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| malformed("unclosed IPv6 reference"))?;
            let inner = &v6[..end];
            if inner.is_empty()
                || !inner
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            {
                return Err(malformed("invalid IPv6 reference"));
            }
            (&hostpart[..end + 2], &v6[end + 1..])
        } else {
            let end = hostpart.find([':', ';', '?']).unwrap_or(hostpart.len());
            let host = &hostpart[..end];
            if !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            {
                return Err(malformed("invalid character in host"));
            }
            (host, &hostpart[end..])
        };
        if host.is_empty() {
            return Err(malformed("empty host"));
        }
        let (port, params) = match after_host.strip_prefix(':') {
            Some(p) => {
                let end = p.find([';', '?']).unwrap_or(p.len());
                let digits = &p[..end];
                if digits.is_empty()
                    || digits.len() > 5
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(malformed("invalid port"));
                }
                let port = digits.parse().map_err(|_| malformed("port out of range"))?;
                (Some(port), &p[end..])
            }
            None => (None, after_host),
        };
        if !(params.is_empty() || params.starts_with([';', '?'])) {
            return Err(malformed("unexpected text after host"));
        }
        Ok(Uri {
            secure,
            user,
            host: host.to_owned(),
            port,
            params: params.to_owned(),
        })
    }

    /// The address-of-record key `user@host` (host lower-cased, user kept as is, since the
    /// user part of a SIP URI is case-sensitive), or `host` when there is no user.
    pub fn aor(&self) -> String {
        let host = self.host.to_ascii_lowercase();
        match &self.user {
            Some(user) => format!("{user}@{host}"),
            None => host,
        }
    }

    /// Whether the host equals `domain`, ignoring ASCII case.
    pub fn host_is(&self, domain: &str) -> bool {
        self.host.eq_ignore_ascii_case(domain)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        f.write_str(&self.params)
    }
}

impl std::str::FromStr for Uri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uri::parse(s)
    }
}

/// Characters a URI may not contain: whitespace, controls, quotes and angle brackets.
fn forbidden(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"')
}

/// [`forbidden`] for ASCII, on bytes (the common case, on the parser's path): whitespace and
/// controls are the bytes up to space, and DEL.
fn forbidden_ascii(b: u8) -> bool {
    b <= b' ' || b == 0x7f || matches!(b, b'<' | b'>' | b'"')
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Truncates `s` to at most `max` bytes on a character boundary (for error messages).
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_host_port_params() {
        let uri = Uri::parse("sip:alice@Contoso.com:5061;transport=tls?subject=hi").unwrap();
        assert!(!uri.secure);
        assert_eq!(uri.user.as_deref(), Some("alice"));
        assert_eq!(uri.host, "Contoso.com");
        assert_eq!(uri.port, Some(5061));
        assert_eq!(uri.params, ";transport=tls?subject=hi");
        assert_eq!(uri.aor(), "alice@contoso.com");
        assert_eq!(
            uri.to_string(),
            "sip:alice@Contoso.com:5061;transport=tls?subject=hi"
        );
    }

    #[test]
    fn the_ascii_check_forbids_what_the_char_check_forbids() {
        for b in 0u8..0x80 {
            assert_eq!(forbidden_ascii(b), forbidden(char::from(b)), "{b:#04x}");
        }
    }

    #[test]
    fn parses_sips_and_ipv6() {
        let uri = Uri::parse("sips:[2001:db8::1]:5061").unwrap();
        assert!(uri.secure);
        assert_eq!(uri.host, "[2001:db8::1]");
        assert_eq!(uri.port, Some(5061));
        assert_eq!(uri.to_string(), "sips:[2001:db8::1]:5061");
    }

    #[test]
    fn rejects_other_schemes_and_garbage() {
        assert_eq!(
            Uri::parse("tel:+15551234"),
            Err(UriError::UnsupportedScheme {
                scheme: "tel".into()
            })
        );
        for bad in [
            "",
            "sip:",
            "sip:@host",
            "alice@host",
            "sip:host:99999",
            "sip:ho st",
            "sip:a@b:x",
            "sip:[::1",
        ] {
            assert!(
                matches!(Uri::parse(bad), Err(UriError::Malformed { .. })),
                "{bad:?} should be malformed"
            );
        }
    }
}
