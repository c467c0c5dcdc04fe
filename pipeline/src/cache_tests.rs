//! `cache:` from the pipeline file: a good file read into the model, and
//! every bad input refused with its LINE:COL.

use crate::cache::{Cache, CacheScope};
use crate::parse;
use crate::test_support::{doc, expect_errors, expect_ok};

/// A pipeline whose one build action (`compile`, with `inputs`) has
/// `cache` as given, indented under the action (its first line is 11).
fn with_cache(inputs: &str, cache: &[&str]) -> String {
    let mut lines = vec![
        "name: hello".to_string(),
        "source: {git: /srv/git/hello.git}".into(),
        "variables: {TOOLCHAIN: \"1.85\"}".into(),
        "stages:".into(),
        "  - name: build".into(),
        "    actions:".into(),
        "      - name: compile".into(),
        "        type: build".into(),
        "        image: rust".into(),
        format!("        inputs: {inputs}"),
        "        commands: [cargo build]".into(),
        "        cache:".into(),
    ];
    lines.extend(cache.iter().map(|l| format!("          {l}")));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    doc(&refs)
}

#[test]
fn a_cache_is_read_with_its_key_template_paths_and_scope() {
    let p = expect_ok(parse(&with_cache(
        "[source]",
        &[
            "- key: \"cargo-#{variables.TOOLCHAIN}-#{hash_files: Cargo.lock **/Cargo.toml}\"",
            "  paths: [target, cargo-home/registry]",
            "  restore_keys: [\"cargo-#{variables.TOOLCHAIN}-\", cargo-]",
            "- {key: npm, paths: [node_modules], scope: pipeline}",
        ],
    )));
    let action = &p.stages[0].actions[0];
    assert_eq!(
        action.caches,
        vec![
            Cache {
                key: "cargo-#{variables.TOOLCHAIN}-#{hash_files: Cargo.lock **/Cargo.toml}".into(),
                restore_keys: vec!["cargo-#{variables.TOOLCHAIN}-".into(), "cargo-".into()],
                paths: vec!["target".into(), "cargo-home/registry".into()],
                scope: CacheScope::Branch,
            },
            Cache {
                key: "npm".into(),
                restore_keys: Vec::new(),
                paths: vec!["node_modules".into()],
                scope: CacheScope::Pipeline,
            },
        ]
    );
    assert_eq!(action.needs_version(), (0, 2));
}

#[test]
fn bad_caches_are_refused_where_they_are_written() {
    let errors = |inputs: &str, cache: &[&str]| expect_errors(parse(&with_cache(inputs, cache)));
    // hash_files reads the repository: the action must take `source`.
    let e = errors(
        "[]",
        &["- {key: \"k-#{hash_files: Cargo.lock}\", paths: [target]}"],
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("13:") && m.contains("`source` input")),
        "{e:?}"
    );
    let e = errors(
        "[source]",
        &[
            "- {key: \"k-#{hash_files: ../etc/passwd}\", paths: [/target]}",
            "- {key: \"\", paths: [], scope: everyone}",
            "- {key: \"k-#{variables.NOPE}\", paths: [t], colour: blue}",
        ],
    );
    let expect = [
        ("13:", "hash_files: GLOB"),
        ("13:", "relative to the workspace"),
        ("14:", "must not be empty"),
        ("14:", "at least one path"),
        ("14:", "unknown cache `scope`"),
        ("15:", "unknown key `colour`"),
        ("15:", "declares no variable `NOPE`"),
    ];
    for (at, text) in expect {
        assert!(
            e.iter().any(|m| m.starts_with(at) && m.contains(text)),
            "no {at} {text:?} in {e:#?}"
        );
    }
    // Five entries: at most four.
    let five: Vec<String> = (0..5)
        .map(|i| format!("- {{key: k{i}, paths: [t]}}"))
        .collect();
    let five: Vec<&str> = five.iter().map(String::as_str).collect();
    let e = errors("[source]", &five);
    assert!(e.iter().any(|m| m.contains("at most 4")), "{e:?}");
}

#[test]
fn hash_files_is_refused_outside_a_cache_key() {
    let text = doc(&[
        "name: hello",
        "source: {git: /srv/git/hello.git}",
        "stages:",
        "  - name: build",
        "    actions:",
        "      - name: compile",
        "        type: build",
        "        image: rust",
        "        inputs: [source]",
        "        commands: [\"echo #{hash_files: Cargo.lock}\"]",
    ]);
    let e = expect_errors(parse(&text));
    assert!(
        e.iter()
            .any(|m| m.starts_with("10:") && m.contains("only for a cache")),
        "{e:?}"
    );
}
