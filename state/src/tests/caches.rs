//! Build cache entries: written only where the run may write, first writer
//! wins, held copies recorded, dropped and removed.

use super::*;
use crate::caches::CacheReport;
use crate::testing::applied;

const CACHED: &str = r#"
name: demo
source: {git: /tmp/demo.git}
execution_mode: parallel
stages:
  - name: build
    actions:
      - name: a
        type: build
        image: img
        inputs: [source]
        commands: [true]
        cache:
          - {key: "cargo-#{hash_files: Cargo.lock}", paths: [target], restore_keys: [cargo-]}
"#;

fn started(id: &str, branch: Option<&str>) -> ClusterState {
    let mut s = applied(CACHED);
    crate::testing::enroll_a1(&mut s);
    start(&mut s, id, branch, 4);
    s
}

fn start(s: &mut ClusterState, id: &str, branch: Option<&str>, at: i64) {
    let mut cmd = start_demo(id, at);
    if let Command::StartExecution { source, .. } = &mut cmd {
        *source = branch.map(|b| ferry_pipeline::condition::SourceRef::Branch(b.into()));
    }
    s.apply(cmd).unwrap_or_else(|e| panic!("{e}"));
}

fn report(scope: &str, key: &str, digest: char) -> CacheReport {
    CacheReport {
        scope: scope.into(),
        key: key.into(),
        digest: format!("sha256:{}", digest.to_string().repeat(64)),
        size: 10,
    }
}

fn finish_with(epoch: u64, success: bool, caches: Vec<CacheReport>) -> Command {
    let mut done = finish(epoch, "a1", success);
    if let Command::FinishAttempt {
        caches: c, outputs, ..
    } = &mut done
    {
        outputs.clear();
        *c = caches;
    }
    done
}

fn keys(s: &ClusterState) -> Vec<(String, String, String)> {
    s.caches
        .get("demo")
        .into_iter()
        .flat_map(|scopes| scopes.iter())
        .flat_map(|(scope, keys)| {
            keys.iter()
                .map(move |(k, r)| (scope.clone(), k.clone(), r.digest.clone()))
        })
        .collect()
}

#[test]
fn a_run_writes_only_its_own_scope_under_its_own_prefix_and_only_after_success() {
    let mut s = started("e1", Some("feature"));
    let epoch = assign(&mut s, "e1", 0, 5);
    let plans = s
        .attempts
        .get(&epoch)
        .and_then(|loc| Some((s.executions.get(&loc.execution)?, loc)))
        .map(|(e, loc)| s.cache_plans(e, loc))
        .unwrap_or_default();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].scope, "branch:feature");
    assert_eq!(plans[0].read_scopes, ["branch:feature", "branch:main"]);
    s.apply(finish_with(
        epoch,
        true,
        vec![
            // Into the default branch's scope: a feature branch may not.
            report("branch:main", "cargo-1", 'a'),
            // Not the cache's key.
            report("branch:feature", "npm-1", 'b'),
            // Not a digest.
            CacheReport {
                digest: "sha256:../x".into(),
                ..report("branch:feature", "cargo-3", 'c')
            },
            report("branch:feature", "cargo-2", 'd'),
        ],
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let d = format!("sha256:{}", "d".repeat(64));
    assert_eq!(
        keys(&s),
        vec![("branch:feature".into(), "cargo-2".into(), d.clone())]
    );

    // A failed run saves nothing.
    start(&mut s, "e2", Some("feature"), 20);
    let epoch = assign(&mut s, "e2", 0, 21);
    s.apply(finish_with(
        epoch,
        false,
        vec![report("branch:feature", "cargo-9", 'e')],
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(keys(&s).len(), 1);

    // A second writer of the same key does not replace the first; a copy
    // of the same blob is recorded as held.
    start(&mut s, "e3", Some("feature"), 30);
    let epoch = assign(&mut s, "e3", 0, 31);
    s.apply(finish_with(
        epoch,
        true,
        vec![report("branch:feature", "cargo-2", 'f')],
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(keys(&s)[0].2, d);

    // The entry is named to the next run of the branch, not to main's.
    start(&mut s, "e4", None, 40);
    let epoch = assign(&mut s, "e4", 0, 41);
    let loc = s.attempts.get(&epoch).cloned();
    let plans = loc
        .and_then(|loc| Some(s.cache_plans(s.executions.get(&loc.execution)?, &loc)))
        .unwrap_or_default();
    assert_eq!(plans[0].read_scopes, ["branch:main"]);
    assert!(plans[0].entries.is_empty());

    // Dropped by its only holder: forgotten.
    s.apply(Command::CachesDropped {
        agent: "a1".into(),
        digests: vec![d],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(s.caches.is_empty());
}

#[test]
fn removing_entries_needs_an_operator_and_forgets_them() {
    let mut s = started("e1", None);
    let epoch = assign(&mut s, "e1", 0, 5);
    s.apply(finish_with(
        epoch,
        true,
        vec![report("branch:main", "cargo-1", 'a')],
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(keys(&s).len(), 1);
    let remove = |by: &str| Command::RemoveCaches {
        pipeline: "demo".into(),
        scope: "branch:main".into(),
        key_prefix: "cargo-".into(),
        by: By::operator(by),
    };
    assert!(matches!(
        s.apply(remove("stranger")),
        Err(Rejection::PermissionDenied(..))
    ));
    assert_eq!(keys(&s).len(), 1);
    s.apply(remove("root")).unwrap_or_else(|e| panic!("{e}"));
    assert!(keys(&s).is_empty());
    // Its holder is to delete the blob until it says it did.
    let digest = format!("sha256:{}", "a".repeat(64));
    assert_eq!(
        s.cache_forget.get("a1"),
        Some(&BTreeSet::from([digest.clone()]))
    );
    s.apply(Command::CachesDropped {
        agent: "a1".into(),
        digests: vec![digest],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(s.cache_forget.is_empty());
}
