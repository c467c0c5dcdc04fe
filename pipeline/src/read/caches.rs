//! Reads a build or test action's `cache:`: a list of at most
//! [`MAX_CACHES`] entries `{key, paths, restore_keys, scope}`, their key
//! templates (variables and `#{hash_files: ...}`), and the `#{...}`
//! references other than `hash_files` with where each is written, for the
//! checks every reference gets.

use crate::cache::{Cache, CacheScope, MAX_CACHE_PATHS, MAX_CACHES, MAX_KEY_LEN, MAX_RESTORE_KEYS};
use crate::model::SOURCE_ARTIFACT;
use crate::parse::Pos;
use crate::vars::Ref;
use crate::yaml::{Reader, Value, field, pos};

const CACHE_KEYS: &[&str] = &["key", "paths", "restore_keys", "scope"];

/// What `cache:` says.
pub(super) struct ReadCaches {
    pub caches: Vec<Cache>,
    /// References other than `hash_files`, where written.
    pub refs: Vec<(Ref, Pos)>,
    /// Where a `#{hash_files: ...}` is written: it needs the `source` input.
    pub hashes_at: Vec<Pos>,
}

impl Reader<'_> {
    pub(super) fn caches(&mut self, value: Value<'_>) -> ReadCaches {
        let mut out = ReadCaches {
            caches: Vec::new(),
            refs: Vec::new(),
            hashes_at: Vec::new(),
        };
        let Some(list) = self.sequence(value, "`cache`") else {
            return out;
        };
        if list.len() > MAX_CACHES {
            self.error(
                pos(list.span()),
                format!(
                    "`cache` lists {} entries; an action has at most {MAX_CACHES}",
                    list.len()
                ),
            );
        }
        for item in list.iter() {
            let Some(map) = self.mapping(Value::item(item), "each cache entry") else {
                continue;
            };
            self.check_keys(map, "cache entry", CACHE_KEYS);
            let mut cache = Cache {
                key: String::new(),
                restore_keys: Vec::new(),
                paths: Vec::new(),
                scope: CacheScope::Branch,
            };
            if let Some((key, at)) = self
                .required(map, "key", "cache entry")
                .and_then(|v| self.string(v, "`key`"))
            {
                self.key_template(&key, at, &mut out);
                cache.key = key;
            }
            if let Some(list) = self.required(map, "paths", "cache entry") {
                let (paths, empty) = self.paths(list, "`paths`", "each cache path");
                if let Some(at) = empty {
                    self.error(at, "a cache entry must list at least one path");
                }
                if paths.len() > MAX_CACHE_PATHS {
                    self.error(
                        list.pos(),
                        format!("a cache entry keeps at most {MAX_CACHE_PATHS} paths"),
                    );
                }
                cache.paths = paths;
            }
            if let Some(value) = field(map, "restore_keys")
                && let Some(list) = self.sequence(value, "`restore_keys`")
            {
                if list.len() > MAX_RESTORE_KEYS {
                    self.error(
                        pos(list.span()),
                        format!("`restore_keys` lists at most {MAX_RESTORE_KEYS} prefixes"),
                    );
                }
                for item in list.iter() {
                    if let Some((key, at)) = self.string(Value::item(item), "each restore key") {
                        self.key_template(&key, at, &mut out);
                        cache.restore_keys.push(key);
                    }
                }
            }
            if let Some((text, at)) = field(map, "scope").and_then(|v| self.string(v, "`scope`")) {
                match CacheScope::parse(&text) {
                    Some(scope) => cache.scope = scope,
                    None => self.error(
                        at,
                        format!("unknown cache `scope` {text:?}; expected branch or pipeline"),
                    ),
                }
            }
            out.caches.push(cache);
        }
        out
    }

    /// Checks a key template (or restore key) written at `at`: not empty,
    /// at most [`MAX_KEY_LEN`] bytes, references that read.
    fn key_template(&mut self, key: &str, at: Pos, out: &mut ReadCaches) {
        if key.trim().is_empty() {
            self.error(at, "a cache key must not be empty");
        } else if key.len() > MAX_KEY_LEN {
            self.error(
                at,
                format!("a cache key is at most {MAX_KEY_LEN} bytes, as written and resolved"),
            );
        } else if key.chars().any(char::is_control) {
            self.error(at, "a cache key must not contain control characters");
        }
        match crate::vars::references(key) {
            Ok(refs) => {
                for r in refs {
                    match r {
                        Ref::HashFiles(_) => out.hashes_at.push(at),
                        r => out.refs.push((r, at)),
                    }
                }
            }
            Err(e) => self.error(
                at,
                format!("{e}, or #{{hash_files: GLOB ...}} (paths in the repository, no braces)"),
            ),
        }
    }

    /// `#{hash_files: ...}` digests files of the repository: the action
    /// must take the `source` input.
    pub(super) fn check_cache_sources(&mut self, read: &ReadCaches, inputs: &[String]) {
        if inputs.iter().any(|i| i == SOURCE_ARTIFACT) {
            return;
        }
        for at in &read.hashes_at {
            self.error(
                *at,
                "#{hash_files: ...} digests files of the repository: the action needs the `source` input",
            );
        }
    }
}
