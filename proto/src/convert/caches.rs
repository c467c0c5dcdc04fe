//! Build caches on the wire: an attempt's cache plans in its assignment,
//! and the entries an agent reports holding.

use ferry_pipeline::cache::{CacheEntry, CachePlan, KeyPart};

use crate::internal as wire;

fn parts_to_wire(parts: Vec<KeyPart>) -> Vec<wire::KeyPart> {
    parts
        .into_iter()
        .map(|p| match p {
            KeyPart::Text(text) => wire::KeyPart {
                text,
                hash_files: Vec::new(),
            },
            KeyPart::HashFiles(hash_files) => wire::KeyPart {
                text: String::new(),
                hash_files,
            },
        })
        .collect()
}

fn parts_from_wire(parts: &[wire::KeyPart]) -> Vec<KeyPart> {
    parts
        .iter()
        .map(|p| match p.hash_files.is_empty() {
            true => KeyPart::Text(p.text.clone()),
            false => KeyPart::HashFiles(p.hash_files.clone()),
        })
        .collect()
}

impl From<CacheEntry> for wire::CacheEntry {
    fn from(e: CacheEntry) -> wire::CacheEntry {
        wire::CacheEntry {
            scope: e.scope,
            key: e.key,
            digest: e.digest,
            size: e.size,
            holders: e.holders,
            created_at: e.created_at,
            revision: e.revision,
        }
    }
}

impl From<&wire::CacheEntry> for CacheEntry {
    fn from(e: &wire::CacheEntry) -> CacheEntry {
        CacheEntry {
            scope: e.scope.clone(),
            key: e.key.clone(),
            digest: e.digest.clone(),
            size: e.size,
            holders: e.holders.clone(),
            created_at: e.created_at,
            revision: e.revision.clone(),
        }
    }
}

/// A plan as the coordinator sends it (the agent's decision stays on the agent).
impl From<CachePlan> for wire::Cache {
    fn from(p: CachePlan) -> wire::Cache {
        wire::Cache {
            key: parts_to_wire(p.key),
            restore_keys: p
                .restore_keys
                .into_iter()
                .map(|parts| wire::RestoreKey {
                    parts: parts_to_wire(parts),
                })
                .collect(),
            paths: p.paths,
            scope: p.scope,
            read_scopes: p.read_scopes,
            entries: p.entries.into_iter().map(Into::into).collect(),
        }
    }
}

/// A plan as received; its bounds are checked on the agent before use.
impl From<&wire::Cache> for CachePlan {
    fn from(c: &wire::Cache) -> CachePlan {
        CachePlan {
            key: parts_from_wire(&c.key),
            restore_keys: c
                .restore_keys
                .iter()
                .map(|r| parts_from_wire(&r.parts))
                .collect(),
            paths: c.paths.clone(),
            scope: c.scope.clone(),
            read_scopes: c.read_scopes.clone(),
            entries: c.entries.iter().map(Into::into).collect(),
            resolved: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_survives_the_wire() {
        let plan = CachePlan {
            key: vec![
                KeyPart::Text("cargo-".into()),
                KeyPart::HashFiles(vec!["Cargo.lock".into()]),
            ],
            restore_keys: vec![vec![KeyPart::Text("cargo-".into())]],
            paths: vec!["target".into()],
            scope: "branch:main".into(),
            read_scopes: vec!["branch:main".into()],
            entries: vec![CacheEntry {
                scope: "branch:main".into(),
                key: "cargo-x".into(),
                digest: "sha256:00".into(),
                size: 3,
                holders: vec!["127.0.0.1:1".into()],
                created_at: 7,
                revision: "abc".into(),
            }],
            resolved: None,
        };
        let wire = wire::Cache::from(plan.clone());
        assert_eq!(CachePlan::from(&wire), plan);
    }
}
