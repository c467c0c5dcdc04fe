//! Request ids: a write is applied once, the same id answers its first
//! result, and an id reused for another request is refused.

use super::*;
use crate::requests::{REQUEST_TTL_MS, REQUESTS_KEPT};

fn requested(request_id: &str, fingerprint: &str, at: i64, command: Command) -> Command {
    Command::Requested {
        caller: "alice".into(),
        request_id: request_id.into(),
        fingerprint: fingerprint.into(),
        at,
        command: Box::new(command),
    }
}

#[test]
fn the_same_request_id_answers_the_first_result_and_starts_nothing_more() {
    let mut s = cluster();
    let before = s.executions.len();
    let first = s.apply(requested("r1", "f", 10, start_demo("e-first", 10)));
    assert_eq!(
        first,
        Ok(Output::Execution {
            id: "e-first".into()
        })
    );
    // A retry, with the new id a retrying proposer picked.
    let again = s.apply(requested("r1", "f", 20, start_demo("e-second", 20)));
    assert_eq!(again, first);
    assert_eq!(s.executions.len(), before + 1);
    assert!(!s.executions.contains_key("e-second"));
    assert_eq!(s.remembered("alice", "r1", "f"), Some(first.clone()));
    // Another caller's same id is another request.
    assert_eq!(s.remembered("bob", "r1", "f"), None);

    // The id reused for something else: refused, and nothing applied.
    let state = s.clone();
    match s.apply(requested("r1", "other", 30, start_demo("e-third", 30))) {
        Err(Rejection::Conflict(Reason::RequestIdReused, why)) => {
            assert!(why.contains("r1"), "{why}")
        }
        other => panic!("expected REQUEST_ID_REUSED, got {other:?}"),
    }
    assert_eq!(s, state);
}

#[test]
fn a_refusal_is_remembered_too_and_records_expire_by_the_commands_times() {
    let mut s = cluster();
    let mut unknown = start_demo("e1x", 10);
    if let Command::StartExecution { pipeline, .. } = &mut unknown {
        *pipeline = "no-such".into();
    }
    let refused = s.apply(requested("r2", "f", 10, unknown));
    assert!(refused.is_err());
    assert_eq!(
        s.apply(requested("r2", "f", 11, start_demo("e2x", 11))),
        refused
    );
    // A day later the id is forgotten: the next command prunes it.
    let later = 11 + REQUEST_TTL_MS + 1;
    assert!(
        s.apply(requested("r3", "f", later, start_demo("e3x", later)))
            .is_ok()
    );
    assert_eq!(s.remembered("alice", "r2", "f"), None);
    assert!(s.requests.len() <= REQUESTS_KEPT);
    // Nested requests are refused.
    let nested = requested(
        "r4",
        "f",
        later,
        requested("r5", "f", later, start_demo("e4", later)),
    );
    assert!(s.apply(nested).is_err());
}

#[test]
fn requests_survive_a_snapshot() {
    let mut s = cluster();
    s.apply(requested("r1", "f", 10, start_demo("e-first", 10)))
        .unwrap_or_else(|e| panic!("{e}"));
    let bytes = s.to_snapshot().unwrap_or_else(|e| panic!("{e}"));
    let back = ClusterState::from_snapshot(&bytes).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, s);
}
