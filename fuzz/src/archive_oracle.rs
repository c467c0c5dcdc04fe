//! What must hold for any tar the agent's input re-packer produces, checked
//! by replaying its entries against a model of extraction into `/`:
//!
//! 1. every entry's path is `workspace/...` with no `..`, root or prefix;
//! 2. no entry's path goes through a symlink an earlier entry made (an
//!    extractor would follow it and write wherever it points);
//! 3. a symlink's target, read from where the link sits, never leaves
//!    `workspace/`;
//! 4. a hard link's target is a path under `workspace/` without `..`, and
//!    does not go through an earlier symlink either;
//! 5. nothing but files, directories and links.
//!
//! A symlink may still point outside through another symlink (`c -> .`,
//! `a -> c/..`); nothing is extracted through either, so that is left to
//! whatever the container later does with its own files.

use std::collections::HashSet;
use std::path::{Component, Path};

use tar::{Archive, EntryType};

/// Normal components of `path`, or a panic naming the rule broken.
fn components(path: &Path, what: &str) -> Vec<String> {
    path.components()
        .filter(|c| *c != Component::CurDir)
        .map(|c| match c {
            Component::Normal(part) => part.to_string_lossy().into_owned(),
            _ => panic!("{what} {} is not a plain relative path", path.display()),
        })
        .collect()
}

/// Panics unless `path` (as components) is in the workspace and reaches it
/// through no symlink in `links`.
fn check_inside(parts: &[String], links: &HashSet<Vec<String>>, what: &str) {
    assert!(
        parts.first().is_some_and(|first| first == "workspace"),
        "{what} {} is outside workspace/",
        parts.join("/")
    );
    for end in 1..parts.len() {
        assert!(
            !links.contains(&parts[..end]),
            "{what} {} goes through the symlink {}",
            parts.join("/"),
            parts[..end].join("/")
        );
    }
}

/// Checks rules 1 to 5 on a re-packed tar; panics with the rule broken.
pub fn check_workspace_tar(packed: &[u8]) {
    let mut links: HashSet<Vec<String>> = HashSet::new();
    let mut archive = Archive::new(packed);
    for entry in archive.entries().expect("the re-packed tar reads") {
        let entry = entry.expect("each re-packed entry reads");
        let path = entry.path().expect("an entry path").into_owned();
        let parts = components(&path, "entry");
        check_inside(&parts, &links, "entry");
        match entry.header().entry_type() {
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory => {}
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .expect("a link name")
                    .expect("a symlink has a target")
                    .into_owned();
                let mut at: Vec<String> = parts[..parts.len() - 1].to_vec();
                for c in target.components() {
                    match c {
                        Component::Normal(part) => at.push(part.to_string_lossy().into_owned()),
                        Component::CurDir => {}
                        Component::ParentDir => {
                            at.pop();
                            assert!(
                                !at.is_empty(),
                                "symlink {} -> {} leaves workspace/",
                                parts.join("/"),
                                target.display()
                            );
                        }
                        _ => panic!(
                            "symlink {} -> {} is absolute",
                            parts.join("/"),
                            target.display()
                        ),
                    }
                }
                links.insert(parts);
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .expect("a link name")
                    .expect("a hard link has a target")
                    .into_owned();
                let target = components(&target, "hard link target");
                check_inside(&target, &links, "hard link target");
            }
            other => panic!("entry {} is a {other:?}", parts.join("/")),
        }
    }
}
