//! What tests of the state machine, here and in the coordinator, start
//! from: a bootstrapped cluster with a pipeline, an enrolled agent, and
//! every command a person causes. Built for this crate's tests and, with
//! the `testing` feature, for other crates' tests; never in a release.

use std::collections::BTreeMap;

use crate::{By, ClusterState, Command, Role};

/// The pipeline most tests apply: a build and an approval.
pub const YAML: &str = r#"
name: demo
source: {git: /tmp/demo.git}
execution_mode: parallel
stages:
  - name: build
    actions:
      - {name: a, type: build, image: img, commands: [true], outputs: {app: [dist/]}}
  - name: gate
    actions:
      - {name: ok, type: approval, timeout: 1s}
"#;

const ENVIRONMENT: &str = r#"
name: staging
hosts:
  - name: web1
    ssh:
      address: 10.0.0.11:22
      user: deploy
      host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqKeBW1/+wBEjL+rdG9x6rO+ivJQVWWCRHUo4b6i9UP"
      key_secret: staging-ssh
"#;

/// A cluster of one member bootstrapped with admin `root`, who applied the
/// pipeline `yaml` (shared by the state machine's and the scheduler's tests).
pub fn applied(yaml: &str) -> ClusterState {
    let mut s = ClusterState::default();
    let spec = ferry_pipeline::parse(yaml).unwrap_or_else(|e| panic!("{e:?}"));
    for c in [
        Command::Bootstrap {
            trust_domain: "ferry".into(),
            admin: Some("root".into()),
            members: BTreeMap::from([(1, "127.0.0.1:7400".to_string())]),
            at: 0,
            cluster_id: String::new(),
        },
        Command::ApplyPipeline {
            spec,
            yaml: yaml.into(),
            by: By::operator("root"),
            at: 1,
        },
    ] {
        s.apply(c).unwrap_or_else(|e| panic!("{e}"));
    }
    s
}

/// Enrolls agent `a1` with a one-use join token `h`, at times 2 and 3.
pub fn enroll_a1(s: &mut ClusterState) {
    for c in [
        Command::CreateToken {
            hash: "h".into(),
            expires_at: 100,
            uses: 1,
            by: By::operator("root"),
            at: 2,
            labels: Vec::new(),
        },
        Command::Enroll {
            token_hash: "h".into(),
            agent: "a1".into(),
            cert: None,
            wrapping_key: None,
            at: 3,
            labels: Vec::new(),
        },
    ] {
        s.apply(c).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Every command a person causes (but a decision), by `operate` when it
/// needs role operator and by `admin` when it needs role admin, each one
/// that `revoked()` accepts from someone who holds the role; with the RPC
/// that proposes it.
pub fn person_commands(operate: &By, admin: &By) -> Vec<(&'static str, Command)> {
    let changed = YAML.replace("commands: [true]", "commands: [\"echo 2\"]");
    vec![
        (
            "ApplyPipeline",
            Command::ApplyPipeline {
                spec: ferry_pipeline::parse(&changed).unwrap_or_else(|e| panic!("{e:?}")),
                yaml: changed,
                by: operate.clone(),
                at: 20,
            },
        ),
        (
            "ApplyEnvironment",
            Command::ApplyEnvironment {
                spec: ferry_pipeline::parse_environment(ENVIRONMENT)
                    .unwrap_or_else(|e| panic!("{e:?}")),
                yaml: ENVIRONMENT.into(),
                by: operate.clone(),
                at: 20,
            },
        ),
        (
            "StartExecution",
            Command::StartExecution {
                source: None,
                once: None,
                variables: Default::default(),
                id: "e9".into(),
                pipeline: "demo".into(),
                revision: "abc".into(),
                trigger: "manual".into(),
                started_by: Some(operate.clone()),
                at: 20,
            },
        ),
        (
            "Rollback",
            Command::Redeploy {
                id: "r9".into(),
                from: 1,
                trigger: "rollback".into(),
                started_by: Some(operate.clone()),
                at: 20,
            },
        ),
        (
            "CreateToken",
            Command::CreateToken {
                hash: "t9".into(),
                expires_at: 1_000,
                uses: 1,
                by: admin.clone(),
                at: 20,
                labels: Vec::new(),
            },
        ),
        (
            "GrantRole",
            Command::Grant {
                subject: "zed".into(),
                role: Role::Operator,
                by: admin.clone(),
            },
        ),
        (
            "RevokeRole",
            Command::Revoke {
                subject: "vic".into(),
                role: Role::Viewer,
                by: admin.clone(),
            },
        ),
        (
            "SetSecret",
            Command::SetSecret {
                name: "db-password".into(),
                nonce: vec![3],
                ciphertext: vec![4],
                by: admin.clone(),
                at: 20,
            },
        ),
        (
            "RemoveSecret",
            Command::RemoveSecret {
                name: "api-key".into(),
                by: admin.clone(),
            },
        ),
        (
            "SetTarget",
            Command::SetNotifyTarget {
                target: ferry_pipeline::notify::NotificationTarget {
                    name: "chat".into(),
                    url: "https://chat.example.invalid/hook".into(),
                    url_secret: None,
                    secret: None,
                    format: ferry_pipeline::notify::NotifyFormat::Slack,
                    events: Vec::new(),
                },
                by: admin.clone(),
                at: 20,
            },
        ),
        (
            "RemoveTarget",
            Command::RemoveNotifyTarget {
                name: "old".into(),
                by: admin.clone(),
            },
        ),
        (
            "DrainAgent",
            Command::SetDraining {
                agent: "a1".into(),
                draining: true,
                by: admin.clone(),
            },
        ),
        (
            "SetAgentLabels",
            Command::SetAgentLabels {
                agent: "a1".into(),
                set: None,
                add: vec!["prod-deploy".into()],
                remove: Vec::new(),
                by: admin.clone(),
                at: 20,
            },
        ),
        (
            "RemoveAgent",
            Command::RemoveAgent {
                agent: "a1".into(),
                by: admin.clone(),
                at: 20,
            },
        ),
        (
            "RevokeCertificate",
            Command::RevokeCertificate {
                fingerprint: "f9".into(),
                identity: "spiffe://ferry/operator/mallory".into(),
                not_after: 1_000,
                by: admin.clone(),
                at: 20,
            },
        ),
    ]
}
