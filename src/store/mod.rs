//! An emulated Windows machine certificate store (`LocalMachine\My`) with per-key ACLs.
//!
//! KB836410 lives in the gap between a certificate and its private key: certificates are public
//! and found by issuer + serial, but a private key sits in a *key container* with an ACL of its
//! own, and a renewal can keep the key yet reset that ACL. So the model keeps the two apart:
//!
//! - a [`StoredCert`] is a certificate, its archive flag and its `renewed_by` link, and the name
//!   of the key container it uses;
//! - a [`KeyContainer`] holds the key and its [`Acl`]; after a same-key renewal the old and the
//!   new certificate share one container, so resetting its ACL hurts a server still bound to the
//!   old certificate, exactly as on Windows.
//!
//! [`Store`] is the in-memory model the simulation drives; [`DiskStore`] keeps it in a folder in
//! formats `openssl` reads (PEM certificates and PKCS#8 keys, a JSON index), writing atomically so
//! a running server in another process never sees half a change.

mod access;
mod acl;
mod chain;
mod disk;
mod error;
mod model;
mod outbox;
pub mod posix;

pub use access::{Access, Denial, Errno, PlatformError};
pub use acl::{Ace, Acl, DEFAULT_PRINCIPALS, Right};
pub use disk::{DiskStore, IndexStamp, MissingKey};
pub use error::StoreError;
pub use model::{KeyContainer, Renewal, RenewalPolicy, Store, StoredCert};
pub use outbox::SEQ_DETAIL;
