//! The Windows error codes KB836410's failure surfaces as.
//!
//! The emulation reports the codes a Windows administrator would find in the event log, so the
//! text of an incident ticket reads the same whether the fault happened on LCS 2003 or here.

/// `NTE_BAD_KEYSET`: "Keyset does not exist". CryptoAPI's answer when the caller may not open
/// the private key container: what the service account gets after the renewal reset the ACL.
pub const NTE_BAD_KEYSET: u32 = 0x8009_0016;

/// `SEC_E_UNKNOWN_CREDENTIALS`: "The credentials supplied to the package were not recognized".
/// Schannel's answer when a listener's credential cannot be acquired.
pub const SEC_E_UNKNOWN_CREDENTIALS: u32 = 0x8009_030D;

/// `CRYPT_E_NOT_FOUND`: "Cannot find object or property". A certificate lookup by issuer and
/// serial that finds nothing, e.g. because the configured certificate was archived.
pub const CRYPT_E_NOT_FOUND: u32 = 0x8009_2004;

/// The symbolic name and message of a code we emit.
pub fn describe(code: u32) -> (&'static str, &'static str) {
    match code {
        NTE_BAD_KEYSET => ("NTE_BAD_KEYSET", "Keyset does not exist"),
        SEC_E_UNKNOWN_CREDENTIALS => (
            "SEC_E_UNKNOWN_CREDENTIALS",
            "The credentials supplied to the package were not recognized",
        ),
        CRYPT_E_NOT_FOUND => ("CRYPT_E_NOT_FOUND", "Cannot find object or property"),
        _ => ("UNKNOWN", "Unknown error"),
    }
}

/// `0x80090016 NTE_BAD_KEYSET "Keyset does not exist"`: how the logs print a code.
pub fn format(code: u32) -> String {
    let (name, text) = describe(code);
    format!("0x{code:08X} {name} \"{text}\"")
}
