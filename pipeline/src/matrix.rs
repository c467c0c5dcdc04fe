//! Matrices: one build or test action written once and run once per
//! combination of its axes' values (`matrix: {version: [1, 2], os: [a, b]}`,
//! with `exclude`, `max_parallel` and `fail_fast`). The reader expands a
//! matrix into one action per combination, so the rest of Ferry (the state
//! machine, the scheduler, agents) sees ordinary actions; each remembers its
//! cell ([`MatrixCell`]) for `#{matrix.NAME}`, grouping and the limits.

use serde::{Deserialize, Serialize};

/// Most combinations one matrix may expand to.
pub const MAX_COMBINATIONS: usize = 256;

/// Longest value of an axis, in bytes.
pub const MAX_VALUE_LEN: usize = 64;

/// Most axes in one matrix.
pub const MAX_AXES: usize = 8;

/// One combination of a matrix action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixCell {
    /// The action's name as written (`unit`); the cell's own name adds its
    /// values ([`cell_name`]).
    pub base: String,
    /// Axis name -> this cell's value, in the order the file gives the axes.
    pub values: Vec<(String, String)>,
    /// Most cells of the matrix that run at once; 0: no limit.
    pub max_parallel: u32,
    /// A failed cell keeps the others from starting (true, the default), or
    /// the others still run and the execution fails once all have ended.
    pub fail_fast: bool,
}

impl MatrixCell {
    /// This cell's value of axis `name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `text` with each `#{matrix.NAME}` given as `shown(value)`; as
    /// written when a reference in it has no value here.
    pub fn fill(&self, text: &str, shown: impl Fn(&str) -> String) -> String {
        crate::vars::substitute(text, |r| match r {
            crate::vars::Ref::Matrix(n) => self.value(n).map(&shown),
            _ => None,
        })
        .unwrap_or_else(|_| text.to_string())
    }
}

/// A cell's action name: `unit [version=1, os=a]`.
pub fn cell_name(base: &str, values: &[(String, String)]) -> String {
    let pairs: Vec<String> = values.iter().map(|(n, v)| format!("{n}={v}")).collect();
    format!("{base} [{}]", pairs.join(", "))
}

/// The matrix an action name belongs to: `unit` for `unit [version=1]`
/// (action names themselves never hold a space).
pub fn base_of(name: &str) -> Option<&str> {
    name.split_once(" [").map(|(base, _)| base)
}

/// How a matrix reads where its cells are listed (`ferry status`, the
/// console): when `name` is the first of its matrix's cells among `actions`
/// (each an action's name and status word, in stage order), the matrix's
/// name and `N cells: COUNT STATUS, ...`; `None` for any other action.
pub fn group_summary<'a, 'b, W: AsRef<str>>(
    name: &'a str,
    actions: impl IntoIterator<Item = (&'b str, W)>,
) -> Option<(&'a str, String)> {
    let base = base_of(name)?;
    let mut first = None;
    let mut cells = 0usize;
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for (cell, status) in actions {
        if base_of(cell) != Some(base) {
            continue;
        }
        first.get_or_insert(cell);
        cells += 1;
        *counts.entry(status.as_ref().to_string()).or_default() += 1;
    }
    if first != Some(name) {
        return None;
    }
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    Some((base, format!("{cells} cells: {}", counts.join(", "))))
}

/// Checks an axis value: letters, digits, `.`, `_` and `-`, at most
/// [`MAX_VALUE_LEN`] bytes (it is part of an action's name, shown on
/// terminals and in URLs, and given to commands as data).
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("a matrix value must not be empty".into());
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(format!(
            "matrix value {:?} is longer than {MAX_VALUE_LEN} bytes",
            value.chars().take(20).collect::<String>()
        ));
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
    {
        Some(c) => Err(format!(
            "matrix value {value:?} contains {c:?}; only letters, digits, '.', '_' and '-' are allowed"
        )),
        None => Ok(()),
    }
}

/// Every combination of `axes` (name, values) in order, the first axis
/// varying slowest, leaving out those matching an `exclude` entry (each a
/// set of axis = value pairs, all of which must match). `None` when there
/// would be more than [`MAX_COMBINATIONS`] before exclusions.
pub fn combinations(
    axes: &[(String, Vec<String>)],
    exclude: &[Vec<(String, String)>],
) -> Option<Vec<Vec<(String, String)>>> {
    let total = axes
        .iter()
        .try_fold(1usize, |n, (_, values)| n.checked_mul(values.len()))?;
    if total > MAX_COMBINATIONS {
        return None;
    }
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (name, values) in axes {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut cell = prefix.clone();
                    cell.push((name.clone(), v.clone()));
                    cell
                })
            })
            .collect();
    }
    out.retain(|cell| {
        !exclude
            .iter()
            .any(|ex| ex.iter().all(|pair| cell.contains(pair)))
    });
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axes(spec: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        spec.iter()
            .map(|(n, vs)| (n.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn combinations_in_order_without_the_excluded() {
        let a = axes(&[("version", &["1", "2"]), ("os", &["a", "b"])]);
        let names: Vec<String> = combinations(&a, &[pairs(&[("version", "1"), ("os", "b")])])
            .unwrap_or_default()
            .iter()
            .map(|c| cell_name("unit", c))
            .collect();
        assert_eq!(
            names,
            vec![
                "unit [version=1, os=a]",
                "unit [version=2, os=a]",
                "unit [version=2, os=b]"
            ]
        );
        assert_eq!(base_of(&names[0]), Some("unit"));
        assert_eq!(base_of("unit"), None);
        // An exclusion naming one axis removes every cell with that value.
        let all_of_1 = combinations(&a, &[pairs(&[("version", "1")])]).unwrap_or_default();
        assert_eq!(all_of_1.len(), 2);
    }

    #[test]
    fn more_than_the_bound_is_refused_before_expanding() {
        let values: Vec<String> = (0..17).map(|i| i.to_string()).collect();
        let big = vec![("a".to_string(), values.clone()), ("b".to_string(), values)];
        assert!(combinations(&big, &[]).is_none(), "289 combinations");
        let huge: Vec<(String, Vec<String>)> = (0..64)
            .map(|i| (format!("x{i}"), vec!["1".into(), "2".into()]))
            .collect();
        assert!(combinations(&huge, &[]).is_none(), "2^64 does not overflow");
    }

    #[test]
    fn values_are_plain_words() {
        for ok in ["1.85", "bookworm", "x86_64", "node-20"] {
            assert_eq!(check_value(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a b", "$(id)", "a/b", &"x".repeat(65)] {
            assert!(check_value(bad).is_err(), "{bad}");
        }
    }
}
