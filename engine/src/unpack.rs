//! Unpacking an output's tar into a directory on the user's machine (`ferry
//! artifacts get PIPELINE --execution ID NAME --out DIR`, `ferry exec
//! --artifacts DIR`), refusing anything that could land outside it. The archive is read twice: first every entry is checked
//! (absolute paths, `..`, links pointing out or climbing with `..` after a
//! name, entries written through a link of an earlier entry, special files,
//! more file bytes than the artifact's known size), and only if all pass is
//! anything written, through the `tar` crate's `unpack_in` (which checks the
//! destination's parents once more). Directories get their modes last, so a
//! read-only directory does not stop its own files.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use tar::{Archive, EntryType};
use thiserror::Error;

/// Why an archive was not unpacked.
#[derive(Debug, Error)]
pub enum UnpackError {
    /// An entry could land outside the directory, or is not a plain file,
    /// folder or link; nothing was written (the first pass refuses it).
    #[error("refused: entry `{entry}` {why}")]
    Refused { entry: String, why: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, UnpackError>;

/// An I/O error while doing `what`.
fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UnpackError {
    let what = what.into();
    move |source| UnpackError::Io { what, source }
}

/// What was unpacked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Regular files (hard links included).
    pub files: u64,
    /// Bytes of the regular files.
    pub bytes: u64,
}

/// Checks the whole archive, then unpacks it into `dir` (which must exist).
/// File contents may add up to at most `limit` bytes.
pub fn unpack<R: Read + Seek>(mut archive: R, dir: &Path, limit: u64) -> Result<Unpacked> {
    let counted = check(&mut archive, limit)?;
    archive
        .seek(SeekFrom::Start(0))
        .map_err(io("reading the archive again"))?;
    write(archive, dir)?;
    Ok(counted)
}

/// A relative path without `..`, root or prefix (`.` dropped), or None.
pub(crate) fn clean_relative(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether a symlink at `at` (relative to the root) pointing to `target`
/// resolves inside the root: a relative target whose `..` all come first and
/// do not climb above the root. (A `..` after a name could climb out through
/// a symlink that name turns out to be, so it is refused, not computed.)
pub(crate) fn symlink_stays_inside(at: &Path, target: &Path) -> bool {
    let mut depth = at.parent().map_or(0, |p| p.components().count());
    let mut descended = false;
    for c in target.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if !descended => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::Normal(_) => descended = true,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    target.components().next().is_some()
}

/// The first pass: every entry is one that [`write`] may unpack.
fn check<R: Read>(archive: R, limit: u64) -> Result<Unpacked> {
    let mut ar = Archive::new(archive);
    let mut links: HashSet<PathBuf> = HashSet::new();
    let mut counted = Unpacked::default();
    for entry in ar.entries().map_err(io("reading the archive"))? {
        let entry = entry.map_err(io("reading the archive"))?;
        let raw = entry.path().map_err(io("an entry's path"))?.into_owned();
        let refuse = |why: String| UnpackError::Refused {
            entry: raw.display().to_string(),
            why,
        };
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        let rel =
            clean_relative(&raw).ok_or_else(|| refuse("has an absolute path or `..`".into()))?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        if let Some(link) = link_above(&links, &rel) {
            return Err(refuse(format!(
                "would be written through the symlink `{}` of an earlier entry",
                link.display()
            )));
        }
        match kind {
            EntryType::Directory => {}
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.header().size().map_err(io("an entry's size"))?;
                counted.files += 1;
                counted.bytes = counted.bytes.saturating_add(size);
                if counted.bytes > limit {
                    return Err(refuse(format!(
                        "takes the files past the artifact's own size of {limit} bytes"
                    )));
                }
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(io("a link's target"))?
                    .ok_or_else(|| refuse("is a link without a target".into()))?;
                if !symlink_stays_inside(&rel, &target) {
                    return Err(refuse(format!(
                        "is a symlink pointing outside the directory (to `{}`)",
                        target.display()
                    )));
                }
                links.insert(rel);
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(io("a link's target"))?
                    .ok_or_else(|| refuse("is a link without a target".into()))?;
                let inside = clean_relative(&target)
                    .filter(|t| !t.as_os_str().is_empty())
                    .ok_or_else(|| {
                        refuse(format!(
                            "is a hard link to outside the directory (to `{}`)",
                            target.display()
                        ))
                    })?;
                if let Some(link) = link_above(&links, &inside) {
                    return Err(refuse(format!(
                        "is a hard link through the symlink `{}` of an earlier entry",
                        link.display()
                    )));
                }
                counted.files += 1;
            }
            _ => {
                return Err(refuse(
                    "is a device, fifo, sparse or other special file".into(),
                ));
            }
        }
    }
    Ok(counted)
}

/// The symlink of an earlier entry that `rel` would be reached through (one
/// of its parents; the entry itself may replace a link).
pub(crate) fn link_above<'p>(links: &HashSet<PathBuf>, rel: &'p Path) -> Option<&'p Path> {
    rel.ancestors().skip(1).find(|dir| links.contains(*dir))
}

/// The second pass: unpacks every entry [`check`] accepted into `dir`;
/// directories last, deepest first, so their modes apply after their files.
fn write<R: Read>(archive: R, dir: &Path) -> Result<()> {
    let mut ar = Archive::new(archive);
    ar.set_preserve_permissions(false);
    ar.set_preserve_ownerships(false);
    let mut directories = Vec::new();
    for entry in ar.entries().map_err(io("reading the archive"))? {
        let mut entry = entry.map_err(io("reading the archive"))?;
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        match entry.header().entry_type() {
            EntryType::Directory => directories.push(entry),
            EntryType::Regular | EntryType::Continuous | EntryType::Symlink | EntryType::Link => {
                let unpacked = entry
                    .unpack_in(dir)
                    .map_err(io(format!("unpacking `{shown}`")))?;
                if !unpacked {
                    return Err(UnpackError::Refused {
                        entry: shown,
                        why: "would land outside the directory".into(),
                    });
                }
            }
            _ => {}
        }
    }
    directories.sort_by(|a, b| b.path_bytes().cmp(&a.path_bytes()));
    for mut entry in directories {
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        entry
            .unpack_in(dir)
            .map_err(io(format!("unpacking `{shown}`")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use tar::{Builder, Header};

    /// A header whose name (and link name) are written as raw bytes, so a
    /// test can build what `tar::Builder` itself refuses to.
    fn raw_header(kind: EntryType, path: &str, link: Option<&str>, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        {
            let old = h.as_old_mut();
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(link) = link {
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        h.set_cksum();
        h
    }

    /// A tar of (kind, path, link target, content) entries.
    fn tar(entries: &[(EntryType, &str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut b = Builder::new(Vec::new());
        for (kind, path, link, data) in entries {
            let h = raw_header(*kind, path, *link, data.len() as u64);
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("finish")
    }

    fn unpack_bytes(bytes: &[u8], dir: &Path) -> Result<Unpacked> {
        unpack(Cursor::new(bytes), dir, bytes.len() as u64)
    }

    /// Everything under `dir`, relative, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read_dir") {
                let p = e.expect("entry").path();
                out.push(p.strip_prefix(dir).expect("under").display().to_string());
                if p.is_dir() && !p.is_symlink() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_normal_tree_unpacks_with_its_content() {
        let bytes = tar(&[
            (EntryType::Directory, "out/", None, b""),
            (EntryType::Regular, "out/app", None, b"precious\n"),
            (EntryType::Directory, "out/lib/", None, b""),
            (EntryType::Regular, "out/lib/a.so.1", None, b"elf"),
            (EntryType::Symlink, "out/lib/a.so", Some("a.so.1"), b""),
            (EntryType::Symlink, "out/lib/app", Some("../app"), b""),
            (EntryType::Link, "out/copy", Some("out/app"), b""),
        ]);
        let dir = tempfile::tempdir().expect("tempdir");
        let got = unpack_bytes(&bytes, dir.path()).expect("unpacks");
        assert_eq!(
            got,
            Unpacked {
                files: 3,
                bytes: 12
            }
        );
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).expect(p);
        assert_eq!(read("out/app"), "precious\n");
        assert_eq!(read("out/lib/a.so"), "elf");
        assert_eq!(read("out/lib/app"), "precious\n");
        assert_eq!(read("out/copy"), "precious\n");
        assert_eq!(
            listing(dir.path()),
            [
                "out",
                "out/app",
                "out/copy",
                "out/lib",
                "out/lib/a.so",
                "out/lib/a.so.1",
                "out/lib/app"
            ]
        );
    }

    /// Refused before anything is written, with the entry named.
    fn refused(entries: &[(EntryType, &str, Option<&str>, &[u8])], why: &str) {
        let bytes = tar(entries);
        let dir = tempfile::tempdir().expect("tempdir");
        let err = unpack_bytes(&bytes, dir.path()).expect_err("refused");
        let text = format!("{err:#}");
        assert!(text.contains(why), "{text}");
        assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    }

    #[test]
    fn parent_components_are_refused() {
        refused(
            &[
                (EntryType::Regular, "ok", None, b"fine"),
                (EntryType::Regular, "../x", None, b"evil"),
            ],
            "entry `../x` has an absolute path or `..`",
        );
        refused(
            &[(EntryType::Regular, "out/../../x", None, b"evil")],
            "has an absolute path or `..`",
        );
    }

    #[test]
    fn absolute_paths_are_refused() {
        refused(
            &[(EntryType::Regular, "/tmp/ferry-evil", None, b"evil")],
            "entry `/tmp/ferry-evil` has an absolute path or `..`",
        );
    }

    #[test]
    fn links_escaping_the_directory_are_refused() {
        refused(
            &[(EntryType::Symlink, "out/evil", Some("/etc/passwd"), b"")],
            "is a symlink pointing outside the directory (to `/etc/passwd`)",
        );
        refused(
            &[(EntryType::Symlink, "out/evil", Some("../../etc"), b"")],
            "pointing outside",
        );
        // `d/a` is the root, so `d/a/..` would be its parent.
        refused(
            &[
                (EntryType::Symlink, "d/a", Some(".."), b""),
                (EntryType::Symlink, "b", Some("d/a/.."), b""),
            ],
            "entry `b` is a symlink pointing outside",
        );
        refused(
            &[(EntryType::Link, "out/evil", Some("../secret"), b"")],
            "is a hard link to outside the directory",
        );
        // A link inside, then a file written through it.
        refused(
            &[
                (EntryType::Symlink, "out", Some("."), b""),
                (EntryType::Regular, "out/x", None, b"x"),
            ],
            "would be written through the symlink `out`",
        );
    }

    #[test]
    fn special_files_and_oversized_contents_are_refused() {
        refused(
            &[(EntryType::Fifo, "pipe", None, b"")],
            "is a device, fifo, sparse or other special file",
        );
        let bytes = tar(&[(EntryType::Regular, "big", None, &[7u8; 100])]);
        let dir = tempfile::tempdir().expect("tempdir");
        let err = unpack(Cursor::new(&bytes), dir.path(), 99).expect_err("too big");
        assert!(format!("{err:#}").contains("past the artifact's own size of 99 bytes"));
        assert!(listing(dir.path()).is_empty());
    }

    #[test]
    fn which_symlinks_stay_inside() {
        let inside = |at: &str, to: &str| symlink_stays_inside(Path::new(at), Path::new(to));
        assert!(inside("a", "b"));
        assert!(inside("a/b", "../c"));
        assert!(inside("a/b", "./c/d"));
        assert!(inside("a", "."));
        assert!(!inside("a", ".."));
        assert!(!inside("a/b", "../../c"));
        assert!(!inside("a", "/abs"));
        assert!(!inside("a/b", "c/../d"));
        assert!(!inside("a", ""));
    }
}
