//! Real git repositories for tests: a bare "remote" plus a work tree that
//! commits and pushes to it.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Repo {
    _dir: tempfile::TempDir,
    pub bare: PathBuf,
    work: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> String {
    git_with(dir, args, &[])
}

/// `git` with extra environment variables.
fn git_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new("git")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ferry Test")
        .env("GIT_AUTHOR_EMAIL", "test@ferry.invalid")
        .env("GIT_COMMITTER_NAME", "Ferry Test")
        .env("GIT_COMMITTER_EMAIL", "test@ferry.invalid")
        .output()
        .unwrap_or_else(|e| panic!("cannot run git: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Repo {
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let bare = dir.path().join("app.git");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&bare).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(&work).unwrap_or_else(|e| panic!("{e}"));
        git(
            &bare,
            &["init", "--bare", "--quiet", "--initial-branch=main"],
        );
        git(&work, &["init", "--quiet", "--initial-branch=main"]);
        git(
            &work,
            &["remote", "add", "origin", bare.to_str().unwrap_or_default()],
        );
        Repo {
            _dir: dir,
            bare,
            work,
        }
    }

    /// The working tree (its changes are uncommitted until [`Repo::commit`]).
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// The URL pipelines use.
    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Writes files, commits, pushes to main; returns the commit id.
    pub fn commit<S: AsRef<str>>(&self, files: &[(&str, S)], message: &str) -> String {
        let files: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, c)| (*p, c.as_ref().as_bytes()))
            .collect();
        self.commit_bytes(&files, message)
    }

    /// Like [`Repo::commit`], for binary files.
    pub fn commit_bytes(&self, files: &[(&str, &[u8])], message: &str) -> String {
        self.commit_at(files, message, None)
    }

    /// Like [`Repo::commit`] with the author and committer dates set to
    /// `date` (e.g. `2025-01-01T00:00:00Z`): the same files and message give
    /// the same commit id on every run (stable screenshots).
    pub fn commit_dated(&self, files: &[(&str, &str)], message: &str, date: &str) -> String {
        let files: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_bytes())).collect();
        self.commit_at(&files, message, Some(date))
    }

    fn commit_at(&self, files: &[(&str, &[u8])], message: &str, date: Option<&str>) -> String {
        for (path, content) in files {
            let p = self.work.join(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
            }
            std::fs::write(&p, content).unwrap_or_else(|e| panic!("{e}"));
        }
        git(&self.work, &["add", "-A"]);
        let dates: Vec<(&str, &str)> = date
            .map(|d| vec![("GIT_AUTHOR_DATE", d), ("GIT_COMMITTER_DATE", d)])
            .unwrap_or_default();
        git_with(&self.work, &["commit", "--quiet", "-m", message], &dates);
        git(&self.work, &["push", "--quiet", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Pushes the current commit as branch `name` too.
    pub fn push_branch(&self, name: &str) {
        git(
            &self.work,
            &[
                "push",
                "--quiet",
                "origin",
                &format!("HEAD:refs/heads/{name}"),
            ],
        );
    }

    /// Commits `files` on a new branch `name` (from the current commit) and
    /// pushes it; `main` and the work tree stay where they were. Returns
    /// the commit id, which no other branch holds.
    pub fn commit_on_branch(&self, name: &str, files: &[(&str, &str)], message: &str) -> String {
        git(&self.work, &["checkout", "--quiet", "-b", name]);
        for (path, content) in files {
            let p = self.work.join(path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
            }
            std::fs::write(&p, content).unwrap_or_else(|e| panic!("{e}"));
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "--quiet", "-m", message]);
        let id = git(&self.work, &["rev-parse", "HEAD"]);
        git(&self.work, &["push", "--quiet", "origin", name]);
        git(&self.work, &["checkout", "--quiet", "main"]);
        id
    }

    /// Tags the current commit `name` and pushes the tag.
    pub fn push_tag(&self, name: &str) {
        git(&self.work, &["tag", name]);
        git(
            &self.work,
            &["push", "--quiet", "origin", &format!("refs/tags/{name}")],
        );
    }
}

impl Default for Repo {
    fn default() -> Self {
        Repo::new()
    }
}
