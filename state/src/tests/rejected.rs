//! A rejected command leaves the state untouched: every command's function
//! checks everything before it changes anything, so a refusal — an error,
//! or a result that is not accepted — is a no-op on every member.

use super::*;

/// Applies `cmd`, which must be refused, and checks that nothing changed.
fn refused(s: &mut ClusterState, cmd: Command) -> String {
    let before = s.clone();
    let why = match s.apply(cmd.clone()) {
        Err(r) => r.to_string(),
        Ok(Output::Attempt {
            accepted: false,
            reason,
        }) => reason,
        other => panic!("expected a refusal of {cmd:?}, got {other:?}"),
    };
    assert_eq!(*s, before, "refused ({why}) but changed the state: {cmd:?}");
    why
}

/// `cluster()` with e1's build assigned to a1 (epoch 1) and a1 then lost.
fn lost_attempt() -> ClusterState {
    let mut s = cluster();
    assign(&mut s, "e1", 0, 5);
    s.apply(Command::AgentLost {
        agent: "a1".into(),
        at: 6,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    s
}

#[test]
fn a_stale_result_records_no_holder() {
    // The late result of a lost attempt used to record its outputs' holder
    // before the epoch check refused it.
    let mut s = lost_attempt();
    let mut late = finish(1, "a1", true);
    if let Command::FinishAttempt { outputs, log, .. } = &mut late {
        outputs.insert(
            "app".into(),
            ArtifactRef {
                digest: "sha256:late".into(),
                size: 4,
            },
        );
        *log = Some(ArtifactRef {
            digest: "sha256:late-log".into(),
            size: 9,
        });
    }
    let why = refused(&mut s, late);
    assert!(why.contains("no longer current"), "{why}");
    assert!(!s.artifacts.contains_key("sha256:late-log"));
}

#[test]
fn a_result_for_a_forgotten_execution_records_no_holder() {
    // Its attempt is still indexed but the execution is gone: NotFound used
    // to come after the holders were recorded.
    let mut s = cluster();
    assign(&mut s, "e1", 0, 5);
    s.executions.remove("e1");
    let why = refused(&mut s, finish(1, "a1", true));
    assert!(why.contains("execution e1"), "{why}");
}

#[test]
fn a_result_whose_deployment_report_does_not_decode_is_refused() {
    let mut s = cluster();
    assign(&mut s, "e1", 0, 5);
    let mut result = finish(1, "a1", true);
    if let Command::FinishAttempt { deployment, .. } = &mut result {
        *deployment = Some(vec![0xff, 0xff, 0xff]);
    }
    let why = refused(&mut s, result);
    assert!(why.contains("deployment report does not decode"), "{why}");
    // The same result without the bad report is accepted.
    assert!(matches!(
        s.apply(finish(1, "a1", true)),
        Ok(Output::Attempt { accepted: true, .. })
    ));
}

#[test]
fn every_refusal_leaves_the_state_untouched() {
    let mut s = cluster();
    let root = || By::operator("root");
    let cmds = vec![
        Command::Bootstrap {
            trust_domain: "other".into(),
            admin: Some("mallory".into()),
            members: BTreeMap::new(),
            at: 5,
            cluster_id: String::new(),
        },
        Command::StartExecution {
            source: None,
            once: None,
            variables: Default::default(),
            id: "e1".into(),
            pipeline: "demo".into(),
            revision: "abc".into(),
            trigger: "t".into(),
            started_by: Some(root()),
            at: 5,
        },
        Command::StartExecution {
            source: None,
            once: None,
            variables: Default::default(),
            id: "e2".into(),
            pipeline: "nope".into(),
            revision: "abc".into(),
            trigger: "t".into(),
            started_by: Some(root()),
            at: 5,
        },
        Command::Assign {
            execution: "e1".into(),
            stage: 0,
            action: 0,
            agent: "ghost".into(),
            at: 5,
        },
        Command::Assign {
            execution: "e1".into(),
            stage: 1,
            action: 0,
            agent: "a1".into(),
            at: 5,
        },
        finish(1, "a1", true),
        Command::Decide {
            execution: "e1".into(),
            stage: 0,
            action: 0,
            by: "root".into(),
            approve: true,
            comment: String::new(),
            at: 5,
        },
        Command::ExpireApproval {
            execution: "nope".into(),
            stage: 1,
            action: 0,
            at: 5,
        },
        Command::Redeploy {
            id: "r1".into(),
            from: 7,
            trigger: "t".into(),
            started_by: Some(root()),
            at: 5,
        },
        Command::CreateToken {
            hash: "h".into(),
            expires_at: 100,
            uses: 1,
            by: root(),
            at: 5,
            labels: Vec::new(),
        },
        Command::Enroll {
            token_hash: "nope".into(),
            agent: "a2".into(),
            cert: None,
            wrapping_key: None,
            at: 5,
            labels: Vec::new(),
        },
        Command::RegisterAgent {
            name: "ghost".into(),
            labels: None,
            capacity: 1,
            version: String::new(),
            address: String::new(),
            at: 5,
        },
        Command::RenewAgentCertificate {
            agent: "ghost".into(),
            presented: CertBinding {
                fingerprint: "c0".into(),
                not_after: 10,
            },
            cert: CertBinding {
                fingerprint: "c1".into(),
                not_after: 10,
            },
            at: 5,
        },
        Command::SetDraining {
            agent: "ghost".into(),
            draining: true,
            by: root(),
        },
        Command::SetAgentLabels {
            agent: "ghost".into(),
            set: Some(vec!["x".into()]),
            add: Vec::new(),
            remove: Vec::new(),
            by: root(),
            at: 5,
        },
        // Labels out of bounds: too long, whitespace, too many in the end.
        Command::SetAgentLabels {
            agent: "a1".into(),
            set: None,
            add: vec!["x".repeat(65)],
            remove: Vec::new(),
            by: root(),
            at: 5,
        },
        Command::SetAgentLabels {
            agent: "a1".into(),
            set: Some(vec!["prod deploy".into()]),
            add: Vec::new(),
            remove: Vec::new(),
            by: root(),
            at: 5,
        },
        Command::SetAgentLabels {
            agent: "a1".into(),
            set: Some((0..20).map(|i| format!("s{i}")).collect()),
            add: (0..20).map(|i| format!("a{i}")).collect(),
            remove: Vec::new(),
            by: root(),
            at: 5,
        },
        // Only an admin: an operator may not give an agent a label.
        Command::SetAgentLabels {
            agent: "a1".into(),
            set: None,
            add: vec!["prod-deploy".into()],
            remove: Vec::new(),
            by: By::operator("nobody"),
            at: 5,
        },
        Command::CreateToken {
            hash: "h-labels".into(),
            expires_at: 100,
            uses: 1,
            by: root(),
            at: 5,
            labels: vec![String::new()],
        },
        Command::RemoveAgent {
            agent: "ghost".into(),
            by: root(),
            at: 5,
        },
        Command::ArtifactHeld {
            digest: "sha256:nope".into(),
            size: 1,
            agent: "a1".into(),
        },
        Command::RemoveSecret {
            name: "nope".into(),
            by: root(),
        },
        Command::Revoke {
            subject: "nobody".into(),
            role: Role::Admin,
            by: root(),
        },
        Command::SourceSeen {
            pipeline: "nope".into(),
            revision: "abc".into(),
            at: 5,
        },
    ];
    for cmd in cmds {
        if matches!(cmd, Command::Bootstrap { .. }) {
            // Already bootstrapped: a no-op, not an error.
            let before = s.clone();
            assert_eq!(s.apply(cmd), Ok(Output::None));
            assert_eq!(s, before);
            continue;
        }
        refused(&mut s, cmd);
    }
}
