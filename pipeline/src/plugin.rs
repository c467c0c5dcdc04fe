//! Plugin actions (`type: plugin`): an image in the format of Drone's and
//! Woodpecker's plugins, run with its own entrypoint, reads its
//! configuration from `PLUGIN_*` environment variables. This module holds
//! the rules of that format as pure functions: which setting names are
//! accepted, the variable each becomes ([`setting_variable`]), how a value
//! is written ([`json_string`], [`json_scalar`]; lists and mappings are
//! walked by the reader, `read/plugin.rs`), the bounds on settings, and the
//! CI variables such plugins read besides them ([`ci_env`]).
//!
//! Settings are lowered when the pipeline is read: into the action's `env`
//! (`PLUGIN_*` entries) and, for `{from_secret: NAME}`, into its `secrets`,
//! so every later layer (references, sealing, masking, the wire) sees only
//! environment and secrets. Nothing here runs a container.

use crate::spec::ActionContext;

/// What every setting's variable starts with.
pub const PLUGIN_ENV_PREFIX: &str = "PLUGIN_";

/// Most settings one plugin action may have.
pub const MAX_SETTINGS: usize = 64;

/// Longest setting name.
pub const MAX_SETTING_NAME_LEN: usize = 64;

/// Largest total of a plugin's settings' values as written into its
/// environment (JSON included), in bytes.
pub const MAX_SETTINGS_BYTES: usize = 64 * 1024;

/// The key of a setting whose value is a secret's: `{from_secret: NAME}`.
pub const FROM_SECRET: &str = "from_secret";

/// Where a plugin (like a build's commands) finds its inputs and leaves its
/// outputs, and its working directory.
pub const WORKSPACE: &str = "/workspace";

/// Checks a setting name: ASCII letters, digits, `_` and `-`, starting with
/// a letter, at most [`MAX_SETTING_NAME_LEN`] characters.
pub fn check_setting_name(name: &str) -> Result<(), String> {
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if !starts_with_letter
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "invalid setting name {name:?}: must start with a letter and hold only \
             letters, digits, `_` and `-`"
        ));
    }
    if name.len() > MAX_SETTING_NAME_LEN {
        return Err(format!(
            "setting name `{name}` is longer than {MAX_SETTING_NAME_LEN} characters"
        ));
    }
    Ok(())
}

/// The variable a setting reaches the plugin as, the way Drone and
/// Woodpecker name it: `PLUGIN_` and the name in upper case, with `-` and
/// `.` as `_` (`tag-suffix` is `PLUGIN_TAG_SUFFIX`).
pub fn setting_variable(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    format!("{PLUGIN_ENV_PREFIX}{upper}")
}

/// Appends `text` to `out` as a JSON string, quoted and escaped.
pub fn json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a YAML scalar to `out` as the JSON value YAML's core schema
/// gives it: a plain (unquoted) `null`, `~` or nothing is `null`, `true` and
/// `false` are booleans, a decimal integer (or `0x`/`0o` one that fits 64
/// bits) or a finite decimal number is a number; everything else, and every
/// quoted scalar, is a string.
pub fn json_scalar(text: &str, plain: bool, out: &mut String) {
    if plain {
        match text {
            "" | "~" | "null" | "Null" | "NULL" => return out.push_str("null"),
            "true" | "True" | "TRUE" => return out.push_str("true"),
            "false" | "False" | "FALSE" => return out.push_str("false"),
            _ => {}
        }
        if let Some(number) = yaml_number(text) {
            return out.push_str(&number);
        }
    }
    json_string(text, out);
}

/// A plain scalar that YAML reads as a number, written as JSON writes it.
fn yaml_number(text: &str) -> Option<String> {
    let radix = |prefix: &str, radix: u32| {
        text.strip_prefix(prefix)
            .and_then(|digits| i64::from_str_radix(digits, radix).ok())
    };
    if let Some(n) = radix("0x", 16).or_else(|| radix("0o", 8)) {
        return Some(n.to_string());
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let digits_only = !unsigned.is_empty() && unsigned.chars().all(|c| c.is_ascii_digit());
    if digits_only {
        // Beyond 64 bits a number stays as written: JSON has no limit.
        return Some(match text.parse::<i64>() {
            Ok(n) => n.to_string(),
            Err(_) => text.trim_start_matches('+').to_string(),
        });
    }
    // A decimal number: digits with one `.` and/or an exponent.
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    let exponent_digits = exponent.map(|e| e.strip_prefix(['-', '+']).unwrap_or(e));
    let decimal = (!whole.is_empty() || !fraction.is_empty())
        && digits(whole)
        && digits(fraction)
        && exponent_digits.is_none_or(|e| !e.is_empty() && digits(e));
    // Beyond f64 (`1e999`) YAML has no number either.
    if !decimal || !text.parse::<f64>().is_ok_and(f64::is_finite) {
        return None;
    }
    // JSON wants a digit before the point, and no `+`.
    let sign = if text.starts_with('-') { "-" } else { "" };
    let whole = if whole.is_empty() { "0" } else { whole };
    let mut written = format!("{sign}{whole}");
    if !fraction.is_empty() {
        written.push('.');
        written.push_str(fraction);
    }
    if let Some(e) = exponent {
        written.push('e');
        written.push_str(e.strip_prefix('+').unwrap_or(e));
    }
    Some(written)
}

/// The CI variables Drone and Woodpecker plugins commonly read, from what
/// Ferry knows of the action's run: `CI`, the commit, the repository name
/// (the pipeline's), the workspace, the stage and step names. Ferry has no
/// build number or branch in an action's context, so those are not set.
pub fn ci_env(context: &ActionContext) -> Vec<(&'static str, String)> {
    let revision = &context.revision;
    vec![
        ("CI", "true".to_string()),
        ("DRONE_COMMIT", revision.clone()),
        ("DRONE_COMMIT_SHA", revision.clone()),
        ("CI_COMMIT_SHA", revision.clone()),
        ("DRONE_REPO_NAME", context.pipeline.clone()),
        ("CI_REPO_NAME", context.pipeline.clone()),
        ("DRONE_WORKSPACE", WORKSPACE.to_string()),
        ("CI_WORKSPACE", WORKSPACE.to_string()),
        ("DRONE_STAGE_NAME", context.stage.clone()),
        ("DRONE_STEP_NAME", context.action.clone()),
        ("CI_STEP_NAME", context.action.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_variables_as_drone_names_them() {
        assert_eq!(setting_variable("message"), "PLUGIN_MESSAGE");
        assert_eq!(setting_variable("tag-suffix"), "PLUGIN_TAG_SUFFIX");
        assert_eq!(setting_variable("auto_Tag"), "PLUGIN_AUTO_TAG");
        assert_eq!(setting_variable("a.b"), "PLUGIN_A_B");
        assert!(check_setting_name("repo").is_ok());
        assert!(check_setting_name("dry-run_2").is_ok());
        for bad in ["", "2fast", "-x", "_x", "a.b", "a b", "é"] {
            assert!(check_setting_name(bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(MAX_SETTING_NAME_LEN + 1);
        assert!(check_setting_name(&long).is_err());
        assert!(check_setting_name(&long[1..]).is_ok());
    }

    fn scalar(text: &str, plain: bool) -> String {
        let mut out = String::new();
        json_scalar(text, plain, &mut out);
        out
    }

    #[test]
    fn scalars_are_typed_as_yaml_types_them() {
        assert_eq!(scalar("null", true), "null");
        assert_eq!(scalar("~", true), "null");
        assert_eq!(scalar("true", true), "true");
        assert_eq!(scalar("False", true), "false");
        assert_eq!(scalar("true", false), "\"true\"");
        assert_eq!(scalar("42", true), "42");
        assert_eq!(scalar("+42", true), "42");
        assert_eq!(scalar("-7", true), "-7");
        assert_eq!(scalar("0x1f", true), "31");
        assert_eq!(scalar("0o17", true), "15");
        assert_eq!(scalar("1.5", true), "1.5");
        assert_eq!(scalar(".5", true), "0.5");
        assert_eq!(scalar("-2.5e-3", true), "-2.5e-3");
        assert_eq!(scalar("1e3", true), "1e3");
        assert_eq!(
            scalar("123456789012345678901234567890", true),
            "123456789012345678901234567890"
        );
        assert_eq!(scalar("42", false), "\"42\"");
        assert_eq!(scalar("1.2.3", true), "\"1.2.3\"");
        assert_eq!(scalar(".inf", true), "\".inf\"");
        assert_eq!(scalar("e3", true), "\"e3\"");
        assert_eq!(scalar("1e", true), "\"1e\"");
        assert_eq!(scalar(".", true), "\".\"");
        assert_eq!(
            scalar("say \"hi\"\\\n\t\u{1}", true),
            r#""say \"hi\"\\\n\t\u0001""#
        );
    }

    #[test]
    fn ci_variables_come_from_the_context_only() {
        let context = ActionContext {
            pipeline: "web".into(),
            execution_id: "e".into(),
            revision: "abc".into(),
            stage: "ship".into(),
            action: "publish".into(),
        };
        let env = ci_env(&context);
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CI"), Some("true"));
        assert_eq!(get("DRONE_COMMIT_SHA"), Some("abc"));
        assert_eq!(get("CI_COMMIT_SHA"), Some("abc"));
        assert_eq!(get("DRONE_REPO_NAME"), Some("web"));
        assert_eq!(get("CI_WORKSPACE"), Some("/workspace"));
        assert_eq!(get("DRONE_STEP_NAME"), Some("publish"));
        assert_eq!(get("DRONE_BUILD_NUMBER"), None);
        assert_eq!(get("DRONE_COMMIT_BRANCH"), None);
    }
}
