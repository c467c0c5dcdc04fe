//! Reading git sources with the git CLI: the head of a branch (`ls-remote`),
//! resolving a revision to a full commit id through a bare mirror kept in the
//! data dir, and the files a push changed. The member that starts an
//! execution (the leader's poller and schedules, or the member a `ferry run`
//! or a webhook reached) calls this; commands carry the resolved commit.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use ferry_pipeline::condition::SourceRef;
use sha2::Digest;
use thiserror::Error;
use tokio::process::Command;

#[derive(Debug, Error)]
pub enum GitError {
    #[error("cannot run git: {0} (is git installed?)")]
    Spawn(std::io::Error),
    #[error("git {what} failed for {url}: {stderr}")]
    Failed {
        what: String,
        url: String,
        stderr: String,
    },
    #[error("branch `{branch}` not found in {url}")]
    NoBranch { url: String, branch: String },
    #[error("revision `{rev}` not found in {url}")]
    NoRevision { url: String, rev: String },
}

pub struct Git {
    cache: PathBuf,
}

async fn git(args: &[&str], cwd: Option<&Path>, url: &str, what: &str) -> Result<String, GitError> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let out = cmd.output().await.map_err(GitError::Spawn)?;
    if !out.status.success() {
        return Err(GitError::Failed {
            what: what.into(),
            url: url.into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Changed paths listed at most (a push beyond it is compared on these).
pub const MAX_CHANGED_PATHS: usize = 10_000;

/// What `spec` names in the mirror (`git rev-parse --verify`), if anything.
async fn rev_parse(mirror: &Path, url: &str, spec: &str) -> Option<String> {
    git(
        &["rev-parse", "--verify", "--quiet", spec],
        Some(mirror),
        url,
        "rev-parse",
    )
    .await
    .ok()
    .map(|sha| sha.trim().to_string())
    .filter(|sha| !sha.is_empty())
}

/// A full commit id (40 hex digits).
fn is_commit_id(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Git {
    pub fn new(cache: PathBuf) -> Self {
        Git { cache }
    }

    fn mirror(&self, url: &str) -> PathBuf {
        self.cache
            .join(hex::encode(sha2::Sha256::digest(url.as_bytes())))
    }

    /// The files commit `after` changed since `before` (its first parent
    /// when `before` is None or not in the mirror; every file of a root
    /// commit). `after` must be in the mirror ([`Git::resolve`] it first).
    pub async fn changed_paths(
        &self,
        url: &str,
        before: Option<&str>,
        after: &str,
    ) -> Result<Vec<String>, GitError> {
        let mirror = self.mirror(url);
        let has = |rev: String| {
            let mirror = mirror.clone();
            async move {
                rev_parse(&mirror, url, &format!("{rev}^{{commit}}"))
                    .await
                    .is_some()
            }
        };
        let base = match before {
            Some(b) if has(b.to_string()).await => Some(b.to_string()),
            _ if has(format!("{after}^")).await => Some(format!("{after}^")),
            _ => None,
        };
        let out = match &base {
            Some(base) => {
                git(
                    &[
                        "diff",
                        "--name-only",
                        "-z",
                        "--no-renames",
                        base,
                        after,
                        "--",
                    ],
                    Some(&mirror),
                    url,
                    "diff",
                )
                .await?
            }
            None => {
                git(
                    &["ls-tree", "-r", "-z", "--name-only", after],
                    Some(&mirror),
                    url,
                    "ls-tree",
                )
                .await?
            }
        };
        Ok(out
            .split('\0')
            .filter(|p| !p.is_empty())
            .take(MAX_CHANGED_PATHS)
            .map(str::to_string)
            .collect())
    }

    /// The commit at the head of `branch`.
    pub async fn branch_head(&self, url: &str, branch: &str) -> Result<String, GitError> {
        let refname = format!("refs/heads/{branch}");
        let out = git(&["ls-remote", "--", url, &refname], None, url, "ls-remote").await?;
        out.lines()
            .filter_map(|l| l.split_once('\t'))
            .find(|(_, r)| *r == refname)
            .map(|(sha, _)| sha.to_string())
            .ok_or_else(|| GitError::NoBranch {
                url: url.into(),
                branch: branch.into(),
            })
    }

    /// Resolves a branch, tag or (abbreviated) commit to a full commit id.
    pub async fn resolve(&self, url: &str, rev: &str) -> Result<String, GitError> {
        let mirror = self.mirror(url);
        if !mirror.join("HEAD").exists() {
            tokio::fs::create_dir_all(&mirror)
                .await
                .map_err(GitError::Spawn)?;
            git(&["init", "--bare", "--quiet"], Some(&mirror), url, "init").await?;
        }
        // A full commit id the mirror already has needs no fetch.
        let spec = format!("{rev}^{{commit}}");
        if is_commit_id(rev) && rev_parse(&mirror, url, &spec).await.as_deref() == Some(rev) {
            return Ok(rev.to_string());
        }
        git(
            &[
                "fetch",
                "--quiet",
                "--force",
                "--prune",
                "--",
                url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            Some(&mirror),
            url,
            "fetch",
        )
        .await?;
        match rev_parse(&mirror, url, &spec).await {
            Some(sha) => Ok(sha),
            // A commit no branch or tag holds any more (a webhook for a
            // push that a force-push replaced): ask for it by id.
            _ if is_commit_id(rev)
                && git(
                    &["fetch", "--quiet", "--", url, rev],
                    Some(&mirror),
                    url,
                    "fetch",
                )
                .await
                .is_ok() =>
            {
                Ok(rev.to_string())
            }
            _ => Err(GitError::NoRevision {
                url: url.into(),
                rev: rev.into(),
            }),
        }
    }

    /// Whether `rev` names a branch or a tag of `url` (in the mirror that
    /// [`Git::resolve`] just fetched); None for a commit id or
    /// anything else. `when:` conditions match the name.
    pub async fn ref_kind(&self, url: &str, rev: &str) -> Option<SourceRef> {
        let mirror = self.mirror(url);
        let name = rev
            .strip_prefix("refs/heads/")
            .or_else(|| rev.strip_prefix("refs/tags/"))
            .unwrap_or(rev);
        for (prefix, kind) in [
            ("refs/heads/", SourceRef::Branch as fn(String) -> SourceRef),
            ("refs/tags/", SourceRef::Tag as fn(String) -> SourceRef),
        ] {
            let full = format!("{prefix}{name}");
            if (!rev.starts_with("refs/") || rev == full)
                && rev_parse(&mirror, url, &full).await.is_some()
            {
                return Some(kind(name.to_string()));
            }
        }
        None
    }
}
