//! Header fields: an ordered, case-insensitive multimap, plus typed views of the few headers
//! the proxy reasons about (Via, From/To/Contact, CSeq, Max-Forwards, Expires).
//!
//! Values are stored as text, exactly as received (trimmed, folded lines joined), so a proxy
//! can forward headers it does not understand untouched. Names are normalised once, on
//! insertion: compact forms become full names (`i` → `Call-ID`, RFC 3261 §7.3.3) and known
//! names get their canonical spelling, so lookups and serialisation never see `v` or `VIA`.
//! The typed views parse on demand; they are cheap and keep the stored message faithful.

use std::borrow::Cow;
use std::fmt;

use super::names::{canonical, is_token, trim};

use super::method::Method;
use super::uri::{Uri, UriError, truncate};

/// One header field: canonical name and raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Canonical name (`Call-ID`, `Via`, …), or the name as received if unknown. Borrowed
    /// for known names, so parsing a message allocates no header names.
    pub name: Cow<'static, str>,
    /// The value, without surrounding whitespace.
    pub value: String,
}

/// Ordered header fields of one message. Lookups ignore case and accept compact forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<Header>,
}

/// Why a header required by the caller is missing or cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// A mandatory header is absent.
    #[error("missing {header} header")]
    Missing {
        /// Canonical header name.
        header: &'static str,
    },
    /// The header is present but its value does not parse.
    #[error("malformed {header} header {value:?}: {reason}")]
    Malformed {
        /// Canonical header name.
        header: &'static str,
        /// The value (truncated if long).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The header holds a URI that does not parse.
    #[error("invalid URI in {header} header")]
    Uri {
        /// Canonical header name.
        header: &'static str,
        /// The URI error.
        #[source]
        source: UriError,
    },
}

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// No headers, with room for `capacity` without reallocating.
    pub(crate) fn with_capacity(capacity: usize) -> Headers {
        Headers {
            entries: Vec::with_capacity(capacity),
        }
    }

    /// Number of header fields (each value of a split list counts once).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no header fields.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All header fields in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.entries.iter()
    }

    /// The first value of `name` (any case, compact or full form).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// All values of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let name = canonical(name);
        self.entries
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(&name))
            .map(|h| h.value.as_str())
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Appends a field.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.entries.push(Header {
            name: canonical(name),
            value: value.into(),
        });
    }

    /// Inserts a field before the first existing field of that name (or at the top if there is
    /// none): this is how a proxy adds its Via.
    pub fn push_front(&mut self, name: &str, value: impl Into<String>) {
        let name = canonical(name);
        let at = self
            .entries
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(&name))
            .unwrap_or(0);
        self.entries.insert(
            at,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// Replaces all fields of `name` by one field holding `value` (in the first one's place).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let name = canonical(name);
        match self
            .entries
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(&name))
        {
            Some(at) => {
                self.entries[at].value = value.into();
                let mut index = 0;
                self.entries.retain(|h| {
                    index += 1;
                    index - 1 == at || !h.name.eq_ignore_ascii_case(&name)
                });
            }
            None => self.entries.push(Header {
                name,
                value: value.into(),
            }),
        }
    }

    /// Removes and returns the first value of `name`.
    pub fn remove_first(&mut self, name: &str) -> Option<String> {
        let name = canonical(name);
        let at = self
            .entries
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(&name))?;
        Some(self.entries.remove(at).value)
    }

    /// Removes every field of `name`.
    pub fn remove_all(&mut self, name: &str) {
        let name = canonical(name);
        self.entries.retain(|h| !h.name.eq_ignore_ascii_case(&name));
    }

    /// Adds a parsed header line, splitting list-valued headers into one entry per value.
    pub(crate) fn push_parsed(&mut self, name: &str, value: &str) {
        self.push_canonical(canonical(name), value);
    }

    /// [`Headers::push_parsed`] for a name already in canonical form. Via, Contact, Route and
    /// Record-Route are split at commas into one entry per value, because the proxy acts on
    /// individual values (top Via, each Contact, each Route).
    pub(crate) fn push_canonical(&mut self, name: Cow<'static, str>, value: &str) {
        let value = if !matches!(&*name, "Via" | "Contact" | "Route" | "Record-Route") {
            value
        } else if value.contains(',') {
            for part in split_list(value) {
                self.entries.push(Header {
                    name: name.clone(),
                    value: part.to_owned(),
                });
            }
            return;
        } else {
            // One value: what split_list would give, without its allocations.
            match trim(value) {
                "" => return,
                value => value,
            }
        };
        self.entries.push(Header {
            name,
            value: value.to_owned(),
        });
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Result<&str, HeaderError> {
        self.get("Call-ID")
            .filter(|v| !v.is_empty())
            .ok_or(HeaderError::Missing { header: "Call-ID" })
    }

    /// The CSeq.
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        let value = self
            .get("CSeq")
            .ok_or(HeaderError::Missing { header: "CSeq" })?;
        CSeq::parse(value)
    }

    /// The top-most Via.
    pub fn top_via(&self) -> Result<Via, HeaderError> {
        Via::parse(
            self.get("Via")
                .ok_or(HeaderError::Missing { header: "Via" })?,
        )
    }

    /// The From header.
    pub fn from_addr(&self) -> Result<NameAddr, HeaderError> {
        let value = self
            .get("From")
            .ok_or(HeaderError::Missing { header: "From" })?;
        NameAddr::parse(value, "From")
    }

    /// The To header.
    pub fn to_addr(&self) -> Result<NameAddr, HeaderError> {
        let value = self
            .get("To")
            .ok_or(HeaderError::Missing { header: "To" })?;
        NameAddr::parse(value, "To")
    }

    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Result<Option<u32>, HeaderError> {
        self.get("Max-Forwards")
            .map(|v| parse_u32(v, "Max-Forwards"))
            .transpose()
    }

    /// Expires, if present.
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        self.get("Expires")
            .map(|v| parse_u32(v, "Expires"))
            .transpose()
    }
}

fn parse_u32(value: &str, header: &'static str) -> Result<u32, HeaderError> {
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeaderError::Malformed {
            header,
            value: truncate(value, 100),
            reason: "not a decimal number",
        });
    }
    // RFC 3261 caps delta-seconds at 2^32-1; clamp anything larger.
    Ok(value
        .parse::<u64>()
        .map_or(u32::MAX, |n| n.min(u64::from(u32::MAX)) as u32))
}

/// Splits a comma-separated header value, ignoring commas inside quotes and angle brackets.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut angle, mut start) = (false, false, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

/// Header parameters (`;name=value;flag`), in order; values keep their quotes.
pub type Params = Vec<(String, Option<String>)>;

fn parse_params(text: &str) -> Params {
    text.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_owned(), Some(v.trim().to_owned())),
            None => (p.to_owned(), None),
        })
        .collect()
}

fn find_param<'a>(params: &'a Params, name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &Params) -> fmt::Result {
    for (k, v) in params {
        match v {
            Some(v) => write!(f, ";{k}={v}")?,
            None => write!(f, ";{k}")?,
        }
    }
    Ok(())
}

/// The `RFC 3261` magic cookie that starts every branch of a compliant Via.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/TLS host:port;branch=z9hG4bK…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport, upper-case (`TCP`, `TLS`, …).
    pub transport: String,
    /// The sent-by host.
    pub host: String,
    /// The sent-by port, if given.
    pub port: Option<u16>,
    /// Parameters in order (`branch`, `received`, `rport`, …).
    pub params: Params,
}

impl Via {
    /// A Via for `transport` and `host` with the given branch.
    pub fn new(transport: &str, host: &str, port: Option<u16>, branch: &str) -> Via {
        Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_owned(),
            port,
            params: vec![("branch".to_owned(), Some(branch.to_owned()))],
        }
    }

    /// Parses one Via value.
    pub fn parse(value: &str) -> Result<Via, HeaderError> {
        let malformed = |reason| HeaderError::Malformed {
            header: "Via",
            value: truncate(value, 200),
            reason,
        };
        let (head, params) = value.split_once(';').unwrap_or((value, ""));
        let head = head.trim();
        // The protocol may have spaces around its slashes; the sent-by is the last token.
        let split = head
            .rfind(char::is_whitespace)
            .ok_or_else(|| malformed("no sent-by"))?;
        let protocol: String = head[..split]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let sent_by = head[split..].trim();
        let transport = protocol
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("SIP/2.0/"))
            .map(|_| &protocol[8..])
            .filter(|t| is_token(t))
            .ok_or_else(|| malformed("protocol is not SIP/2.0/<transport>"))?;
        let uri = Uri::parse(&format!("sip:{sent_by}")).map_err(|_| malformed("bad sent-by"))?;
        if !uri.params.is_empty() {
            return Err(malformed("bad sent-by"));
        }
        Ok(Via {
            transport: transport.to_ascii_uppercase(),
            host: uri.host,
            port: uri.port,
            params: parse_params(params),
        })
    }

    /// The branch parameter, if any.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// A parameter: `None` if absent, `Some(None)` if present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// `host[:port]`, lower-cased, for transaction matching.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host.to_ascii_lowercase()),
            None => self.host.to_ascii_lowercase(),
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write_params(f, &self.params)
    }
}

/// A name-addr or addr-spec with header parameters: the value of From, To or Contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, without quotes, if any.
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, …).
    pub params: Params,
}

impl NameAddr {
    /// `<uri>` without display name or parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Vec::new(),
        }
    }

    /// Parses a From/To/Contact value; `header` names the header in errors.
    pub fn parse(value: &str, header: &'static str) -> Result<NameAddr, HeaderError> {
        let malformed = |reason| HeaderError::Malformed {
            header,
            value: truncate(value, 200),
            reason,
        };
        let value = value.trim();
        let (display, rest) = if let Some(quoted) = value.strip_prefix('"') {
            let mut escaped = false;
            let end = quoted
                .char_indices()
                .find(|&(_, c)| {
                    let close = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    close
                })
                .map(|(i, _)| i)
                .ok_or_else(|| malformed("unclosed quoted display name"))?;
            (
                Some(quoted[..end].to_owned()),
                quoted[end + 1..].trim_start(),
            )
        } else if let Some(lt) = value.find('<') {
            let name = value[..lt].trim();
            ((!name.is_empty()).then(|| name.to_owned()), &value[lt..])
        } else {
            (None, value)
        };
        let (uri, params) = if let Some(inner) = rest.strip_prefix('<') {
            let gt = inner.find('>').ok_or_else(|| malformed("unclosed <"))?;
            let params = inner[gt + 1..].trim();
            if !(params.is_empty() || params.starts_with(';')) {
                return Err(malformed("unexpected text after >"));
            }
            (&inner[..gt], params)
        } else if display.is_some() {
            return Err(malformed("display name without <uri>"));
        } else {
            rest.split_once(';').map_or((rest, ""), |(u, p)| (u, p))
        };
        let uri = Uri::parse(uri.trim()).map_err(|source| HeaderError::Uri { header, source })?;
        Ok(NameAddr {
            display,
            uri,
            params: parse_params(params),
        })
    }

    /// The `tag` parameter, if any.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// A parameter: `None` if absent, `Some(None)` if present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(display) = &self.display {
            write!(f, "\"{display}\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

/// The CSeq header: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number.
    pub seq: u32,
    /// Method; must equal the request's method.
    pub method: Method,
}

impl CSeq {
    /// Parses `101 MESSAGE`.
    pub fn parse(value: &str) -> Result<CSeq, HeaderError> {
        let malformed = |reason| HeaderError::Malformed {
            header: "CSeq",
            value: truncate(value, 100),
            reason,
        };
        let mut parts = value.split_whitespace();
        let (Some(seq), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed("expected <number> <method>"));
        };
        let seq = parse_u32(seq, "CSeq").map_err(|_| malformed("bad sequence number"))?;
        if !is_token(method) {
            return Err(malformed("bad method"));
        }
        Ok(CSeq {
            seq,
            method: Method::from_token(method),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive_names() {
        let mut h = Headers::new();
        h.push_parsed("i", "abc");
        h.push_parsed(
            "VIA",
            "SIP/2.0/TLS a.example;branch=z9hG4bK1, SIP/2.0/TCP b.example",
        );
        h.push_parsed("m", "\"Doe, John\" <sip:j@x.example>, <sip:k@y.example>");
        assert_eq!(h.get("call-id"), Some("abc"));
        assert_eq!(h.get("I"), Some("abc"));
        assert_eq!(h.get_all("v").count(), 2);
        assert_eq!(h.iter().next().map(|h| h.name.as_ref()), Some("Call-ID"));
        let contacts: Vec<_> = h.get_all("Contact").collect();
        assert_eq!(
            contacts,
            ["\"Doe, John\" <sip:j@x.example>", "<sip:k@y.example>"]
        );
        assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK1"));
    }

    #[test]
    fn push_front_set_remove() {
        let mut h = Headers::new();
        h.push("From", "a");
        h.push("Via", "v1");
        h.push_front("Via", "v0");
        assert_eq!(h.get_all("Via").collect::<Vec<_>>(), ["v0", "v1"]);
        assert_eq!(h.remove_first("via").as_deref(), Some("v0"));
        h.push("Via", "v2");
        h.set("Via", "only");
        assert_eq!(h.get_all("Via").collect::<Vec<_>>(), ["only"]);
        h.remove_all("via");
        assert!(!h.contains("Via"));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn via_parse_and_display() {
        let via =
            Via::parse("SIP / 2.0 / tls client.contoso.com:49152;branch=z9hG4bKx;rport").unwrap();
        assert_eq!(via.transport, "TLS");
        assert_eq!(via.sent_by(), "client.contoso.com:49152");
        assert_eq!(via.branch(), Some("z9hG4bKx"));
        assert_eq!(via.param("rport"), Some(None));
        assert_eq!(
            via.to_string(),
            "SIP/2.0/TLS client.contoso.com:49152;branch=z9hG4bKx;rport"
        );
        assert!(Via::parse("HTTP/1.1 host").is_err());
        assert!(Via::parse("SIP/2.0/TLS").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let a =
            NameAddr::parse("\"Alice \\\"A\\\"\" <sip:alice@contoso.com>;tag=12", "From").unwrap();
        assert_eq!(a.display.as_deref(), Some("Alice \\\"A\\\""));
        assert_eq!(a.tag(), Some("12"));
        let b = NameAddr::parse(
            "Bob <sip:bob@contoso.com;transport=tls>;expires=60",
            "Contact",
        )
        .unwrap();
        assert_eq!(b.display.as_deref(), Some("Bob"));
        assert_eq!(b.uri.params, ";transport=tls");
        assert_eq!(b.param("expires"), Some(Some("60")));
        let c = NameAddr::parse("sip:carol@contoso.com;tag=9", "To").unwrap();
        assert_eq!(c.uri.params, "");
        assert_eq!(c.tag(), Some("9"));
        assert_eq!(c.to_string(), "<sip:carol@contoso.com>;tag=9");
        assert!(NameAddr::parse("<sip:x@y", "To").is_err());
        assert!(NameAddr::parse("Bob sip:x@y", "To").is_err());
    }

    #[test]
    fn cseq_and_numbers() {
        let cseq = CSeq::parse("42  MESSAGE").unwrap();
        assert_eq!((cseq.seq, cseq.method), (42, Method::Message));
        assert!(CSeq::parse("x MESSAGE").is_err());
        assert!(CSeq::parse("1").is_err());
        let mut h = Headers::new();
        h.push("Max-Forwards", "9999999999");
        assert_eq!(h.max_forwards(), Ok(Some(u32::MAX)));
        h.set("Max-Forwards", "-1");
        assert!(h.max_forwards().is_err());
    }
}
