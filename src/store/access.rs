//! The one access question: can this principal open this private key now, and if not, why?
//!
//! KB836410 is a Windows key-container ACL reset; its Linux family is a renewal that writes a
//! key file the service's user cannot read (mode bits, a lost POSIX ACL entry, a parent
//! directory without search permission, a wrong SELinux label). The server, the simulation,
//! `doctor` and `fix` must not need to know which: they ask the store this question and get an
//! [`Access`], whose [`Denial`] says why in a typed form with a stable [`Denial::name`] (for
//! reports, counters and labels) and the [`PlatformError`] the platform reports it as (for event
//! texts). The platform's own rules decide it, beside the store's model of the key: the
//! Windows ACL in [`super::Acl::access`], the kernel's file permissions in
//! [`super::posix::decide`]. Code above the store never matches on platform
//! strings or platform variants: it reads the name, the error and the display text.

use std::fmt;

use super::posix::PosixDenial;
use super::{Acl, Right};
use crate::winerr;

/// The answer to "can this principal open this key now?".
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Access {
    /// The principal may open the key.
    Granted,
    /// It may not, and this is why.
    Denied(Denial),
}

impl Access {
    /// Whether the principal may open the key.
    pub fn is_granted(&self) -> bool {
        matches!(self, Access::Granted)
    }

    /// Why not, when it may not.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Access::Granted => None,
            Access::Denied(d) => Some(d),
        }
    }
}

/// Why a principal may not open a private key, as its platform decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// Windows: no entry of the key container's ACL gives the principal `right` (an entry with
    /// `full_control` would satisfy `read`). What auto-enrollment's ACL reset leaves.
    KeyAcl {
        /// The right that was needed.
        right: Right,
    },
    /// POSIX: the kernel refuses to open the key file for reading (`EACCES`); the inner value
    /// says which check refused (`mode`, `acl_entry`, `acl_mask`, `directory_search`,
    /// `selinux_label`).
    Posix(PosixDenial),
}

impl From<PosixDenial> for Denial {
    fn from(d: PosixDenial) -> Self {
        Denial::Posix(d)
    }
}

impl Denial {
    /// The stable snake_case name (reports, counters, labels).
    pub fn name(&self) -> &'static str {
        match self {
            Denial::KeyAcl { .. } => "key_acl",
            Denial::Posix(d) => d.name(),
        }
    }

    /// The error the platform reports this denial as.
    pub fn platform_error(&self) -> PlatformError {
        match self {
            Denial::KeyAcl { .. } => PlatformError::Windows(winerr::NTE_BAD_KEYSET),
            Denial::Posix(_) => PlatformError::Posix(Errno::Eacces),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::KeyAcl { right } => {
                write!(f, "the key container's ACL grants no {right}")
            }
            Denial::Posix(d) => d.fmt(f),
        }
    }
}

/// An error code as a platform reports it, printed the way its logs print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlatformError {
    /// A Windows `HRESULT` (see [`crate::winerr`]): `0x80090016 NTE_BAD_KEYSET "Keyset does not
    /// exist"`.
    Windows(u32),
    /// A POSIX `errno`: `EACCES (13) "Permission denied"`.
    Posix(Errno),
}

/// The `errno` values a key file's access check yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Errno {
    /// `EACCES` (13), "Permission denied".
    Eacces,
}

impl Errno {
    /// The number, the symbolic name and the message (`strerror`).
    pub fn describe(self) -> (i32, &'static str, &'static str) {
        match self {
            Errno::Eacces => (13, "EACCES", "Permission denied"),
        }
    }
}

impl PlatformError {
    /// The code and its symbolic name without the message, for a sentence that goes on:
    /// `0x80090016 NTE_BAD_KEYSET`.
    pub fn short(self) -> String {
        match self {
            PlatformError::Windows(code) => {
                format!("0x{code:08X} {}", winerr::describe(code).0)
            }
            PlatformError::Posix(errno) => errno.describe().1.to_string(),
        }
    }

    /// The Windows code, when it is one.
    pub fn windows_code(self) -> Option<u32> {
        match self {
            PlatformError::Windows(code) => Some(code),
            PlatformError::Posix(_) => None,
        }
    }
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::Windows(code) => f.write_str(&winerr::format(*code)),
            PlatformError::Posix(errno) => {
                let (number, name, text) = errno.describe();
                write!(f, "{name} ({number}) \"{text}\"")
            }
        }
    }
}

impl Acl {
    /// The Windows answer: `principal` may open the key when an entry names it (compared
    /// case-insensitively, as account names are) with a right that satisfies `wanted`.
    pub fn access(&self, principal: &str, wanted: Right) -> Access {
        if self.allows(principal, wanted) {
            Access::Granted
        } else {
            Access::Denied(Denial::KeyAcl { right: wanted })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_windows_acl_denies_with_key_acl_and_nte_bad_keyset() {
        let denied = Acl::machine_default().access("RTCService", Right::Read);
        let denial = denied
            .denial()
            .expect("machine default has no service entry");
        assert_eq!(denial.name(), "key_acl");
        assert_eq!(
            denial.platform_error().to_string(),
            "0x80090016 NTE_BAD_KEYSET \"Keyset does not exist\""
        );
        assert_eq!(denial.platform_error().windows_code(), Some(0x8009_0016));
        assert_eq!(denial.platform_error().short(), "0x80090016 NTE_BAD_KEYSET");
        assert!(!denied.is_granted());

        let granted = Acl::for_service("RTCService").access("rtcservice", Right::Read);
        assert_eq!(granted, Access::Granted);
        assert_eq!(granted.denial(), None);
        // Full control satisfies read; read does not satisfy full control.
        assert!(
            Acl::machine_default()
                .access("SYSTEM", Right::Read)
                .is_granted()
        );
        assert!(
            !Acl::for_service("RTCService")
                .access("RTCService", Right::FullControl)
                .is_granted()
        );
    }

    #[test]
    fn a_posix_denial_keeps_its_name_and_reports_eacces() {
        let denial = Denial::from(PosixDenial::SelinuxLabel {
            label: "user_home_t".into(),
        });
        assert_eq!(denial.name(), "selinux_label");
        assert_eq!(
            denial.platform_error().to_string(),
            "EACCES (13) \"Permission denied\""
        );
        assert_eq!(denial.platform_error().short(), "EACCES");
        assert_eq!(denial.platform_error().windows_code(), None);
        assert_eq!(
            denial.to_string(),
            "SELinux type user_home_t is not readable by the service's domain"
        );
    }
}
