//! Checks on single values that are not names: git sources, branches,
//! labels, environment variable names and output paths. Each returns what
//! is wrong, for the caller to wrap into a positioned diagnostic.

use crate::model::{MAX_MILLICPUS, MIN_MEMORY_BYTES, SOURCE_ARTIFACT};
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

/// Longest agent label, in bytes (`runs_on`, tokens, agents).
pub const MAX_LABEL_BYTES: usize = 64;

/// An agent label: plain text ([`check_plain_text`]) of at most
/// [`MAX_LABEL_BYTES`]; the one rule for `runs_on`, join tokens and agents.
pub fn check_label(label: &str) -> Result<(), String> {
    check_plain_text(label)?;
    if label.len() > MAX_LABEL_BYTES {
        return Err(format!("must be at most {MAX_LABEL_BYTES} bytes"));
    }
    Ok(())
}

/// Whether `name` is a shell-style identifier, `[A-Za-z_][A-Za-z0-9_]*`
/// (environment variable and pipeline variable names).
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    valid_start && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Environment variable names: `[A-Za-z_][A-Za-z0-9_]*`, not `FERRY_*`.
pub(crate) fn check_env_name(name: &str) -> Result<(), String> {
    if !is_identifier(name) {
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

/// Longest accepted secret name.
pub const MAX_SECRET_NAME_LEN: usize = 63;

/// Checks a secret name: 1 to [`MAX_SECRET_NAME_LEN`] characters of
/// lowercase ASCII letters, digits, `.`, `_` and `-`, starting with a
/// letter or digit.
///
/// The error says what is wrong, without repeating the name, e.g.
/// "must start with a lowercase letter (a-z) or a digit".
pub fn validate_secret_name(name: &str) -> Result<(), String> {
    let Some(first) = name.chars().next() else {
        return Err("must not be empty".to_string());
    };
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err("must start with a lowercase letter (a-z) or a digit".to_string());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "contains {bad:?}; only lowercase letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    if name.len() > MAX_SECRET_NAME_LEN {
        return Err(format!(
            "must be at most {MAX_SECRET_NAME_LEN} characters long (it has {})",
            name.len()
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

/// Why a `cpus` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CpusError {
    /// Not a plain decimal number such as `2` or `1.5`.
    NotANumber,
    /// A number, but out of range or too precise; the message says why.
    Invalid(String),
}

/// A CPU count written as a plain decimal number (`2`, `1.5`, `0.25`),
/// converted exactly to millicpus. It must be greater than 0, at most 1024,
/// and a multiple of 0.001.
pub(crate) fn parse_millicpus(text: &str) -> Result<u64, CpusError> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(CpusError::NotANumber);
    }
    let whole = whole.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let is_zero = whole.is_empty() && fraction.is_empty();
    if negative || is_zero {
        return Err(CpusError::Invalid(format!(
            "`cpus` must be greater than 0, found {text}"
        )));
    }
    let too_many = || CpusError::Invalid(format!("`cpus` must be at most 1024, found {text}"));
    // More digits than u64 holds is certainly more than 1024.
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_many())?
    };
    if fraction.len() > 3 {
        return Err(CpusError::Invalid(format!(
            "`cpus` must be a multiple of 0.001, found {text}"
        )));
    }
    // Pad to exactly three digits: "5" is 500 millicpus, "25" is 250.
    let thousandths: u64 = format!("{fraction:0<3}").parse().unwrap_or(0);
    let millicpus = whole
        .checked_mul(1_000)
        .and_then(|m| m.checked_add(thousandths))
        .filter(|&m| m <= MAX_MILLICPUS)
        .ok_or_else(too_many)?;
    Ok(millicpus)
}

/// A CPU count as `resources.cpus` takes it (`2`, `1.5`), in millicpus, from
/// plain text (such as a command-line flag); the error says what is wrong.
pub fn parse_cpus(text: &str) -> Result<u64, String> {
    parse_millicpus(text).map_err(|e| match e {
        CpusError::NotANumber => format!("`cpus` must be a number, found {text:?}"),
        CpusError::Invalid(message) => message,
    })
}

/// A memory size: bytes (`1048576000`) or a number with a binary suffix
/// `k`, `m` or `g`, optionally followed by `i` and/or `b`, in any case
/// (`512m`, `1Gi`, `64MB`, `2kib`). It must be at least 4m.
pub fn parse_memory_bytes(text: &str) -> Result<u64, String> {
    let invalid = || {
        format!(
            "invalid memory size {text:?}: expected a number of bytes, or a number with \
             suffix k, m or g (like 512m or 2g)"
        )
    };
    let digits_end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(invalid());
    }
    let suffix = suffix.to_ascii_lowercase();
    let mut unit = suffix.chars();
    let shift = match unit.next() {
        None => 0,
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some(_) => return Err(invalid()),
    };
    if !matches!(unit.as_str(), "" | "i" | "b" | "ib") {
        return Err(invalid());
    }
    let too_large = || format!("memory size {text:?} is too large");
    let bytes = number
        .parse::<u64>()
        .map_err(|_| too_large())?
        .checked_mul(1 << shift)
        .ok_or_else(too_large)?;
    if bytes < MIN_MEMORY_BYTES {
        return Err(format!(
            "`memory` must be at least 6m ({MIN_MEMORY_BYTES} bytes), found {text}"
        ));
    }
    Ok(bytes)
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
    fn secret_names() {
        for ok in [
            "prod-token",
            "npm",
            "7up",
            "a.b_c-d",
            "x.",
            &"s".repeat(MAX_SECRET_NAME_LEN),
        ] {
            assert_eq!(validate_secret_name(ok), Ok(()), "{ok}");
        }
        for (bad, reason) in [
            ("", "must not be empty".to_string()),
            (
                "Prod",
                "must start with a lowercase letter (a-z) or a digit".to_string(),
            ),
            (
                "-x",
                "must start with a lowercase letter (a-z) or a digit".to_string(),
            ),
            (
                ".x",
                "must start with a lowercase letter (a-z) or a digit".to_string(),
            ),
            (
                "prod/token",
                "contains '/'; only lowercase letters, digits, '.', '_' and '-' are allowed"
                    .to_string(),
            ),
            (
                "a b",
                "contains ' '; only lowercase letters, digits, '.', '_' and '-' are allowed"
                    .to_string(),
            ),
            (
                &"s".repeat(MAX_SECRET_NAME_LEN + 1),
                "must be at most 63 characters long (it has 64)".to_string(),
            ),
        ] {
            assert_eq!(validate_secret_name(bad), Err(reason), "{bad}");
        }
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

    #[test]
    fn cpus() {
        for (text, millicpus) in [
            ("1", 1_000),
            ("2", 2_000),
            ("1.5", 1_500),
            ("0.25", 250),
            (".5", 500),
            ("3.", 3_000),
            ("0.001", 1),
            ("1.2500", 1_250),
            ("007", 7_000),
            ("1024", 1_024_000),
            ("1024.000", 1_024_000),
        ] {
            assert_eq!(parse_millicpus(text), Ok(millicpus), "{text}");
        }
        for text in [
            "", ".", "lots", "1e3", "1,5", "+1", "0x10", " 1", "1.5.0", "--1",
        ] {
            assert_eq!(parse_millicpus(text), Err(CpusError::NotANumber), "{text}");
        }
        for (text, needle) in [
            ("0", "greater than 0"),
            ("0.000", "greater than 0"),
            ("-1", "greater than 0"),
            ("-0.5", "greater than 0"),
            ("0.0005", "multiple of 0.001"),
            ("1024.001", "at most 1024"),
            ("1025", "at most 1024"),
            ("99999999999999999999999", "at most 1024"),
        ] {
            match parse_millicpus(text) {
                Err(CpusError::Invalid(message)) => {
                    assert!(message.contains(needle), "{text}: {message}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // The plain-text form (agent flags) says what is wrong in words.
        assert_eq!(parse_cpus("1.5"), Ok(1_500));
        assert_eq!(
            parse_cpus("lots"),
            Err("`cpus` must be a number, found \"lots\"".to_string())
        );
        assert_eq!(
            parse_cpus("0"),
            Err("`cpus` must be greater than 0, found 0".to_string())
        );
    }

    #[test]
    fn memory_sizes() {
        for (text, bytes) in [
            ("6291456", 6_291_456),
            ("1048576000", 1_048_576_000),
            ("6144k", 6 << 20),
            ("512m", 512 << 20),
            ("512M", 512 << 20),
            ("512Mi", 512 << 20),
            ("512MB", 512 << 20),
            ("512mib", 512 << 20),
            ("1g", 1 << 30),
            ("16GiB", 16 << 30),
            ("17179869183g", 17_179_869_183 << 30),
        ] {
            assert_eq!(parse_memory_bytes(text), Ok(bytes), "{text}");
        }
        for (text, needle) in [
            ("", "invalid memory size"),
            ("m", "invalid memory size"),
            ("12 parsecs", "invalid memory size"),
            ("1.5g", "invalid memory size"),
            ("-4m", "invalid memory size"),
            ("4 m", "invalid memory size"),
            ("4t", "invalid memory size"),
            ("4mbi", "invalid memory size"),
            ("4b", "invalid memory size"),
            ("1k", "at least 6m"),
            ("6291455", "at least 6m"),
            ("0", "at least 6m"),
            ("17179869184gb", "too large"),
            ("17179869184g", "too large"),
            ("99999999999999999999", "too large"),
        ] {
            match parse_memory_bytes(text) {
                Err(message) => assert!(message.contains(needle), "{text}: {message}"),
                Ok(bytes) => panic!("{text}: accepted as {bytes}"),
            }
        }
    }
}
