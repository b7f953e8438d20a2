//! The per-run bearer token that state-changing admin requests carry.
//!
//! The Host, Origin and Content-Type checks ([`super::guard`]) keep browsers out; the token
//! keeps out every other local process that cannot read the deployment folder. `serve` makes a
//! fresh one at each start and writes it only into `DIR/serve.json`, which is created 0600, so
//! whoever can read it is whoever may change the deployment anyway. `fix --live` and the load
//! generator's `fix-live` fault read it from there ([`super::client`]).

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

/// A per-run secret: 32 random bytes, hex. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// A fresh token from the OS random source.
    pub fn generate() -> Token {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random source");
        Token(hex::encode(bytes))
    }

    /// The token as sent: `Authorization: Bearer <this>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_match_only_themselves_and_do_not_print() {
        let (a, b) = (Token::generate(), Token::generate());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 64);
        assert!(a.matches(a.as_str()));
        assert!(!a.matches(b.as_str()));
        assert!(!a.matches(&a.as_str()[..63]));
        assert!(!a.matches(""));
        assert_eq!(format!("{a:?}"), "Token(..)");
    }
}
