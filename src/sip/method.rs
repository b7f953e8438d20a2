//! SIP methods: the ones this crate acts on as variants, any other token kept as written.
//!
//! Its own file because both the header views (`CSeq`) and the message model need it, and
//! neither may import the other: dependencies inside `sip` point one way only.

use std::fmt;

/// A SIP method. The methods this crate knows have variants; others are kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// REGISTER (RFC 3261).
    Register,
    /// MESSAGE (RFC 3428).
    Message,
    /// OPTIONS (RFC 3261).
    Options,
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// Any other method token (case-sensitive, as SIP methods are).
    Other(String),
}

const NAMED: &[(&str, Method)] = &[
    ("REGISTER", Method::Register),
    ("MESSAGE", Method::Message),
    ("OPTIONS", Method::Options),
    ("INVITE", Method::Invite),
    ("ACK", Method::Ack),
    ("BYE", Method::Bye),
    ("CANCEL", Method::Cancel),
    ("SUBSCRIBE", Method::Subscribe),
    ("NOTIFY", Method::Notify),
];

impl Method {
    /// The method for a token (which the caller has checked is a valid token).
    pub fn from_token(token: &str) -> Method {
        NAMED
            .iter()
            .find(|(name, _)| *name == token)
            .map_or_else(|| Method::Other(token.to_owned()), |(_, m)| m.clone())
    }

    /// The method's token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Other(token) => token,
            known => NAMED
                .iter()
                .find(|(_, m)| m == known)
                .map_or("", |(name, _)| name),
        }
    }
}

/// A count per method: one slot for each method with a variant, one for all others. `Copy`
/// and fixed-size, so the proxy's counters stay a plain value a shell can copy out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MethodCounts([u64; NAMED.len() + 1]);

impl MethodCounts {
    /// The label of the slot that counts every method without a variant.
    pub const OTHER: &'static str = "other";

    /// Counts one of `method`.
    pub fn count(&mut self, method: &Method) {
        let slot = NAMED
            .iter()
            .position(|(_, m)| m == method)
            .unwrap_or(NAMED.len());
        self.0[slot] += 1;
    }

    /// The methods counted at least once, by token ([`MethodCounts::OTHER`] for the rest).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        NAMED
            .iter()
            .map(|(name, _)| *name)
            .chain([Self::OTHER])
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_known_methods_by_token_and_the_rest_as_other() {
        let mut counts = MethodCounts::default();
        for token in ["OPTIONS", "OPTIONS", "MESSAGE", "PUBLISH", "INFO"] {
            counts.count(&Method::from_token(token));
        }
        assert_eq!(
            counts.iter().collect::<Vec<_>>(),
            [("MESSAGE", 1), ("OPTIONS", 2), ("other", 2)]
        );
    }
}
