//! A refusal read from a gRPC status's details (docs/api.md, "Errors"):
//! its stable reason (`ErrorInfo.reason`, e.g. `FOUR_EYES` or
//! `MISSING_ROLE`) and, for a refused file, each problem with its position
//! (`BadRequest`).

use ferry_state::Reason;
use tonic_types::StatusExt;

/// One problem of a refused pipeline or environment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// What a status says, for a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: tonic::Code,
    /// `Reason::Unspecified` without details (a v0.1 member) or for a
    /// reason this build does not know.
    pub reason: Reason,
    pub message: String,
    pub violations: Vec<Violation>,
}

impl Refusal {
    /// Reads `status`.
    pub fn of(status: &tonic::Status) -> Refusal {
        let reason = status
            .get_details_error_info()
            .map_or(Reason::Unspecified, |i| Reason::parse(&i.reason));
        let violations = status
            .get_details_bad_request()
            .map(|b| {
                b.field_violations
                    .iter()
                    .map(|v| violation(&v.field, &v.description))
                    .collect()
            })
            .unwrap_or_default();
        Refusal {
            code: status.code(),
            reason,
            message: status.message().to_string(),
            violations,
        }
    }
}

/// `FILE:LINE:COLUMN` and the problem (a field without a position keeps
/// line and column 0).
fn violation(field: &str, description: &str) -> Violation {
    let mut parts = field.rsplitn(3, ':');
    let (column, line, file) = (parts.next(), parts.next(), parts.next());
    match (
        file,
        line.and_then(|l| l.parse().ok()),
        column.and_then(|c| c.parse().ok()),
    ) {
        (Some(file), Some(line), Some(column)) => Violation {
            file: file.to_string(),
            line,
            column,
            message: description.to_string(),
        },
        _ => Violation {
            file: field.to_string(),
            line: 0,
            column: 0,
            message: description.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn reason_and_positions_are_read_back() {
        let mut details = ErrorDetails::with_error_info(
            "LINT_FAILED",
            "ferry.v1",
            std::collections::HashMap::new(),
        );
        details.add_bad_request_violation("p.yml:3:7", "unknown key `imagee`");
        details.add_bad_request_violation("yaml", "no position");
        let status =
            tonic::Status::with_error_details(tonic::Code::InvalidArgument, "bad", details);
        let r = Refusal::of(&status);
        assert_eq!(r.reason, Reason::LintFailed);
        assert_eq!(
            r.violations[0],
            Violation {
                file: "p.yml".into(),
                line: 3,
                column: 7,
                message: "unknown key `imagee`".into()
            }
        );
        assert_eq!(
            (r.violations[1].line, r.violations[1].file.as_str()),
            (0, "yaml")
        );
        assert_eq!(
            Refusal::of(&tonic::Status::not_found("x")).reason,
            Reason::Unspecified
        );
    }
}
