//! Reading git sources with the git CLI: the head of a branch (`ls-remote`),
//! resolving a revision to a full commit id through a bare mirror kept in the
//! data dir, the files a push changed, and whether a commit is on the branch
//! (or is the tag) a webhook names ([`Git::ref_holds`]). The member that starts an
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

/// Runs git for its exit code alone (`merge-base --is-ancestor` answers
/// 0 yes, 1 no); None when it was killed by a signal.
async fn git_code(args: &[&str], cwd: &Path) -> Result<Option<i32>, GitError> {
    let status = Command::new("git")
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(GitError::Spawn)?;
    Ok(status.code())
}

/// A short branch or tag name safe to put in a refspec after `refs/heads/`
/// or `refs/tags/`: no refspec syntax (`:`, `*`, `+` first, `^`), no
/// spaces or control characters, no `..`, not empty.
fn is_plain_ref_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '+', '/'])
        && !name.contains("..")
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || ":*^~?[\\".contains(c))
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

    /// Whether the branch or tag `what` of `url` holds `commit` (a full
    /// commit id, [`Git::resolve`]d into the mirror first): a branch when
    /// the commit is its head or an ancestor of it, a tag when it points
    /// at that commit (peeled). The ref is fetched first, so a mirror that
    /// has not seen a force-push decides nothing; a branch or tag the
    /// repository does not have holds nothing. Errors are for a repository
    /// that cannot be read.
    pub async fn ref_holds(
        &self,
        url: &str,
        what: &SourceRef,
        commit: &str,
    ) -> Result<bool, GitError> {
        let (refname, name) = match what {
            SourceRef::Branch(b) => (format!("refs/heads/{b}"), b),
            SourceRef::Tag(t) => (format!("refs/tags/{t}"), t),
        };
        if !is_commit_id(commit) || !is_plain_ref_name(name) {
            return Ok(false);
        }
        let mirror = self.mirror(url);
        let refspec = format!("+{refname}:{refname}");
        let fetched = git(
            &[
                "fetch",
                "--quiet",
                "--force",
                "--no-tags",
                "--",
                url,
                &refspec,
            ],
            Some(&mirror),
            url,
            "fetch",
        )
        .await;
        if let Err(e) = fetched {
            // A ref the repository does not have, or a repository that
            // cannot be read: ls-remote tells which.
            let listed = git(&["ls-remote", "--", url, &refname], None, url, "ls-remote").await?;
            if !listed
                .lines()
                .filter_map(|l| l.split_once('\t'))
                .any(|(_, r)| r == refname)
            {
                return Ok(false);
            }
            return Err(e);
        }
        match what {
            SourceRef::Branch(_) => {
                match git_code(&["merge-base", "--is-ancestor", commit, &refname], &mirror).await? {
                    Some(0) => Ok(true),
                    Some(1) => Ok(false),
                    _ => Err(GitError::Failed {
                        what: "merge-base".into(),
                        url: url.into(),
                        stderr: format!("cannot tell whether {commit} is on {refname}"),
                    }),
                }
            }
            SourceRef::Tag(_) => Ok(rev_parse(&mirror, url, &format!("{refname}^{{commit}}"))
                .await
                .is_some_and(|sha| sha.eq_ignore_ascii_case(commit))),
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

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Runs git in `dir` (a test repository), its trimmed output.
    fn run(dir: &Path, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@ferry.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@ferry.invalid")
            .output()?;
        if !out.status.success() {
            return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn commit(dir: &Path, message: &str) -> Result<String, Box<dyn std::error::Error>> {
        run(dir, &["commit", "--quiet", "--allow-empty", "-m", message])?;
        run(dir, &["rev-parse", "HEAD"])
    }

    #[tokio::test]
    async fn a_commit_is_on_a_branch_only_when_the_branch_reaches_it() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(&repo)?;
        run(&repo, &["init", "--quiet", "--initial-branch=main"])?;
        let first = commit(&repo, "first")?;
        let second = commit(&repo, "second")?;
        run(&repo, &["tag", "v1", &first])?;
        run(&repo, &["tag", "-a", "-m", "annotated", "v2", &second])?;
        run(&repo, &["checkout", "--quiet", "-b", "feature"])?;
        let side = commit(&repo, "only on feature")?;
        run(&repo, &["checkout", "--quiet", "main"])?;
        let url = format!("file://{}", repo.display());
        let git = Git::new(tmp.path().join("mirrors"));
        let main = SourceRef::Branch("main".into());
        // The mirror has every commit before the question is asked.
        for c in [&first, &second, &side] {
            assert_eq!(&git.resolve(&url, c).await?, c);
        }
        assert!(git.ref_holds(&url, &main, &second).await?, "the head");
        assert!(git.ref_holds(&url, &main, &first).await?, "an ancestor");
        assert!(
            !git.ref_holds(&url, &main, &side).await?,
            "another branch's"
        );
        let feature = SourceRef::Branch("feature".into());
        assert!(git.ref_holds(&url, &feature, &side).await?);
        assert!(git.ref_holds(&url, &feature, &first).await?);
        let nope = SourceRef::Branch("nope".into());
        assert!(!git.ref_holds(&url, &nope, &first).await?, "no such branch");
        let v1 = SourceRef::Tag("v1".into());
        assert!(git.ref_holds(&url, &v1, &first).await?);
        assert!(!git.ref_holds(&url, &v1, &second).await?, "not the tag's");
        let v2 = SourceRef::Tag("v2".into());
        assert!(
            git.ref_holds(&url, &v2, &second).await?,
            "annotated, peeled"
        );
        assert!(!git.ref_holds(&url, &v2, &first).await?);
        assert!(
            !git.ref_holds(&url, &SourceRef::Tag("v3".into()), &first)
                .await?
        );
        // Not a commit id, or no plain ref name: nothing reaches git.
        assert!(!git.ref_holds(&url, &main, "HEAD").await?);
        assert!(!git.ref_holds(&url, &main, "--upload-pack=x").await?);
        let refspec = SourceRef::Branch("main:refs/heads/x".into());
        assert!(!git.ref_holds(&url, &refspec, &second).await?);

        // The branch is force-pushed back: the mirror still has `second`
        // under refs/heads/main until the check fetches it again.
        run(&repo, &["reset", "--quiet", "--hard", &first])?;
        assert!(
            !git.ref_holds(&url, &main, &second).await?,
            "after a force-push"
        );
        assert!(git.ref_holds(&url, &main, &first).await?);
        Ok(())
    }

    #[tokio::test]
    async fn an_unreadable_repository_is_an_error_not_a_no() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let git = Git::new(tmp.path().join("mirrors"));
        let url = format!("file://{}", tmp.path().join("missing").display());
        let mirror = git.mirror(&url);
        std::fs::create_dir_all(&mirror)?;
        run(&mirror, &["init", "--bare", "--quiet"])?;
        let main = SourceRef::Branch("main".into());
        assert!(git.ref_holds(&url, &main, &"a".repeat(40)).await.is_err());
        Ok(())
    }
}
