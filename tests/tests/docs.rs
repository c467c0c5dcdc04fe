//! Every YAML example in the book (`docs/src/**/*.md`) and the README is a
//! file Ferry accepts. A fenced block's info string says what it is:
//!
//! - ```` ```yaml pipeline ````: linted with the real `ferry pipeline lint`;
//! - ```` ```yaml environment ````: linted with `ferry env lint`;
//! - ```` ```yaml revision ````: a `ferry-deploy.yml`, read with
//!   `ferry_pipeline::parse_revision_spec` (the CLI has no lint for it);
//! - ```` ```yaml ignore REASON ````: not checked, with the reason written
//!   after `ignore` (keep these rare).
//!
//! A bare ```` ```yaml ```` block fails, and so does a block without an
//! info string, so no example escapes the check. A failure names the
//! Markdown file, the line of the problem in it and the lint's message.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// What a YAML block is, from its info string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pipeline,
    Environment,
    Revision,
}

/// A fenced code block of a Markdown file.
struct Block {
    /// The line of the opening fence, 1-based.
    line: usize,
    info: String,
    text: String,
}

/// Every fenced code block in `markdown` (backticks or tildes, indented or
/// not, as list items hold them), with its content unindented by the
/// fence's own indentation.
fn blocks(markdown: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut open: Option<(Block, &str, usize)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match open.as_mut() {
            // A closing fence: the opening one's character, at least as many.
            Some((_, fence, _))
                if trimmed.starts_with(*fence)
                    && trimmed.trim_end().chars().all(|c| fence.starts_with(c)) =>
            {
                if let Some((block, _, _)) = open.take() {
                    found.push(block);
                }
            }
            Some((block, _, fence_indent)) => {
                let strip = indent.min(*fence_indent);
                block.text.push_str(&line[strip..]);
                block.text.push('\n');
            }
            None => {
                let fence_char = match trimmed.chars().next() {
                    Some(c @ ('`' | '~')) => c,
                    _ => continue,
                };
                let length = trimmed.chars().take_while(|&c| c == fence_char).count();
                if length < 3 {
                    continue;
                }
                let fence = &trimmed[..length];
                let block = Block {
                    line: index + 1,
                    info: trimmed[length..].trim().to_string(),
                    text: String::new(),
                };
                open = Some((block, fence, indent));
            }
        }
    }
    found
}

/// What to do with a block: check it as `Kind`, skip it, or report why its
/// info string is not acceptable.
fn classify(info: &str) -> Result<Option<Kind>, String> {
    let mut words = info.split_whitespace();
    let Some(language) = words.next() else {
        return Err(
            "a code block needs an info string (```sh, ```text, ```yaml pipeline, ...)".to_string(),
        );
    };
    if !matches!(language, "yaml" | "yml") {
        return Ok(None);
    }
    match words.next() {
        Some("pipeline") => Ok(Some(Kind::Pipeline)),
        Some("environment") => Ok(Some(Kind::Environment)),
        Some("revision") => Ok(Some(Kind::Revision)),
        Some("ignore") if words.next().is_some() => Ok(None),
        Some("ignore") => Err("```yaml ignore needs a reason after `ignore`".to_string()),
        _ => Err(format!(
            "```{info} does not say what the YAML is: write ```yaml pipeline, \
             ```yaml environment, ```yaml revision, or ```yaml ignore REASON"
        )),
    }
}

/// The problems `ferry pipeline lint` or `ferry env lint` finds in `text`,
/// as (line, column, message) within it.
fn lint(kind: Kind, text: &str, scratch: &Path) -> Vec<(usize, usize, String)> {
    let file = scratch.join("example.yml");
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let group = match kind {
        Kind::Pipeline => "pipeline",
        Kind::Environment => "env",
        Kind::Revision => unreachable!("revision specs are read in-process"),
    };
    let out = Command::new(ferry_tests::bin("ferry"))
        .args([group, "lint", "-o", "json"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("running ferry {group} lint: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "ferry {group} lint printed no JSON report ({e}): {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let problems: Vec<(usize, usize, String)> = report["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let number = |key: &str| p[key].as_u64().unwrap_or(0) as usize;
            let message = p["message"].as_str().unwrap_or_default().to_string();
            (number("line"), number("column"), message)
        })
        .collect();
    assert_eq!(
        out.status.success(),
        problems.is_empty(),
        "ferry {group} lint's exit code and report disagree: {stdout}"
    );
    problems
}

/// The problems Ferry finds in the blocks of one Markdown text, each as
/// `NAME:LINE:COL: message` with LINE in the Markdown file; and how many
/// blocks of each kind it checked.
fn check(name: &str, markdown: &str, scratch: &Path) -> (Vec<String>, [usize; 3]) {
    let mut problems = Vec::new();
    let mut checked = [0; 3];
    for block in blocks(markdown) {
        let kind = match classify(&block.info) {
            Ok(Some(kind)) => kind,
            Ok(None) => continue,
            Err(why) => {
                problems.push(format!("{name}:{}: {why}", block.line));
                continue;
            }
        };
        checked[kind as usize] += 1;
        let found = match kind {
            Kind::Revision => match ferry_pipeline::parse_revision_spec(&block.text) {
                Ok(_) => Vec::new(),
                Err(diagnostics) => diagnostics
                    .into_iter()
                    .map(|d| (d.line, d.column, d.message))
                    .collect(),
            },
            kind => lint(kind, &block.text, scratch),
        };
        for (line, column, message) in found {
            problems.push(format!(
                "{name}:{}:{column}: {message} (```{} block of line {})",
                block.line + line,
                block.info,
                block.line
            ));
        }
    }
    (problems, checked)
}

/// Every Markdown file under `dir`, sorted.
fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            files.extend(markdown_files(&path));
        } else if path.extension().is_some_and(|x| x == "md") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the repository root")
}

#[test]
fn every_yaml_example_in_the_book_and_the_readme_is_accepted() {
    let root = repository();
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let mut files = markdown_files(&root.join("docs/src"));
    files.push(root.join("README.md"));
    let mut problems = Vec::new();
    let mut checked = [0; 3];
    for file in &files {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        let (found, counts) = check(&name, &text, scratch.path());
        problems.extend(found);
        for (total, count) in checked.iter_mut().zip(counts) {
            *total += count;
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in the documentation's examples:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The book has examples of every kind; none found means the walk is broken.
    let [pipelines, environments, revisions] = checked;
    assert!(
        pipelines > 0 && environments > 0 && revisions > 0,
        "checked {pipelines} pipelines, {environments} environments and {revisions} \
         revision specs in {} files",
        files.len()
    );
    println!(
        "checked {pipelines} pipelines, {environments} environments and {revisions} revision \
         specs in {} files",
        files.len()
    );
}

#[test]
fn a_broken_example_and_an_unmarked_block_are_reported_where_they_are() {
    let scratch = tempfile::tempdir().expect("a scratch folder");
    let markdown = "# A chapter\n\
        \n\
        ```yaml pipeline\n\
        name: Bad\n\
        source: {git: /srv/git/x.git}\n\
        stages: [{name: s, actions: [{name: a, type: approval}]}]\n\
        ```\n\
        \n\
        1. A step:\n\
        \n   ```yaml revision\n\
        \x20  hooks: {restart: x}\n\
        \x20  ```\n\
        \n\
        ```yaml\n\
        a: 1\n\
        ```\n\
        \n\
        ```yaml ignore\n\
        ```\n\
        \n\
        ```yaml ignore a fragment on purpose\n\
        not: [checked\n\
        ```\n\
        ~~~\n\
        text\n\
        ~~~\n";
    let (problems, checked) = check("chapter.md", markdown, scratch.path());
    assert_eq!(checked, [1, 0, 1], "{problems:#?}");
    let expected = [
        "chapter.md:4:7: invalid pipeline name \"Bad\"",
        "chapter.md:12:9: unknown key `restart` in hooks",
        "chapter.md:15: ```yaml does not say what the YAML is",
        "chapter.md:19: ```yaml ignore needs a reason",
        "chapter.md:25: a code block needs an info string",
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for (problem, start) in problems.iter().zip(expected) {
        assert!(
            problem.starts_with(start),
            "{problem:?} should start with {start:?}"
        );
    }
}
