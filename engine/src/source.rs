//! The `source` input: the pipeline's git repository at the execution's
//! commit, without `.git`, as a tar in the blob store. A bare mirror per
//! repository URL is kept in the state dir so later fetches are incremental.

use std::path::PathBuf;
use std::process::Stdio;

use sha2::Digest;
use tokio::process::Command;

use crate::store::{Blob, Store};

pub struct Sources {
    root: PathBuf,
    store: Store,
    /// Largest archive of a commit kept (0: no limit).
    max_bytes: u64,
    lock: tokio::sync::Mutex<()>,
}

/// Runs `git` in `cwd`; its standard output, or its error text.
pub(crate) async fn git(args: &[&str], cwd: &std::path::Path) -> Result<Vec<u8>, String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e} (is git installed on this agent?)"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "git {}: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Sources {
    /// Sources mirrored under `root`, archives of at most `max_bytes` (0:
    /// no limit) stored in `store`.
    pub fn new(root: PathBuf, store: Store, max_bytes: u64) -> Self {
        Sources {
            root,
            store,
            max_bytes,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The bare mirror of `url`, and the name it and its memos go by.
    fn mirror(&self, url: &str) -> (PathBuf, String) {
        let key = hex::encode(sha2::Sha256::digest(url.as_bytes()));
        (self.root.join(&key), key)
    }

    /// A tar of `url` at `commit`, from the cache or freshly archived.
    pub async fn archive(&self, url: &str, commit: &str) -> Result<Blob, String> {
        let _guard = self.lock.lock().await;
        let (mirror, key) = self.mirror(url);
        let memo = self.root.join(format!("{key}.{commit}.digest"));
        if let Ok(d) = tokio::fs::read_to_string(&memo).await
            && let Some(path) = self.store.path(d.trim())
        {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            return Ok(Blob {
                digest: d.trim().to_string(),
                size,
            });
        }
        if !mirror.join("HEAD").exists() {
            tokio::fs::create_dir_all(&mirror)
                .await
                .map_err(|e| e.to_string())?;
            git(&["init", "--bare", "--quiet"], &mirror).await?;
        }
        let spec = format!("{commit}^{{commit}}");
        if git(&["rev-parse", "--verify", "--quiet", &spec], &mirror)
            .await
            .is_err()
        {
            git(
                &[
                    "fetch",
                    "--quiet",
                    "--force",
                    "--",
                    url,
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                &mirror,
            )
            .await
            .map_err(|e| format!("fetching {url}: {e}"))?;
            if git(&["rev-parse", "--verify", "--quiet", &spec], &mirror)
                .await
                .is_err()
            {
                // A commit on no branch: ask for it by id.
                git(&["fetch", "--quiet", "--", url, commit], &mirror)
                    .await
                    .map_err(|e| format!("commit {commit} is not in {url}: {e}"))?;
            }
        }
        let blob = archive_commit(&self.store, &mirror, commit, self.max_bytes).await?;
        let _ = tokio::fs::write(&memo, &blob.digest).await;
        Ok(blob)
    }
}

/// Most changed paths [`Sources::changed`] reports; a larger change is
/// taken as "everything changed".
const MAX_CHANGED_PATHS: usize = 100_000;

impl Sources {
    /// The paths that differ between commits `from` and `to` of `url`'s
    /// mirror (both fetched already: `to` by [`Sources::archive`]); an
    /// error when `from` is not there (a branch force-pushed away) or the
    /// change is too large to list.
    pub async fn changed(
        &self,
        url: &str,
        from: &str,
        to: &str,
    ) -> Result<std::collections::BTreeSet<String>, String> {
        let _guard = self.lock.lock().await;
        let (mirror, _) = self.mirror(url);
        for rev in [from, to] {
            // Only commit ids reach git: never an option or a revision expression.
            if rev.len() < 7 || !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("{rev:?} is not a commit id"));
            }
        }
        let out = git(
            &["diff", "--name-only", "-z", "--no-renames", from, to, "--"],
            &mirror,
        )
        .await?;
        let paths: std::collections::BTreeSet<String> = out
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        if paths.len() > MAX_CHANGED_PATHS {
            return Err(format!("{} paths changed", paths.len()));
        }
        Ok(paths)
    }
}

/// `git archive` of `commit` in the repository at `git_dir`, stored as a
/// blob: the one way a `source` input is made from a commit, on an agent
/// (from its mirror) and in `ferry exec --revision` (from the user's
/// repository). Whoever pushes to the repository decides how large the
/// archive is (a few MiB of history can hold GiBs of zeros), so it streams
/// from `git` to the store through a hashing writer, never whole in memory,
/// and past `max_bytes` (0: no limit) `git` is killed and nothing is kept.
pub async fn archive_commit(
    store: &Store,
    git_dir: &std::path::Path,
    commit: &str,
    max_bytes: u64,
) -> Result<Blob, String> {
    let store = store.clone();
    let git_dir = git_dir.to_path_buf();
    let commit = commit.to_string();
    tokio::task::spawn_blocking(move || stream_archive(&store, &git_dir, &commit, max_bytes))
        .await
        .map_err(|e| e.to_string())?
}

/// Most of `git archive`'s error output kept for the message.
const MAX_GIT_STDERR: u64 = 8 * 1024;

fn stream_archive(
    store: &Store,
    git_dir: &std::path::Path,
    commit: &str,
    max_bytes: u64,
) -> Result<Blob, String> {
    use std::io::Read as _;
    let mut child = std::process::Command::new("git")
        .args(["archive", "--format=tar", commit])
        .current_dir(git_dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git: {e} (is git installed on this agent?)"))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("git archive: no output pipes".into());
    };
    // Read stderr beside stdout, so a chatty git cannot block on a full pipe.
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.take(MAX_GIT_STDERR).read_to_string(&mut text);
        text
    });
    let limit = if max_bytes == 0 { u64::MAX } else { max_bytes };
    let copied = store.writer().map_err(|e| e.to_string()).and_then(|mut w| {
        let n = std::io::copy(&mut stdout.take(limit.saturating_add(1)), &mut w)
            .map_err(|e| format!("storing the archive of {commit}: {e}"))?;
        Ok((n, w))
    });
    let over = matches!(&copied, Ok((n, _)) if *n > limit);
    if over || copied.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| format!("git archive: {e}"))?;
    let stderr = errors.join().unwrap_or_default();
    let (_, writer) = copied?;
    if over {
        return Err(format!(
            "the source at {commit} is larger than this agent's artifact size limit of {} MiB \
             when unpacked (git archive); raise `ferry-agent --max-artifact-mb` or make the \
             repository smaller",
            max_bytes / (1024 * 1024)
        ));
    }
    if !status.success() {
        return Err(format!("git archive: {}", stderr.trim()));
    }
    writer.commit(None).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, dir: &std::path::Path) {
        let ok = std::process::Command::new("/bin/sh")
            .args(["-c", script])
            .current_dir(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{script}");
    }

    /// A small repository whose archive is large (a file of zeros packs to
    /// almost nothing): the archive streams to the store, and past the
    /// limit git is stopped and nothing is kept.
    #[tokio::test]
    async fn a_commit_archive_is_streamed_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).expect("mkdir");
        sh(
            "git init -q . && head -c 8388608 /dev/zero > zeros && \
             git add zeros && git -c user.name=t -c user.email=t@t commit -qm zeros",
            &repo,
        );
        let pack: u64 = walk_size(&repo.join(".git"));
        assert!(pack < 1024 * 1024, "the repository is small: {pack}");
        let store = Store::open(dir.path().join("store")).expect("store");
        let err = archive_commit(&store, &repo, "HEAD", 1024 * 1024)
            .await
            .expect_err("over the limit");
        assert!(
            err.contains("larger than this agent's artifact size limit of 1 MiB"),
            "{err}"
        );
        assert_eq!(store.used_bytes(), 0, "nothing kept");
        let blob = archive_commit(&store, &repo, "HEAD", 0)
            .await
            .expect("no limit");
        assert!(blob.size > 8 * 1024 * 1024, "{}", blob.size);
        let err = archive_commit(&store, &repo, "no-such-commit", 0)
            .await
            .expect_err("unknown commit");
        assert!(err.starts_with("git archive: "), "{err}");
    }

    #[tokio::test]
    async fn changed_lists_the_paths_between_two_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        std::fs::create_dir(&repo).expect("mkdir");
        sh(
            "git init -q . && echo a > a && echo b > b && git add . && \
             git -c user.name=t -c user.email=t@t commit -qm one && echo c > b && mkdir d && \
             echo e > 'd/new file' && git add . && git -c user.name=t -c user.email=t@t commit -qm two",
            &repo,
        );
        let rev = |r: &str| {
            let out = std::process::Command::new("git")
                .args(["rev-parse", r])
                .current_dir(&repo)
                .output()
                .expect("git");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let store = Store::open(dir.path().join("store")).expect("store");
        let sources = Sources::new(dir.path().join("git"), store, 0);
        let url = repo.display().to_string();
        sources.archive(&url, &rev("HEAD")).await.expect("archived");
        let changed = sources
            .changed(&url, &rev("HEAD~1"), &rev("HEAD"))
            .await
            .expect("both commits are there");
        assert_eq!(
            changed.into_iter().collect::<Vec<_>>(),
            ["b".to_string(), "d/new file".to_string()]
        );
        assert!(
            sources
                .changed(&url, "--output=x", &rev("HEAD"))
                .await
                .is_err()
        );
        assert!(
            sources
                .changed(&url, &"0".repeat(40), &rev("HEAD"))
                .await
                .is_err()
        );
    }

    fn walk_size(p: &std::path::Path) -> u64 {
        std::fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => walk_size(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
}
