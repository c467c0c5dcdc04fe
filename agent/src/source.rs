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
    pub fn new(root: PathBuf, store: Store) -> Self {
        Sources {
            root,
            store,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// A tar of `url` at `commit`, from the cache or freshly archived.
    pub async fn archive(&self, url: &str, commit: &str) -> Result<Blob, String> {
        let _guard = self.lock.lock().await;
        let key = hex::encode(sha2::Sha256::digest(url.as_bytes()));
        let mirror = self.root.join(&key);
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
        let blob = archive_commit(&self.store, &mirror, commit).await?;
        let _ = tokio::fs::write(&memo, &blob.digest).await;
        Ok(blob)
    }
}

/// `git archive` of `commit` in the repository at `git_dir`, stored as a
/// blob: the one way a `source` input is made from a commit, on an agent
/// (from its mirror) and in `ferry exec --revision` (from the user's
/// repository).
pub async fn archive_commit(
    store: &Store,
    git_dir: &std::path::Path,
    commit: &str,
) -> Result<Blob, String> {
    let tar = git(&["archive", "--format=tar", commit], git_dir).await?;
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.put_reader(&tar[..]))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}
