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
                EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
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
                // A link carries no data, whatever size a hostile header claims.
                header.set_size(0);
                self.builder.append_link(&mut header, &dest, &target)?;
            } else {
                // The header's size is copied with the entry: exactly that
                // many bytes must follow, or the re-packed tar is corrupt.
                let size = header.size()?;
                let mut data = ExactSize {
                    inner: &mut entry,
                    left: size,
                };
                self.builder
                    .append_data(&mut header, &dest, &mut data)
                    .map_err(|e| hostile(&format!("is cut short ({e})")))?;
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

/// Reads exactly `left` bytes from `inner`: ending early is an error, not a
/// short copy (which would leave the rest of the tar misaligned).
struct ExactSize<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactSize<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} bytes short of the size in its header", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
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

    /// Found by the fuzzer: a symlink whose header claims data (and, alike,
    /// an entry whose data ends before its header's size) was re-packed into
    /// a tar that does not read.
    #[test]
    fn entries_cut_short_are_refused() {
        let mut header = Header::new_gnu();
        header.set_path("dist/app").expect("path");
        header.set_entry_type(EntryType::Regular);
        header.set_size(4096);
        header.set_cksum();
        let mut input = header.as_bytes().to_vec();
        input.extend_from_slice(&[7u8; 100]);
        let mut out = WorkspaceTar::new(Vec::new()).expect("start");
        let err = out
            .append_input("app", &input[..])
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            err.as_ref().is_err_and(|e| e.contains("cut short")),
            "{err:?}"
        );
        // The raw fuzzer input, kept as it was found.
        let found = include_bytes!("../../fuzz/seeds/archive_unpack/cut-short.in");
        let mut out = WorkspaceTar::new(Vec::new()).expect("start");
        if out.append_input("input0", &found[1..]).is_ok() {
            let packed = out.into_inner().expect("finish");
            let mut archive = tar::Archive::new(&packed[..]);
            for entry in archive.entries().expect("entries") {
                let mut entry = entry.expect("each re-packed entry reads");
                std::io::copy(&mut entry, &mut std::io::sink()).expect("its data reads");
            }
        }
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
