//! Access control lists on private-key containers.
//!
//! On Windows the certificate itself is public; what the service account needs is *read* on the
//! key container under `MachineKeys`. That ACL is the whole of KB836410: the admin tool grants the
//! service account read when a certificate is chosen ("Change Certificate"), and auto-enrollment
//! renewal resets it to the machine defaults. Principals compare case-insensitively, as Windows
//! account names do.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A right on a private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// Use the key (sign, decrypt): what a TLS server needs.
    Read,
    /// Everything, including changing the ACL. Implies [`Right::Read`].
    FullControl,
}

impl Right {
    /// Whether holding `self` satisfies a request for `wanted`.
    pub fn satisfies(self, wanted: Right) -> bool {
        self == wanted || self == Right::FullControl
    }
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Right::Read => "read",
            Right::FullControl => "full_control",
        })
    }
}

impl std::str::FromStr for Right {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Right::Read),
            "full_control" | "full-control" => Ok(Right::FullControl),
            other => Err(format!(
                "unknown right `{other}` (expected read or full_control)"
            )),
        }
    }
}

/// One access control entry: a principal and its rights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ace {
    /// Account or group name, e.g. `SYSTEM`, `Administrators`, `RTCService`.
    pub principal: String,
    /// Rights granted, sorted and without duplicates.
    pub rights: Vec<Right>,
}

/// The ACL of a key container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Acl(Vec<Ace>);

/// The accounts that always have full control of a machine key.
pub const DEFAULT_PRINCIPALS: [&str; 2] = ["SYSTEM", "Administrators"];

impl Acl {
    /// The ACL Windows gives a new machine key, and the one a renewal resets to:
    /// `SYSTEM` and `Administrators` with full control, nobody else.
    pub fn machine_default() -> Self {
        Acl(DEFAULT_PRINCIPALS
            .iter()
            .map(|p| Ace {
                principal: (*p).to_string(),
                rights: vec![Right::FullControl],
            })
            .collect())
    }

    /// The defaults plus `service_principal` with read: what "Change Certificate" leaves.
    pub fn for_service(service_principal: &str) -> Self {
        let mut acl = Self::machine_default();
        acl.grant(service_principal, Right::Read);
        acl
    }

    /// Whether `principal` holds a right that satisfies `wanted`.
    pub fn allows(&self, principal: &str, wanted: Right) -> bool {
        self.entry(principal)
            .is_some_and(|ace| ace.rights.iter().any(|r| r.satisfies(wanted)))
    }

    /// Adds `right` for `principal` (idempotent).
    pub fn grant(&mut self, principal: &str, right: Right) {
        match self.0.iter_mut().find(|a| same(&a.principal, principal)) {
            Some(ace) => {
                if !ace.rights.contains(&right) {
                    ace.rights.push(right);
                    ace.rights.sort();
                }
            }
            None => self.0.push(Ace {
                principal: principal.to_string(),
                rights: vec![right],
            }),
        }
    }

    /// Removes `right` from `principal`, or the whole entry when `right` is `None`.
    /// Returns whether anything changed. Removing `read` leaves `full_control` in place.
    pub fn revoke(&mut self, principal: &str, right: Option<Right>) -> bool {
        let before = self.0.clone();
        match right {
            None => self.0.retain(|a| !same(&a.principal, principal)),
            Some(r) => {
                for ace in self.0.iter_mut().filter(|a| same(&a.principal, principal)) {
                    ace.rights.retain(|x| *x != r);
                }
                self.0.retain(|a| !a.rights.is_empty());
            }
        }
        before != self.0
    }

    /// The entries.
    pub fn entries(&self) -> &[Ace] {
        &self.0
    }

    fn entry(&self, principal: &str) -> Option<&Ace> {
        self.0.iter().find(|a| same(&a.principal, principal))
    }
}

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, ace) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let rights: Vec<String> = ace.rights.iter().map(Right::to_string).collect();
            write!(f, "{} {}", ace.principal, rights.join("+"))?;
        }
        Ok(())
    }
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_acl_grants_read_and_default_does_not() {
        let acl = Acl::for_service("RTCService");
        assert!(acl.allows("rtcservice", Right::Read));
        assert!(!acl.allows("RTCService", Right::FullControl));
        assert!(acl.allows("SYSTEM", Right::Read));
        assert!(!Acl::machine_default().allows("RTCService", Right::Read));
    }

    #[test]
    fn revoke_read_keeps_full_control_and_none_removes_entry() {
        let mut acl = Acl::machine_default();
        assert!(!acl.revoke("SYSTEM", Some(Right::Read)));
        assert!(acl.allows("SYSTEM", Right::Read));
        assert!(acl.revoke("system", None));
        assert!(!acl.allows("SYSTEM", Right::Read));
        assert_eq!(acl.to_string(), "Administrators full_control");
    }
}
