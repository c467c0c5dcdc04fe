//! The stable reasons of refusals: the words an API client tells one
//! refusal from another by (the `reason` of `google.rpc.ErrorInfo`), where
//! the status code alone would lump them together (`FOUR_EYES` and
//! `MISSING_ROLE` are both PERMISSION_DENIED). A reason's spelling is part of
//! the public API: never rename or reuse one; add new ones at the end.
//! The texts that go with them are for people and may change.

use serde::{Deserialize, Serialize};

/// Why a request was refused. The spelling ([`Reason::as_str`]) is the
/// API's; `UNSPECIFIED` is what a refusal without a reason of its own reads
/// as, also one a member of v0.1 forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    #[default]
    Unspecified,
    /// The caller holds none of the roles the call needs.
    MissingRole,
    /// The caller started the execution, or applied the pipeline version,
    /// that the approval belongs to: another person must decide.
    FourEyes,
    /// The caller holds the approver role but is not among the approval's
    /// `approvers`.
    NotAnApprover,
    /// The certificate is of the wrong kind for the call (an agent calling
    /// operator APIs, an operator opening an agent session).
    WrongIdentityKind,
    /// No client certificate, another trust domain, or a revoked or
    /// replaced certificate.
    Unauthenticated,
    /// The agent is not enrolled (or was removed).
    NotEnrolled,
    /// A join token that is unknown, expired, used up, or does not grant
    /// what was asked.
    BadToken,
    /// A login link that is unknown, used or expired.
    BadLoginLink,
    /// The request is malformed (a bad name, a limit exceeded).
    InvalidArgument,
    /// A pipeline or environment file has problems; each is a field
    /// violation with its position.
    LintFailed,
    /// What the request names does not exist.
    NotFound,
    /// What the request would create exists.
    AlreadyExists,
    /// The state does not allow it now (a finished execution, a decided
    /// approval, a disabled transition, ...).
    FailedPrecondition,
    /// The same `request_id` came with a different request.
    RequestIdReused,
    /// The `etag` given is not the current one: someone changed it since.
    EtagMismatch,
    /// The cluster's version is too old for what the request uses.
    ClusterVersionTooOld,
    /// This member put the request in no log entry: no leader is known,
    /// or it is not the leader. The same request may be sent again.
    NoLeader,
    /// Not possible right now (an agent, peer or leader unreachable); it
    /// may have been applied.
    Unavailable,
    /// Did not finish in time; it may still finish.
    DeadlineExceeded,
    /// A fault of the cluster, not of the request.
    Internal,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 21] = [
        Reason::Unspecified,
        Reason::MissingRole,
        Reason::FourEyes,
        Reason::NotAnApprover,
        Reason::WrongIdentityKind,
        Reason::Unauthenticated,
        Reason::NotEnrolled,
        Reason::BadToken,
        Reason::BadLoginLink,
        Reason::InvalidArgument,
        Reason::LintFailed,
        Reason::NotFound,
        Reason::AlreadyExists,
        Reason::FailedPrecondition,
        Reason::RequestIdReused,
        Reason::EtagMismatch,
        Reason::ClusterVersionTooOld,
        Reason::NoLeader,
        Reason::Unavailable,
        Reason::DeadlineExceeded,
        Reason::Internal,
    ];

    /// The API's spelling (`FOUR_EYES`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unspecified => "UNSPECIFIED",
            Reason::MissingRole => "MISSING_ROLE",
            Reason::FourEyes => "FOUR_EYES",
            Reason::NotAnApprover => "NOT_AN_APPROVER",
            Reason::WrongIdentityKind => "WRONG_IDENTITY_KIND",
            Reason::Unauthenticated => "UNAUTHENTICATED",
            Reason::NotEnrolled => "NOT_ENROLLED",
            Reason::BadToken => "BAD_TOKEN",
            Reason::BadLoginLink => "BAD_LOGIN_LINK",
            Reason::InvalidArgument => "INVALID_ARGUMENT",
            Reason::LintFailed => "LINT_FAILED",
            Reason::NotFound => "NOT_FOUND",
            Reason::AlreadyExists => "ALREADY_EXISTS",
            Reason::FailedPrecondition => "FAILED_PRECONDITION",
            Reason::RequestIdReused => "REQUEST_ID_REUSED",
            Reason::EtagMismatch => "ETAG_MISMATCH",
            Reason::ClusterVersionTooOld => "CLUSTER_VERSION_TOO_OLD",
            Reason::NoLeader => "NO_LEADER",
            Reason::Unavailable => "UNAVAILABLE",
            Reason::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Reason::Internal => "INTERNAL",
        }
    }

    /// The reason spelled `s` ([`Reason::Unspecified`] for a word this
    /// release does not know, as from a newer member).
    pub fn parse(s: &str) -> Reason {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_are_unique_parse_back_and_match_serde() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "{r} twice");
            assert_eq!(Reason::parse(r.as_str()), r);
            assert_eq!(
                serde_json::to_string(&r).ok(),
                Some(format!("\"{}\"", r.as_str()))
            );
        }
        assert_eq!(Reason::parse("SOMETHING_NEWER"), Reason::Unspecified);
    }
}
