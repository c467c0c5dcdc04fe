//! `ferry exec --artifacts DIR`: the outputs of a local run unpacked under
//! `DIR/<stage>/<action>/<output>/` when it ends, a folder that is not new
//! or empty refused before anything runs, and the same commit built twice
//! giving outputs of equal digests (output tars in a normal form). Real git
//! repositories, real containers (`ferry-local/busybox`), the real `ferry`
//! binary; these tests fail, not skip, when Docker is missing.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Output;

use ferry_tests::exec::text;
use ferry_tests::{Repo, ensure_busybox_image};

/// Runs `ferry exec ARGS` in `dir` with its own cache folder.
fn exec(dir: &Path, args: &[&str]) -> Output {
    ferry_tests::exec::run(dir, args, &[])
}

/// The digest each `[ferry] output NAME = DIGEST` log line gives, as
/// `NAME = DIGEST`, in the order printed.
fn output_digests(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("[ferry] output ").nth(1))
        .filter_map(|rest| rest.split(" (").next())
        .map(str::to_string)
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

const PIPELINE: &str = r#"name: keep
source: {git: /not/fetched}
stages:
  - name: build
    actions:
      - name: compile
        type: build
        image: ferry-local/busybox
        inputs: [source]
        commands:
          - "mkdir -p dist/bin"
          - "cp msg.txt dist/app.txt"
          - "printf '#!/bin/sh\\necho hi\\n' > dist/bin/tool"
          - "chmod 0700 dist/bin/tool"
          - "chmod 0600 dist/app.txt"
          - "ln -s bin/tool dist/tool"
          - "echo notes > notes.txt"
        outputs: {app: [dist/], notes: [notes.txt]}
  - name: test
    actions:
      - name: check
        type: test
        image: ferry-local/busybox
        inputs: [app]
        commands: ["test -x dist/bin/tool", "mkdir results", "cat dist/app.txt > results/seen.txt"]
        outputs: {results: [results/]}
"#;

fn repo() -> Repo {
    let r = Repo::new();
    r.commit(&[("msg.txt", "hello\n"), ("ferry.yml", PIPELINE)], "init");
    r
}

#[test]
fn outputs_are_unpacked_and_the_same_commit_gives_the_same_digests() {
    ensure_busybox_image();
    let r = repo();
    let keep = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let first = keep.path().join("first");
    let out = exec(
        r.work(),
        &[
            "--artifacts",
            &first.to_string_lossy(),
            "--revision",
            "HEAD",
        ],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");

    let app = first.join("build/compile/app/dist");
    assert_eq!(
        std::fs::read_to_string(app.join("app.txt")).unwrap_or_default(),
        "hello\n",
        "{all}"
    );
    // Execute bits survive as 0755, everything else is 0644.
    assert_eq!(mode(&app.join("bin/tool")), 0o755, "{all}");
    assert_eq!(mode(&app.join("app.txt")), 0o644, "{all}");
    assert_eq!(
        std::fs::read_link(app.join("tool")).ok(),
        Some(Path::new("bin/tool").to_path_buf()),
        "the symlink stays a symlink: {all}"
    );
    assert_eq!(
        std::fs::read_to_string(first.join("build/compile/notes/notes.txt")).unwrap_or_default(),
        "notes\n",
        "{all}"
    );
    assert_eq!(
        std::fs::read_to_string(first.join("test/check/results/results/seen.txt"))
            .unwrap_or_default(),
        "hello\n",
        "{all}"
    );
    // The summary says where they are.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let canonical = std::fs::canonicalize(&first).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        stdout.contains(&format!("artifacts in {}:", canonical.display())),
        "{all}"
    );
    for line in [
        "  build/compile/app/  sha256:",
        "  build/compile/notes/  sha256:",
        "  test/check/results/  sha256:",
    ] {
        assert!(stdout.contains(line), "{line}: {all}");
    }

    // The same commit again, later (other times on every file, in a
    // new container): the same digests. An existing empty folder is fine.
    let second = keep.path().join("second");
    std::fs::create_dir(&second).unwrap_or_else(|e| panic!("{e}"));
    let again = exec(
        r.work(),
        &[
            "--artifacts",
            &second.to_string_lossy(),
            "--revision",
            "HEAD",
        ],
    );
    let all_again = text(&again);
    assert_eq!(again.status.code(), Some(0), "{all_again}");
    let digests = output_digests(&out);
    assert_eq!(digests.len(), 3, "{all}");
    assert_eq!(digests, output_digests(&again), "{all}\n{all_again}");
    assert!(second.join("build/compile/app/dist/bin/tool").is_file());
}

#[test]
fn a_folder_that_is_not_empty_is_refused_before_anything_runs() {
    ensure_busybox_image();
    let r = repo();
    let keep = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(keep.path().join("mine.txt"), "mine").unwrap_or_else(|e| panic!("{e}"));
    let out = exec(r.work(), &["--artifacts", &keep.path().to_string_lossy()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the folder exists and is not empty"),
        "{all}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("(container "),
        "nothing ran: {all}"
    );
    let left: Vec<_> = std::fs::read_dir(keep.path())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(left, ["mine.txt"], "{all}");

    // Without --artifacts a run keeps nothing and says nothing of them.
    let out = exec(r.work(), &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("artifacts in"),
        "{all}"
    );
}
