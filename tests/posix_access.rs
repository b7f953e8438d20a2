//! `store::posix::decide` against a reference written line by line from acl(5)'s "ACCESS CHECK
//! ALGORITHM", on random owners, groups, modes, ACLs, directory chains and labels.
//!
//! The reference works the way acl(5) is written — on a list of tagged entries (`ACL_USER_OBJ`,
//! `ACL_USER`, `ACL_GROUP_OBJ`, `ACL_GROUP`, `ACL_MASK`, `ACL_OTHER`) built from the node the way
//! the kernel keeps them (with an extended ACL the mode's group bits are `ACL_MASK`) — where the
//! implementation works class by class on the node. Around it: every parent directory must grant
//! search (path resolution, path_resolution(7)); uid 0 passes both checks (`CAP_DAC_READ_SEARCH`,
//! capabilities(7)); SELinux is asked last and binds root too.

use std::collections::BTreeMap;

use lcs_sim::store::posix::{
    Class, ExtendedAcl, Gid, KeyPath, Mode, Node, Perms, PosixDenial, PosixUser, Uid, decide,
};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    UserObj,
    User(Uid),
    GroupObj,
    Group(Gid),
    Mask,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    tag: Tag,
    perm: u8,
}

/// The node's ACL as acl(5) sees it: the three minimal entries, or the extended form with the
/// mode's group bits as the mask.
fn entries(node: &Node) -> Vec<Entry> {
    let m = node.mode.bits();
    let (u, g, o) = (((m >> 6) & 7) as u8, ((m >> 3) & 7) as u8, (m & 7) as u8);
    let e = |tag, perm| Entry { tag, perm };
    match &node.acl {
        None => vec![e(Tag::UserObj, u), e(Tag::GroupObj, g), e(Tag::Other, o)],
        Some(acl) => {
            let mut v = vec![e(Tag::UserObj, u), e(Tag::GroupObj, acl.group_obj.bits())];
            v.extend(acl.users.iter().map(|(q, p)| e(Tag::User(*q), p.bits())));
            v.extend(acl.groups.iter().map(|(q, p)| e(Tag::Group(*q), p.bits())));
            v.push(e(Tag::Mask, g));
            v.push(e(Tag::Other, o));
            v
        }
    }
}

/// Which step of the algorithm denied, and (steps 2 and 3) whether the matching entries alone
/// held the permission, so that only the mask refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Denied {
    Step1,
    Step2 { entry_had_it: bool },
    Step3 { entry_had_it: bool, mask: bool },
    Step5,
}

fn contains(perm: u8, want: u8) -> bool {
    perm & want == want
}

/// acl(5), "ACCESS CHECK ALGORITHM", steps 1–5, for one object.
fn acl5(user: &PosixUser, owner: Uid, group: Gid, acl: &[Entry], want: u8) -> Result<(), Denied> {
    let find = |t: Tag| acl.iter().find(|e| e.tag == t).map(|e| e.perm);
    let mask = find(Tag::Mask);
    // 1. If the effective user ID of the process matches the user ID of the file object owner,
    //    then if the ACL_USER_OBJ entry contains the requested permissions, access is granted,
    //    else access is denied.
    if user.uid == owner {
        return if contains(find(Tag::UserObj).unwrap(), want) {
            Ok(())
        } else {
            Err(Denied::Step1)
        };
    }
    // 2. else if the effective user ID of the process matches the qualifier of any entry of
    //    type ACL_USER, then if the matching ACL_USER entry and the ACL_MASK entry contain the
    //    requested permissions, access is granted, else access is denied.
    if let Some(perm) = find(Tag::User(user.uid)) {
        let m = mask.expect("acl(5): ACL_USER entries need an ACL_MASK");
        return if contains(perm, want) && contains(m, want) {
            Ok(())
        } else {
            Err(Denied::Step2 {
                entry_had_it: contains(perm, want),
            })
        };
    }
    // 3. else if the effective group ID or any of the supplementary group IDs of the process
    //    match the file group or the qualifier of any entry of type ACL_GROUP, then
    let gids: Vec<Gid> = std::iter::once(user.gid)
        .chain(user.groups.iter().copied())
        .collect();
    let matching: Vec<u8> = acl
        .iter()
        .filter(|e| match e.tag {
            Tag::GroupObj => gids.contains(&group),
            Tag::Group(q) => gids.contains(&q),
            _ => false,
        })
        .map(|e| e.perm)
        .collect();
    if !matching.is_empty() {
        let any = matching.iter().any(|p| contains(*p, want));
        return match mask {
            // if the ACL contains an ACL_MASK entry, then if the ACL_MASK entry and any of the
            // matching ACL_GROUP_OBJ or ACL_GROUP entries contain the requested permissions,
            // access is granted, else access is denied.
            Some(m) => {
                if contains(m, want) && any {
                    Ok(())
                } else {
                    Err(Denied::Step3 {
                        entry_had_it: any,
                        mask: true,
                    })
                }
            }
            // else (note that there can be no ACL_GROUP entries without an ACL_MASK entry) if
            // the ACL_GROUP_OBJ entry contains the requested permissions, access is granted,
            // else access is denied.
            None => {
                if contains(find(Tag::GroupObj).unwrap(), want) {
                    Ok(())
                } else {
                    Err(Denied::Step3 {
                        entry_had_it: false,
                        mask: false,
                    })
                }
            }
        };
    }
    // 4. else if the ACL_OTHER entry contains the requested permissions, access is granted.
    if contains(find(Tag::Other).unwrap(), want) {
        return Ok(());
    }
    // 5. else access is denied.
    Err(Denied::Step5)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Search(String, Denied),
    Read(Denied),
    Label,
}

fn reference(user: &PosixUser, key: &KeyPath) -> Result<(), Expected> {
    if user.uid != 0 {
        for d in &key.dirs {
            acl5(user, d.owner, d.group, &entries(d), 1)
                .map_err(|s| Expected::Search(d.path.clone(), s))?;
        }
        let f = &key.file;
        acl5(user, f.owner, f.group, &entries(f), 4).map_err(Expected::Read)?;
    }
    match &key.label {
        Some(l) if !user.label_types.contains(l) => Err(Expected::Label),
        _ => Ok(()),
    }
}

/// Whether the typed denial is the one the reference's step calls for.
fn agrees(got: &PosixDenial, want: &Expected) -> bool {
    let class_of = |d: &Denied| match d {
        Denied::Step1 => Class::Owner,
        Denied::Step2 { .. } => Class::NamedUser,
        Denied::Step3 { .. } => Class::Group,
        Denied::Step5 => Class::Other,
    };
    match (got, want) {
        (PosixDenial::DirectorySearch { dir, class }, Expected::Search(path, step)) => {
            dir == path && *class == class_of(step)
        }
        (PosixDenial::Mode { class, .. }, Expected::Read(step)) => {
            *class == class_of(step)
                && matches!(
                    step,
                    Denied::Step1 | Denied::Step5 | Denied::Step3 { mask: false, .. }
                )
        }
        (PosixDenial::AclEntry { class }, Expected::Read(step)) => {
            *class == class_of(step)
                && matches!(
                    step,
                    Denied::Step2 {
                        entry_had_it: false
                    } | Denied::Step3 {
                        entry_had_it: false,
                        mask: true
                    }
                )
        }
        (PosixDenial::AclMask { class, .. }, Expected::Read(step)) => {
            *class == class_of(step)
                && matches!(
                    step,
                    Denied::Step2 { entry_had_it: true }
                        | Denied::Step3 {
                            entry_had_it: true,
                            ..
                        }
                )
        }
        (PosixDenial::SelinuxLabel { .. }, Expected::Label) => true,
        _ => false,
    }
}

const UIDS: [Uid; 4] = [0, 1000, 1001, 1002];
const GIDS: [Gid; 4] = [0, 100, 101, 102];
const LABELS: [&str; 2] = ["cert_t", "user_home_t"];

fn perms() -> impl Strategy<Value = Perms> {
    (0u8..8).prop_map(|b| Perms::from_bits(b).unwrap())
}

fn acl() -> impl Strategy<Value = ExtendedAcl> {
    (
        perms(),
        prop::collection::btree_map(prop::sample::select(&UIDS[..]), perms(), 0..3),
        prop::collection::btree_map(prop::sample::select(&GIDS[..]), perms(), 0..3),
    )
        .prop_map(|(group_obj, users, groups)| ExtendedAcl {
            group_obj,
            users: users.into_iter().collect::<BTreeMap<_, _>>(),
            groups,
        })
}

/// A node owned by someone in the pools; a directory's mode is mostly 0755, so that the file
/// check is reached often, a file's any mode.
fn node(path: String, dir: bool) -> impl Strategy<Value = Node> {
    let bits = if dir {
        prop_oneof![3 => Just(0o755u16), 2 => 0u16..=0o7777].boxed()
    } else {
        (0u16..=0o7777).boxed()
    };
    (
        prop::sample::select(&UIDS[..]),
        prop::sample::select(&GIDS[..]),
        bits,
        prop::option::of(acl()),
    )
        .prop_map(move |(owner, group, bits, acl)| Node {
            path: path.clone(),
            owner,
            group,
            mode: Mode::new(bits).unwrap(),
            acl,
        })
}

fn key_path() -> impl Strategy<Value = KeyPath> {
    (0usize..4)
        .prop_flat_map(|n| {
            let dirs: Vec<_> = (0..n).map(|i| node(format!("/d{i}"), true)).collect();
            (
                dirs,
                node("/d/privkey1.pem".into(), false),
                prop::option::of(prop::sample::select(&LABELS[..])),
            )
        })
        .prop_map(|(dirs, file, label)| KeyPath {
            dirs,
            file,
            label: label.map(str::to_string),
        })
}

fn user() -> impl Strategy<Value = PosixUser> {
    (
        prop_oneof![1 => Just(0u32), 6 => prop::sample::select(&UIDS[1..])],
        prop::sample::select(&GIDS[..]),
        prop::sample::subsequence(&GIDS[..], 0..3),
        prop::sample::subsequence(&LABELS[..], 0..3),
    )
        .prop_map(|(uid, gid, groups, labels)| PosixUser {
            uid,
            gid,
            groups,
            label_types: labels.into_iter().map(str::to_string).collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decide_agrees_with_acl5(user in user(), key in key_path()) {
        let got = decide(&user, &key);
        let want = reference(&user, &key);
        match (&got, &want) {
            (Ok(()), Ok(())) => {}
            (Err(g), Err(w)) => prop_assert!(agrees(g, w), "decide said {g:?}, acl(5) {w:?}"),
            _ => prop_assert!(false, "decide said {got:?}, acl(5) {want:?}"),
        }
    }
}
