//! Generated hostile YAML for all three readers, on stable Rust (the fuzz
//! targets in `fuzz/` need nightly): random nesting, indentation, flows,
//! long scalars and stray bytes, alone or spliced into valid documents.
//! Every reader must return `Ok` or positioned diagnostics, never panic or
//! overflow a worker-sized stack.
//!
//! The run is fixed and bounded: seed `FERRY_PROPTEST_SEED` (default
//! [`DEFAULT_SEED`]) and `FERRY_PROPTEST_CASES` cases per property (default
//! [`DEFAULT_CASES`]); `scripts/fuzz` raises both when nightly is missing.

use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

use crate::hostile_tests::{READERS, on_worker_stack};

/// The seed of the default run.
const DEFAULT_SEED: u64 = 0x00fe_5527;

/// Cases per property in the default run (under 10 s in a debug build).
const DEFAULT_CASES: u32 = 256;

/// Valid documents of each kind, shared with the fuzz targets' seeds.
const SAMPLES: [&str; 5] = [
    include_str!("../../fuzz/seeds/pipeline_yaml/build-test-approve.yml"),
    include_str!("../../fuzz/seeds/pipeline_yaml/deploy.yml"),
    include_str!("../../fuzz/seeds/environment_yaml/ssh-and-docker.yml"),
    include_str!("../../fuzz/seeds/revision_spec/hooks.yml"),
    include_str!("../../fuzz/seeds/revision_spec/docker.yml"),
];

/// A valid pipeline with triggers, a schedule and notifications (not yet
/// among the fuzz targets' seeds), mutated like the samples.
const AUTOMATION_SAMPLE: &str = "\
name: nightly
source:
  git: https://example.com/org/repo.git
  webhook_secret: github-hook
  triggers:
    - branches: {include: [main, \"release/*\"], exclude: [\"release/old*\"]}
      paths: {include: [\"src/**\"]}
    - tags: {include: [\"v*\"]}
schedule: {cron: \"0 3 * * 1-5\", timezone: Europe/Berlin}
notifications:
  - name: team-chat
    url: https://hooks.example.com/services/x
    secret: chat-hook
    format: slack
    events: [execution.failed, \"approval.*\"]
stages:
  - name: gate
    actions:
      - {name: ok, type: approval}
";

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(crate) fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: env_number("FERRY_PROPTEST_CASES", DEFAULT_CASES),
        rng_seed: RngSeed::Fixed(env_number("FERRY_PROPTEST_SEED", DEFAULT_SEED)),
        // No files written: a failure prints its input, which becomes a
        // regression test in `hostile_tests`.
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    })
}

/// One piece of YAML-ish text.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        // Structure and the YAML features the readers refuse.
        select(vec![
            "- ",
            "? ",
            ": ",
            ":",
            "[",
            "]",
            "{",
            "}",
            ", ",
            "\n",
            "  ",
            " ",
            "\t",
            "#c\n",
            "---\n",
            "...\n",
            "|\n",
            ">-\n",
            "\"",
            "'",
            "&a ",
            "*a ",
            "!t ",
            "!!str ",
            "%YAML 1.2\n",
            "\\",
            "\u{feff}",
            "\r\n",
            "\u{85}",
            "<<: ",
        ])
        .prop_map(str::to_string),
        // Keys and values the readers know, and numbers at the edges.
        select(vec![
            "name",
            "source",
            "git",
            "stages",
            "actions",
            "type",
            "approval",
            "build",
            "deploy",
            "timeout",
            "poll_interval",
            "triggers",
            "branches",
            "tags",
            "paths",
            "include",
            "exclude",
            "webhook_secret",
            "schedule",
            "cron",
            "timezone",
            "notifications",
            "url",
            "events",
            "*/2 * * * * *",
            "0 0 30 2 *",
            "approval.*",
            "**",
            "run_order",
            "retries",
            "keep_releases",
            "hosts",
            "ssh",
            "docker",
            "hooks",
            "files",
            "ports",
            "365d",
            "366d",
            "300000000y",
            "-1",
            "0",
            "99999999999999999999999999999999999999999",
            "1.5",
            "true",
            "~",
            "null",
            "25%",
            "0x10",
            "1e9",
        ])
        .prop_map(str::to_string),
        // Long scalars.
        (1usize..20_000).prop_map(|n| "x".repeat(n)),
        // Random text and random bytes (invalid UTF-8 replaced, as a reader sees it).
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        // Deep nesting of one kind.
        (
            select(vec!["- ", "? ", "[", "{", "{a: ", "[{a: ", "-\n", "? - "]),
            1usize..3_000
        )
            .prop_map(|(open, n)| open.repeat(n)),
        // Deep nesting, one level per line, indented one more space each time.
        (1usize..300).prop_map(|n| {
            (0..n)
                .map(|i| format!("{}- ", " ".repeat(i)))
                .collect::<Vec<_>>()
                .join("\n")
        }),
        // Random indentation.
        (0usize..200).prop_map(|n| format!("\n{}", " ".repeat(n))),
    ]
}

/// A document of up to 40 fragments, usually starting as a mapping.
fn document() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(fragment(), 0..40)).prop_map(|(key, parts)| {
        let mut text = if key {
            "a:\n".to_string()
        } else {
            String::new()
        };
        text.push_str(&parts.concat());
        text
    })
}

/// A valid sample with up to 6 fragments spliced in at random places.
fn mutated_sample() -> impl Strategy<Value = String> {
    (
        select(
            SAMPLES
                .into_iter()
                .chain([AUTOMATION_SAMPLE])
                .collect::<Vec<_>>(),
        ),
        prop::collection::vec((any::<Index>(), fragment()), 1..6),
    )
        .prop_map(|(sample, edits)| {
            let mut text = sample.to_string();
            for (at, piece) in edits {
                let boundaries: Vec<usize> = text
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain([text.len()])
                    .collect();
                text.insert_str(*at.get(&boundaries), &piece);
            }
            text
        })
}

/// Every reader on `text`, each on a worker-sized stack: no panic, and
/// every diagnostic has a position.
fn all_readers_cope(text: &str) -> Result<(), TestCaseError> {
    for (name, read) in READERS {
        if let Err(diags) = on_worker_stack(read, text.to_string()) {
            prop_assert!(!diags.is_empty(), "{name}: an error without a diagnostic");
            for d in &diags {
                prop_assert!(d.line >= 1 && d.column >= 1, "{name}: unpositioned {d}");
            }
        }
    }
    Ok(())
}

#[test]
fn proptest_random_yaml_never_breaks_a_reader() {
    let result = runner().run(&document(), |text| all_readers_cope(&text));
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn proptest_mutated_documents_never_break_a_reader() {
    let result = runner().run(&mutated_sample(), |text| all_readers_cope(&text));
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn the_fuzz_seeds_are_valid_documents() {
    let [pipeline, deploy, environment, hooks, docker] = SAMPLES;
    for text in [pipeline, deploy, AUTOMATION_SAMPLE] {
        crate::parse(text).expect("a valid pipeline seed");
    }
    crate::parse_environment(environment).expect("a valid environment seed");
    for text in [hooks, docker] {
        crate::parse_revision_spec(text).expect("a valid revision spec seed");
    }
    // The raft_command target's seed: a pipeline as Raft commands carry it.
    let json = include_str!("../../fuzz/seeds/raft_command/pipeline.json");
    let decoded: crate::Pipeline = serde_json::from_str(json).expect("a pipeline in JSON");
    assert_eq!(decoded.stages[1].actions[1].name, "ship");
}

/// Text that looks like a URL some of the time: a scheme, a host, a port,
/// a path, each sometimes broken, with a marker that stands for a secret.
fn url_like() -> impl Strategy<Value = String> {
    let scheme = select(vec![
        "https://",
        "http://",
        "ftp://",
        "hunter2:",
        "",
        "http:/",
        "https:///",
    ]);
    let host = select(vec![
        "hooks.example.com",
        "hunter2.example",
        "[::1]",
        "[hunter2]",
        "127.0.0.1",
        "",
        "exa mple",
        "xn--",
    ]);
    let port = select(vec!["", ":8080", ":99999999", ":hunter2"]);
    (scheme, host, port, "[ -~]{0,24}")
        .prop_map(|(s, h, p, path)| format!("{s}{h}{p}/{path}hunter2"))
}

#[test]
fn proptest_notify_url_errors_quote_nothing_of_the_url() {
    // The URL may be a secret's value (`url_secret`): its check's errors are
    // stored and shown to viewers, so they never hold a part of it.
    let result = runner().run(&url_like(), |url| {
        if let Err(message) = crate::notify::check_notify_url(&url) {
            prop_assert!(!message.contains("hunter2"), "{url:?}: {message}");
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
