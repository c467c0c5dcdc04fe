//! Helpers shared by the end-to-end parser tests (`tests`,
//! `environment_tests`, ...): building YAML text line by line, unwrapping a
//! parse result into a value or rendered diagnostics, and the spec an
//! action starts with.

use std::fmt::Debug;

use crate::Diagnostic;

/// Joins lines with '\n' so that `lines[i]` is on line `i + 1`.
pub(crate) fn doc(lines: &[&str]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// A result that must fail, rendering each diagnostic as "LINE:COL: message".
pub(crate) fn expect_errors<T: Debug>(result: Result<T, Vec<Diagnostic>>) -> Vec<String> {
    match result {
        Ok(value) => panic!("expected errors, got {value:#?}"),
        Err(diags) => diags.iter().map(ToString::to_string).collect(),
    }
}

/// A result that must succeed; on failure panics listing every diagnostic.
pub(crate) fn expect_ok<T>(result: Result<T, Vec<Diagnostic>>) -> T {
    match result {
        Ok(value) => value,
        Err(diags) => panic!(
            "expected success, got:\n{}",
            diags
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// The spec of the first action of `p` once it started (its references
/// resolved as the execution state resolves them).
pub(crate) fn started_spec(p: &crate::Pipeline) -> crate::spec::ActionSpec {
    use crate::execution::{ExecutionState, Gates};
    let mut state = ExecutionState::new(p);
    let started = state.advance(p, &Gates::open(), 1);
    assert_eq!(started.queued, vec![(0, 0)]);
    let run = state.action(0, 0).cloned().unwrap_or_default();
    crate::spec::action_spec(p, (0, 0), &run, ("e-1", "abc"), 7).unwrap_or_default()
}
