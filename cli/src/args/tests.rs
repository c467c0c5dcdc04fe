//! Parsing of the command line: clap's own consistency check and the
//! usage errors and values of individual commands.

use super::*;
use clap::CommandFactory;
use clap::error::ErrorKind;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("ferry").chain(args.iter().copied()))
}

#[test]
fn clap_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn exec_takes_secrets_from_files_only_and_one_of_stage_or_action() {
    let cli = parse(&[
        "exec",
        "p.yml",
        "--action",
        "test/unit",
        "--secret",
        "db-password=@/run/pw",
        "--var",
        "A=1",
        "--deploy",
        "staging.yml",
        "--keep",
    ])
    .expect("parse");
    let Command::Exec(e) = cli.command else {
        panic!("not exec: {:?}", cli.command)
    };
    assert_eq!(e.file, Some(PathBuf::from("p.yml")));
    assert_eq!(e.action.as_deref(), Some("test/unit"));
    assert_eq!(
        e.secrets,
        [("db-password".to_string(), PathBuf::from("/run/pw"))]
    );
    assert_eq!(e.vars, [("A".to_string(), "1".to_string())]);
    assert_eq!(e.deploy, [PathBuf::from("staging.yml")]);
    assert!(e.keep && !e.approve);
    for bad in [
        &["exec", "--secret", "pw=hunter2"][..],
        &["exec", "--secret", "Bad=@f"],
        &["exec", "--stage", "a", "--action", "a/b"],
        &["exec", "--revision", "main", "--worktree"],
        &["exec", "--action", "nostage"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn global_flags_before_or_after_the_subcommand() {
    let cli = parse(&[
        "--coordinator",
        "a:1,b:2",
        "status",
        "demo",
        "--ca",
        "ca.pem",
        "-o",
        "json",
        "--watch",
    ])
    .expect("parse");
    assert_eq!(cli.global.coordinator, ["a:1", "b:2"]);
    assert_eq!(cli.global.ca, Some(PathBuf::from("ca.pem")));
    assert_eq!(cli.global.output, Format::Json);
    let Command::Status(s) = cli.command else {
        panic!("not status: {:?}", cli.command)
    };
    assert_eq!(s.name, "demo");
    assert_eq!(s.execution, None);
    assert!(s.watch);
}

#[test]
fn retry_for_is_a_global_number_of_seconds() {
    let cli = parse(&["rbac", "list", "--retry-for", "2"]).expect("parse");
    assert_eq!(cli.global.retry_for, 2);
    let cli = parse(&["--retry-for", "0", "whoami"]).expect("parse");
    assert_eq!(cli.global.retry_for, 0);
    if std::env::var_os("FERRY_RETRY_FOR").is_none() {
        assert_eq!(parse(&["whoami"]).expect("parse").global.retry_for, 30);
    }
    for bad in ["-1", "2s", ""] {
        assert!(parse(&["whoami", "--retry-for", bad]).is_err(), "{bad:?}");
    }
}

#[test]
fn defaults() {
    let cli = parse(&["whoami"]).expect("parse");
    // Only true when the environment does not override it.
    if std::env::var_os("FERRY_COORDINATOR").is_none() {
        assert_eq!(cli.global.coordinator, [DEFAULT_COORDINATOR]);
    }
    if std::env::var_os("FERRY_OUTPUT").is_none() {
        assert_eq!(cli.global.output, Format::Table);
    }
    let cli = parse(&["token", "create"]).expect("parse");
    let Command::Token(TokenCommand::Create(t)) = cli.command else {
        panic!("not token create")
    };
    assert_eq!(t.ttl, Duration::from_secs(3600));
    assert_eq!(t.uses, 1);
}

#[test]
fn certs_issue_coordinator() {
    let cli = parse(&[
        "certs",
        "issue",
        "coordinator",
        "--ca-dir",
        "ca",
        "--id",
        "2",
        "--san",
        "localhost",
        "127.0.0.1",
        "--san",
        "::1,coord-2",
        "--out",
        "tls",
    ])
    .expect("parse");
    let Command::Certs(CertsCommand::Issue(IssueCommand::Coordinator(a))) = cli.command else {
        panic!("not certs issue coordinator")
    };
    assert_eq!(a.id, 2);
    assert_eq!(a.san, ["localhost", "127.0.0.1", "::1", "coord-2"]);
    assert_eq!(a.out, PathBuf::from("tls"));

    let err = parse(&[
        "certs",
        "issue",
        "coordinator",
        "--ca-dir",
        "ca",
        "--id",
        "2",
        "--out",
        "tls",
    ])
    .expect_err("--san is required");
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
}

#[test]
fn logs_and_decisions() {
    let cli = parse(&[
        "logs",
        "demo",
        "--execution",
        "abc",
        "--action",
        "build/compile",
        "-f",
    ])
    .expect("parse");
    let Command::Logs(l) = cli.command else {
        panic!("not logs")
    };
    assert_eq!(
        (l.execution.as_str(), l.action.as_str(), l.follow),
        ("abc", "build/compile", true)
    );

    let err = parse(&["logs", "demo", "--execution", "abc", "--action", "compile"])
        .expect_err("action without stage");
    assert_eq!(err.kind(), ErrorKind::ValueValidation);

    let err = parse(&["reject", "demo", "--execution", "abc", "--action", "d/ok"])
        .expect_err("reject needs a comment");
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);

    let cli = parse(&["approve", "demo", "--execution", "abc", "--action", "d/ok"])
        .expect("approve without comment");
    assert!(matches!(
        cli.command,
        Command::Approve(ApproveArgs { comment: None, .. })
    ));
}

#[test]
fn pipeline_and_token_values() {
    let cli = parse(&["pipeline", "apply", "-f", "p.yaml"]).expect("parse");
    assert!(matches!(
        cli.command,
        Command::Pipeline(PipelineCommand::Apply(ApplyArgs { ref file })) if file == &PathBuf::from("p.yaml")
    ));
    let cli = parse(&["pipeline", "show", "demo", "--version", "3"]).expect("parse");
    assert!(matches!(
        cli.command,
        Command::Pipeline(PipelineCommand::Show(ShowArgs {
            version: Some(3),
            ..
        }))
    ));
    let cli = parse(&[
        "token", "create", "--ttl", "90m", "--uses", "3", "--labels", "a,b",
    ])
    .expect("parse");
    let Command::Token(TokenCommand::Create(t)) = cli.command else {
        panic!("not token create")
    };
    assert_eq!((t.ttl, t.uses), (Duration::from_secs(5400), 3));
    assert_eq!(t.labels, ["a", "b"]);
    // `agents label`: --set (also empty, to clear), or --add/--remove.
    for (args, set, add, remove) in [
        (&["--set", "x,y"][..], Some(vec!["x", "y"]), vec![], vec![]),
        (&["--set", ""], Some(vec![""]), vec![], vec![]),
        (&["--add", "x", "--remove", "y"], None, vec!["x"], vec!["y"]),
    ] {
        let mut argv = vec!["agents", "label", "a1"];
        argv.extend(args);
        let cli = parse(&argv).expect("parse");
        let Command::Agents(AgentsCommand::Label(l)) = cli.command else {
            panic!("not agents label")
        };
        assert_eq!(l.name, "a1");
        assert_eq!(
            l.set,
            set.map(|v| v.iter().map(|s| s.to_string()).collect())
        );
        assert_eq!(l.add, add);
        assert_eq!(l.remove, remove);
    }
    assert!(parse(&["agents", "label", "a1", "--set", "x", "--add", "y"]).is_err());

    for bad in [
        &["token", "create", "--ttl", "soon"][..],
        &["token", "create", "--ttl", "0s"],
        &["token", "create", "--uses", "0"],
    ] {
        let err = parse(bad).expect_err("invalid value");
        assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad:?}: {err}");
    }
    let err = parse(&["status", "demo", "-o", "yaml"]).expect_err("unknown format");
    assert_eq!(err.kind(), ErrorKind::InvalidValue);
}

#[test]
fn usage_errors_exit_2() {
    let err = parse(&["frobnicate"]).expect_err("unknown command");
    assert_eq!(err.exit_code(), 2);
}
