//! Hostile input for all three readers (pipeline, environment, revision
//! spec): deep nesting, oversized text and alias bombs. Each case runs on a
//! thread with a 2 MiB stack, the size of a tokio worker's, so a reader
//! whose recursion depends on the input aborts the test process instead of
//! passing by luck of a large main-thread stack.

use crate::limits::{
    MAX_ENVIRONMENT_BYTES, MAX_NESTING_DEPTH, MAX_PIPELINE_BYTES, MAX_REVISION_SPEC_BYTES,
};
use crate::{Diagnostic, parse, parse_environment, parse_revision_spec};

/// The stack of a tokio worker thread.
pub(crate) const WORKER_STACK: usize = 2 << 20;

/// A reader reduced to "which diagnostics, if any".
pub(crate) type ReadFn = fn(&str) -> Result<(), Vec<Diagnostic>>;

/// The three readers, by the name tests print.
pub(crate) const READERS: [(&str, ReadFn); 3] = [
    ("pipeline", |t| parse(t).map(drop)),
    ("environment", |t| parse_environment(t).map(drop)),
    ("revision spec", |t| parse_revision_spec(t).map(drop)),
];

/// Runs `read` on `text` on a thread with a worker-sized stack.
pub(crate) fn on_worker_stack(read: ReadFn, text: String) -> Result<(), Vec<Diagnostic>> {
    std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(move || read(&text))
        .expect("spawn a reader thread")
        .join()
        .unwrap_or_else(|_| panic!("the reader panicked"))
}

/// The single diagnostic every reader must give for `text`, as "LINE:COL: message".
fn only_error(read: ReadFn, text: &str) -> String {
    match on_worker_stack(read, text.to_string()) {
        Ok(()) => panic!("hostile input was accepted"),
        Err(diags) => {
            assert_eq!(diags.len(), 1, "{diags:?}");
            diags[0].to_string()
        }
    }
}

fn nesting_message() -> String {
    format!("nesting deeper than {MAX_NESTING_DEPTH} levels")
}

/// `a:` and then one line holding `levels` block sequences: `- - - ... x`.
fn block_sequences(levels: usize) -> String {
    format!("a:\n{}x\n", "- ".repeat(levels))
}

/// `a: ` and then `levels` flow sequences: `[[[...]]]`.
fn flow_sequences(levels: usize) -> String {
    format!("a: {}{}\n", "[".repeat(levels), "]".repeat(levels))
}

/// `a:` and then `levels` explicit keys: `? ? ? ... x`; each is a mapping.
fn explicit_keys(levels: usize) -> String {
    format!("a:\n{}x\n", "? ".repeat(levels))
}

/// `a:` and then one block sequence per line, each indented one more space.
fn indented_sequences(levels: usize) -> String {
    let mut text = String::from("a:\n");
    for level in 0..levels {
        text.push_str(&" ".repeat(level));
        text.push_str("-\n");
    }
    text
}

/// Flow mappings inside block sequences: `- {a: - ...` is not YAML, so
/// this alternates `- ` and `{a: [` until the flow level would run out.
fn mixed(levels: usize) -> String {
    format!("a:\n{}{{b: [{{c: x}}]}}\n", "- ".repeat(levels))
}

#[test]
fn ten_kilobytes_of_nesting_is_refused_at_the_level_too_deep() {
    // The first collection deeper than the limit: the top-level mapping is
    // level 1 and each `- ` on line 2 (two columns wide) adds one.
    let column = 1 + 2 * (MAX_NESTING_DEPTH - 1);
    let expected_at = format!("2:{column}: {}", nesting_message());
    for (name, read) in READERS {
        let got = only_error(read, &block_sequences(5_000));
        assert!(got.starts_with(&expected_at), "{name}: {got}");
        for text in [
            explicit_keys(5_000),
            indented_sequences(140),
            mixed(5_000),
            flow_sequences(200),
        ] {
            assert!(text.len() > 300, "{name}: the input is meant to be large");
            let got = only_error(read, &text);
            assert!(got.contains(&nesting_message()), "{name}: {got}");
        }
    }
}

#[test]
fn a_megabyte_of_nesting_is_refused_without_a_crash() {
    for (name, read) in READERS {
        for text in [
            block_sequences(500_000),
            explicit_keys(500_000),
            mixed(499_990),
            flow_sequences(499_990),
        ] {
            assert!(text.len() > 999_000);
            let got = only_error(read, &text);
            // A revision spec of a megabyte is over its size limit; the
            // others are under it and stop at the nesting.
            let expected = if name == "revision spec" {
                "1:1: ferry-deploy.yml is"
            } else {
                "nesting deeper than"
            };
            assert!(got.contains(expected), "{name}: {got}");
        }
    }
}

#[test]
fn nesting_up_to_the_limit_is_read_normally() {
    // Exactly MAX_NESTING_DEPTH levels: no nesting error, only the
    // ordinary complaints about what the document contains.
    let text = block_sequences(MAX_NESTING_DEPTH - 1);
    for (name, read) in READERS {
        let diags = on_worker_stack(read, text.clone()).expect_err("`a` is no known key");
        assert!(
            diags
                .iter()
                .any(|d| d.message.starts_with("unknown key `a`")),
            "{name}: {diags:?}"
        );
        assert!(
            !diags.iter().any(|d| d.message.contains("nesting")),
            "{name}: {diags:?}"
        );
    }
}

#[test]
fn oversized_documents_are_refused_before_parsing() {
    let cases: [(ReadFn, usize, &str); 3] = [
        (READERS[0].1, MAX_PIPELINE_BYTES, "the pipeline file"),
        (READERS[1].1, MAX_ENVIRONMENT_BYTES, "the environment file"),
        (READERS[2].1, MAX_REVISION_SPEC_BYTES, "ferry-deploy.yml"),
    ];
    for (read, limit, what) in cases {
        // One byte over, as a long comment: valid YAML that would parse.
        let mut text = String::from("name: x\n#");
        text.push_str(&"c".repeat(limit - text.len()));
        text.push('\n');
        assert_eq!(text.len(), limit + 1);
        assert_eq!(
            only_error(read, &text),
            format!(
                "1:1: {what} is {} bytes; the limit is {limit} bytes",
                limit + 1
            )
        );
        // Two megabytes of nesting stop at the size, before any parsing.
        let got = only_error(read, &block_sequences(1 << 20));
        assert!(got.starts_with(&format!("1:1: {what} is ")), "{got}");
    }
}

#[test]
fn a_billion_laughs_is_refused_at_the_first_anchor() {
    let mut text = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names: Vec<char> = ('b'..='j').collect();
    let mut previous = 'a';
    for name in names {
        let refs = vec![format!("*{previous}"); 9].join(",");
        text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        previous = name;
    }
    for (name, read) in READERS {
        assert_eq!(
            only_error(read, &text),
            "1:7: YAML anchors and aliases are not supported",
            "{name}"
        );
    }
}

// ---- durations and numbers -----------------------------------------------------

/// A pipeline whose only stage holds an approval with `timeout` and a
/// deploy action with `deploy_lines` (each indented under the action).
fn pipeline_with(poll_interval: &str, timeout: &str, deploy_lines: &[&str]) -> String {
    let mut text = format!(
        "name: p\n\
         source:\n  git: file:///srv/git/p.git\n  poll_interval: {poll_interval}\n\
         stages:\n  - name: s\n    actions:\n\
         \x20     - name: gate\n        type: approval\n        timeout: {timeout}\n\
         \x20     - name: ship\n        type: deploy\n        run_order: 2\n\
         \x20       environment: prod\n        inputs: [source]\n"
    );
    for line in deploy_lines {
        text.push_str("        ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

fn pipeline_errors(text: &str) -> Vec<String> {
    match on_worker_stack(READERS[0].1, text.to_string()) {
        Ok(()) => panic!("accepted:\n{text}"),
        Err(diags) => diags.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_longest_durations_are_accepted() {
    let text = pipeline_with(
        "365d",
        "365d",
        &["hook_timeout: 8760h", "connect_timeout: 31536000s"],
    );
    let p = parse(&text).expect("a year is allowed");
    assert_eq!(p.source.poll_interval_ms, Some(crate::MAX_DURATION_MS));
    assert_eq!(p.stages[0].actions[0].timeout_ms, crate::MAX_DURATION_MS);
    let deploy = p.stages[0].actions[1].deploy.clone().expect("deploy");
    assert_eq!(deploy.hook_timeout_ms, crate::MAX_DURATION_MS);
    assert_eq!(deploy.connect_timeout_ms, crate::MAX_DURATION_MS);
}

#[test]
fn durations_past_the_limit_are_positioned_errors() {
    // 300000000 years is past i64::MAX milliseconds: the approval's deadline
    // used to wrap into the past, expiring the approval at once.
    let text = pipeline_with(
        "366d",
        "300000000y",
        &[
            "hook_timeout: 10000000000000ms",
            "connect_timeout: 99999999999999999999999d",
            "timeout: 365d 1ms",
        ],
    );
    let over = |line: usize, column: usize, text: &str| {
        format!("{line}:{column}: duration {text:?} is longer than the limit of 365 days")
    };
    let diags = pipeline_errors(&text);
    assert_eq!(diags.len(), 5, "{diags:#?}");
    assert_eq!(diags[0], over(4, 18, "366d"));
    assert_eq!(diags[1], over(10, 18, "300000000y"));
    assert_eq!(diags[2], over(16, 23, "10000000000000ms"));
    assert!(
        diags[3].starts_with("17:26: invalid duration \"99999999999999999999999d\": ")
            && diags[3].ends_with("; a duration is at most 365 days"),
        "{}",
        diags[3]
    );
    assert_eq!(diags[4], over(18, 18, "365d 1ms"));
}

#[test]
fn revision_spec_durations_past_the_limit_are_positioned_errors() {
    let text = "hook_timeout: 400d\n\
                docker:\n  image: i\n  container: c\n  health_timeout: 300000000y\n";
    let diags: Vec<String> = parse_revision_spec(text)
        .expect_err("too long")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        diags,
        [
            "1:15: duration \"400d\" is longer than the limit of 365 days",
            "5:19: duration \"300000000y\" is longer than the limit of 365 days",
        ]
    );
}

#[test]
fn integers_past_every_range_are_positioned_errors() {
    let huge = "9".repeat(60);
    let text = pipeline_with("10s", "1d", &[&format!("keep_releases: {huge}")])
        .replace("run_order: 2", &format!("run_order: -{huge}"));
    assert_eq!(
        pipeline_errors(&text),
        [
            format!("13:20: `run_order` is out of range, found -{huge}"),
            format!("16:24: `keep_releases` is out of range, found {huge}"),
        ]
    );
}
