//! End to end: pipeline variables overridden with `ferry run --var`, output
//! variables written by one action on one agent and used by a later action
//! on another agent and by an approval's message, an undeclared `--var`
//! refused, a reference that cannot exist refused by lint with its
//! position, and one missing at run time failing its action by name.

use ferry_tests::{Cluster, Repo, ensure_busybox_image};

fn pipeline(repo: &Repo, used: &str) -> String {
    format!(
        r##"name: vars
source: {{git: {url}, branch: main}}
variables:
  REGION: {{default: eu-west-1, description: where to deploy}}
stages:
  - name: build
    actions:
      - name: compile
        type: build
        image: ferry-local/busybox
        runs_on: [one]
        commands:
          - echo "VERSION=1.4.$((2+3))" > $FERRY_OUTPUT_VARS
          - echo "NOTE=hello world" >> $FERRY_OUTPUT_VARS
  - name: use
    actions:
      - name: show
        type: test
        image: ferry-local/busybox
        runs_on: [two]
        env: {{V: "#{{build.compile.{used}}}"}}
        commands: ["echo got=$V region=#{{variables.REGION}} note=#{{build.compile.NOTE}}"]
  - name: gate
    actions:
      - {{name: ok, type: approval, message: "Ship #{{build.compile.VERSION}} to #{{variables.REGION}}?"}}
"##,
        url = repo.url()
    )
}

#[test]
fn output_variables_and_overrides_reach_later_actions_on_other_agents() {
    ensure_busybox_image();
    let mut c = Cluster::start("vars");
    let one = c.add_agent("one", &["one"]);
    let two = c.add_agent("two", &["two"]);
    let repo = Repo::new();
    repo.commit(&[("README", "vars\n")], "first");
    c.apply(&pipeline(&repo, "VERSION"));

    let refused = c.ferry(Some("admin"), &["run", "vars", "--var", "NOPE=1"]);
    assert!(!refused.success);
    assert!(
        refused
            .stderr
            .contains("declares no variable `NOPE` (declared: REGION)"),
        "{}",
        refused.stderr
    );
    let exec = c
        .ferry_ok(Some("admin"), &["run", "vars", "--var", "REGION=us-east-2"])
        .trim()
        .to_string();
    let v = c.wait_status("vars", &exec, "the approval to wait", |v| {
        Cluster::action(v, "gate", "ok")["status"] == "WaitingForApproval"
            || v["status"] == "Failed"
    });
    assert_eq!(v["variables"]["REGION"], "us-east-2", "{v:#}");
    let compile = Cluster::action(&v, "build", "compile");
    assert_eq!(compile["agent"], one.as_str());
    assert_eq!(compile["output_variables"]["VERSION"], "1.4.5", "{v:#}");
    assert_eq!(compile["output_variables"]["NOTE"], "hello world");
    let show = Cluster::action(&v, "use", "show");
    assert_eq!(
        show["agent"],
        two.as_str(),
        "the later action ran on the other agent"
    );
    assert_eq!(
        show["resolved_variables"]["build.compile.VERSION"], "1.4.5",
        "{v:#}"
    );
    assert_eq!(show["resolved_variables"]["variables.REGION"], "us-east-2");
    let ok = Cluster::action(&v, "gate", "ok");
    assert_eq!(
        ok["approval"]["message"], "Ship 1.4.5 to us-east-2?",
        "{v:#}"
    );
    let logs = c.ferry_ok(
        Some("admin"),
        &["logs", "vars", "--execution", &exec, "--action", "use/show"],
    );
    assert!(
        logs.contains("got=1.4.5 region=us-east-2 note=hello world"),
        "{logs}"
    );
    let table = c.ferry_ok(Some("admin"), &["status", "vars", "--execution", &exec]);
    assert!(table.contains("VARIABLES: REGION=us-east-2"), "{table}");
    assert!(
        table.contains("build/compile wrote NOTE=hello world, VERSION=1.4.5"),
        "{table}"
    );

    // A variable the action never wrote fails the action that needs it, by name.
    c.apply(&pipeline(&repo, "MISSING"));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "vars"])
        .trim()
        .to_string();
    let v = c.wait_status("vars", &exec, "the run to fail", |v| {
        v["status"] != "InProgress"
    });
    assert_eq!(v["status"], "Failed", "{v:#}");
    let show = Cluster::action(&v, "use", "show");
    assert_eq!(
        show["message"],
        "variable #{build.compile.MISSING} has no value: action build/compile wrote no MISSING to $FERRY_OUTPUT_VARS",
        "{v:#}"
    );
    assert_eq!(show["attempt"], 0, "it never ran");
}

#[test]
fn a_reference_that_cannot_exist_is_a_lint_error_with_its_position() {
    let c = Cluster::start("varlint");
    let repo = Repo::new();
    repo.commit(&[("README", "x\n")], "first");
    let path = c.path().join("bad.yml");
    let yaml = pipeline(&repo, "VERSION").replace("#{variables.REGION}?", "#{variables.ZONE}?");
    std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("{e}"));
    let file = path.display().to_string();
    let lint = c.ferry(None, &["pipeline", "lint", &file]);
    assert!(!lint.success);
    let text = format!("{}{}", lint.stdout, lint.stderr);
    assert!(
        text.contains(&format!(
            "{file}:25:45: #{{variables.ZONE}}: the pipeline declares no variable `ZONE` under `variables:`"
        )),
        "{text}"
    );
    let apply = c.ferry(Some("admin"), &["pipeline", "apply", "-f", &file]);
    assert!(!apply.success, "nothing is applied");
}

/// An action that writes a secret, or shell syntax, into its output
/// variables: the secret is masked before it leaves the agent (and on the
/// coordinator), and the hostile values reach a later action's commands as
/// data — printed literally, never run.
#[test]
fn hostile_output_variables_are_masked_and_stay_data() {
    ensure_busybox_image();
    let mut c = Cluster::start("varsattack");
    c.add_agent("one", &[]);
    let file = c.path().join("token.txt");
    std::fs::write(&file, "s3cr3t-t0ken-value").unwrap_or_else(|e| panic!("{e}"));
    c.ferry_ok(
        Some("admin"),
        &[
            "secret",
            "set",
            "api-token",
            "--from-file",
            &file.display().to_string(),
        ],
    );
    let repo = Repo::new();
    repo.commit(&[("README", "x\n")], "first");
    c.apply(&format!(
        r##"name: hostile
source: {{git: {url}, branch: main}}
stages:
  - name: build
    actions:
      - name: compile
        type: build
        image: ferry-local/busybox
        secrets: {{TOKEN: api-token}}
        commands:
          - echo "LEAK=token is $TOKEN" > $FERRY_OUTPUT_VARS
          - echo 'SEMI=1.0; echo INJECTED-SEMI' >> $FERRY_OUTPUT_VARS
          - echo 'SUB=$(echo INJECTED-SUB)' >> $FERRY_OUTPUT_VARS
          - echo 'TICK=`echo INJECTED-TICK`' >> $FERRY_OUTPUT_VARS
          - echo 'QUOTE=x" ; echo INJECTED-QUOTE ; echo "' >> $FERRY_OUTPUT_VARS
          - echo 'IMG=busybox; rm -rf /' >> $FERRY_OUTPUT_VARS
  - name: use
    actions:
      - name: show
        type: test
        image: ferry-local/busybox
        commands:
          - echo "semi=#{{build.compile.SEMI}}"
          - echo sub=#{{build.compile.SUB}} tick=#{{build.compile.TICK}}
          - echo "quote=#{{build.compile.QUOTE}}"
          - echo "leak=#{{build.compile.LEAK}}"
  - name: gate
    actions:
      - {{name: ok, type: approval, message: "Ship #{{build.compile.LEAK}}?"}}
  - name: last
    actions:
      - name: image
        type: test
        image: "#{{build.compile.IMG}}"
        commands: ["true"]
"##,
        url = repo.url()
    ));
    let exec = c
        .ferry_ok(Some("admin"), &["run", "hostile"])
        .trim()
        .to_string();
    let v = c.wait_status("hostile", &exec, "the approval to wait", |v| {
        Cluster::action(v, "gate", "ok")["status"] == "WaitingForApproval"
            || v["status"] != "InProgress"
    });
    let compile = Cluster::action(&v, "build", "compile");
    assert_eq!(compile["output_variables"]["LEAK"], "token is ***", "{v:#}");
    assert_eq!(Cluster::action(&v, "use", "show")["status"], "Succeeded");
    let ok = Cluster::action(&v, "gate", "ok");
    assert_eq!(ok["approval"]["message"], "Ship token is ***?", "{v:#}");
    let logs = c.ferry_ok(
        Some("admin"),
        &[
            "logs",
            "hostile",
            "--execution",
            &exec,
            "--action",
            "use/show",
        ],
    );
    assert!(logs.contains("semi=1.0; echo INJECTED-SEMI"), "{logs}");
    assert!(
        logs.contains("sub=$(echo INJECTED-SUB) tick=`echo INJECTED-TICK`"),
        "{logs}"
    );
    assert!(
        logs.contains("quote=x\" ; echo INJECTED-QUOTE ; echo \""),
        "{logs}"
    );
    // What ran would print its marker on a line of its own.
    for ran in [
        "INJECTED-SEMI",
        "INJECTED-SUB",
        "INJECTED-TICK",
        "INJECTED-QUOTE",
    ] {
        assert!(!logs.lines().any(|l| l.trim() == ran), "{ran} ran: {logs}");
    }
    let everything = c.ferry_ok(
        Some("admin"),
        &["status", "hostile", "--execution", &exec, "-o", "json"],
    );
    assert!(!everything.contains("s3cr3t"), "{everything}");

    // An image that resolved to shell text fails its action by name.
    c.grant("ann", "approver");
    c.ferry_ok(
        Some("ann"),
        &[
            "approve",
            "hostile",
            "--execution",
            &exec,
            "--action",
            "gate/ok",
        ],
    );
    let v = c.wait_status("hostile", &exec, "the run to end", |v| {
        v["status"] != "InProgress"
    });
    let image = Cluster::action(&v, "last", "image");
    assert_eq!(image["status"], "Failed", "{v:#}");
    assert!(
        image["message"].as_str().is_some_and(
            |m| m.contains("`image` resolved to") && m.contains("not an image reference")
        ),
        "{v:#}"
    );
}
