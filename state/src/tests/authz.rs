//! Authorization inside `apply`: a person whose role was revoked by an
//! earlier command of the same log is refused, whatever a lagging member's
//! gRPC layer decided, and the refusal changes nothing; entries logged before
//! the check replay unchanged; the system's own commands carry no person.

use super::*;
use crate::testing::person_commands;

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

#[test]
fn a_revoked_role_is_refused_in_apply_and_changes_nothing() {
    let s = revoked();
    let (op, adm) = (By::operator("op"), By::operator("adm"));
    for (rpc, cmd) in person_commands(&op, &adm) {
        let mut after = s.clone();
        match after.apply(cmd) {
            Err(Rejection::PermissionDenied(_, why)) => {
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
