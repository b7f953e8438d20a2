//! lcs-sim: an emulation and test harness for Microsoft KB836410.
//!
//! (Module map filled in as the modules land.)

/// The sans-IO SIP core: parsing, stream framing, transactions, registrar and proxy.
pub mod sip;
