//! Tar archives crossing the workspace boundary. Inputs are re-packed entry
//! by entry under `workspace/` and refused if any entry could land outside it
//! (absolute paths, `..`, links pointing out, entries written through a
//! symlink of an earlier entry, devices); outputs are re-rooted so that each
//! listed path keeps its place relative to `/workspace`.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use tar::{Archive, Builder, EntryType, Header};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ArchiveError {
    #[error("input `{input}` is a hostile or corrupt archive: entry `{entry}` {why}")]
    Hostile {
        input: String,
        entry: String,
        why: String,
    },
    #[error("archive I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A relative path with no `..`, no root and no prefix, or None.
fn clean_relative(p: &Path) -> Option<PathBuf> {
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

/// Does a link at `at` (relative) pointing to `target` stay inside the root?
fn link_stays_inside(at: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = at.parent().map_or(0, |p| p.components().count() as i64);
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// The tar uploaded to a container's `/`: a `workspace/` directory with
/// every input re-packed under it, in order. It remembers the symlinks of
/// all inputs added so far, because an extractor follows a symlink that an
/// earlier entry made: `a -> .` and then `a/b -> ..` would put `a/b/x` outside
/// the workspace although each path looks inside on its own.
pub struct WorkspaceTar<W: Write> {
    builder: Builder<W>,
    /// Symlinks added so far, relative to the workspace.
    links: HashSet<PathBuf>,
}

impl<W: Write> WorkspaceTar<W> {
    /// Starts the tar with the `workspace/` directory.
    pub fn new(w: W) -> Result<Self, ArchiveError> {
        let mut builder = Builder::new(w);
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Directory);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(0);
        builder.append_data(&mut h, "workspace/", std::io::empty())?;
        Ok(WorkspaceTar {
            builder,
            links: HashSet::new(),
        })
    }

    /// Copies the entries of input `name` under `workspace/`, refusing
    /// anything that would escape it. On an error the tar is unusable.
    pub fn append_input<R: Read>(&mut self, name: &str, input: R) -> Result<(), ArchiveError> {
        let mut ar = Archive::new(input);
        for entry in ar.entries()? {
            let mut entry = entry?;
            let raw = entry.path()?.into_owned();
            let shown = raw.display().to_string();
            let hostile = |why: &str| ArchiveError::Hostile {
                input: name.into(),
                entry: shown.clone(),
                why: why.into(),
            };
            let rel =
                clean_relative(&raw).ok_or_else(|| hostile("has an absolute path or `..`"))?;
            if rel.as_os_str().is_empty() {
                continue;
            }
            if let Some(link) = self.link_above(&rel) {
                return Err(hostile(&format!(
                    "would be written through the symlink `{}` of an earlier entry",
                    link.display()
                )));
            }
            let kind = entry.header().entry_type();
            match kind {
                EntryType::Regular
                | EntryType::Continuous
                | EntryType::Directory
                | EntryType::GNUSparse => {}
                EntryType::Symlink | EntryType::Link => {
                    let target = entry
                        .link_name()?
                        .ok_or_else(|| hostile("is a link without a target"))?;
                    let outside = || {
                        hostile(&format!(
                            "links outside the workspace (to `{}`)",
                            target.display()
                        ))
                    };
                    if kind == EntryType::Symlink {
                        if !link_stays_inside(&rel, &target) {
                            return Err(outside());
                        }
                    } else {
                        // A hard link's target is resolved from the workspace,
                        // following any symlink on the way.
                        let target = clean_relative(&target).ok_or_else(outside)?;
                        if let Some(link) = self.link_above(&target) {
                            return Err(hostile(&format!(
                                "links through the symlink `{}` of an earlier entry",
                                link.display()
                            )));
                        }
                    }
                }
                EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink => {
                    continue;
                }
                _ => return Err(hostile("is a device, fifo or other special file")),
            }
            let mut header = entry.header().clone();
            let dest = Path::new("workspace").join(&rel);
            if matches!(kind, EntryType::Symlink | EntryType::Link) {
                let target = entry
                    .link_name()?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let target = if kind == EntryType::Link {
                    Path::new("workspace").join(target)
                } else {
                    self.links.insert(rel);
                    target
                };
                self.builder.append_link(&mut header, &dest, &target)?;
            } else {
                self.builder.append_data(&mut header, &dest, &mut entry)?;
            }
        }
        Ok(())
    }

    /// Finishes the tar and returns what it was written to.
    pub fn into_inner(self) -> Result<W, ArchiveError> {
        Ok(self.builder.into_inner()?)
    }

    /// The symlink added earlier that `rel` would be reached through: one
    /// of its parent directories (the entry itself may replace a link).
    fn link_above<'p>(&self, rel: &'p Path) -> Option<&'p Path> {
        rel.ancestors()
            .skip(1)
            .find(|dir| self.links.contains(*dir))
    }
}

/// Re-roots a tar that Docker returned for `/workspace/<path>` (whose entries
/// start with the path's last component) under `<path>` relative to the workspace.
pub fn append_output<R: Read, W: Write>(
    path: &str,
    docker_tar: R,
    out: &mut Builder<W>,
) -> Result<(), ArchiveError> {
    let rel = clean_relative(Path::new(path)).unwrap_or_default();
    let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut ar = Archive::new(docker_tar);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.into_owned();
        let Some(clean) = clean_relative(&name) else {
            continue;
        };
        let dest = parent.join(clean);
        let mut header = entry.header().clone();
        match entry.header().entry_type() {
            EntryType::Symlink | EntryType::Link => {
                let target = entry
                    .link_name()?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                out.append_link(&mut header, &dest, &target)?;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {
                out.append_data(&mut header, &dest, &mut entry)?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, EntryType, &str)]) -> Vec<u8> {
        let mut b = Builder::new(Vec::new());
        for (path, kind, target) in entries {
            let mut h = Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(if *kind == EntryType::Regular { 2 } else { 0 });
            // Write names raw so hostile paths survive the builder's own checks.
            if let Some(gnu) = h.as_gnu_mut() {
                let bytes = path.as_bytes();
                gnu.name[..bytes.len()].copy_from_slice(bytes);
            }
            if !target.is_empty() {
                let _ = h.set_link_name(target);
            }
            h.set_cksum();
            let data: &[u8] = if *kind == EntryType::Regular {
                b"hi"
            } else {
                b""
            };
            let _ = b.append(&h, data);
        }
        b.into_inner().unwrap_or_default()
    }

    fn check(entries: &[(&str, EntryType, &str)]) -> Result<(), ArchiveError> {
        let mut out = WorkspaceTar::new(Vec::new())?;
        out.append_input("app", &tar_with(entries)[..])
    }

    #[test]
    fn accepts_plain_trees_and_inner_links() {
        assert!(
            check(&[
                ("dist/", EntryType::Directory, ""),
                ("dist/a", EntryType::Regular, "")
            ])
            .is_ok()
        );
        assert!(check(&[("dist/l", EntryType::Symlink, "../dist/a")]).is_ok());
    }

    #[test]
    fn refuses_escapes() {
        assert!(check(&[("../evil", EntryType::Regular, "")]).is_err());
        assert!(check(&[("/etc/evil", EntryType::Regular, "")]).is_err());
        assert!(check(&[("l", EntryType::Symlink, "/etc/passwd")]).is_err());
        assert!(check(&[("a/l", EntryType::Symlink, "../../x")]).is_err());
        assert!(check(&[("dev", EntryType::Char, "")]).is_err());
    }

    /// Found by the `archive_unpack` fuzz target: each path looks inside
    /// the workspace, but `a/b` is really `./b`, so `..` from it is `/`.
    #[test]
    fn refuses_entries_through_an_earlier_symlink() {
        let escape = check(&[
            ("a", EntryType::Symlink, "."),
            ("a/b", EntryType::Symlink, ".."),
            ("a/b/etc/evil", EntryType::Regular, ""),
        ]);
        assert_eq!(
            escape.map_err(|e| e.to_string()),
            Err(
                "input `app` is a hostile or corrupt archive: entry `a/b` would be written \
                 through the symlink `a` of an earlier entry"
                    .to_string()
            )
        );
        assert!(
            check(&[
                ("l", EntryType::Symlink, "dist"),
                ("l/x", EntryType::Regular, "")
            ])
            .is_err()
        );
        assert!(
            check(&[
                ("l", EntryType::Symlink, "dist"),
                ("h", EntryType::Link, "l/x")
            ])
            .is_err()
        );
        // A link itself may be replaced, and links into real directories stay fine.
        assert!(
            check(&[
                ("dist/", EntryType::Directory, ""),
                ("dist/a", EntryType::Regular, ""),
                ("l", EntryType::Symlink, "dist"),
                ("h", EntryType::Link, "dist/a"),
            ])
            .is_ok()
        );
    }

    #[test]
    fn links_of_one_input_bind_the_next() {
        let mut out = WorkspaceTar::new(Vec::new()).expect("start");
        let first = tar_with(&[("lib", EntryType::Symlink, ".")]);
        out.append_input("first", &first[..])
            .expect("a link inside");
        let second = tar_with(&[("lib/x", EntryType::Regular, "")]);
        let err = out
            .append_input("second", &second[..])
            .map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(
                "input `second` is a hostile or corrupt archive: entry `lib/x` would be written \
                 through the symlink `lib` of an earlier entry"
                    .to_string()
            )
        );
    }
}
