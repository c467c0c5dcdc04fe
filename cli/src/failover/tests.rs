//! The classification of methods and answers, and the backoff.

use super::*;

const WRITE: Kind = Kind::Write { check: "" };

/// `service NAME {` and `rpc NAME(` of every public `.proto` file.
fn proto_methods() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto/ferry/v1");
    let mut methods = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
        let mut service = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.split_whitespace().next().map(str::to_string);
            } else if let Some(rest) = line.strip_prefix("rpc ")
                && let (Some(s), Some(name)) = (&service, rest.split('(').next())
            {
                methods.push((s.clone(), name.trim().to_string()));
            }
        }
    }
    methods
}

#[test]
fn every_method_of_the_clis_services_is_classified() {
    // The services `Api` holds a client of (Enrollment is the agents').
    let services = [
        "Pipelines",
        "Executions",
        "Approvals",
        "Agents",
        "Environments",
        "Deployments",
        "Artifacts",
        "Secrets",
        "Notifications",
        "Access",
        "Cluster",
    ];
    let methods = proto_methods();
    assert!(methods.len() > 40, "{methods:?}");
    let ours: Vec<String> = methods
        .iter()
        .filter(|(s, _)| services.contains(&s.as_str()))
        .map(|(s, m)| format!("/ferry.v1.{s}/{m}"))
        .collect();
    for path in &ours {
        assert!(
            METHODS.iter().any(|(p, _)| p == path),
            "{path} is not classified in METHODS"
        );
    }
    for (path, _) in METHODS {
        assert!(ours.contains(&path.to_string()), "{path} is no such method");
    }
    assert_eq!(ours.len(), METHODS.len(), "a method is listed twice");
}

#[test]
fn reads_are_the_get_list_watch_stream_and_status_calls() {
    let reads: Vec<&str> = METHODS
        .iter()
        .filter(|(_, k)| *k == Kind::Read)
        .filter_map(|(p, _)| p.rsplit('/').next())
        .collect();
    assert_eq!(
        reads,
        [
            "ListPipelines",
            "GetPipeline",
            "GetExecution",
            "WatchExecution",
            "ListExecutions",
            "StreamLogs",
            "ListAgents",
            "ListArtifacts",
            "GetArtifact",
            "ListCaches",
            "ClusterStatus",
            "Backup",
            "ListDeployments",
            "GetDeployment",
            "ListEnvironments",
            "GetEnvironment",
            "ListSecrets",
            "NotifyStatus",
            "WatchEvents",
            "ListRoleBindings",
            "WhoAmI",
        ]
    );
    // Every write says how to check it.
    for (path, kind) in METHODS {
        if let Kind::Write { check } | Kind::WriteThenRead { check } = kind {
            assert!(check.starts_with("ferry "), "{path}: {check:?}");
        }
    }
    assert_eq!(
        kind_of("/ferry.v1.Access/RevokeRole"),
        Kind::Write {
            check: "ferry rbac list"
        }
    );
    assert_eq!(kind_of("/ferry.v1.Access/WhoAmI"), Kind::Read);
    // Only writes whose repetition is harmless are sent again like reads.
    let idempotent: Vec<&str> = METHODS
        .iter()
        .filter(|(_, k)| *k == Kind::Idempotent)
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(
        idempotent,
        ["/ferry.v1.Secrets/SetSecret", "/ferry.v1.Access/GrantRole"]
    );
    assert!(may_resend_answer(
        Kind::Idempotent,
        Code::Unavailable,
        "could not reach the leader",
        false
    ));
    // An unknown method counts as a write.
    assert_eq!(kind_of("/ferry.v1.Pipelines/Frobnicate"), WRITE);
}

#[test]
fn writes_go_elsewhere_only_when_not_applied() {
    let write = WRITE;
    // Marked by the coordinator.
    assert!(may_resend_answer(
        write,
        Code::Unavailable,
        "anything",
        true
    ));
    // Unmarked: only v0.1's frozen texts.
    assert!(may_resend_answer(
        write,
        Code::Unavailable,
        "no leader is elected right now; retry shortly",
        false
    ));
    assert!(may_resend_answer(
        write,
        Code::Unavailable,
        "this coordinator is not the leader; the leader is member 3",
        false
    ));
    for unmarked in [
        "this coordinator has stopped serving",
        "could not reach the leader: connection reset",
        "this coordinator is not the leader; the leader is member ",
        "this coordinator is not the leader; the leader is member 3x",
        "no leader is elected right now; retry shortly!",
        "",
    ] {
        assert!(
            !may_resend_answer(write, Code::Unavailable, unmarked, false),
            "{unmarked:?}"
        );
    }
    // Only UNAVAILABLE, even marked.
    for code in [
        Code::Unknown,
        Code::DeadlineExceeded,
        Code::Internal,
        Code::NotFound,
    ] {
        assert!(
            !may_resend_answer(write, code, V01_NO_LEADER, true),
            "{code:?}"
        );
    }
    // A write answered with a read after it: the mark may be the read's.
    let then_read = Kind::WriteThenRead { check: "" };
    assert!(!may_resend_answer(then_read, Code::Unavailable, "x", true));
    assert!(!may_resend_answer(
        then_read,
        Code::Unavailable,
        V01_NO_LEADER,
        false
    ));
}

#[test]
fn reads_go_elsewhere_on_any_unavailable() {
    assert!(may_resend_answer(
        Kind::Read,
        Code::Unavailable,
        "this coordinator has stopped serving",
        false
    ));
    assert!(may_resend_answer(Kind::Read, Code::Unavailable, "", false));
    assert!(!may_resend_answer(
        Kind::Read,
        Code::PermissionDenied,
        "may not",
        false
    ));
    assert!(!may_resend_answer(
        Kind::Read,
        Code::NotFound,
        V01_NO_LEADER,
        true
    ));
}

#[test]
fn answers_are_read_from_trailers_only_headers() {
    let mut h = http::HeaderMap::new();
    assert!(Answer::of(&h).is_none(), "no status: a response begins");
    h.insert("grpc-status", http::HeaderValue::from_static("0"));
    assert!(Answer::of(&h).is_none());
    h.insert("grpc-status", http::HeaderValue::from_static("14"));
    h.insert(
        "grpc-message",
        http::HeaderValue::from_static(
            "no%20leader%20is%20elected%20right%20now;%20retry%20shortly",
        ),
    );
    let a = Answer::of(&h).expect("status");
    assert_eq!(a.code, Code::Unavailable);
    assert_eq!(a.message, V01_NO_LEADER);
    assert!(!a.marked);
    h.insert(NOT_APPLIED, http::HeaderValue::from_static("1"));
    assert!(Answer::of(&h).is_some_and(|a| a.marked));
    h.insert(NOT_APPLIED, http::HeaderValue::from_static("yes"));
    assert!(Answer::of(&h).is_some_and(|a| !a.marked));
}

#[test]
fn the_status_a_coordinator_sends_round_trips() {
    // What tonic's server writes for a marked status, read back here.
    let mut status =
        tonic::Status::unavailable("this coordinator is not the leader; the leader is member 12");
    status.metadata_mut().insert(
        NOT_APPLIED,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    let response = status.into_http::<Body>();
    let a = Answer::of(response.headers()).expect("status");
    assert_eq!(a.code, Code::Unavailable);
    assert!(a.marked);
    assert!(answered_not_applied(&a.message), "{}", a.message);
}

#[test]
fn percent_decoding_keeps_what_is_not_an_escape() {
    assert_eq!(percent_decode(b"a%20b%3Bc"), "a b;c");
    assert_eq!(percent_decode(b"100%"), "100%");
    assert_eq!(percent_decode(b"%zz%4"), "%zz%4");
    assert_eq!(percent_decode("caf%C3%A9".as_bytes()), "café");
}

#[test]
fn any_retry_for_has_a_deadline() {
    let now = Instant::now();
    assert!(deadline(Duration::ZERO) >= now);
    assert!(deadline(Duration::from_secs(2)) >= now + Duration::from_secs(2));
    assert!(deadline(Duration::from_secs(u64::MAX)) > now + Duration::from_secs(86_400));
}

#[test]
fn backoff_grows_and_is_capped() {
    assert_eq!(backoff(0), Duration::from_millis(50));
    assert_eq!(backoff(1), Duration::from_millis(100));
    assert_eq!(backoff(4), Duration::from_millis(800));
    assert_eq!(backoff(5), Duration::from_secs(1));
    assert_eq!(backoff(u32::MAX), Duration::from_secs(1));
}

#[test]
fn failures_name_every_address_and_how_to_check() {
    let e = CallError::NoAnswer {
        tried_for: Duration::from_secs(2),
        failures: vec![
            ("a:1".into(), "tcp connect error: Connection refused".into()),
            ("b:2".into(), V01_NO_LEADER.into()),
        ],
    };
    assert_eq!(
        e.to_string(),
        "no coordinator answered within --retry-for 2 s:\n  a:1: tcp connect error: Connection refused\n  b:2: no leader is elected right now; retry shortly"
    );
    let e = CallError::Ambiguous {
        coordinator: "a:1".into(),
        method: "/ferry.v1.Access/GrantRole".into(),
        check: "ferry rbac list",
        detail: "connection reset".into(),
    };
    let text = e.to_string();
    assert!(text.starts_with("the connection to coordinator a:1 broke after GrantRole was sent, so it may or may not have been applied"), "{text}");
    assert!(text.contains("Check with `ferry rbac list`"), "{text}");
    assert!(!text.contains("client certificate"), "{text}");
}
