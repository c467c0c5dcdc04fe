//! `ferry exec` as the tests run it: in a folder, with a cache folder of its
//! own that must be empty again when the run ends, and its output as text
//! for assertion messages.

use std::path::Path;
use std::process::{Command, Output};

use crate::bin;

/// Runs `ferry exec ARGS` in `dir` with `env` set and its own cache folder,
/// and checks that the run's scratch folder is gone when it ends.
pub fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let cache = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let out = Command::new(bin("ferry"))
        .arg("exec")
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", cache.path())
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ferry exec: {e}"));
    let left: Vec<_> = std::fs::read_dir(cache.path().join("ferry/exec"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "ferry exec left {left:?}");
    out
}

/// A run's exit code, stdout and stderr, for a failed assertion's message.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
