//! Console logins in the replicated state: a link opens one session, once
//! and before it expires; a session ends on `Log out`; only people with a
//! role get links.

use super::applied;
use crate::{By, ClusterState, Command, Rejection};

const YAML: &str = "name: app\nsource: {git: /tmp/app.git}\nstages:\n  - name: gate\n    actions:\n      - {name: ok, type: approval}\n";

fn link(s: &mut ClusterState, hash: &str, by: &str, expires_at: i64) -> Result<(), Rejection> {
    link_with(s, hash, by, expires_at, None)
}

fn link_with(
    s: &mut ClusterState,
    hash: &str,
    by: &str,
    expires_at: i64,
    cert: Option<&str>,
) -> Result<(), Rejection> {
    s.apply(Command::CreateLoginLink {
        hash: hash.into(),
        expires_at,
        by: By::operator(by),
        at: 10,
        cert: cert.map(str::to_string),
    })
    .map(drop)
}

fn revoke(s: &mut ClusterState, fingerprint: &str) {
    s.apply(Command::RevokeCertificate {
        fingerprint: fingerprint.into(),
        identity: "spiffe://ferry/operator/root".into(),
        not_after: 1_000_000,
        by: By::operator("root"),
        at: 11,
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

fn open(s: &mut ClusterState, link: &str, session: &str, at: i64) -> Result<(), Rejection> {
    s.apply(Command::OpenSession {
        link: link.into(),
        session: session.into(),
        expires_at: at + 1000,
        at,
    })
    .map(drop)
}

#[test]
fn a_link_opens_one_session_before_it_expires() {
    let mut s = applied(YAML);
    let denied = link(&mut s, "l0", "nobody", 100);
    assert!(
        matches!(denied, Err(Rejection::PermissionDenied(..))),
        "{denied:?}"
    );

    link(&mut s, "l1", "root", 100).unwrap_or_else(|e| panic!("{e}"));
    open(&mut s, "l1", "s1", 50).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.session_operator("s1", 60), Some("root"));
    assert_eq!(
        s.session_operator("s1", 2000),
        None,
        "over after expires_at"
    );
    let twice = open(&mut s, "l1", "s2", 60);
    assert!(
        matches!(twice, Err(Rejection::PermissionDenied(..))),
        "{twice:?}"
    );

    link(&mut s, "l2", "root", 100).unwrap_or_else(|e| panic!("{e}"));
    let late = open(&mut s, "l2", "s3", 101);
    assert!(
        matches!(late, Err(Rejection::PermissionDenied(..))),
        "{late:?}"
    );
    assert!(s.login_links.is_empty(), "expired links are dropped");

    s.apply(Command::EndSession {
        session: "s1".into(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.session_operator("s1", 60), None);
}

#[test]
fn revoking_the_certificate_ends_its_links_and_sessions() {
    let mut s = applied(YAML);
    link_with(&mut s, "l1", "root", 100, Some("fp-stolen")).unwrap_or_else(|e| panic!("{e}"));
    link_with(&mut s, "l2", "root", 100, Some("fp-stolen")).unwrap_or_else(|e| panic!("{e}"));
    link_with(&mut s, "l3", "root", 100, Some("fp-new")).unwrap_or_else(|e| panic!("{e}"));
    open(&mut s, "l1", "s1", 50).unwrap_or_else(|e| panic!("{e}"));
    open(&mut s, "l3", "s3", 50).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.session_operator("s1", 60), Some("root"));

    revoke(&mut s, "fp-stolen");
    // The session is over though the name keeps its role, and the unused
    // link of that certificate opens nothing; the other certificate's stay.
    assert_eq!(s.session_operator("s1", 60), None);
    let denied = open(&mut s, "l2", "s2", 60);
    assert!(
        matches!(denied, Err(Rejection::PermissionDenied(..))),
        "{denied:?}"
    );
    assert_eq!(s.session_operator("s3", 60), Some("root"));
}

#[test]
fn one_operator_cannot_push_out_everyone_elses_sessions() {
    use crate::console::CONSOLE_RECORDS_PER_OPERATOR;
    let mut s = applied(YAML);
    s.apply(Command::Grant {
        subject: "mallory".into(),
        role: crate::Role::Viewer,
        by: By::operator("root"),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    link(&mut s, "root-link", "root", 100_000).unwrap_or_else(|e| panic!("{e}"));
    open(&mut s, "root-link", "root-session", 50).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..3 * CONSOLE_RECORDS_PER_OPERATOR {
        let (l, ses) = (format!("m-link-{i}"), format!("m-session-{i}"));
        link(&mut s, &l, "mallory", 100_000 + i as i64).unwrap_or_else(|e| panic!("{e}"));
        if i % 2 == 0 {
            open(&mut s, &l, &ses, 60).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    assert_eq!(s.session_operator("root-session", 60), Some("root"));
    let of = |who: &str| {
        s.console_sessions
            .values()
            .filter(|v| v.operator == who)
            .count()
    };
    assert_eq!(of("mallory"), CONSOLE_RECORDS_PER_OPERATOR);
    assert!(
        s.login_links
            .values()
            .filter(|l| l.operator == "mallory")
            .count()
            <= CONSOLE_RECORDS_PER_OPERATOR
    );
}
