//! Reading git sources with the git CLI: the head of a branch (`ls-remote`) and
//! resolving a revision to a full commit id through a bare mirror kept in the
//! data dir. Only the leader calls this; commands carry the resolved commit.

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

impl Git {
    pub fn new(cache: PathBuf) -> Self {
        Git { cache }
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
        let mirror = self
            .cache
            .join(hex::encode(sha2::Sha256::digest(url.as_bytes())));
        if !mirror.join("HEAD").exists() {
            tokio::fs::create_dir_all(&mirror)
                .await
                .map_err(GitError::Spawn)?;
            git(&["init", "--bare", "--quiet"], Some(&mirror), url, "init").await?;
        }
        // A full commit id the mirror already has needs no fetch.
        let spec = format!("{rev}^{{commit}}");
        if rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()) {
            let known = git(
                &["rev-parse", "--verify", "--quiet", &spec],
                Some(&mirror),
                url,
                "rev-parse",
            )
            .await;
            if let Ok(sha) = known
                && sha.trim() == rev
            {
                return Ok(rev.to_string());
            }
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
        match git(
            &["rev-parse", "--verify", "--quiet", &spec],
            Some(&mirror),
            url,
            "rev-parse",
        )
        .await
        {
            Ok(sha) if !sha.trim().is_empty() => Ok(sha.trim().to_string()),
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
        let mirror = self
            .cache
            .join(hex::encode(sha2::Sha256::digest(url.as_bytes())));
        let name = rev
            .strip_prefix("refs/heads/")
            .or_else(|| rev.strip_prefix("refs/tags/"))
            .unwrap_or(rev);
        for (prefix, kind) in [
            ("refs/heads/", SourceRef::Branch as fn(String) -> SourceRef),
            ("refs/tags/", SourceRef::Tag as fn(String) -> SourceRef),
        ] {
            let full = format!("{prefix}{name}");
            if !rev.starts_with("refs/") || rev == full {
                let found = git(
                    &["rev-parse", "--verify", "--quiet", &full],
                    Some(&mirror),
                    url,
                    "rev-parse",
                )
                .await;
                if found.is_ok_and(|sha| !sha.trim().is_empty()) {
                    return Some(kind(name.to_string()));
                }
            }
        }
        None
    }
}
