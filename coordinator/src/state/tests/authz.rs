//! Authorization inside `apply`: a person whose role was revoked by an
//! earlier command of the same log is refused, whatever a lagging member's
//! gRPC layer decided, and the refusal changes nothing; entries logged before
//! the check replay unchanged; the system's own commands carry no person.

use super::*;
use crate::authz::{Permission, permission_for};

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

fn grant(s: &mut ClusterState, subject: &str, role: Role) {
    s.apply(Command::Grant {
        subject: subject.into(),
        role,
        by: By::operator("root"),
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// `cluster()` with a deployment on record (for `Redeploy`), a secret, a
/// viewer `vic`, and `op` (operator) and `adm` (admin) — whose roles an
/// admin then revoked, in the same log.
fn revoked() -> ClusterState {
    let mut s = cluster();
    let spec = ferry_pipeline::parse(DEPLOY_YAML).unwrap_or_else(|e| panic!("{e:?}"));
    s.apply(Command::ApplyPipeline {
        spec,
        yaml: DEPLOY_YAML.into(),
        by: By::operator("root"),
        at: 5,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    s.apply(Command::StartExecution {
        source: None,
        once: None,
        variables: Default::default(),
        id: "w1".into(),
        pipeline: "web".into(),
        revision: "rev-w1".into(),
        trigger: "t".into(),
        started_by: None,
        at: 10,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let epoch = assign(&mut s, "w1", 0, 11);
    s.apply(finish(epoch, "a1", true))
        .unwrap_or_else(|e| panic!("{e}"));
    let epoch = assign(&mut s, "w1", 1, 12);
    s.apply(deploy_result(epoch, "w1"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.deployments.len(), 1);
    s.apply(Command::SetNotifyTarget {
        target: ferry_pipeline::notify::NotificationTarget {
            name: "old".into(),
            url: "https://old.example.invalid/hook".into(),
            url_secret: None,
            secret: None,
            format: ferry_pipeline::notify::NotifyFormat::Json,
            events: Vec::new(),
        },
        by: By::operator("root"),
        at: 13,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    s.apply(Command::SetSecret {
        name: "api-key".into(),
        nonce: vec![1],
        ciphertext: vec![2],
        by: By::operator("root"),
        at: 13,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    grant(&mut s, "vic", Role::Viewer);
    grant(&mut s, "op", Role::Operator);
    grant(&mut s, "adm", Role::Admin);
    for (subject, role) in [("op", Role::Operator), ("adm", Role::Admin)] {
        s.apply(Command::Revoke {
            subject: subject.into(),
            role,
            by: By::operator("root"),
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
    s
}

/// Every command a person causes (but a decision), by `operate` when it
/// needs role operator and by `admin` when it needs role admin, each one
/// that `revoked()` accepts from someone who holds the role; with the RPC
/// that proposes it.
fn person_commands(operate: &By, admin: &By) -> Vec<(&'static str, Command)> {
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

#[test]
fn a_revoked_role_is_refused_in_apply_and_changes_nothing() {
    let s = revoked();
    let (op, adm) = (By::operator("op"), By::operator("adm"));
    for (rpc, cmd) in person_commands(&op, &adm) {
        let mut after = s.clone();
        match after.apply(cmd) {
            Err(Rejection::PermissionDenied(why)) => {
                assert!(
                    why.contains("`op`") || why.contains("`adm`"),
                    "{rpc}: {why}"
                );
                assert!(why.contains("revoked meanwhile"), "{rpc}: {why}");
            }
            other => panic!("{rpc}: expected PermissionDenied, got {other:?}"),
        }
        assert_eq!(
            after, s,
            "{rpc}: a refused command leaves the state untouched"
        );
    }
}

#[test]
fn the_same_commands_apply_for_someone_who_holds_the_role() {
    let s = revoked();
    let root = By::operator("root");
    for (rpc, cmd) in person_commands(&root, &root) {
        let mut after = s.clone();
        let out = after.apply(cmd);
        assert!(out.is_ok(), "{rpc}: {out:?}");
        assert_ne!(after, s, "{rpc} changed something");
    }
    // An operator holds what operating needs, and nothing an admin needs.
    let mut s = revoked();
    grant(&mut s, "oscar", Role::Operator);
    let oscar = By::operator("oscar");
    for (rpc, cmd) in person_commands(&oscar, &oscar) {
        let operate = matches!(
            cmd.authority(),
            Authority::Person {
                need: Need::Operate,
                ..
            }
        );
        let out = s.clone().apply(cmd);
        assert_eq!(
            out.is_ok(),
            operate,
            "{rpc} by an operator: {out:?} (needs operate: {operate})"
        );
    }
}

#[test]
fn entries_logged_before_the_check_replay_unchanged() {
    // They were checked by the gRPC layer when proposed; the same log must
    // give the same state on every replay, so `apply` does not check them.
    let s = revoked();
    let (op, adm) = (By::Legacy("op".into()), By::Legacy("adm".into()));
    for (rpc, cmd) in person_commands(&op, &adm) {
        let out = s.clone().apply(cmd);
        assert!(out.is_ok(), "{rpc}: {out:?}");
    }
    // Old JSON: a bare name where `by` was a string, nothing where there was none.
    let old = br#"{"Grant":{"subject":"zed","role":"Viewer"}}"#;
    let grant = Command::decode(old).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(&grant, Command::Grant { by, .. } if *by == By::Legacy(String::new())));
    let old = br#"{"RemoveSecret":{"name":"api-key"}}"#;
    let remove = Command::decode(old).unwrap_or_else(|e| panic!("{e}"));
    let old = br#"{"StartExecution":{"id":"e8","pipeline":"demo","revision":"abc","trigger":"manual by op","started_by":"op","at":30}}"#;
    let start = Command::decode(old).unwrap_or_else(|e| panic!("{e}"));
    let mut s = revoked();
    for cmd in [grant, remove, start] {
        s.apply(cmd).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(s.executions["e8"].started_by.as_deref(), Some("op"));
    // What is logged now says it was checked, and reads back the same.
    let now = Command::Grant {
        subject: "zed".into(),
        role: Role::Viewer,
        by: By::operator("root"),
    };
    let bytes = now.encode().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        String::from_utf8_lossy(&bytes).contains(r#""by":{"Operator":"root"}"#),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(Command::decode(&bytes).ok(), Some(now));
}

#[test]
fn the_systems_own_commands_and_members_need_no_role() {
    let mut s = revoked();
    let poller = Command::StartExecution {
        source: None,
        once: None,
        variables: Default::default(),
        id: "p1".into(),
        pipeline: "demo".into(),
        revision: "def".into(),
        trigger: "new commit on main".into(),
        started_by: None,
        at: 30,
    };
    assert_eq!(poller.authority(), Authority::System);
    s.apply(poller).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.executions["p1"].started_by, None);
    // A member holds the CA key: `authz` lets it call operator APIs, and so does `apply`.
    let member = By::member("2");
    for (rpc, cmd) in person_commands(&member, &member) {
        let out = s.clone().apply(cmd);
        assert!(out.is_ok(), "{rpc} by a member: {out:?}");
    }
}

#[test]
fn apply_needs_the_roles_the_grpc_layer_needs() {
    let nobody = By::operator("nobody");
    for (rpc, cmd) in person_commands(&nobody, &nobody) {
        let Authority::Person { need, .. } = cmd.authority() else {
            panic!("{rpc} is a person's command");
        };
        // The one public service that has the method.
        let early = crate::authz::PUBLIC_SERVICES
            .iter()
            .filter(|service| **service != "ferry.v1.Enrollment")
            .find_map(|service| permission_for(&format!("/{service}/{rpc}")));
        let expected = match need {
            Need::Operate => Permission::Operate,
            Need::Admin => Permission::Admin,
            Need::View => Permission::View,
        };
        assert_eq!(early, Some(expected), "{rpc}");
    }
}
