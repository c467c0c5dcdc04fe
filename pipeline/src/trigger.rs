//! Trigger filters on a pipeline's source: which pushed branches and tags
//! (and, for branches, which changed files) start an execution. Pure data
//! and matching; the coordinator feeds it the push events it sees.
//!
//! Globs are globset's with `literal_separator`: `*` and `?` stay within
//! one `/`-separated segment and `**` crosses segments, for changed paths
//! and for branch and tag names alike. So `release/*` matches
//! `release/1.4` but not `release/1.4/hotfix` (write `release/**` for
//! that): the same as `when: {branch: ...}` conditions in the same file
//! (`condition::glob`), and as GitHub Actions' and CodePipeline's branch
//! filters.

use serde::{Deserialize, Serialize};

use crate::condition::{SourceRef, glob};

/// Most triggers a source may list.
pub const MAX_TRIGGERS: usize = 10;

/// Most globs in one filter, `include` and `exclude` together.
pub const MAX_FILTER_GLOBS: usize = 50;

/// Longest accepted glob, in bytes.
pub const MAX_GLOB_LEN: usize = 256;

/// Most changed paths named in a "no changed file matches" reason.
const MAX_LISTED_PATHS: usize = 5;

/// Most globs named in a "matches no trigger" reason.
const MAX_LISTED_GLOBS: usize = 10;

/// Names (or paths) pass when they match some `include` glob and no
/// `exclude` glob. The glob texts are stored; they are compiled on use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GlobFilter {
    /// At least one glob (checked when read).
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// One way a push starts an execution: exactly one of `branches` and
/// `tags` is set; `paths` only together with `branches`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Trigger {
    #[serde(default)]
    pub branches: Option<GlobFilter>,
    #[serde(default)]
    pub tags: Option<GlobFilter>,
    /// Changed files, one of which must pass (when the changes are known).
    #[serde(default)]
    pub paths: Option<GlobFilter>,
}

/// What kind of ref a push moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefKind {
    Branch,
    Tag,
}

impl RefKind {
    /// "branch" or "tag", as reasons name it.
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Branch => "branch",
            RefKind::Tag => "tag",
        }
    }
}

/// A push to a branch or tag, as a git host's webhook reports it (already
/// verified and parsed by the coordinator's HTTPS side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitPush {
    pub kind: RefKind,
    /// The branch or tag name, without `refs/heads/` or `refs/tags/`.
    pub name: String,
    /// What the ref points at now: 40 lowercase hex digits (all zeros when
    /// the ref was deleted).
    pub after: String,
    /// What the ref pointed at before; `None` when it was just created (all
    /// zeros) or the host did not say.
    pub before: Option<String>,
    /// The push deleted the ref.
    pub deleted: bool,
}

/// Splits a full ref (`refs/heads/main`, `refs/tags/v1.2`) into its kind
/// and short name; `None` for other refs (notes, pull requests) or an
/// empty short name.
pub fn parse_ref(full_ref: &str) -> Option<(RefKind, &str)> {
    let (kind, name) = if let Some(name) = full_ref.strip_prefix("refs/heads/") {
        (RefKind::Branch, name)
    } else {
        (RefKind::Tag, full_ref.strip_prefix("refs/tags/")?)
    };
    (!name.is_empty()).then_some((kind, name))
}

/// A push seen by the coordinator (webhook or poll).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GitRefEvent<'a> {
    pub kind: RefKind,
    /// The short name: `main` or `v1.2`, without `refs/heads/` or `refs/tags/`.
    pub name: &'a str,
    /// Files the push changed, relative to the repository root; `None`
    /// when unknown, and then `paths` filters are not applied (the push
    /// runs): missing information never drops a build.
    pub changed_paths: Option<&'a [String]>,
}

impl GitRefEvent<'_> {
    /// The ref an execution started by this push records.
    pub fn source_ref(&self) -> SourceRef {
        match self.kind {
            RefKind::Branch => SourceRef::Branch(self.name.to_string()),
            RefKind::Tag => SourceRef::Tag(self.name.to_string()),
        }
    }
}

impl Trigger {
    /// The default when a source lists none: pushes to `branch` only,
    /// whatever they change (how every pipeline behaved before triggers).
    pub fn branch(branch: &str) -> Trigger {
        Trigger {
            branches: Some(GlobFilter {
                // Branch names may hold `{` or `}`, which globs give a meaning.
                include: vec![globset::escape(branch)],
                exclude: Vec::new(),
            }),
            tags: None,
            paths: None,
        }
    }

    /// The filter for names of `kind`, if this trigger reacts to that kind.
    pub fn filter(&self, kind: RefKind) -> Option<&GlobFilter> {
        match kind {
            RefKind::Branch => self.branches.as_ref(),
            RefKind::Tag => self.tags.as_ref(),
        }
    }

    /// Whether the trigger fits its rules (positions aside): exactly one of
    /// `branches` and `tags`, `paths` only with `branches`, and valid filters.
    pub fn check(&self) -> Result<(), String> {
        match (&self.branches, &self.tags) {
            (None, None) => return Err(NEEDS_BRANCHES_OR_TAGS.to_string()),
            (Some(_), Some(_)) => return Err(NOT_BOTH.to_string()),
            _ => {}
        }
        if self.paths.is_some() && self.branches.is_none() {
            return Err(PATHS_NEED_BRANCHES.to_string());
        }
        for (key, filter) in [
            ("branches", &self.branches),
            ("tags", &self.tags),
            ("paths", &self.paths),
        ] {
            if let Some(filter) = filter {
                filter.check().map_err(|e| format!("`{key}`: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Why a trigger without `branches` or `tags` is refused.
pub(crate) const NEEDS_BRANCHES_OR_TAGS: &str = "a trigger needs `branches` or `tags`";
/// Why a trigger with both is refused.
pub(crate) const NOT_BOTH: &str =
    "a trigger sets `branches` or `tags`, not both; write two triggers";
/// Why `paths` without `branches` is refused.
pub(crate) const PATHS_NEED_BRANCHES: &str =
    "`paths` is only allowed together with `branches` (a tag push changes no files)";

impl GlobFilter {
    /// Whether `text` matches some include glob and no exclude glob. A glob
    /// that does not compile (impossible after the checks) matches nothing.
    pub fn matches(&self, text: &str) -> bool {
        self.included(text) && self.excluded_by(text).is_none()
    }

    fn included(&self, text: &str) -> bool {
        any_match(&self.include, text).is_some()
    }

    fn excluded_by(&self, text: &str) -> Option<&str> {
        any_match(&self.exclude, text)
    }

    /// The filter's rules: a non-empty `include`, at most
    /// [`MAX_FILTER_GLOBS`] globs, each valid ([`check_glob`]).
    pub fn check(&self) -> Result<(), String> {
        if self.include.is_empty() {
            return Err(EMPTY_INCLUDE.to_string());
        }
        check_glob_count(self.include.len() + self.exclude.len())?;
        for g in self.include.iter().chain(&self.exclude) {
            check_glob(g)?;
        }
        Ok(())
    }
}

/// Why a filter with no include glob is refused.
pub(crate) const EMPTY_INCLUDE: &str = "`include` must list at least one glob";

/// At most [`MAX_FILTER_GLOBS`] globs in one filter.
pub(crate) fn check_glob_count(count: usize) -> Result<(), String> {
    if count > MAX_FILTER_GLOBS {
        return Err(format!(
            "a filter has at most {MAX_FILTER_GLOBS} globs (include and exclude together), found {count}"
        ));
    }
    Ok(())
}

/// One glob: not empty, at most [`MAX_GLOB_LEN`] bytes, no control
/// characters, and compiles.
pub fn check_glob(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("a glob must not be empty".to_string());
    }
    if pattern.len() > MAX_GLOB_LEN {
        return Err(format!(
            "a glob is at most {MAX_GLOB_LEN} bytes long, found {}",
            pattern.len()
        ));
    }
    if pattern.chars().any(char::is_control) {
        return Err(format!(
            "glob {pattern:?} must not contain control characters"
        ));
    }
    glob(pattern).map(|_| ())
}

/// The first glob of `globs` that `text` matches.
fn any_match<'g>(globs: &'g [String], text: &str) -> Option<&'g str> {
    globs
        .iter()
        .find(|g| glob(g).is_ok_and(|m| m.is_match(text)))
        .map(String::as_str)
}

/// `items` joined with ", ", at most `max` of them, then "and N more".
fn listed(items: &[&str], max: usize) -> String {
    let mut text = items
        .iter()
        .take(max)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > max {
        text.push_str(&format!(" and {} more", items.len() - max));
    }
    text
}

impl crate::model::Source {
    /// The triggers in force: the listed ones, or when there are none the
    /// old behaviour, pushes to `branch` ([`Trigger::branch`]).
    pub fn effective_triggers(&self) -> Vec<Trigger> {
        if self.triggers.is_empty() {
            vec![Trigger::branch(&self.branch)]
        } else {
            self.triggers.clone()
        }
    }

    /// Index (into [`Self::effective_triggers`]) of the first trigger that
    /// `ev` matches, or a one-line reason why none does.
    ///
    /// A trigger matches when it filters `ev.kind` and the name passes that
    /// filter; for a branch trigger with `paths` and known changes, at
    /// least one changed path must pass `paths` too (a push that changed no
    /// files passes no `paths` filter). Unknown changes skip `paths`.
    pub fn trigger_for(&self, ev: &GitRefEvent<'_>) -> Result<usize, String> {
        let triggers = self.effective_triggers();
        let kind = ev.kind.as_str();
        let name = ev.name;
        // The most telling reason seen so far: changed paths beat an
        // exclusion, which beats "matches no include".
        let mut paths_reason: Option<String> = None;
        let mut excluded_reason: Option<String> = None;
        let mut includes: Vec<&str> = Vec::new();
        for (index, trigger) in triggers.iter().enumerate() {
            let Some(filter) = trigger.filter(ev.kind) else {
                continue;
            };
            includes.extend(filter.include.iter().map(String::as_str));
            if !filter.included(name) {
                continue;
            }
            if let Some(by) = filter.excluded_by(name) {
                excluded_reason
                    .get_or_insert_with(|| format!("{kind} `{name}` is excluded by {by}"));
                continue;
            }
            let (Some(paths), Some(changed), RefKind::Branch) =
                (&trigger.paths, ev.changed_paths, ev.kind)
            else {
                return Ok(index);
            };
            if changed.iter().any(|p| paths.matches(p)) {
                return Ok(index);
            }
            paths_reason.get_or_insert_with(|| {
                let globs = listed(
                    &paths.include.iter().map(String::as_str).collect::<Vec<_>>(),
                    MAX_LISTED_GLOBS,
                );
                if changed.is_empty() {
                    format!("the push changed no files, and paths ({globs}) needs one")
                } else {
                    let files: Vec<&str> = changed.iter().map(String::as_str).collect();
                    format!(
                        "no changed file matches paths ({globs}); changed: {}",
                        listed(&files, MAX_LISTED_PATHS)
                    )
                }
            });
        }
        if let Some(reason) = paths_reason.or(excluded_reason) {
            return Err(reason);
        }
        let key = match ev.kind {
            RefKind::Branch => "branches",
            RefKind::Tag => "tags",
        };
        if includes.is_empty() {
            return Err(format!(
                "{kind} `{name}` matches no trigger (no trigger has `{key}`)"
            ));
        }
        let mut seen = std::collections::HashSet::new();
        includes.retain(|g| seen.insert(*g));
        Err(format!(
            "{kind} `{name}` matches no trigger ({key}: {})",
            listed(&includes, MAX_LISTED_GLOBS)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Source;

    fn filter(include: &[&str], exclude: &[&str]) -> GlobFilter {
        GlobFilter {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn source(triggers: Vec<Trigger>) -> Source {
        Source {
            git: "/srv/git/p.git".to_string(),
            branch: "main".to_string(),
            poll_interval_ms: None,
            webhook_secret: None,
            triggers,
            upstreams: Vec::new(),
        }
    }

    fn branch(name: &str, changed: Option<&[String]>) -> Result<usize, String> {
        example().trigger_for(&GitRefEvent {
            kind: RefKind::Branch,
            name,
            changed_paths: changed,
        })
    }

    fn example() -> Source {
        source(vec![
            Trigger {
                branches: Some(filter(&["main", "release/*"], &["release/old*"])),
                paths: Some(filter(&["src/**", "Cargo.*"], &["docs/**"])),
                tags: None,
            },
            Trigger {
                tags: Some(filter(&["v*"], &[])),
                ..Trigger::default()
            },
        ])
    }

    fn paths(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_triggers_means_the_source_branch_only() {
        let s = source(Vec::new());
        assert_eq!(s.effective_triggers(), vec![Trigger::branch("main")]);
        let ev = |kind, name| GitRefEvent {
            kind,
            name,
            changed_paths: None,
        };
        assert_eq!(s.trigger_for(&ev(RefKind::Branch, "main")), Ok(0));
        assert_eq!(
            s.trigger_for(&ev(RefKind::Branch, "mainline")),
            Err("branch `mainline` matches no trigger (branches: main)".to_string())
        );
        assert_eq!(
            s.trigger_for(&ev(RefKind::Tag, "v1")),
            Err("tag `v1` matches no trigger (no trigger has `tags`)".to_string())
        );
        // Glob characters in a branch name are taken literally.
        let odd = Source {
            branch: "a{b".to_string(),
            ..source(Vec::new())
        };
        assert_eq!(odd.trigger_for(&ev(RefKind::Branch, "a{b")), Ok(0));
    }

    #[test]
    fn branches_with_include_exclude_and_segments() {
        assert_eq!(branch("main", None), Ok(0));
        assert_eq!(branch("release/1.4", None), Ok(0));
        assert_eq!(
            branch("release/old-2", None),
            Err("branch `release/old-2` is excluded by release/old*".to_string())
        );
        // `*` stays within one segment.
        assert_eq!(
            branch("release/1.4/hotfix", None),
            Err(
                "branch `release/1.4/hotfix` matches no trigger (branches: main, release/*)"
                    .to_string()
            )
        );
        assert_eq!(
            branch("feature/x", None),
            Err("branch `feature/x` matches no trigger (branches: main, release/*)".to_string())
        );
    }

    #[test]
    fn paths_filter_known_changes_only() {
        let changed = paths(&["src/a/b.rs", "README.md"]);
        assert_eq!(branch("main", Some(&changed)), Ok(0));
        assert_eq!(branch("main", Some(&paths(&["Cargo.lock"]))), Ok(0));
        // `*` does not cross `/`: a nested Cargo.toml is not `Cargo.*`.
        assert_eq!(
            branch("main", Some(&paths(&["sub/Cargo.toml"]))),
            Err("no changed file matches paths (src/**, Cargo.*); changed: sub/Cargo.toml".into())
        );
        // An excluded path does not count, even when included.
        let excluded = Source {
            triggers: vec![Trigger {
                branches: Some(filter(&["main"], &[])),
                paths: Some(filter(&["**"], &["docs/**"])),
                tags: None,
            }],
            ..source(Vec::new())
        };
        let run = |changed: &[String]| {
            excluded.trigger_for(&GitRefEvent {
                kind: RefKind::Branch,
                name: "main",
                changed_paths: Some(changed),
            })
        };
        assert!(run(&paths(&["docs/a.md"])).is_err());
        assert_eq!(run(&paths(&["docs/a.md", "x"])), Ok(0));
        // Unknown changes run; no changes at all do not pass a paths filter.
        assert_eq!(branch("main", None), Ok(0));
        assert_eq!(
            branch("main", Some(&[])),
            Err("the push changed no files, and paths (src/**, Cargo.*) needs one".into())
        );
        // At most five changed files are named.
        let many = paths(&["a", "b", "c", "d", "e", "f", "g"]);
        assert_eq!(
            branch("main", Some(&many)),
            Err(
                "no changed file matches paths (src/**, Cargo.*); changed: a, b, c, d, e and 2 more"
                    .into()
            )
        );
    }

    #[test]
    fn tags_match_tag_triggers_and_ignore_paths() {
        let s = example();
        let tag = |name| GitRefEvent {
            kind: RefKind::Tag,
            name,
            changed_paths: Some(&[]),
        };
        assert_eq!(s.trigger_for(&tag("v1.2")), Ok(1));
        assert_eq!(
            s.trigger_for(&tag("1.2")),
            Err("tag `1.2` matches no trigger (tags: v*)".into())
        );
        // A later trigger is found when an earlier one fails on paths.
        let two = source(vec![
            Trigger {
                branches: Some(filter(&["main"], &[])),
                paths: Some(filter(&["src/**"], &[])),
                tags: None,
            },
            Trigger {
                branches: Some(filter(&["ma*"], &[])),
                ..Trigger::default()
            },
        ]);
        let ev = GitRefEvent {
            kind: RefKind::Branch,
            name: "main",
            changed_paths: Some(&[]),
        };
        assert_eq!(two.trigger_for(&ev), Ok(1));
    }

    #[test]
    fn trigger_rules_without_positions() {
        assert_eq!(example().triggers[0].check(), Ok(()));
        assert_eq!(example().triggers[1].check(), Ok(()));
        assert_eq!(
            Trigger::default().check(),
            Err(NEEDS_BRANCHES_OR_TAGS.into())
        );
        let both = Trigger {
            branches: Some(filter(&["a"], &[])),
            tags: Some(filter(&["b"], &[])),
            paths: None,
        };
        assert_eq!(both.check(), Err(NOT_BOTH.into()));
        let tag_paths = Trigger {
            tags: Some(filter(&["b"], &[])),
            paths: Some(filter(&["src/**"], &[])),
            branches: None,
        };
        assert_eq!(tag_paths.check(), Err(PATHS_NEED_BRANCHES.into()));
        let empty = Trigger {
            branches: Some(filter(&[], &["x"])),
            ..Trigger::default()
        };
        assert_eq!(empty.check(), Err(format!("`branches`: {EMPTY_INCLUDE}")));
        let bad = Trigger {
            branches: Some(filter(&["["], &[])),
            ..Trigger::default()
        };
        assert!(bad.check().is_err_and(|e| e.contains("invalid glob")));
        assert!(check_glob(&"a".repeat(MAX_GLOB_LEN)).is_ok());
        assert!(check_glob(&"a".repeat(MAX_GLOB_LEN + 1)).is_err());
        assert!(check_glob("").is_err());
        assert!(check_glob("a\tb").is_err());
        assert!(check_glob_count(MAX_FILTER_GLOBS).is_ok());
        assert!(check_glob_count(MAX_FILTER_GLOBS + 1).is_err());
    }

    #[test]
    fn full_refs_split_into_kind_and_name() {
        assert_eq!(
            parse_ref("refs/heads/release/1"),
            Some((RefKind::Branch, "release/1"))
        );
        assert_eq!(parse_ref("refs/tags/v1"), Some((RefKind::Tag, "v1")));
        assert_eq!(parse_ref("refs/notes/x"), None);
        assert_eq!(parse_ref("refs/heads/"), None);
        assert_eq!(parse_ref("main"), None);
        let ev = GitRefEvent {
            kind: RefKind::Tag,
            name: "v1",
            changed_paths: None,
        };
        assert_eq!(ev.source_ref(), SourceRef::Tag("v1".into()));
    }

    #[test]
    fn serde_round_trip_and_defaults() {
        let s = example();
        let json = serde_json::to_string(&s).expect("serialize");
        let back: Source = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, s);
        let t: Trigger =
            serde_json::from_str(r#"{"tags":{"include":["v*"]}}"#).expect("deserialize");
        assert_eq!(t, example().triggers[1]);
    }
}
