//! The `source` input of a local run, as a tar blob in the run's store: the
//! git working tree as it is — tracked files and untracked ones git does
//! not ignore, uncommitted changes included, deleted files left out — or a
//! commit, through the agent's own `git archive` ([`archive_commit`]). Like
//! `git archive`, the tar holds paths relative to the repository's top,
//! regular files and symlinks only, no `.git`.
//!
//! It only reads the repository: no index refresh, no stash, no checkout.

use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use ferry_pipeline::condition::SourceRef;

use super::LocalError;
use crate::source::{archive_commit, git};
use crate::store::{Blob, Store};

/// What the `source` input is made of.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Revision {
    /// The working tree as it is (the default).
    #[default]
    Worktree,
    /// A branch, tag or commit of the repository.
    Commit(String),
}

/// The `source` input, stored, and what it is.
#[derive(Debug, Clone)]
pub struct PreparedSource {
    pub blob: Blob,
    /// What `$FERRY_REVISION` says: the commit, or for a working tree the
    /// commit it is based on (`worktree` before the first commit).
    pub revision: String,
    /// The branch or tag it comes from, for `when:` conditions.
    pub source_ref: Option<SourceRef>,
    /// One line for the person running it.
    pub description: String,
}

async fn git_text(args: &[&str], cwd: &Path) -> Result<String, LocalError> {
    let out = git(args, cwd).await.map_err(LocalError::Git)?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// The top of the working tree `dir` is in.
pub async fn toplevel(dir: &Path) -> Result<PathBuf, LocalError> {
    git_text(&["rev-parse", "--show-toplevel"], dir)
        .await
        .map(PathBuf::from)
        .map_err(|e| {
            LocalError::Git(format!(
                "{} is not in a git working tree ({e})",
                dir.display()
            ))
        })
}

/// Stores the `source` input of `revision` from the repository at `repo`.
pub async fn prepare(
    repo: &Path,
    revision: &Revision,
    store: &Store,
) -> Result<PreparedSource, LocalError> {
    match revision {
        Revision::Worktree => worktree(repo, store).await,
        Revision::Commit(rev) => commit(repo, rev, store).await,
    }
}

async fn commit(repo: &Path, rev: &str, store: &Store) -> Result<PreparedSource, LocalError> {
    if rev.is_empty() || rev.starts_with('-') {
        return Err(LocalError::Git(format!(
            "--revision `{rev}` is not a branch, tag or commit"
        )));
    }
    let spec = format!("{rev}^{{commit}}");
    let commit = git_text(&["rev-parse", "--verify", "--quiet", &spec], repo)
        .await
        .map_err(|_| {
            LocalError::Git(format!(
                "--revision `{rev}` is not a branch, tag or commit of {}",
                repo.display()
            ))
        })?;
    // The user's own repository on their own machine: no size limit.
    let blob = archive_commit(store, repo, &commit, 0)
        .await
        .map_err(LocalError::Git)?;
    let is_ref = |full: String| async move {
        git(&["show-ref", "--verify", "--quiet", &full], repo)
            .await
            .is_ok()
    };
    let source_ref = if is_ref(format!("refs/heads/{rev}")).await {
        Some(SourceRef::Branch(rev.to_string()))
    } else if is_ref(format!("refs/tags/{rev}")).await {
        Some(SourceRef::Tag(rev.to_string()))
    } else {
        None
    };
    Ok(PreparedSource {
        blob,
        description: format!("commit {commit} ({rev}) of {}", repo.display()),
        revision: commit,
        source_ref,
    })
}

async fn worktree(repo: &Path, store: &Store) -> Result<PreparedSource, LocalError> {
    let head = git_text(&["rev-parse", "--verify", "--quiet", "HEAD"], repo)
        .await
        .ok();
    let branch = git_text(&["symbolic-ref", "--short", "--quiet", "HEAD"], repo)
        .await
        .ok()
        .filter(|b| !b.is_empty());
    let changed = !git_text(&["status", "--porcelain"], repo).await?.is_empty();
    let listed = git(
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
        repo,
    )
    .await
    .map_err(LocalError::Git)?;
    let paths: Vec<PathBuf> = listed
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
        .collect();
    let (root, store) = (repo.to_path_buf(), store.clone());
    let blob = tokio::task::spawn_blocking(move || pack(&root, &paths, &store))
        .await
        .map_err(|e| LocalError::Git(format!("packing the working tree stopped: {e}")))??;
    let revision = head.clone().unwrap_or_else(|| "worktree".to_string());
    let description = format!(
        "working tree of {}{}{}",
        repo.display(),
        head.map(|h| format!(" at {h}")).unwrap_or_default(),
        if changed {
            " with its uncommitted changes"
        } else {
            ""
        }
    );
    Ok(PreparedSource {
        blob,
        revision,
        source_ref: branch.map(SourceRef::Branch),
        description,
    })
}

/// A tar of `paths` (relative to `root`, as `git ls-files` lists them) into
/// the store. A listed path that is gone (deleted, not yet staged), is a
/// directory (a submodule), or lies beyond a symbolic link (an index entry
/// under a directory since replaced by a link, which would lead out of the
/// working tree; git itself calls such a path "beyond a symbolic link") is
/// left out.
fn pack(root: &Path, paths: &[PathBuf], store: &Store) -> Result<Blob, LocalError> {
    let mut writer = store.writer()?;
    {
        let mut tar = tar::Builder::new(&mut writer);
        let mut seen = std::collections::HashSet::new();
        let mut real_dirs = RealDirs::default();
        for rel in paths {
            if !seen.insert(rel) {
                continue;
            }
            if !real_dirs.holds(root, rel)? {
                continue;
            }
            let full = root.join(rel);
            let meta = match std::fs::symlink_metadata(&full) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            let mut header = tar::Header::new_gnu();
            header.set_mtime(mtime);
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&full)?;
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, rel, target)?;
            } else if meta.is_file() {
                // Modes as git keeps them: executable or not.
                let executable = meta.permissions().mode() & 0o111 != 0;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if executable { 0o755 } else { 0o644 });
                header.set_size(meta.len());
                let file = std::fs::File::open(&full)?;
                tar.append_data(&mut header, rel, file)?;
            }
        }
        tar.finish()?;
    }
    writer.flush()?;
    Ok(writer.commit(None)?)
}

/// Which directories under the working tree's top are real directories
/// (not symbolic links), remembered as they are checked.
#[derive(Default)]
struct RealDirs {
    known: std::collections::HashMap<PathBuf, bool>,
}

impl RealDirs {
    /// Whether every directory on the way from `root` to `rel` is a real
    /// directory: `rel` is then inside the working tree.
    fn holds(&mut self, root: &Path, rel: &Path) -> std::io::Result<bool> {
        let mut dir = PathBuf::new();
        let Some(parent) = rel.parent() else {
            return Ok(true);
        };
        for part in parent.components() {
            match part {
                std::path::Component::Normal(name) => dir.push(name),
                // `git ls-files` never lists such paths; refuse them anyway.
                _ => return Ok(false),
            }
            let real = match self.known.get(&dir) {
                Some(real) => *real,
                None => {
                    let real = match std::fs::symlink_metadata(root.join(&dir)) {
                        Ok(m) => m.file_type().is_dir(),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                        Err(e) => return Err(e),
                    };
                    self.known.insert(dir.clone(), real);
                    real
                }
            };
            if !real {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run_git(dir: &Path, args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@ferry.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@ferry.invalid")
            .status()?;
        if !status.success() {
            return Err(format!("git {args:?} failed").into());
        }
        Ok(())
    }

    fn names(
        store: &Store,
        blob: &Blob,
    ) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
        let mut archive = tar::Archive::new(store.open_blob(&blob.digest)?);
        let mut out = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = entry.path()?.display().to_string();
            let mut text = String::new();
            if entry.header().entry_type().is_file() {
                std::io::Read::read_to_string(&mut entry, &mut text)?;
            }
            out.push((name, text));
        }
        out.sort();
        Ok(out)
    }

    #[tokio::test]
    async fn the_worktree_is_packed_as_it_is_and_a_commit_as_committed()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("src"))?;
        run_git(&repo, &["init", "--quiet", "--initial-branch=main"])?;
        std::fs::write(repo.join("src/a.txt"), "committed")?;
        std::fs::write(repo.join("gone.txt"), "x")?;
        std::fs::write(repo.join(".gitignore"), "target/\n")?;
        run_git(&repo, &["add", "-A"])?;
        run_git(&repo, &["commit", "--quiet", "-m", "one"])?;
        std::fs::write(repo.join("src/a.txt"), "changed")?;
        std::fs::write(repo.join("new.txt"), "untracked")?;
        std::fs::remove_file(repo.join("gone.txt"))?;
        std::fs::create_dir_all(repo.join("target"))?;
        std::fs::write(repo.join("target/out"), "ignored")?;
        let store = Store::open(dir.path().join("store"))?;

        let top = toplevel(&repo.join("src")).await?;
        let wt = prepare(&top, &Revision::Worktree, &store).await?;
        assert_eq!(
            names(&store, &wt.blob)?,
            vec![
                (".gitignore".to_string(), "target/\n".to_string()),
                ("new.txt".to_string(), "untracked".to_string()),
                ("src/a.txt".to_string(), "changed".to_string()),
            ]
        );
        assert_eq!(wt.source_ref, Some(SourceRef::Branch("main".into())));
        assert!(wt.description.contains("uncommitted"), "{}", wt.description);
        assert_eq!(wt.revision.len(), 40);

        let at = prepare(&top, &Revision::Commit("main".into()), &store).await?;
        assert_eq!(at.revision, wt.revision);
        let committed = names(&store, &at.blob)?;
        assert!(committed.contains(&("src/a.txt".to_string(), "committed".to_string())));
        assert!(committed.iter().any(|(n, _)| n == "gone.txt"));
        assert!(
            prepare(&top, &Revision::Commit("--output=x".into()), &store)
                .await
                .is_err()
        );
        Ok(())
    }

    /// An index entry under a directory that was replaced by a git-ignored
    /// link to somewhere outside the working tree: the file out there is
    /// not read.
    #[tokio::test]
    async fn a_path_beyond_a_symlinked_directory_is_left_out()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside)?;
        std::fs::write(outside.join("id_rsa"), "PRIVATE KEY OUTSIDE")?;
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("conf"))?;
        run_git(&repo, &["init", "--quiet", "--initial-branch=main"])?;
        std::fs::write(repo.join("conf/id_rsa"), "placeholder")?;
        std::fs::write(repo.join("kept.txt"), "kept")?;
        run_git(&repo, &["add", "-A"])?;
        run_git(&repo, &["commit", "--quiet", "-m", "one"])?;
        std::fs::remove_dir_all(repo.join("conf"))?;
        std::os::unix::fs::symlink(&outside, repo.join("conf"))?;
        std::fs::write(repo.join(".gitignore"), "conf\n")?;
        let store = Store::open(dir.path().join("store"))?;
        let wt = prepare(&repo, &Revision::Worktree, &store).await?;
        let packed = names(&store, &wt.blob)?;
        assert!(
            packed.iter().all(|(_, text)| !text.contains("OUTSIDE")),
            "{packed:?}"
        );
        assert!(packed.contains(&("kept.txt".to_string(), "kept".to_string())));
        Ok(())
    }
}
