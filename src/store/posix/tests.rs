//! One test per denial and per class, on certbot's layout: `/etc/letsencrypt/archive/NAME/`.

use super::*;

const ROOT: Uid = 0;
const MOSQUITTO: Uid = 105;
const SSL_CERT: Gid = 110;
const MOSQUITTO_GID: Gid = 113;
const OTHER_GID: Gid = 999;

fn mode(bits: u16) -> Mode {
    Mode::new(bits).unwrap()
}

fn perms(bits: u8) -> Perms {
    Perms::from_bits(bits).unwrap()
}

fn dir(path: &str, bits: u16) -> Node {
    Node {
        path: path.into(),
        owner: ROOT,
        group: ROOT,
        mode: mode(bits),
        acl: None,
    }
}

/// `archive/NAME/privkey1.pem` root:`group` with `bits`, every directory 0755.
fn key(group: Gid, bits: u16) -> KeyPath {
    KeyPath {
        dirs: vec![
            dir("/", 0o755),
            dir("/etc", 0o755),
            dir("/etc/letsencrypt", 0o755),
            dir("/etc/letsencrypt/archive", 0o755),
            dir("/etc/letsencrypt/archive/lcs01", 0o755),
        ],
        file: Node {
            path: "/etc/letsencrypt/archive/lcs01/privkey1.pem".into(),
            owner: ROOT,
            group,
            mode: mode(bits),
            acl: None,
        },
        label: None,
    }
}

fn mosquitto(groups: &[Gid]) -> PosixUser {
    PosixUser {
        uid: MOSQUITTO,
        gid: MOSQUITTO_GID,
        groups: groups.to_vec(),
        label_types: vec!["cert_t".into()],
    }
}

fn with_acl(mut k: KeyPath, group_obj: u8, users: &[(Uid, u8)], groups: &[(Gid, u8)]) -> KeyPath {
    k.file.acl = Some(ExtendedAcl {
        group_obj: perms(group_obj),
        users: users.iter().map(|(u, p)| (*u, perms(*p))).collect(),
        groups: groups.iter().map(|(g, p)| (*g, perms(*p))).collect(),
    });
    k
}

#[test]
fn certbot_0600_root_denies_by_mode_other_and_root_reads() {
    let k = key(ROOT, 0o600);
    let denial = decide(&mosquitto(&[]), &k).unwrap_err();
    assert_eq!(
        denial,
        PosixDenial::Mode {
            class: Class::Other,
            mode: mode(0o600)
        }
    );
    assert_eq!(denial.name(), "mode");
    assert_eq!(denial.to_string(), "mode 0600 gives the other no read");
    let root = PosixUser {
        uid: ROOT,
        gid: ROOT,
        groups: Vec::new(),
        label_types: Vec::new(),
    };
    assert_eq!(decide(&root, &k), Ok(()));
}

#[test]
fn the_group_read_certbot_keeps_lets_a_supplementary_member_read() {
    let k = key(SSL_CERT, 0o640);
    assert_eq!(decide(&mosquitto(&[SSL_CERT]), &k), Ok(()));
    // Primary group counts as much as a supplementary one.
    let mut primary = mosquitto(&[]);
    primary.gid = SSL_CERT;
    assert_eq!(decide(&primary, &k), Ok(()));
    // Not a member: other's bits decide.
    assert!(matches!(
        decide(&mosquitto(&[OTHER_GID]), &k),
        Err(PosixDenial::Mode {
            class: Class::Other,
            ..
        })
    ));
}

#[test]
fn the_owner_class_decides_even_when_group_or_other_would_grant() {
    let mut k = key(SSL_CERT, 0o077);
    k.file.owner = MOSQUITTO;
    assert_eq!(
        decide(&mosquitto(&[SSL_CERT]), &k),
        Err(PosixDenial::Mode {
            class: Class::Owner,
            mode: mode(0o077)
        })
    );
    // Group membership denies even when other would grant.
    let k = key(SSL_CERT, 0o604);
    assert_eq!(
        decide(&mosquitto(&[SSL_CERT]), &k),
        Err(PosixDenial::Mode {
            class: Class::Group,
            mode: mode(0o604)
        })
    );
}

#[test]
fn a_setfacl_entry_grants_read_through_the_mask() {
    // setfacl -m u:mosquitto:r privkey1.pem on a 0600 file: mask r, mode shows 0640.
    let k = with_acl(key(ROOT, 0o640), 0, &[(MOSQUITTO, 4)], &[]);
    assert_eq!(decide(&mosquitto(&[]), &k), Ok(()));
}

#[test]
fn a_named_entry_under_a_narrowed_mask_is_acl_mask() {
    // chmod g-r after setfacl: the mask is now ---.
    let k = with_acl(key(ROOT, 0o600), 0, &[(MOSQUITTO, 4)], &[]);
    let denial = decide(&mosquitto(&[]), &k).unwrap_err();
    assert_eq!(
        denial,
        PosixDenial::AclMask {
            class: Class::NamedUser,
            mask: Perms::NONE
        }
    );
    assert_eq!(
        denial.to_string(),
        "the named_user ACL entry grants read but the mask --- removes it"
    );
    assert_eq!(denial.name(), "acl_mask");
    // The same through a named group entry.
    let k = with_acl(key(ROOT, 0o600), 0, &[], &[(SSL_CERT, 4)]);
    assert_eq!(
        decide(&mosquitto(&[SSL_CERT]), &k),
        Err(PosixDenial::AclMask {
            class: Class::Group,
            mask: Perms::NONE
        })
    );
}

#[test]
fn matching_entries_without_read_are_acl_entry_and_stop_the_walk_to_other() {
    // A named-user entry with only write: other's r is never consulted.
    let k = with_acl(key(ROOT, 0o664), 4, &[(MOSQUITTO, 2)], &[]);
    let denial = decide(&mosquitto(&[]), &k).unwrap_err();
    assert_eq!(
        denial,
        PosixDenial::AclEntry {
            class: Class::NamedUser
        }
    );
    assert_eq!(denial.name(), "acl_entry");
    // Groups: none of the matching entries reads, though the mask and other would.
    let k = with_acl(key(SSL_CERT, 0o664), 0, &[], &[(OTHER_GID, 4)]);
    assert_eq!(
        decide(&mosquitto(&[SSL_CERT]), &k),
        Err(PosixDenial::AclEntry {
            class: Class::Group
        })
    );
    // Any one matching group entry with read is enough.
    let k = with_acl(key(SSL_CERT, 0o640), 0, &[], &[(MOSQUITTO_GID, 4)]);
    assert_eq!(decide(&mosquitto(&[SSL_CERT]), &k), Ok(()));
}

#[test]
fn an_unmatched_user_falls_to_other_even_with_an_acl() {
    let k = with_acl(key(ROOT, 0o644), 4, &[(1234, 4)], &[(OTHER_GID, 4)]);
    assert_eq!(decide(&mosquitto(&[]), &k), Ok(()));
    let k = with_acl(key(ROOT, 0o640), 4, &[(1234, 4)], &[]);
    assert_eq!(
        decide(&mosquitto(&[]), &k),
        Err(PosixDenial::Mode {
            class: Class::Other,
            mode: mode(0o640)
        })
    );
}

#[test]
fn archive_0700_is_a_directory_search_denial_even_for_a_readable_key() {
    let mut k = key(SSL_CERT, 0o640);
    k.dirs[3].mode = mode(0o700);
    let denial = decide(&mosquitto(&[SSL_CERT]), &k).unwrap_err();
    assert_eq!(
        denial,
        PosixDenial::DirectorySearch {
            dir: "/etc/letsencrypt/archive".into(),
            class: Class::Other
        }
    );
    assert_eq!(denial.name(), "directory_search");
    // Read without search is not enough; search without read is.
    k.dirs[3].mode = mode(0o754);
    assert!(decide(&mosquitto(&[SSL_CERT]), &k).is_err());
    k.dirs[3].mode = mode(0o711);
    assert_eq!(decide(&mosquitto(&[SSL_CERT]), &k), Ok(()));
    // Root searches any directory.
    k.dirs[3].mode = mode(0o000);
    let mut root = mosquitto(&[]);
    root.uid = ROOT;
    assert_eq!(decide(&root, &k), Ok(()));
}

#[test]
fn the_first_unsearchable_directory_from_the_root_is_named() {
    let mut k = key(SSL_CERT, 0o640);
    k.dirs[2].mode = mode(0o750);
    k.dirs[4].mode = mode(0o700);
    assert!(matches!(
        decide(&mosquitto(&[]), &k),
        Err(PosixDenial::DirectorySearch { dir, .. }) if dir == "/etc/letsencrypt"
    ));
}

#[test]
fn a_wrong_selinux_type_denies_after_dac_and_binds_root_too() {
    let mut k = key(SSL_CERT, 0o640);
    k.label = Some("user_home_t".into());
    let denial = decide(&mosquitto(&[SSL_CERT]), &k).unwrap_err();
    assert_eq!(
        denial,
        PosixDenial::SelinuxLabel {
            label: "user_home_t".into()
        }
    );
    assert_eq!(denial.name(), "selinux_label");
    let mut root = mosquitto(&[]);
    root.uid = ROOT;
    assert!(matches!(
        decide(&root, &k),
        Err(PosixDenial::SelinuxLabel { .. })
    ));
    // The right type is readable; DAC is asked first.
    k.label = Some("cert_t".into());
    assert_eq!(decide(&mosquitto(&[SSL_CERT]), &k), Ok(()));
    k.file.mode = mode(0o600);
    k.label = Some("user_home_t".into());
    assert!(matches!(
        decide(&mosquitto(&[SSL_CERT]), &k),
        Err(PosixDenial::Mode { .. })
    ));
}

#[test]
fn modes_and_perms_refuse_bits_they_cannot_hold() {
    assert_eq!(Mode::new(0o10000), None);
    assert_eq!(
        Mode::new(0o4750).map(|m| m.to_string()),
        Some("4750".into())
    );
    assert_eq!(Perms::from_bits(8), None);
    assert_eq!(perms(5).to_string(), "r-x");
    let m = mode(0o751);
    assert_eq!(
        (m.owner(), m.group(), m.other()),
        (perms(7), perms(5), perms(1))
    );
}
