//! Tar archives crossing the workspace boundary. Inputs are re-packed entry
//! by entry under `workspace/` and refused if any entry could land outside it
//! (absolute paths, `..`, links pointing out, entries written through a
//! symlink of an earlier entry, devices); outputs are re-rooted so that each
//! listed path keeps its place relative to `/workspace`, and written in a
//! normal form ([`OutputTar`]: sorted entries, fixed times, owners and
//! modes) so that equal contents give equal digests. Unpacking an output on
//! the user's machine is [`crate::unpack`].

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tar::{Archive, Builder, Entry, EntryType, Header};

// One reading of paths and symlink targets for packing inputs and unpacking
// outputs: a `..` after a name in a link's target is refused, not computed.
use crate::unpack::{clean_relative, link_above, symlink_stays_inside};
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

/// The modification time of every entry of an output tar: 1980-01-01
/// 12:00:00 UTC, a constant rather than the commit's time so that equal
/// contents give equal digests across commits too. Not 0 (1970): ZIP
/// cannot hold a date before 1980, so tools that zip files unpacked from an
/// artifact (Python wheels, jars) would refuse them; noon rather than
/// midnight keeps the local date 1980-01-01 in every time zone.
pub const OUTPUT_MTIME: u64 = 315_576_000;

/// The rules every entry of an artifact keeps before it is written under a
/// root (the workspace, or a folder of `ferry exec --artifacts`): a clean
/// relative path, links that stay inside, no device. It remembers the
/// symlinks seen so far, because an extractor follows a symlink that an
/// earlier entry made: `a -> .` and then `a/b -> ..` would put `a/b/x`
/// outside the root although each path looks inside on its own.
#[derive(Default)]
struct Guard {
    /// Symlinks seen so far, relative to the root.
    links: HashSet<PathBuf>,
}

/// An entry that keeps the rules: its place under the root, its kind and,
/// for a link, its target as the archive gives it.
struct Checked {
    rel: PathBuf,
    kind: EntryType,
    target: Option<PathBuf>,
}

impl Guard {
    /// Checks one entry of archive `name`: `None` for an entry that writes
    /// nothing (the root itself, extension headers), an error for one that
    /// could land outside the root.
    fn check<R: Read>(
        &mut self,
        name: &str,
        entry: &Entry<'_, R>,
    ) -> Result<Option<Checked>, ArchiveError> {
        let raw = entry.path()?.into_owned();
        let shown = raw.display().to_string();
        let hostile = |why: &str| ArchiveError::Hostile {
            input: name.into(),
            entry: shown.clone(),
            why: why.into(),
        };
        let rel = clean_relative(&raw).ok_or_else(|| hostile("has an absolute path or `..`"))?;
        if rel.as_os_str().is_empty() {
            return Ok(None);
        }
        if let Some(link) = link_above(&self.links, &rel) {
            return Err(hostile(&format!(
                "would be written through the symlink `{}` of an earlier entry",
                link.display()
            )));
        }
        let kind = entry.header().entry_type();
        let mut target = None;
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
            EntryType::Symlink | EntryType::Link => {
                let to = entry
                    .link_name()?
                    .ok_or_else(|| hostile("is a link without a target"))?
                    .into_owned();
                let outside = || {
                    hostile(&format!(
                        "links outside the workspace (to `{}`)",
                        to.display()
                    ))
                };
                if kind == EntryType::Symlink {
                    if !symlink_stays_inside(&rel, &to) {
                        return Err(outside());
                    }
                    self.links.insert(rel.clone());
                } else {
                    // A hard link's target is resolved from the root,
                    // following any symlink on the way.
                    let resolved = clean_relative(&to).ok_or_else(outside)?;
                    if let Some(link) = link_above(&self.links, &resolved) {
                        return Err(hostile(&format!(
                            "links through the symlink `{}` of an earlier entry",
                            link.display()
                        )));
                    }
                }
                target = Some(to);
            }
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => return Ok(None),
            _ => return Err(hostile("is a device, fifo or other special file")),
        }
        Ok(Some(Checked { rel, kind, target }))
    }
}

/// The tar uploaded to a container's `/`: a `workspace/` directory with
/// every input re-packed under it, in order, each entry checked by a
/// [`Guard`] that remembers the symlinks of all inputs added so far.
pub struct WorkspaceTar<W: Write> {
    builder: Builder<W>,
    guard: Guard,
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
            guard: Guard::default(),
        })
    }

    /// Copies the entries of input `name` under `workspace/`, refusing
    /// anything that would escape it. On an error the tar is unusable.
    pub fn append_input<R: Read>(&mut self, name: &str, input: R) -> Result<(), ArchiveError> {
        self.append_input_timed(name, input, None)
    }

    /// [`Self::append_input`], each entry given the modification time
    /// `mtime` says for its path in the input (when given).
    pub fn append_input_timed<R: Read>(
        &mut self,
        name: &str,
        input: R,
        mtime: Option<&dyn Fn(&str) -> u64>,
    ) -> Result<(), ArchiveError> {
        let mut ar = Archive::new(input);
        for entry in ar.entries()? {
            let mut entry = entry?;
            let Some(Checked { rel, kind, target }) = self.guard.check(name, &entry)? else {
                continue;
            };
            let mut header = entry.header().clone();
            if let Some(mtime) = mtime {
                header.set_mtime(mtime(&rel.to_string_lossy()));
            }
            let dest = Path::new("workspace").join(&rel);
            if let Some(target) = target {
                let target = if kind == EntryType::Link {
                    Path::new("workspace").join(target)
                } else {
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
                    .map_err(|e| ArchiveError::Hostile {
                        input: name.into(),
                        entry: rel.display().to_string(),
                        why: format!("is cut short ({e})"),
                    })?;
            }
        }
        Ok(())
    }

    /// Finishes the tar and returns what it was written to.
    pub fn into_inner(self) -> Result<W, ArchiveError> {
        Ok(self.builder.into_inner()?)
    }
}

/// One entry of an [`OutputTar`], as it will be written.
enum Planned {
    Dir,
    /// The bytes of a regular file: `size` of them at `offset` in source
    /// tar `source`.
    File {
        source: usize,
        offset: u64,
        size: u64,
        executable: bool,
    },
    /// A symlink, its target as the action made it.
    Symlink(PathBuf),
}

/// One output's tar in a normal form, so that equal contents give equal
/// digests whenever and in whatever order they were made: entries sorted by
/// path (component by component, so a directory comes before what is in
/// it), each path once (the last of the output's paths to give it wins, as
/// an extractor would leave it), every time [`OUTPUT_MTIME`], owner 0:0
/// with no user or group name, modes 0644 or 0755 for files (only whether
/// any execute bit is set is kept) and 0755 for directories. Symlinks stay
/// symlinks with their target unchanged (whoever unpacks the output checks
/// them: [`WorkspaceTar`], [`crate::unpack`]); a hard link becomes a copy of
/// the file it names, because sorting may put it before that file; devices
/// and fifos are left out, as they always were.
///
/// The tars Docker returns are indexed first (their data stays where it
/// is, in what may be scratch files larger than memory) and read again,
/// entry by entry, when the output is written.
pub struct OutputTar<R> {
    sources: Vec<R>,
    entries: BTreeMap<PathBuf, Planned>,
    /// Each entry's modification time, kept only for a cache
    /// ([`OutputTar::keeping_times`]).
    times: Option<BTreeMap<PathBuf, u64>>,
}

impl<R: Read + Seek> Default for OutputTar<R> {
    fn default() -> Self {
        OutputTar {
            sources: Vec::new(),
            entries: BTreeMap::new(),
            times: None,
        }
    }
}

impl<R: Read + Seek> OutputTar<R> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The same normal form but for modification times, which are kept as
    /// the action left them: a build cache (`target/`) is only of use when
    /// build tools can compare its times with the sources'.
    pub fn keeping_times() -> Self {
        OutputTar {
            times: Some(BTreeMap::new()),
            ..Self::default()
        }
    }

    /// Adds a tar that Docker returned for `/workspace/<path>` (whose
    /// entries start with the path's last component), re-rooted under
    /// `<path>` relative to the workspace.
    pub fn add(&mut self, path: &str, mut docker_tar: R) -> Result<(), ArchiveError> {
        let rel = clean_relative(Path::new(path)).unwrap_or_default();
        let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        let source = self.sources.len();
        {
            let mut ar = Archive::new(&mut docker_tar);
            for entry in ar.entries_with_seek()? {
                let entry = entry?;
                let name = entry.path()?.into_owned();
                let Some(clean) = clean_relative(&name) else {
                    continue;
                };
                if clean.as_os_str().is_empty() {
                    continue;
                }
                let dest = parent.join(clean);
                let header = entry.header();
                let planned = match header.entry_type() {
                    EntryType::Directory => Planned::Dir,
                    EntryType::Regular | EntryType::Continuous => Planned::File {
                        source,
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                        executable: header.mode().is_ok_and(|m| m & 0o111 != 0),
                    },
                    EntryType::Symlink => match entry.link_name()? {
                        Some(target) => Planned::Symlink(target.into_owned()),
                        None => continue,
                    },
                    EntryType::Link => {
                        // Docker names the first file of the same inode,
                        // which came earlier in this tar.
                        let target = entry
                            .link_name()?
                            .and_then(|t| clean_relative(&t))
                            .map(|t| parent.join(t));
                        match target.and_then(|t| self.entries.get(&t)) {
                            Some(Planned::File {
                                source,
                                offset,
                                size,
                                executable,
                            }) => Planned::File {
                                source: *source,
                                offset: *offset,
                                size: *size,
                                executable: *executable,
                            },
                            _ => continue,
                        }
                    }
                    _ => continue,
                };
                if let Some(times) = self.times.as_mut() {
                    times.insert(dest.clone(), header.mtime().unwrap_or(OUTPUT_MTIME));
                }
                self.entries.insert(dest, planned);
            }
        }
        self.sources.push(docker_tar);
        Ok(())
    }

    /// Writes the tar to `w` and returns it.
    pub fn write<W: Write>(mut self, w: W) -> Result<W, ArchiveError> {
        let mut b = Builder::new(w);
        for (path, planned) in &self.entries {
            let mut h = Header::new_gnu();
            let mtime = self.times.as_ref().and_then(|t| t.get(path).copied());
            h.set_mtime(mtime.unwrap_or(OUTPUT_MTIME));
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(0);
            match planned {
                Planned::Dir => {
                    h.set_entry_type(EntryType::Directory);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, std::io::empty())?;
                }
                Planned::File {
                    source,
                    offset,
                    size,
                    executable,
                } => {
                    h.set_entry_type(EntryType::Regular);
                    h.set_mode(if *executable { 0o755 } else { 0o644 });
                    h.set_size(*size);
                    let src = self.sources.get_mut(*source).ok_or_else(|| {
                        std::io::Error::other("an output entry names no source tar")
                    })?;
                    src.seek(SeekFrom::Start(*offset))?;
                    // Exactly `size` bytes, or the tar would be misaligned.
                    let data = ExactSize {
                        inner: src,
                        left: *size,
                    };
                    b.append_data(&mut h, path, data)?;
                }
                Planned::Symlink(target) => {
                    h.set_entry_type(EntryType::Symlink);
                    h.set_mode(0o777);
                    b.append_link(&mut h, path, target)?;
                }
            }
        }
        Ok(b.into_inner()?)
    }
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
        // A chain of links whose targets each look inside on their own:
        // `b` resolves to `d/a/..` = `d/../..`, above the root.
        assert!(
            check(&[
                ("d/a", EntryType::Symlink, ".."),
                ("b", EntryType::Symlink, "d/a/.."),
            ])
            .is_err()
        );
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

    type Res = Result<(), Box<dyn std::error::Error>>;

    /// The tar Docker would return for `/workspace/dist`, made from the
    /// folder `src` as `docker cp` makes one: in directory order, with
    /// times, owners and modes as they are.
    fn docker_tar(src: &Path) -> Result<std::io::Cursor<Vec<u8>>, Box<dyn std::error::Error>> {
        let mut b = Builder::new(Vec::new());
        b.follow_symlinks(false);
        b.append_dir_all("dist", src)?;
        Ok(std::io::Cursor::new(b.into_inner()?))
    }

    fn packed(path: &str, src: &Path) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let mut out = OutputTar::new();
        out.add(path, docker_tar(src)?)?;
        Ok(out.write(Vec::new())?)
    }

    fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
    }

    fn set_mtime(p: &Path, secs: u64) -> std::io::Result<()> {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        std::fs::File::open(p)?.set_modified(at)
    }

    /// The same files, made in another order at other times with other
    /// modes (but the same execute bits): the same bytes.
    #[test]
    fn equal_trees_archive_to_equal_bytes() -> Res {
        let first = tempfile::tempdir()?;
        let a = first.path();
        std::fs::create_dir_all(a.join("lib/deep"))?;
        std::fs::write(a.join("app"), "#!/bin/sh\necho hi\n")?;
        set_mode(&a.join("app"), 0o755)?;
        std::fs::write(a.join("lib/deep/z.txt"), "z")?;
        std::fs::write(a.join("lib/a.txt"), "a")?;
        std::fs::write(a.join("README"), "read me")?;
        std::os::unix::fs::symlink("lib/a.txt", a.join("link"))?;
        for (i, f) in ["app", "lib/deep/z.txt", "lib/a.txt", "README"]
            .iter()
            .enumerate()
        {
            set_mtime(&a.join(f), 1_000_000 + i as u64)?;
        }

        let second = tempfile::tempdir()?;
        let b = second.path();
        std::os::unix::fs::symlink("lib/a.txt", b.join("link"))?;
        std::fs::write(b.join("README"), "read me")?;
        set_mode(&b.join("README"), 0o600)?;
        std::fs::create_dir(b.join("lib"))?;
        std::fs::write(b.join("lib/a.txt"), "a")?;
        set_mode(&b.join("lib/a.txt"), 0o664)?;
        std::fs::create_dir(b.join("lib/deep"))?;
        set_mode(&b.join("lib/deep"), 0o700)?;
        std::fs::write(b.join("lib/deep/z.txt"), "z")?;
        std::fs::write(b.join("app"), "#!/bin/sh\necho hi\n")?;
        set_mode(&b.join("app"), 0o700)?;
        for f in ["app", "lib/deep/z.txt", "lib/a.txt", "README"] {
            set_mtime(&b.join(f), 2_000_000_000)?;
        }

        let (one, two) = (packed("dist", a)?, packed("dist", b)?);
        assert!(
            one != docker_tar(a)?.into_inner(),
            "the Docker-like tar differs"
        );
        assert!(one == two, "equal trees, different tars");
        let digest = |t: &[u8]| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(t));
        assert_eq!(digest(&one), digest(&two));

        // Sorted, and every header in the normal form.
        let mut ar = Archive::new(&one[..]);
        let mut names = Vec::new();
        for entry in ar.entries()? {
            let entry = entry?;
            let h = entry.header();
            assert_eq!(h.mtime()?, OUTPUT_MTIME);
            assert_eq!((h.uid()?, h.gid()?), (0, 0));
            assert_eq!(h.username_bytes(), Some(&b""[..]));
            assert_eq!(h.groupname_bytes(), Some(&b""[..]));
            let name = entry.path()?.display().to_string();
            let want = match h.entry_type() {
                EntryType::Directory => 0o755,
                EntryType::Symlink => 0o777,
                _ if name == "dist/app" => 0o755,
                _ => 0o644,
            };
            assert_eq!(h.mode()?, want, "{name}");
            names.push(name);
        }
        assert_eq!(
            names,
            [
                "dist",
                "dist/README",
                "dist/app",
                "dist/lib",
                "dist/lib/a.txt",
                "dist/lib/deep",
                "dist/lib/deep/z.txt",
                "dist/link"
            ]
        );
        Ok(())
    }

    /// An output of several paths: re-rooted under each path's parent, one
    /// entry per path, the order of the paths no matter.
    #[test]
    fn several_paths_are_merged_and_sorted() -> Res {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("x"), "x")?;
        let build = |order: &[&str]| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
            let mut out = OutputTar::new();
            for path in order {
                out.add(path, docker_tar(dir.path())?)?;
            }
            Ok(out.write(Vec::new())?)
        };
        let one = build(&["out/dist", "dist"])?;
        assert!(one == build(&["dist", "out/dist"])?);
        assert!(one == build(&["dist", "out/dist", "dist"])?);
        let mut names = Vec::new();
        for entry in Archive::new(&one[..]).entries()? {
            names.push(entry?.path()?.display().to_string());
        }
        assert_eq!(names, ["dist", "dist/x", "out/dist", "out/dist/x"]);
        Ok(())
    }

    /// A hard link may sort before the file it names: it becomes a copy.
    #[test]
    fn hard_links_become_copies() -> Res {
        let mut b = Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o755);
        h.set_size(4);
        b.append_data(&mut h, "dist/z", &b"data"[..])?;
        let mut l = Header::new_gnu();
        l.set_entry_type(EntryType::Link);
        l.set_size(0);
        b.append_link(&mut l, "dist/a", "dist/z")?;
        let mut out = OutputTar::new();
        out.add("build/dist", std::io::Cursor::new(b.into_inner()?))?;
        let packed = out.write(Vec::new())?;
        let mut seen = Vec::new();
        for entry in Archive::new(&packed[..]).entries()? {
            let mut entry = entry?;
            let mut data = String::new();
            entry.read_to_string(&mut data)?;
            seen.push((
                entry.path()?.display().to_string(),
                entry.header().entry_type(),
                entry.header().mode()?,
                data,
            ));
        }
        let file = |p: &str| (p.to_string(), EntryType::Regular, 0o755, "data".to_string());
        assert_eq!(seen, [file("build/dist/a"), file("build/dist/z")]);
        Ok(())
    }

    /// Packed, then unpacked: the execute bits, the symlink and the bytes
    /// are what they were.
    #[test]
    fn executable_bits_and_links_survive_a_round_trip() -> Res {
        use std::os::unix::fs::PermissionsExt as _;
        let src = tempfile::tempdir()?;
        let s = src.path();
        std::fs::create_dir(s.join("bin"))?;
        std::fs::write(s.join("bin/tool"), "#!/bin/sh\n")?;
        set_mode(&s.join("bin/tool"), 0o750)?;
        std::fs::write(s.join("notes.txt"), "plain")?;
        set_mode(&s.join("notes.txt"), 0o640)?;
        std::os::unix::fs::symlink("bin/tool", s.join("tool"))?;
        let packed = packed("dist", s)?;

        let dest = tempfile::tempdir()?;
        crate::unpack::unpack(std::io::Cursor::new(packed), dest.path(), u64::MAX)?;
        let d = dest.path().join("dist");
        let mode = |p: &str| -> std::io::Result<u32> {
            Ok(std::fs::metadata(d.join(p))?.permissions().mode() & 0o777)
        };
        assert_eq!(mode("bin/tool")?, 0o755);
        assert_eq!(mode("notes.txt")?, 0o644);
        assert_eq!(mode("bin")?, 0o755);
        assert_eq!(std::fs::read_to_string(d.join("notes.txt"))?, "plain");
        assert_eq!(std::fs::read_link(d.join("tool"))?, Path::new("bin/tool"));
        Ok(())
    }
}
