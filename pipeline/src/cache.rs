//! Build caches (`cache:` on a build or test action): directories an action
//! keeps from one run to the next, such as `target/` or a package manager's
//! download cache. Pure data and rules, no I/O: the entry as the pipeline
//! file says it, the key template (variables, and `#{hash_files: GLOB ...}`
//! which only the agent can fill in, from the source), and the scopes a run
//! writes and reads.
//!
//! Trust: a cache written by a run of one branch is read by runs of another
//! branch only through the default branch's scope (GitHub's rule) or when
//! the pipeline says `scope: pipeline`; a pipeline never reads another's.

use serde::{Deserialize, Serialize};

use crate::condition::SourceRef;
use crate::vars::Ref;

/// Most cache entries one action may have.
pub const MAX_CACHES: usize = 4;

/// Most paths one cache entry keeps.
pub const MAX_CACHE_PATHS: usize = 16;

/// Most `restore_keys` of one entry.
pub const MAX_RESTORE_KEYS: usize = 8;

/// Longest key, as written and once resolved, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// Most globs one `#{hash_files: ...}` names.
pub const MAX_HASH_GLOBS: usize = 16;

/// Longest glob in `#{hash_files: ...}`, in bytes.
pub const MAX_HASH_GLOB_LEN: usize = 256;

/// The scope of runs of a pipeline that share caches with no branch: `scope:
/// pipeline`.
pub const PIPELINE_SCOPE: &str = "pipeline";

/// One `cache:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cache {
    /// The key template: text, `#{...}` variables and `#{hash_files: ...}`.
    pub key: String,
    /// Key prefixes (templates too) tried, in order, when no entry has the
    /// key: the newest entry whose key starts with one is restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore_keys: Vec<String>,
    /// Paths relative to `/workspace`, kept together in one entry.
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "CacheScope::is_branch")]
    pub scope: CacheScope,
}

/// Which runs of the pipeline share an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheScope {
    /// Runs of the same branch (or tag); other branches also read the
    /// default branch's entries, never the other way round.
    #[default]
    Branch,
    /// Every run of the pipeline, whatever its branch.
    Pipeline,
}

impl CacheScope {
    pub const ALL: [CacheScope; 2] = [CacheScope::Branch, CacheScope::Pipeline];

    pub fn as_str(self) -> &'static str {
        match self {
            CacheScope::Branch => "branch",
            CacheScope::Pipeline => "pipeline",
        }
    }

    pub fn parse(text: &str) -> Option<CacheScope> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    fn is_branch(&self) -> bool {
        *self == CacheScope::Branch
    }

    /// The scope a run started from `source` (None: the pipeline's own
    /// branch, `default_branch`) writes its entries to: `branch:NAME`,
    /// `tag:NAME` or [`PIPELINE_SCOPE`].
    pub fn write_scope(self, source: Option<&SourceRef>, default_branch: &str) -> String {
        match (self, source) {
            (CacheScope::Pipeline, _) => PIPELINE_SCOPE.to_string(),
            (CacheScope::Branch, Some(SourceRef::Branch(b))) => format!("branch:{b}"),
            (CacheScope::Branch, Some(SourceRef::Tag(t))) => format!("tag:{t}"),
            (CacheScope::Branch, None) => format!("branch:{default_branch}"),
        }
    }

    /// The scopes such a run reads, in order: its own, then (for a run of
    /// another branch or a tag) the default branch's.
    pub fn read_scopes(self, source: Option<&SourceRef>, default_branch: &str) -> Vec<String> {
        let own = self.write_scope(source, default_branch);
        let default = format!("branch:{default_branch}");
        if self == CacheScope::Branch && own != default {
            vec![own, default]
        } else {
            vec![own]
        }
    }
}

/// A piece of a key once the coordinator filled in its variables: text, or
/// the globs whose files' digest the agent puts there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    Text(String),
    HashFiles(Vec<String>),
}

/// `template` with every reference but `#{hash_files: ...}` given
/// `value(reference)`; adjacent text joined. The first reference without a
/// value is the error.
pub fn key_parts(
    template: &str,
    value: impl Fn(&Ref) -> Option<String>,
) -> Result<Vec<KeyPart>, Ref> {
    let mut parts: Vec<KeyPart> = Vec::new();
    let push_text = |parts: &mut Vec<KeyPart>, text: String| match parts.last_mut() {
        Some(KeyPart::Text(t)) => t.push_str(&text),
        _ if text.is_empty() => {}
        _ => parts.push(KeyPart::Text(text)),
    };
    let Ok(pieces) = crate::vars::pieces(template) else {
        // The reader refused such a key; one stored before stays literal.
        return Ok(vec![KeyPart::Text(template.to_string())]);
    };
    for piece in pieces {
        match piece {
            crate::vars::Piece::Text(t) => push_text(&mut parts, t.to_string()),
            crate::vars::Piece::Ref(Ref::HashFiles(globs)) => parts.push(KeyPart::HashFiles(globs)),
            crate::vars::Piece::Ref(r) => match value(&r) {
                Some(v) => push_text(&mut parts, v),
                None => return Err(r),
            },
        }
    }
    Ok(parts)
}

/// The text a key's parts begin with, before any `#{hash_files: ...}`:
/// every key they can resolve to starts with it.
pub fn known_prefix(parts: &[KeyPart]) -> &str {
    match parts.first() {
        Some(KeyPart::Text(t)) => t,
        _ => "",
    }
}

/// The key `parts` resolve to, given the digest each `#{hash_files: ...}`
/// stands for (in order).
pub fn join_key(parts: &[KeyPart], mut digest: impl FnMut(&[String]) -> String) -> String {
    parts
        .iter()
        .map(|p| match p {
            KeyPart::Text(t) => t.clone(),
            KeyPart::HashFiles(globs) => digest(globs),
        })
        .collect()
}

/// Checks a resolved key (or restore key): 1 to [`MAX_KEY_LEN`] bytes, no
/// control characters.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a cache key must not be empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!(
            "cache key {:?}... is longer than {MAX_KEY_LEN} bytes",
            key.chars().take(40).collect::<String>()
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(format!("cache key {key:?} has control characters"));
    }
    Ok(())
}

/// Checks one glob of `#{hash_files: ...}`: a path in the repository (not
/// absolute, no `..`), no braces (they would end the reference), a valid glob.
pub fn check_hash_glob(glob: &str) -> Result<(), String> {
    if glob.len() > MAX_HASH_GLOB_LEN {
        return Err(format!(
            "hash_files glob is longer than {MAX_HASH_GLOB_LEN} bytes"
        ));
    }
    if glob.starts_with('/') || glob.split('/').any(|c| c == "..") {
        return Err(format!(
            "hash_files glob `{glob}` must be a path in the repository (not absolute, no `..`)"
        ));
    }
    if glob.contains(['{', '}']) || glob.chars().any(char::is_control) {
        return Err(format!(
            "hash_files glob {glob:?} must not contain braces or control characters"
        ));
    }
    crate::condition::glob(glob).map(|_| ())
}

/// Most entries a coordinator names to an agent for one `cache:` entry.
pub const MAX_CANDIDATES: usize = 64;

/// A saved entry: one tar of its paths, held by some agents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheEntry {
    pub scope: String,
    pub key: String,
    pub digest: String,
    pub size: u64,
    /// Where its holders serve blobs (`host:port`).
    pub holders: Vec<String>,
    /// When it was saved, in milliseconds since the epoch.
    pub created_at: i64,
    /// The commit of the run that saved it ("": not known).
    pub revision: String,
}

/// A modification time older than any build: what the files of the
/// `source` input that did not change since a restored entry's commit get.
pub const UNCHANGED_MTIME: u64 = 315_576_000;

/// The modification times of an action's `source` files when it has
/// caches, so that build tools that compare times (cargo, make) rebuild
/// exactly what changed since the restored entry was built: `git archive`
/// gives every file the commit's time, which can be older than the
/// entry's outputs (a commit made before, pushed after) or newer for
/// every file (a new commit): stale builds, or full ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceTimes {
    /// These paths (changed since the restored entries' commits) at `now`,
    /// every other file at [`UNCHANGED_MTIME`].
    Changed {
        paths: std::collections::BTreeSet<String>,
        now: u64,
    },
    /// Every file at `now`: what changed is not known.
    All { now: u64 },
}

impl SourceTimes {
    /// The time file `path` (in the repository) gets.
    pub fn mtime(&self, path: &str) -> u64 {
        match self {
            SourceTimes::Changed { paths, now } if paths.contains(path) => *now,
            SourceTimes::Changed { .. } => UNCHANGED_MTIME,
            SourceTimes::All { now } => *now,
        }
    }
}

/// One `cache:` entry of an attempt: what the coordinator sends (the key
/// with its variables filled in, the scopes, the candidate entries) and
/// what the agent then decides ([`Resolved`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CachePlan {
    pub key: Vec<KeyPart>,
    pub restore_keys: Vec<Vec<KeyPart>>,
    pub paths: Vec<String>,
    /// Where a new entry goes.
    pub scope: String,
    /// What is read, in order.
    pub read_scopes: Vec<String>,
    /// Entries of the read scopes that may match, newest first.
    pub entries: Vec<CacheEntry>,
    /// Set by the agent before the attempt runs; None: the cache is left
    /// out (its key could not be made).
    pub resolved: Option<Resolved>,
}

/// The agent's decision for one cache of an attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The key, with its files' digests.
    pub key: String,
    /// The entry restored before the commands (its blob in the agent's
    /// cache store), if any.
    pub restore: Option<CacheEntry>,
    /// Whether the paths are saved under `key` after success: no entry had
    /// the key exactly.
    pub save: bool,
}

impl CachePlan {
    /// The plan for `cache` in a run whose references resolved to
    /// `resolved` (`ActionRun::resolved`), started from `source` of a
    /// pipeline whose branch is `default_branch`; without entries, which
    /// the coordinator adds. None when a reference has no value.
    pub fn new(
        cache: &Cache,
        resolved: &std::collections::BTreeMap<String, String>,
        source: Option<&SourceRef>,
        default_branch: &str,
    ) -> Option<CachePlan> {
        let value = |r: &Ref| resolved.get(&r.key()).cloned();
        Some(CachePlan {
            key: key_parts(&cache.key, value).ok()?,
            restore_keys: cache
                .restore_keys
                .iter()
                .map(|k| key_parts(k, value))
                .collect::<Result<_, _>>()
                .ok()?,
            paths: cache.paths.clone(),
            scope: cache.scope.write_scope(source, default_branch),
            read_scopes: cache.scope.read_scopes(source, default_branch),
            entries: Vec::new(),
            resolved: None,
        })
    }

    /// The prefixes every matching entry's key starts with (the key's and
    /// each restore key's text before any `hash_files`).
    pub fn known_prefixes(&self) -> Vec<&str> {
        std::iter::once(&self.key)
            .chain(&self.restore_keys)
            .map(|p| known_prefix(p))
            .collect()
    }

    fn in_scope<'a>(&'a self, scope: &'a str) -> impl Iterator<Item = &'a CacheEntry> + 'a {
        self.entries.iter().filter(move |e| e.scope == scope)
    }

    /// Decides for the resolved `key` and restore prefixes: the entry with
    /// exactly `key` in the first read scope that has one; else, for each
    /// prefix in order and each scope in order, the newest entry whose key
    /// starts with it. A new entry is saved unless the key matched exactly.
    pub fn decide(&self, key: String, prefixes: &[String]) -> Resolved {
        let exact = self
            .read_scopes
            .iter()
            .find_map(|scope| self.in_scope(scope).find(|e| e.key == key));
        if let Some(entry) = exact {
            return Resolved {
                key,
                restore: Some(entry.clone()),
                save: false,
            };
        }
        let partial = prefixes.iter().find_map(|prefix| {
            self.read_scopes.iter().find_map(|scope| {
                self.in_scope(scope)
                    .filter(|e| e.key.starts_with(prefix.as_str()))
                    .max_by_key(|e| e.created_at)
            })
        });
        Resolved {
            key,
            restore: partial.cloned(),
            save: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_read_their_own_scope_then_the_default_branch() {
        let feature = SourceRef::Branch("feature/x".into());
        assert_eq!(
            CacheScope::Branch.read_scopes(Some(&feature), "main"),
            ["branch:feature/x", "branch:main"]
        );
        assert_eq!(
            CacheScope::Branch.write_scope(Some(&feature), "main"),
            "branch:feature/x"
        );
        // The default branch reads only its own: a feature branch's entries
        // never reach it.
        assert_eq!(
            CacheScope::Branch.read_scopes(None, "main"),
            ["branch:main"]
        );
        let main = SourceRef::Branch("main".into());
        assert_eq!(
            CacheScope::Branch.read_scopes(Some(&main), "main"),
            ["branch:main"]
        );
        let tag = SourceRef::Tag("v1".into());
        assert_eq!(
            CacheScope::Branch.read_scopes(Some(&tag), "main"),
            ["tag:v1", "branch:main"]
        );
        assert_eq!(
            CacheScope::Pipeline.read_scopes(Some(&feature), "main"),
            [PIPELINE_SCOPE]
        );
    }

    #[test]
    fn keys_keep_hash_files_for_the_agent_and_fill_in_variables() {
        let parts = key_parts(
            "cargo-#{variables.TOOLCHAIN}-#{hash_files: Cargo.lock **/Cargo.toml}-x",
            |r| (r.key() == "variables.TOOLCHAIN").then(|| "1.85".to_string()),
        )
        .expect("all variables have values");
        assert_eq!(
            parts,
            vec![
                KeyPart::Text("cargo-1.85-".into()),
                KeyPart::HashFiles(vec!["Cargo.lock".into(), "**/Cargo.toml".into()]),
                KeyPart::Text("-x".into()),
            ]
        );
        assert_eq!(known_prefix(&parts), "cargo-1.85-");
        assert_eq!(join_key(&parts, |_| "abc".into()), "cargo-1.85-abc-x");
        let missing = key_parts("k-#{variables.NOPE}", |_| None);
        assert_eq!(missing, Err(Ref::Pipeline("NOPE".into())));
        // A value that looks like a reference is text, never read again.
        let parts =
            key_parts("#{variables.V}", |_| Some("#{hash_files: x}".into())).expect("a value");
        assert_eq!(parts, vec![KeyPart::Text("#{hash_files: x}".into())]);
    }

    #[test]
    fn only_changed_files_look_newer_than_a_restored_entry() {
        let times = SourceTimes::Changed {
            paths: ["src/main.rs".to_string()].into(),
            now: 2_000_000_000,
        };
        assert_eq!(times.mtime("src/main.rs"), 2_000_000_000);
        assert_eq!(times.mtime("vendor/serde/src/lib.rs"), UNCHANGED_MTIME);
        assert_eq!(SourceTimes::All { now: 7 }.mtime("x"), 7);
    }

    fn entry(scope: &str, key: &str, created_at: i64) -> CacheEntry {
        CacheEntry {
            scope: scope.into(),
            key: key.into(),
            digest: format!("sha256:{key}"),
            created_at,
            ..Default::default()
        }
    }

    #[test]
    fn an_exact_key_wins_then_restore_prefixes_own_scope_first() {
        let plan = CachePlan {
            read_scopes: vec!["branch:pr".into(), "branch:main".into()],
            entries: vec![
                entry("branch:main", "cargo-aaa", 1),
                entry("branch:main", "cargo-bbb", 5),
                entry("branch:pr", "cargo-ccc", 2),
                entry("branch:other", "cargo-ddd", 9),
            ],
            ..Default::default()
        };
        let exact = plan.decide("cargo-aaa".into(), &["cargo-".into()]);
        assert_eq!(exact.restore.map(|e| e.key), Some("cargo-aaa".into()));
        assert!(!exact.save);
        // No exact match: the own scope's newest under the prefix, though
        // main has a newer one; another branch's never.
        let partial = plan.decide("cargo-zzz".into(), &["cargo-".into()]);
        assert_eq!(partial.restore.map(|e| e.key), Some("cargo-ccc".into()));
        assert!(partial.save);
        let none = plan.decide("npm-x".into(), &["npm-".into()]);
        assert_eq!(none.restore, None);
        assert!(none.save);
        // Another branch's entry with the very key is not read either.
        let other = plan.decide("cargo-ddd".into(), &[]);
        assert_eq!(other.restore, None);
    }

    #[test]
    fn hash_globs_stay_in_the_repository() {
        assert!(check_hash_glob("Cargo.lock").is_ok());
        assert!(check_hash_glob("**/package-lock.json").is_ok());
        assert!(check_hash_glob("/etc/passwd").is_err());
        assert!(check_hash_glob("../x").is_err());
        assert!(check_hash_glob("a/{b,c}").is_err());
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(check_key("a\nb").is_err());
        assert!(check_key("cargo-abc").is_ok());
    }
}
