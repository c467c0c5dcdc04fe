//! `when:` conditions on stages and actions, and `on_failure:` of a stage.
//! A condition holds when the execution's branch (or tag) matches one of
//! its globs and each named variable has the value given; otherwise the
//! stage or action is skipped, with the reason. Pure: evaluated inside the
//! execution state machine, so every replica decides the same.

use std::collections::BTreeMap;

use globset::{Glob, GlobBuilder};
use serde::{Deserialize, Serialize};

/// When a stage or action runs: every part given must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Condition {
    /// Globs, one of which the branch the execution started from must match.
    pub branches: Vec<String>,
    /// Globs, one of which the tag the execution started from must match.
    pub tags: Vec<String>,
    /// Reference (the text between `#{` and `}`) → the value it must have.
    pub variables: BTreeMap<String, String>,
}

/// What a stage does when one of its actions fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The execution fails (the default).
    #[default]
    Fail,
    /// Its failed actions run again, up to this many times, before the
    /// execution fails.
    Retry(u32),
    /// The execution fails, and each environment its deploy actions
    /// deployed to gets its previous good release again (as a new
    /// execution, like `ferry rollback`).
    Rollback,
}

/// Largest accepted `on_failure: {retry: N}`.
pub const MAX_STAGE_RETRIES: u32 = 10;

/// What an execution started from: a branch or a tag (none for a bare commit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceRef {
    Branch(String),
    Tag(String),
}

/// A glob as branch and tag names use it: `*` within one `/`-separated
/// segment, `**` across them.
pub fn glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g: Glob| g.compile_matcher())
        .map_err(|e| format!("invalid glob {pattern:?}: {}", e.kind()))
}

impl Condition {
    /// Ok when the condition holds for an execution started from `source`
    /// whose references have the values `value` gives; else why not.
    pub fn holds(
        &self,
        source: Option<&SourceRef>,
        value: impl Fn(&str) -> Option<String>,
    ) -> Result<(), String> {
        let matches = |name: &str, globs: &[String]| {
            globs
                .iter()
                .any(|g| glob(g).is_ok_and(|m| m.is_match(name)))
        };
        if !self.branches.is_empty() {
            match source {
                Some(SourceRef::Branch(b)) if matches(b, &self.branches) => {}
                Some(SourceRef::Branch(b)) => {
                    return Err(format!(
                        "branch {b} matches none of {}",
                        self.branches.join(", ")
                    ));
                }
                _ => return Err("the execution did not start from a branch".into()),
            }
        }
        if !self.tags.is_empty() {
            match source {
                Some(SourceRef::Tag(t)) if matches(t, &self.tags) => {}
                Some(SourceRef::Tag(t)) => {
                    return Err(format!("tag {t} matches none of {}", self.tags.join(", ")));
                }
                _ => return Err("the execution did not start from a tag".into()),
            }
        }
        for (key, expected) in &self.variables {
            match value(key) {
                Some(v) if v == *expected => {}
                Some(v) => return Err(format!("#{{{key}}} is {v:?}, not {expected:?}")),
                None => return Err(format!("#{{{key}}} has no value")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_tags_and_variables_decide() {
        let c = Condition {
            branches: vec!["main".into(), "release/*".into()],
            ..Condition::default()
        };
        let none = |_: &str| None;
        assert!(
            c.holds(Some(&SourceRef::Branch("release/1.4".into())), none)
                .is_ok()
        );
        assert_eq!(
            c.holds(Some(&SourceRef::Branch("release/a/b".into())), none),
            Err("branch release/a/b matches none of main, release/*".into())
        );
        assert!(c.holds(Some(&SourceRef::Tag("v1".into())), none).is_err());
        assert!(c.holds(None, none).is_err());
        let t = Condition {
            tags: vec!["v*".into()],
            variables: BTreeMap::from([("b.c.KIND".to_string(), "release".to_string())]),
            ..Condition::default()
        };
        let kind = |k: &str| (k == "b.c.KIND").then(|| "release".to_string());
        assert!(t.holds(Some(&SourceRef::Tag("v1.2".into())), kind).is_ok());
        let other = |_: &str| Some("debug".to_string());
        assert_eq!(
            t.holds(Some(&SourceRef::Tag("v1.2".into())), other),
            Err("#{b.c.KIND} is \"debug\", not \"release\"".into())
        );
        assert!(glob("[").is_err());
    }
}
