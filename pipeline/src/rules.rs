//! Checks on single values that are not names: git sources, branches,
//! labels, environment variable names and output paths. Each returns what
//! is wrong, for the caller to wrap into a positioned diagnostic.

use crate::model::SOURCE_ARTIFACT;
use crate::name::validate_name;

/// URL schemes accepted in `source.git`.
const GIT_SCHEMES: [&str; 4] = ["file", "https", "http", "ssh"];

/// Prefix of environment variables that Ferry sets itself.
pub(crate) const RESERVED_ENV_PREFIX: &str = "FERRY_";

/// Accepts `file://`, `https://`, `http://` and `ssh://` URLs, scp-like
/// `user@host:path`, and filesystem paths (absolute or relative).
pub(crate) fn check_git_source(git: &str) -> Result<(), String> {
    if git.is_empty() {
        return Err("must not be empty".to_string());
    }
    if git.trim() != git || git.chars().any(char::is_control) {
        return Err(
            "must not have leading or trailing whitespace or control characters".to_string(),
        );
    }
    if git.starts_with('-') {
        return Err("must not start with '-'".to_string());
    }
    if let Some((scheme, rest)) = git.split_once("://") {
        if !GIT_SCHEMES.contains(&scheme) {
            return Err(format!(
                "unsupported URL scheme `{scheme}`; expected file://, https://, http:// or ssh://"
            ));
        }
        if scheme == "file" {
            if !rest.starts_with('/') || rest.len() < 2 {
                return Err(
                    "a file:// URL needs an absolute path, like file:///srv/git/repo.git"
                        .to_string(),
                );
            }
        } else {
            let host = rest.split('/').next().unwrap_or_default();
            let host = host.rsplit('@').next().unwrap_or_default();
            if host.is_empty() {
                return Err(format!("the {scheme}:// URL has no host"));
            }
        }
        return Ok(());
    }
    // scp-like syntax, as git understands it: a ':' before any '/'.
    if let Some((host_part, path)) = git.split_once(':')
        && !host_part.contains('/')
    {
        let host = match host_part.split_once('@') {
            Some((user, host)) => {
                if user.is_empty() {
                    return Err("the user before '@' is empty".to_string());
                }
                host
            }
            None => host_part,
        };
        if host.is_empty() {
            return Err("the host before ':' is empty".to_string());
        }
        if path.is_empty() {
            return Err("the repository path after ':' is empty".to_string());
        }
    }
    Ok(())
}

/// A conservative subset of git's ref-name rules.
pub(crate) fn check_branch(branch: &str) -> Result<(), String> {
    check_plain_text(branch)?;
    if branch.starts_with('-') {
        return Err("must not start with '-'".to_string());
    }
    if let Some(bad) = branch
        .chars()
        .find(|c| matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return Err(format!("must not contain {bad:?}"));
    }
    if branch.contains("..") || branch.contains("//") || branch.contains("@{") {
        return Err("must not contain `..`, `//` or `@{`".to_string());
    }
    if branch.starts_with('/') || branch.ends_with('/') || branch.ends_with('.') {
        return Err("must not start or end with '/' or end with '.'".to_string());
    }
    if branch.ends_with(".lock") {
        return Err("must not end with `.lock`".to_string());
    }
    Ok(())
}

/// Non-empty text without whitespace or control characters (images,
/// agent labels, approvers, git sources, branches).
pub(crate) fn check_plain_text(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty".to_string());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_string());
    }
    Ok(())
}

/// Environment variable names: `[A-Za-z_][A-Za-z0-9_]*`, not `FERRY_*`.
pub(crate) fn check_env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_start || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "invalid environment variable name `{name}`: must match [A-Za-z_][A-Za-z0-9_]*"
        ));
    }
    if name.starts_with(RESERVED_ENV_PREFIX) {
        return Err(format!(
            "environment variable `{name}` is reserved: names starting with \
             {RESERVED_ENV_PREFIX} are set by Ferry"
        ));
    }
    Ok(())
}

/// Output artifact names: the name rule, and not the built-in `source`.
pub(crate) fn check_artifact_name(name: &str) -> Result<(), String> {
    validate_name(name).map_err(|reason| format!("invalid artifact name `{name}`: {reason}"))?;
    if name == SOURCE_ARTIFACT {
        return Err(format!(
            "artifact name `{SOURCE_ARTIFACT}` is reserved for the git checkout"
        ));
    }
    Ok(())
}

/// Output paths: relative to the workspace and never escaping it.
pub(crate) fn check_output_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("output path must not be empty".to_string());
    }
    if path.starts_with('/') {
        return Err(format!(
            "output path `{path}` must be relative to the workspace, not absolute"
        ));
    }
    if path.split(['/', '\\']).any(|component| component == "..") {
        return Err(format!(
            "output path `{path}` must not contain a `..` component"
        ));
    }
    if path.chars().any(char::is_control) {
        return Err(format!(
            "output path {path:?} must not contain control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_sources() {
        for ok in [
            "file:///srv/git/hello.git",
            "https://example.com/org/repo.git",
            "http://example.com/repo",
            "ssh://git@example.com:2222/repo.git",
            "git@example.com:org/repo.git",
            "example.com:repo.git",
            "/srv/git/hello.git",
            "../hello",
            "hello",
            "/srv/my repo",
        ] {
            assert_eq!(check_git_source(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "ftp://example.com/repo",
            "file://relative/path",
            "https:///repo",
            "git@:repo",
            "@host:repo",
            "git@host:",
            "-uhack",
            " /srv/repo",
        ] {
            assert!(check_git_source(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn branches() {
        for ok in ["main", "release/1.2", "feature-x_y"] {
            assert_eq!(check_branch(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "-f", "a b", "a..b", "a~1", "x.lock", "/x", "x/", "a:b", "a//b",
        ] {
            assert!(check_branch(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names() {
        assert_eq!(check_env_name("MODE"), Ok(()));
        assert_eq!(check_env_name("_x1"), Ok(()));
        assert!(check_env_name("1X").is_err());
        assert!(check_env_name("A-B").is_err());
        assert!(check_env_name("").is_err());
        let err = check_env_name("FERRY_TOKEN").expect_err("reserved");
        assert!(err.contains("reserved"), "{err}");
    }

    #[test]
    fn artifact_names_and_paths() {
        assert_eq!(check_artifact_name("app"), Ok(()));
        assert!(check_artifact_name("source").is_err());
        assert!(check_artifact_name("App").is_err());
        for ok in ["dist/", "./out/app.tar", ".", "a/b..c"] {
            assert_eq!(check_output_path(ok), Ok(()), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../b", "a/.."] {
            assert!(check_output_path(bad).is_err(), "{bad}");
        }
    }
}
