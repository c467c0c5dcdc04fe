//! Tar archives crossing the workspace boundary. Inputs are re-packed entry
//! by entry under `workspace/` and refused if any entry could land outside it
//! (absolute paths, `..`, links pointing out, devices); outputs are re-rooted
//! so that each listed path keeps its place relative to `/workspace`.

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

/// Starts the tar uploaded to a container's `/`: a `workspace/` directory.
pub fn workspace_builder<W: Write>(w: W) -> Result<Builder<W>, ArchiveError> {
    let mut b = Builder::new(w);
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Directory);
    h.set_mode(0o777);
    h.set_size(0);
    h.set_mtime(0);
    b.append_data(&mut h, "workspace/", std::io::empty())?;
    Ok(b)
}

/// Copies the entries of input `name` into `out` under `workspace/`,
/// refusing anything that would escape it.
pub fn append_input<R: Read, W: Write>(
    name: &str,
    input: R,
    out: &mut Builder<W>,
) -> Result<(), ArchiveError> {
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
        let rel = clean_relative(&raw).ok_or_else(|| hostile("has an absolute path or `..`"))?;
        if rel.as_os_str().is_empty() {
            continue;
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
                let ok = if kind == EntryType::Link {
                    clean_relative(&target).is_some()
                } else {
                    link_stays_inside(&rel, &target)
                };
                if !ok {
                    return Err(hostile(&format!(
                        "links outside the workspace (to `{}`)",
                        target.display()
                    )));
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
                target
            };
            out.append_link(&mut header, &dest, &target)?;
        } else {
            out.append_data(&mut header, &dest, &mut entry)?;
        }
    }
    Ok(())
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
        let mut out = workspace_builder(Vec::new())?;
        append_input("app", &tar_with(entries)[..], &mut out)
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
}
