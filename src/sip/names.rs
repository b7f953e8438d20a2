//! Header names: compact forms, canonical spellings, what a token is, and the trimming of
//! names and values, all on the parser's path (every header of every message passes here), so
//! each is a table or a fast path, tested against the plain version it replaces.

use std::borrow::Cow;

/// Compact forms (RFC 3261 §7.3.3 and later extensions) and their full names.
const COMPACT: &[(&str, &str)] = &[
    ("a", "Accept-Contact"),
    ("b", "Referred-By"),
    ("c", "Content-Type"),
    ("d", "Request-Disposition"),
    ("e", "Content-Encoding"),
    ("f", "From"),
    ("i", "Call-ID"),
    ("j", "Reject-Contact"),
    ("k", "Supported"),
    ("l", "Content-Length"),
    ("m", "Contact"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("s", "Subject"),
    ("t", "To"),
    ("u", "Allow-Events"),
    ("v", "Via"),
    ("x", "Session-Expires"),
    ("y", "Identity"),
];

/// Canonical spellings of well-known header names, by length: finding a name compares it with
/// the two or three names of its length, not with all of them (this is on the parser's path).
fn known_names(len: usize) -> &'static [&'static str] {
    match len {
        2 => &["To"],
        3 => &["Via"],
        4 => &["CSeq", "Date", "From"],
        5 => &["Allow", "Event", "Route"],
        6 => &["Accept", "Server"],
        7 => &[
            "Call-ID", "Contact", "Expires", "Require", "Subject", "Warning",
        ],
        8 => &["Priority", "Reply-To"],
        9 => &["Call-Info", "Supported", "Timestamp"],
        10 => &["Alert-Info", "Error-Info", "User-Agent"],
        11 => &["In-Reply-To", "Min-Expires", "Retry-After", "Unsupported"],
        12 => &[
            "Allow-Events",
            "Content-Type",
            "Max-Forwards",
            "MIME-Version",
            "Organization",
            "Record-Route",
        ],
        13 => &["Authorization", "Proxy-Require"],
        14 => &["Content-Length"],
        15 => &["Accept-Encoding", "Accept-Language"],
        16 => &["Content-Encoding", "Content-Language", "WWW-Authenticate"],
        18 => &["Proxy-Authenticate"],
        19 => &[
            "Authentication-Info",
            "Content-Disposition",
            "Proxy-Authorization",
        ],
        _ => &[],
    }
}

/// The canonical form of a header name: compact forms expanded, known names re-cased.
pub fn canonical_name(name: &str) -> String {
    canonical(name).into_owned()
}

/// [`canonical_name`], borrowed from the tables when the name is known.
pub(crate) fn canonical(name: &str) -> Cow<'static, str> {
    known_name(name).map_or_else(|| Cow::Owned(name.to_owned()), Cow::Borrowed)
}

/// The canonical spelling of a compact or well-known name; `None` for other names.
pub(crate) fn known_name(name: &str) -> Option<&'static str> {
    if let [letter] = name.as_bytes() {
        return COMPACT
            .iter()
            .find(|(c, _)| c.as_bytes()[0] == letter.to_ascii_lowercase())
            .map(|(_, full)| *full);
    }
    let candidates = known_names(name.len());
    // Names nearly always arrive in their canonical spelling: compare exactly first (no two
    // known names differ only in case, so this finds the same one).
    if let Some(exact) = candidates.iter().find(|k| **k == name) {
        return Some(exact);
    }
    candidates
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .copied()
}

/// [`str::trim`], faster where it matters: header names and values nearly always end in
/// ASCII, so ASCII whitespace is trimmed bytewise and the Unicode-aware trim runs only when an
/// end is not ASCII (or is VT, which `trim_ascii` keeps and `trim` does not).
pub(crate) fn trim(s: &str) -> &str {
    let ascii = s.trim_ascii();
    let plain = |b: Option<&u8>| b.is_none_or(|&b| b.is_ascii() && b != 0x0b);
    if plain(ascii.as_bytes().first()) && plain(ascii.as_bytes().last()) {
        ascii
    } else {
        s.trim()
    }
}

/// Whether `name` is a syntactically valid header name (an RFC 3261 token).
pub(crate) fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| TOKEN[usize::from(b)])
}

/// Which bytes a token may hold (RFC 3261 §25.1): alphanumerics and `-.!%*_+`'~`, as a table
/// (this is on the parser's path).
const TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let all: String = (0u8..=127)
            .map(char::from)
            .filter(|c| is_token(&c.to_string()))
            .collect();
        assert_eq!(
            all,
            "!%'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_`abcdefghijklmnopqrstuvwxyz~"
        );
        assert!(!is_token("") && !is_token("a b") && !is_token("é") && is_token("X-Y.z"));
    }

    #[test]
    fn trim_is_str_trim() {
        for s in [
            "",
            " ",
            "a",
            " a b\t",
            "\u{a0}x\u{a0}",
            " \u{2003}x",
            "x\u{85}",
            "\x0bx\x0b",
            "\x1cx",
            "\r\n é ",
            "€",
        ] {
            assert_eq!(trim(s), s.trim(), "{s:?}");
        }
    }

    #[test]
    fn every_known_name_is_found_in_any_case() {
        let mut count = 0;
        for len in 0..64 {
            for name in known_names(len) {
                assert_eq!(name.len(), len, "{name} filed under the wrong length");
                assert_eq!(known_name(&name.to_ascii_lowercase()), Some(*name));
                assert_eq!(canonical_name(&name.to_ascii_uppercase()), *name);
                count += 1;
            }
        }
        assert_eq!(count, 46);
        assert_eq!(canonical_name("X-Custom"), "X-Custom");
        assert_eq!(canonical_name("z"), "z");
        assert_eq!(canonical_name("L"), "Content-Length");
    }
}
