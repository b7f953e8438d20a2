//! POSIX access to a key file, decided as the Linux kernel decides it.
//!
//! On Linux the KB836410 fault is a renewal that writes a key file the service's user cannot
//! read: certbot makes `privkeyN+1.pem` 0600 root and keeps only the previous key's group and
//! group mode, drops POSIX ACL entries set with `setfacl`, and keeps `archive/` 0700; a relabel
//! can give the new file an SELinux type the service's domain may not read. This module is the
//! pure decision, with no file system: a [`KeyPath`] (the parent directories from the root down,
//! then the key file, each a [`Node`] with owner, group, [`Mode`] and an optional
//! [`ExtendedAcl`]; the file's optional SELinux type) and a [`PosixUser`] (uid, primary and
//! supplementary groups, the types its domain may read). [`decide`] answers with the typed
//! [`PosixDenial`] the first refusal on the way is, in the kernel's order:
//!
//! 1. path walk: every parent directory must grant search (`x`) — `may_lookup`;
//! 2. the file's discretionary check for read — `generic_permission` with `posix_acl_permission`
//!    (acl(5) "Access check algorithm"): the owner's entry, else a named-user entry through the
//!    mask, else the owning group and named groups through the mask (any matching entry will
//!    do), else other;
//! 3. SELinux (an LSM hook after DAC): the file's type must be one the user's domain may read.
//!
//! uid 0 holds `CAP_DAC_READ_SEARCH` (capabilities(7)): it reads any file and searches any
//! directory whatever the mode and ACL say, but SELinux still applies to it.
//!
//! The representation follows the kernel's too: with an extended ACL the mode's group bits *are*
//! the ACL mask (`chmod g-r` on a file with ACL entries narrows the mask), and the owning group's
//! own entry (`ACL_GROUP_OBJ`) is kept in the ACL. The property test in `tests/posix_access.rs`
//! checks [`decide`] against a reference written line by line from acl(5).

use std::collections::BTreeMap;
use std::fmt;

/// A user id.
pub type Uid = u32;
/// A group id.
pub type Gid = u32;

/// Read, write and execute bits of one permission class (`rwx` = 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Perms(u8);

impl Perms {
    /// No permission.
    pub const NONE: Perms = Perms(0);
    /// `r`.
    pub const READ: Perms = Perms(4);
    /// `w`.
    pub const WRITE: Perms = Perms(2);
    /// `x` (search, on a directory).
    pub const EXECUTE: Perms = Perms(1);

    /// The permissions of an octal digit; `None` above 7.
    pub fn from_bits(bits: u8) -> Option<Perms> {
        (bits <= 7).then_some(Perms(bits))
    }

    /// The octal digit.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether every permission of `wanted` is here.
    pub fn contains(self, wanted: Perms) -> bool {
        self.0 & wanted.0 == wanted.0
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bit = |p: Perms, c: char| if self.contains(p) { c } else { '-' };
        write!(
            f,
            "{}{}{}",
            bit(Perms::READ, 'r'),
            bit(Perms::WRITE, 'w'),
            bit(Perms::EXECUTE, 'x')
        )
    }
}

/// File mode permission bits (`0o7777` at most: setuid, setgid and sticky are kept and do not
/// take part in a read or search decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode(u16);

impl Mode {
    /// The mode with these bits; `None` above `0o7777`.
    pub fn new(bits: u16) -> Option<Mode> {
        (bits <= 0o7777).then_some(Mode(bits))
    }

    /// The bits.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// The owner's bits.
    pub fn owner(self) -> Perms {
        Perms(((self.0 >> 6) & 7) as u8)
    }

    /// The group class bits: the owning group's permissions, or with an extended ACL the mask.
    pub fn group(self) -> Perms {
        Perms(((self.0 >> 3) & 7) as u8)
    }

    /// Everybody else's bits.
    pub fn other(self) -> Perms {
        Perms((self.0 & 7) as u8)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// The entries of a POSIX ACL beyond the minimal three (`getfacl` shows them): named users and
/// groups, and the owning group's own entry. The mask is the [`Mode::group`] bits of the node
/// the ACL belongs to. One entry per qualifier, as acl(5) requires.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtendedAcl {
    /// `ACL_GROUP_OBJ`: the owning group's permissions (not the mode's group bits, which are
    /// the mask).
    pub group_obj: Perms,
    /// `ACL_USER` entries: `user:NAME:rwx`.
    pub users: BTreeMap<Uid, Perms>,
    /// `ACL_GROUP` entries: `group:NAME:rwx`.
    pub groups: BTreeMap<Gid, Perms>,
}

/// A file or directory as far as access goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its path, for messages (`/etc/letsencrypt/archive`).
    pub path: String,
    /// Owning user.
    pub owner: Uid,
    /// Owning group.
    pub group: Gid,
    /// Permission bits.
    pub mode: Mode,
    /// The extended ACL, if the node has one.
    pub acl: Option<ExtendedAcl>,
}

/// A key file with the directories above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    /// The parent directories, from the root down (`/`, `/etc`, …, `archive/NAME`).
    pub dirs: Vec<Node>,
    /// The key file.
    pub file: Node,
    /// The file's SELinux type (`cert_t`), when the system labels files.
    pub label: Option<String>,
}

/// A process's credentials, as far as opening a file goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosixUser {
    /// Effective user id; 0 is root, with `CAP_DAC_READ_SEARCH`.
    pub uid: Uid,
    /// Effective (primary) group id.
    pub gid: Gid,
    /// Supplementary group ids.
    pub groups: Vec<Gid>,
    /// The SELinux file types its domain may read (only asked for a labelled file).
    pub label_types: Vec<String>,
}

impl PosixUser {
    fn in_group(&self, gid: Gid) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// Which entry of a node decided against the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Class {
    /// The owner's bits (`ACL_USER_OBJ`).
    Owner,
    /// A named-user ACL entry (`ACL_USER`).
    NamedUser,
    /// The owning group's bits or its ACL entry, and any named-group entries that match.
    Group,
    /// Everybody else (`ACL_OTHER`).
    Other,
}

impl Class {
    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Class::Owner => "owner",
            Class::NamedUser => "named_user",
            Class::Group => "group",
            Class::Other => "other",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the kernel refuses to open the key file for reading (`EACCES`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PosixDenial {
    /// A parent directory does not grant the user search (certbot's `archive/` is 0700 root).
    #[error("directory {dir} is not searchable (its {class} entry lacks x)")]
    DirectorySearch {
        /// The first such directory from the root down.
        dir: String,
        /// The class that decided.
        class: Class,
    },
    /// The file's mode bits for the user's class lack read: the owner's, the owning group's
    /// (no extended ACL) or other's.
    #[error("mode {mode} gives the {class} no read")]
    Mode {
        /// The class the user falls in.
        class: Class,
        /// The file's mode.
        mode: Mode,
    },
    /// The extended ACL entries that match the user (its named-user entry, or the owning
    /// group's and named groups' entries) lack read.
    #[error("the {class} ACL entries that match give no read")]
    AclEntry {
        /// [`Class::NamedUser`] or [`Class::Group`].
        class: Class,
    },
    /// A matching ACL entry grants read but the mask (the mode's group bits) removes it.
    #[error("the {class} ACL entry grants read but the mask {mask} removes it")]
    AclMask {
        /// [`Class::NamedUser`] or [`Class::Group`].
        class: Class,
        /// The mask.
        mask: Perms,
    },
    /// SELinux: the user's domain may not read files of the key's type.
    #[error("SELinux type {label} is not readable by the service's domain")]
    SelinuxLabel {
        /// The key file's type.
        label: String,
    },
}

impl PosixDenial {
    /// The stable snake_case name (reports, counters, labels).
    pub fn name(&self) -> &'static str {
        match self {
            PosixDenial::DirectorySearch { .. } => "directory_search",
            PosixDenial::Mode { .. } => "mode",
            PosixDenial::AclEntry { .. } => "acl_entry",
            PosixDenial::AclMask { .. } => "acl_mask",
            PosixDenial::SelinuxLabel { .. } => "selinux_label",
        }
    }
}

/// Whether `user` may open `key` for reading, and if not, the first refusal on the way.
pub fn decide(user: &PosixUser, key: &KeyPath) -> Result<(), PosixDenial> {
    let privileged = user.uid == 0;
    if !privileged {
        for dir in &key.dirs {
            dac(user, dir, Perms::EXECUTE).map_err(|r| PosixDenial::DirectorySearch {
                dir: dir.path.clone(),
                class: r.class(),
            })?;
        }
        dac(user, &key.file, Perms::READ).map_err(|r| r.into_denial(key.file.mode))?;
    }
    match &key.label {
        Some(label) if !user.label_types.iter().any(|t| t == label) => {
            Err(PosixDenial::SelinuxLabel {
                label: label.clone(),
            })
        }
        _ => Ok(()),
    }
}

/// How one node's discretionary check refused.
enum Refusal {
    Bits(Class),
    Entries(Class),
    Mask(Class, Perms),
}

impl Refusal {
    fn class(&self) -> Class {
        match self {
            Refusal::Bits(c) | Refusal::Entries(c) | Refusal::Mask(c, _) => *c,
        }
    }

    fn into_denial(self, mode: Mode) -> PosixDenial {
        match self {
            Refusal::Bits(class) => PosixDenial::Mode { class, mode },
            Refusal::Entries(class) => PosixDenial::AclEntry { class },
            Refusal::Mask(class, mask) => PosixDenial::AclMask { class, mask },
        }
    }
}

/// The discretionary check of one node for `wanted`, class by class: the first class the user
/// falls in decides, and a later class is never consulted.
fn dac(user: &PosixUser, node: &Node, wanted: Perms) -> Result<(), Refusal> {
    let mode = node.mode;
    if user.uid == node.owner {
        return mode
            .owner()
            .contains(wanted)
            .then_some(())
            .ok_or(Refusal::Bits(Class::Owner));
    }
    let Some(acl) = &node.acl else {
        let class = if user.in_group(node.group) {
            Class::Group
        } else {
            Class::Other
        };
        let bits = if class == Class::Group {
            mode.group()
        } else {
            mode.other()
        };
        return bits
            .contains(wanted)
            .then_some(())
            .ok_or(Refusal::Bits(class));
    };
    let mask = mode.group();
    if let Some(perms) = acl.users.get(&user.uid) {
        return through_mask(&[*perms], mask, wanted, Class::NamedUser);
    }
    let mut matching: Vec<Perms> = Vec::new();
    if user.in_group(node.group) {
        matching.push(acl.group_obj);
    }
    matching.extend(
        acl.groups
            .iter()
            .filter(|(gid, _)| user.in_group(**gid))
            .map(|(_, p)| *p),
    );
    if !matching.is_empty() {
        return through_mask(&matching, mask, wanted, Class::Group);
    }
    mode.other()
        .contains(wanted)
        .then_some(())
        .ok_or(Refusal::Bits(Class::Other))
}

/// Granted when one of the matching entries holds `wanted` and the mask lets it through.
fn through_mask(
    matching: &[Perms],
    mask: Perms,
    wanted: Perms,
    class: Class,
) -> Result<(), Refusal> {
    if !matching.iter().any(|p| p.contains(wanted)) {
        Err(Refusal::Entries(class))
    } else if !mask.contains(wanted) {
        Err(Refusal::Mask(class, mask))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
