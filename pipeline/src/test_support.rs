//! Helpers shared by the end-to-end parser tests (`tests`,
//! `environment_tests`): building YAML text line by line and unwrapping a
//! parse result into a value or rendered diagnostics.

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
