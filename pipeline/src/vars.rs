//! Variables: pipeline `variables:` (defaults, overridden per execution with
//! `ferry run --var`), output variables an action writes to the file named
//! by `$FERRY_OUTPUT_VARS`, and the `#{...}` references that use them in
//! `image`, `commands`, `env`, approval `message`/`url` and a service's
//! `image`, `env`, `command` and ready `command`:
//!
//! - `#{variables.NAME}`: a pipeline variable;
//! - `#{STAGE.ACTION.NAME}`: what an earlier build or test action wrote;
//! - `#{matrix.NAME}`: the value of a matrix action's axis in its cell;
//! - `#{hash_files: GLOB ...}`: only in a cache's `key` and `restore_keys`,
//!   filled in by the agent from the source (`cache.rs`).
//!
//! Everything here is pure: the reader lints references with positions,
//! the execution state resolves them once when an action starts, and the
//! coordinator substitutes the recorded values into what it sends.

use std::collections::BTreeMap;

use thiserror::Error;

/// Most output variables one action may write.
pub const MAX_OUTPUT_VARS: usize = 64;

/// Largest output variables file an action may write, in bytes.
pub const MAX_OUTPUT_VARS_BYTES: usize = 64 * 1024;

/// Longest value of one variable, in bytes.
pub const MAX_VALUE_LEN: usize = 4 * 1024;

/// Longest variable name.
pub const MAX_VAR_NAME_LEN: usize = 64;

/// Most pipeline variables, and most `--var` overrides.
pub const MAX_PIPELINE_VARS: usize = 64;

/// A variable reference, `#{...}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ref {
    /// `#{variables.NAME}`.
    Pipeline(String),
    /// `#{STAGE.ACTION.NAME}`.
    Output {
        stage: String,
        action: String,
        name: String,
    },
    /// `#{matrix.NAME}`.
    Matrix(String),
    /// `#{hash_files: GLOB ...}`: the digest of the repository's files that
    /// match, only in a cache key (`cache.rs`); the agent fills it in.
    HashFiles(Vec<String>),
}

impl Ref {
    /// The text between `#{` and `}`: how the reference is recorded.
    pub fn key(&self) -> String {
        match self {
            Ref::Pipeline(name) => format!("variables.{name}"),
            Ref::Matrix(name) => format!("matrix.{name}"),
            Ref::HashFiles(globs) => format!("hash_files: {}", globs.join(" ")),
            Ref::Output {
                stage,
                action,
                name,
            } => format!("{stage}.{action}.{name}"),
        }
    }
}

impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{{{}}}", self.key())
    }
}

/// Why a text's references do not read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RefError {
    #[error("`#{{` without a closing `}}`")]
    Unclosed,
    #[error(
        "invalid variable reference `#{{{0}}}`: write #{{variables.NAME}}, #{{STAGE.ACTION.NAME}} or #{{matrix.NAME}}"
    )]
    Invalid(String),
}

/// Checks a variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most
/// [`MAX_VAR_NAME_LEN`] characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if !crate::rules::is_identifier(name) {
        return Err(format!(
            "invalid variable name `{name}`: must match [A-Za-z_][A-Za-z0-9_]*"
        ));
    }
    if name.len() > MAX_VAR_NAME_LEN {
        return Err(format!(
            "variable name `{name}` is longer than {MAX_VAR_NAME_LEN} characters"
        ));
    }
    Ok(())
}

/// Reads one reference's inside (`variables.X` or `s.a.X`).
fn parse_ref(inside: &str) -> Result<Ref, RefError> {
    let invalid = || RefError::Invalid(inside.to_string());
    if let Some(globs) = inside.strip_prefix("hash_files:") {
        let globs: Vec<String> = globs.split_whitespace().map(str::to_string).collect();
        let ok = !globs.is_empty()
            && globs.len() <= crate::cache::MAX_HASH_GLOBS
            && globs
                .iter()
                .all(|g| crate::cache::check_hash_glob(g).is_ok());
        return if ok {
            Ok(Ref::HashFiles(globs))
        } else {
            Err(invalid())
        };
    }
    let parts: Vec<&str> = inside.split('.').collect();
    match parts.as_slice() {
        ["variables", name] if check_name(name).is_ok() => Ok(Ref::Pipeline(name.to_string())),
        ["matrix", name] if check_name(name).is_ok() => Ok(Ref::Matrix(name.to_string())),
        [stage, action, name]
            if crate::validate_name(stage).is_ok()
                && crate::validate_name(action).is_ok()
                && check_name(name).is_ok() =>
        {
            Ok(Ref::Output {
                stage: stage.to_string(),
                action: action.to_string(),
                name: name.to_string(),
            })
        }
        _ => Err(invalid()),
    }
}

/// The pieces of a text: literal runs and references, in order.
pub(crate) enum Piece<'t> {
    Text(&'t str),
    Ref(Ref),
}

pub(crate) fn pieces(text: &str) -> Result<Vec<Piece<'_>>, RefError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("#{") {
        out.push(Piece::Text(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(RefError::Unclosed)?;
        out.push(Piece::Ref(parse_ref(&after[..end])?));
        rest = &after[end + 1..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// Every reference in `text`, in order.
pub fn references(text: &str) -> Result<Vec<Ref>, RefError> {
    Ok(pieces(text)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect())
}

/// `text` with every reference replaced by `value(reference)`; the first
/// reference without a value is the error. Text without `#{` is returned
/// as it is.
pub fn substitute(text: &str, value: impl Fn(&Ref) -> Option<String>) -> Result<String, Ref> {
    let Ok(pieces) = pieces(text) else {
        // The reader refused such texts; one stored before stays literal.
        return Ok(text.to_string());
    };
    let mut out = String::with_capacity(text.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Ref(r) => match value(&r) {
                Some(v) => out.push_str(&v),
                None => return Err(r),
            },
        }
    }
    Ok(out)
}

/// Prefix of the shell variables that carry references into commands.
pub const COMMAND_REF_PREFIX: &str = "FERRY_REF_";

/// An action's commands with every reference turned into a shell variable
/// expansion, `${FERRY_REF_<n>_<NAME>}`, and those variables with their
/// values: what a reference resolves to (an earlier action's output, which
/// the repository's code wrote) reaches the shell as data in the
/// environment, never as code spliced into the command text. `value` gives
/// a reference's value; one without is left as written, as
/// [`substitute`] would not reach it (the action failed before starting).
///
/// Inside double quotes or bare, the expansion reads as the value did;
/// inside single quotes it stays literal (write references outside them).
pub fn commands_as_data(
    commands: &[String],
    value: impl Fn(&Ref) -> Option<String>,
) -> (Vec<String>, BTreeMap<String, String>) {
    let mut refs: Vec<Ref> = commands
        .iter()
        .filter_map(|c| references(c).ok())
        .flatten()
        .collect();
    refs.sort();
    refs.dedup();
    // Each reference with a value: its variable's name and the value.
    let mut vars: BTreeMap<&Ref, String> = BTreeMap::new();
    let mut env = BTreeMap::new();
    for (i, r) in refs.iter().enumerate() {
        let Some(v) = value(r) else { continue };
        let name = match r {
            Ref::Pipeline(n) | Ref::Output { name: n, .. } | Ref::Matrix(n) => n,
            Ref::HashFiles(_) => "hash_files",
        };
        let var = format!("{COMMAND_REF_PREFIX}{i}_{name}");
        env.insert(var.clone(), v);
        vars.insert(r, var);
    }
    let texts = commands
        .iter()
        .map(|c| {
            substitute(c, |r| vars.get(r).map(|var| format!("${{{var}}}")))
                .unwrap_or_else(|_| c.clone())
        })
        .collect();
    (texts, env)
}

/// Checks what an `image` with references resolved to: an image reference
/// (`[A-Za-z0-9._/:@-]`, at most 255 bytes, starting with a letter or digit).
pub fn check_image(image: &str) -> Result<(), String> {
    let ok = image.len() <= 255
        && image
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/:@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not an image reference",
            image.chars().take(80).collect::<String>()
        ))
    }
}

/// The texts of an action that may hold references (its `image`,
/// `commands`, `env` values, approval `message` and `url`, its services'
/// image, `env` values, shell `command` and ready `command`, and its caches'
/// `key` and `restore_keys`).
pub fn templated_texts(action: &crate::Action) -> Vec<&str> {
    let mut texts: Vec<&str> = Vec::new();
    texts.extend(action.image.as_deref());
    texts.extend(action.commands.iter().map(String::as_str));
    texts.extend(action.env.values().map(String::as_str));
    texts.push(&action.message);
    texts.push(&action.url);
    texts.extend(action.services.iter().flat_map(|s| s.templated_texts()));
    for cache in &action.caches {
        texts.push(&cache.key);
        texts.extend(cache.restore_keys.iter().map(String::as_str));
    }
    texts
}

/// Every reference an action's texts hold (malformed texts, which the
/// reader refused, hold none).
pub fn action_references(action: &crate::Action) -> Vec<Ref> {
    let mut refs: Vec<Ref> = templated_texts(action)
        .into_iter()
        .filter_map(|t| references(t).ok())
        .flatten()
        .collect();
    refs.sort();
    refs.dedup();
    refs
}

/// Checks variables that arrive from outside (an agent's output variables,
/// `--var` values): at most `limit`, names as [`check_name`] wants them,
/// values at most [`MAX_VALUE_LEN`]; `what` names one in the error.
pub fn check_values(
    vars: &BTreeMap<String, String>,
    limit: usize,
    what: &str,
) -> Result<(), String> {
    if vars.len() > limit {
        return Err(format!("more than {limit} {what}s"));
    }
    for (name, value) in vars {
        check_name(name)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(format!(
                "{what} `{name}` is longer than {MAX_VALUE_LEN} bytes"
            ));
        }
        check_value_text(value).map_err(|e| format!("{what} `{name}` {e}"))?;
    }
    Ok(())
}

/// A value is text without control characters other than tab: no NUL
/// (which no process environment can hold) and no terminal escape
/// sequences (values are printed on operators' terminals by `ferry status`).
fn check_value_text(value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control() && *c != '\t') {
        Some(c) => Err(format!(
            "holds the control character {:?}; values are text without control characters",
            c
        )),
        None => Ok(()),
    }
}

/// [`check_values`] for an agent's output variables, the bounds
/// [`parse_output_file`] enforces.
pub fn check_outputs(vars: &BTreeMap<String, String>) -> Result<(), String> {
    check_values(vars, MAX_OUTPUT_VARS, "output variable")
}

/// Reads an action's output variables file: `NAME=VALUE` lines (blank
/// lines and `#` comments skipped), bounded in size and count, names
/// checked; a later line for the same name wins.
pub fn parse_output_file(bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
    if bytes.len() > MAX_OUTPUT_VARS_BYTES {
        return Err(format!(
            "the output variables file is larger than {MAX_OUTPUT_VARS_BYTES} bytes"
        ));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "the output variables file is not UTF-8 text".to_string())?;
    let mut vars = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!(
                "line {} of the output variables file is not NAME=VALUE",
                i + 1
            ));
        };
        let name = name.trim();
        check_name(name)
            .map_err(|e| format!("line {} of the output variables file: {e}", i + 1))?;
        if value.len() > MAX_VALUE_LEN {
            return Err(format!(
                "output variable `{name}` is longer than {MAX_VALUE_LEN} bytes"
            ));
        }
        check_value_text(value)
            .map_err(|e| format!("line {} of the output variables file: `{name}` {e}", i + 1))?;
        vars.insert(name.to_string(), value.to_string());
        if vars.len() > MAX_OUTPUT_VARS {
            return Err(format!(
                "the output variables file sets more than {MAX_OUTPUT_VARS} variables"
            ));
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_read_both_forms_and_refuse_others() {
        assert_eq!(
            references("deploy #{variables.REGION} at #{build.compile.VERSION}!"),
            Ok(vec![
                Ref::Pipeline("REGION".into()),
                Ref::Output {
                    stage: "build".into(),
                    action: "compile".into(),
                    name: "VERSION".into(),
                },
            ])
        );
        assert_eq!(references("no refs # {here}"), Ok(vec![]));
        assert_eq!(references("#{variables.X"), Err(RefError::Unclosed));
        for bad in [
            "#{x}",
            "#{a.b}",
            "#{Build.c.X}",
            "#{variables.1X}",
            "#{a.b.c.d}",
        ] {
            assert!(
                matches!(references(bad), Err(RefError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn substitution_replaces_every_reference_or_names_the_missing_one() {
        let value = |r: &Ref| match r.key().as_str() {
            "variables.REGION" => Some("eu".to_string()),
            _ => None,
        };
        assert_eq!(
            substitute("to #{variables.REGION}/#{variables.REGION}", value),
            Ok("to eu/eu".into())
        );
        assert_eq!(
            substitute("v#{b.c.VERSION}", value).map_err(|r| r.to_string()),
            Err("#{b.c.VERSION}".to_string())
        );
        assert_eq!(substitute("plain", value), Ok("plain".into()));
    }

    fn sh(script: &str, env: &BTreeMap<String, String>) -> String {
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .envs(env)
            .output()
            .expect("run /bin/sh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn references_reach_commands_as_data_never_as_code() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pwned = dir.path().join("pwned");
        let p = pwned.display();
        for hostile in [
            format!("1.0; touch {p}"),
            format!("$(touch {p})"),
            format!("`touch {p}`"),
            format!("1.0\ntouch {p}"),
            format!("x' ; touch {p}; echo '"),
            format!("x\" ; touch {p}; echo \""),
            format!("a && touch {p} || touch {p}"),
        ] {
            let value = |r: &Ref| (r.key() == "build.compile.VERSION").then(|| hostile.clone());
            let commands = vec![
                "echo \"v=#{build.compile.VERSION}\"".to_string(),
                "echo #{build.compile.VERSION}".to_string(),
                "printf %s \"#{build.compile.VERSION}#{variables.UNSET}\"".to_string(),
            ];
            let (texts, env) = commands_as_data(&commands, value);
            assert_eq!(env.len(), 1, "{env:?}");
            // Numbered in reference order: #{variables.UNSET} is 0.
            assert_eq!(env.get("FERRY_REF_1_VERSION"), Some(&hostile));
            assert_eq!(sh(&texts[0], &env), format!("v={hostile}\n"));
            sh(&texts[1], &env);
            // A reference without a value stays as written.
            assert!(texts[2].ends_with("#{variables.UNSET}\""), "{}", texts[2]);
            assert!(!pwned.exists(), "{hostile:?} ran as code");
        }
        let (texts, env) = commands_as_data(&["make".to_string()], |_| None);
        assert_eq!((texts, env.len()), (vec!["make".to_string()], 0));
    }

    /// Whatever an action writes to its output variables file, what the
    /// reader accepts reaches commands as data: the rewritten command text
    /// is the same whatever the values are (`scripts/fuzz`'s stable
    /// stand-in for the `output_vars` target).
    #[test]
    fn proptest_output_files_reach_commands_only_as_data() {
        use proptest::prelude::*;
        let line = prop_oneof![
            "[A-Za-z_][A-Za-z0-9_]{0,8}=[ -~]{0,40}",
            "[ -~\\t]{0,40}",
            Just("V=$(touch /tmp/x); `id`; 'q\"".to_string()),
        ];
        let file = prop::collection::vec(line, 0..12).prop_map(|l| l.join("\n"));
        let result = crate::proptest_tests::runner().run(&file, |text| {
            let Ok(vars) = parse_output_file(text.as_bytes()) else {
                return Ok(());
            };
            prop_assert!(check_outputs(&vars).is_ok());
            let commands: Vec<String> = vars
                .keys()
                .map(|k| format!("echo #{{s.a.{k}}} \"#{{s.a.{k}}}\" '#{{variables.{k}}}'"))
                .collect();
            let value = |r: &Ref| match r {
                Ref::Output { name, .. } => vars.get(name).cloned(),
                Ref::Pipeline(_) | Ref::Matrix(_) | Ref::HashFiles(_) => None,
            };
            let (texts, env) = commands_as_data(&commands, value);
            let (fixed, _) = commands_as_data(&commands, |r| value(r).map(|_| "x".to_string()));
            prop_assert_eq!(&texts, &fixed);
            prop_assert_eq!(env.len(), vars.len());
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }

    #[test]
    fn resolved_images_must_be_image_references() {
        for good in [
            "alpine",
            "registry:5000/team/app:1.4",
            "app@sha256:abcd",
            "a_b.c-d",
        ] {
            assert_eq!(check_image(good), Ok(()), "{good}");
        }
        for bad in ["", "-x", "app; rm", "app\nx", "app $(x)", &"a".repeat(256)] {
            assert!(check_image(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_with_control_characters_are_refused() {
        for bad in ["V=a\u{0}b", "V=\u{1b}[2J\u{1b}[31mFAKE", "V=a\u{7f}"] {
            let err = parse_output_file(bad.as_bytes()).expect_err(bad);
            assert!(err.contains("control character"), "{err}");
        }
        assert!(parse_output_file(b"V=a\tb\r\n").is_ok());
        let vars = BTreeMap::from([("V".to_string(), "\u{1b}]8;;x".to_string())]);
        assert!(check_outputs(&vars).is_err());
    }

    #[test]
    fn output_files_are_bounded_and_checked() {
        let vars = parse_output_file(
            b"# made by the build\nVERSION=1.4\n\nURL=http://x/?a=b\r\nVERSION=1.5\n",
        );
        assert_eq!(
            vars,
            Ok(BTreeMap::from([
                ("URL".to_string(), "http://x/?a=b".to_string()),
                ("VERSION".to_string(), "1.5".to_string()),
            ]))
        );
        assert!(parse_output_file(b"no equals sign\n").is_err());
        assert!(parse_output_file(b"1BAD=x\n").is_err());
        assert!(parse_output_file(&[0xff, 0xfe]).is_err());
        assert!(parse_output_file(&vec![b'a'; MAX_OUTPUT_VARS_BYTES + 1]).is_err());
        let many: String = (0..=MAX_OUTPUT_VARS).map(|i| format!("V{i}=x\n")).collect();
        assert!(parse_output_file(many.as_bytes()).is_err());
        let long = format!("V={}\n", "x".repeat(MAX_VALUE_LEN + 1));
        assert!(parse_output_file(long.as_bytes()).is_err());
    }
}
