//! gRPC statuses with `google.rpc.Status` details, the API's error model
//! (docs/api.md): every refusal carries an `ErrorInfo` whose `reason` is a
//! stable word ([`Reason`]) in domain [`DOMAIN`]; a refused file carries a
//! `BadRequest` with one violation per problem (`field` is
//! `FILE:LINE:COLUMN`); a state conflict a `PreconditionFailure`. The
//! message stays for people; clients branch on the reason.

use std::collections::HashMap;

use ferry_state::Reason;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::ops::LintProblem;

/// `ErrorInfo.domain` of every Ferry refusal.
pub const DOMAIN: &str = "ferry.v1";

/// A status of `code` whose details name `reason`.
pub fn refused(code: Code, reason: Reason, message: impl Into<String>) -> Status {
    Status::with_error_details(code, message, info(reason))
}

/// FAILED_PRECONDITION for `reason`, with a `PreconditionFailure` that
/// repeats the message as its one violation.
pub fn precondition(reason: Reason, message: String) -> Status {
    let mut details = info(reason);
    details.add_precondition_failure_violation(reason.as_str(), "", message.clone());
    Status::with_error_details(Code::FailedPrecondition, message, details)
}

/// INVALID_ARGUMENT for a refused file: the joined text as the message, and
/// a `BadRequest` violation per problem.
pub fn lint(summary: String, problems: &[LintProblem]) -> Status {
    let mut details = ErrorDetails::with_error_info(
        Reason::LintFailed.as_str(),
        DOMAIN,
        HashMap::from([("problems".to_string(), problems.len().to_string())]),
    );
    // Bounded like the message (`authz::clip_status_message`): the
    // details travel in a header, whose size the client limits.
    for p in problems.iter().take(MAX_VIOLATIONS) {
        details.add_bad_request_violation(
            format!("{}:{}:{}", clip(&p.file), p.line, p.column),
            clip(&p.message),
        );
    }
    Status::with_error_details(Code::InvalidArgument, summary, details)
}

/// Most `BadRequest` violations sent; `ErrorInfo.metadata["problems"]`
/// still counts them all.
const MAX_VIOLATIONS: usize = 32;

/// Longest text of a violation, in bytes.
const MAX_VIOLATION_TEXT: usize = 256;

fn clip(text: &str) -> String {
    let mut cut = text.len().min(MAX_VIOLATION_TEXT);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_string()
}

fn info(reason: Reason) -> ErrorDetails {
    ErrorDetails::with_error_info(reason.as_str(), DOMAIN, HashMap::new())
}

/// The reason in `status`'s details (`Unspecified` when it has none, as
/// from a v0.1 member). Clients read it with `ferry_client::Refusal`.
#[cfg(test)]
pub fn reason_of(status: &Status) -> Reason {
    status
        .get_details_error_info()
        .map_or(Reason::Unspecified, |i| Reason::parse(&i.reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_round_trips_its_reason_and_a_lint_its_positions() {
        let s = refused(Code::PermissionDenied, Reason::FourEyes, "no");
        assert_eq!(s.code(), Code::PermissionDenied);
        assert_eq!(s.message(), "no");
        assert_eq!(reason_of(&s), Reason::FourEyes);

        let s = lint(
            "bad".into(),
            &[LintProblem {
                file: "p.yml".into(),
                line: 3,
                column: 7,
                message: "unknown key `imagee`".into(),
            }],
        );
        assert_eq!(reason_of(&s), Reason::LintFailed);
        let bad = s.get_details_bad_request().expect("bad request details");
        assert_eq!(bad.field_violations.len(), 1);
        assert_eq!(bad.field_violations[0].field, "p.yml:3:7");

        let s = precondition(Reason::FailedPrecondition, "decided".into());
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.get_details_precondition_failure().is_some());
        assert_eq!(reason_of(&Status::not_found("x")), Reason::Unspecified);
    }
}
