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

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
