//! Pipelines that feed pipelines: a pipeline whose `source` names other
//! pipelines (`source: {pipeline: app-build, branch: main}`) starts when a
//! matching execution of its upstream succeeds, with that execution's
//! revision, and takes the upstream's outputs as inputs named
//! `UPSTREAM.OUTPUT`. With several upstreams it waits until each has
//! succeeded for the same revision (a fan-in). Which pipelines form a cycle
//! is worked out here; the replicated state refuses one at apply.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most upstream pipelines one pipeline may name.
pub const MAX_UPSTREAMS: usize = 8;

/// One upstream pipeline a pipeline's executions start from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub pipeline: String,
    /// Only executions of this branch count; `None`: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

impl Upstream {
    /// Whether an upstream execution that started from `branch` (none: a
    /// tag or a bare commit) counts.
    pub fn takes(&self, branch: Option<&str>) -> bool {
        self.branch.as_deref().is_none_or(|b| Some(b) == branch)
    }
}

/// An input naming an upstream's output, `UPSTREAM.OUTPUT`: its two parts.
pub fn upstream_input(name: &str) -> Option<(&str, &str)> {
    name.split_once('.')
}

/// The cycle through `start` in the graph `edges` (pipeline -> the
/// pipelines it starts from), as `a → b → a`; `None` when there is none.
/// Iterative, bounded by the number of pipelines.
pub fn cycle_through(start: &str, edges: &BTreeMap<String, Vec<String>>) -> Option<String> {
    // Depth-first with an explicit stack of (node, next edge to try).
    let mut path: Vec<(&str, usize)> = vec![(start, 0)];
    let mut done: std::collections::BTreeSet<&str> = Default::default();
    while let Some((node, next)) = path.last_mut() {
        let node_now: &str = node;
        let outs = edges.get(node_now).map_or(&[][..], Vec::as_slice);
        let Some(to) = outs.get(*next) else {
            done.insert(node_now);
            path.pop();
            continue;
        };
        *next += 1;
        let to = to.as_str();
        if to == start {
            let mut names: Vec<&str> = path.iter().map(|(n, _)| *n).collect();
            names.push(start);
            return Some(names.join(" → "));
        }
        if done.contains(to) || path.iter().any(|(n, _)| *n == to) {
            continue;
        }
        path.push((to, 0));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(a, bs)| (a.to_string(), bs.iter().map(|b| b.to_string()).collect()))
            .collect()
    }

    #[test]
    fn cycles_are_named_and_chains_are_not_cycles() {
        let g = graph(&[("deploy", &["build"]), ("build", &["deploy"])]);
        assert_eq!(
            cycle_through("deploy", &g).as_deref(),
            Some("deploy → build → deploy")
        );
        let g = graph(&[("c", &["b"]), ("b", &["a"]), ("a", &[])]);
        assert_eq!(cycle_through("c", &g), None);
        let g = graph(&[("a", &["a"])]);
        assert_eq!(cycle_through("a", &g).as_deref(), Some("a → a"));
        // A cycle elsewhere is not this pipeline's.
        let g = graph(&[("x", &["y"]), ("y", &["z"]), ("z", &["y"])]);
        assert_eq!(cycle_through("x", &g), None);
        // A long chain does not recurse.
        let long: BTreeMap<String, Vec<String>> = (0..100_000)
            .map(|i| (format!("p{i}"), vec![format!("p{}", i + 1)]))
            .collect();
        assert_eq!(cycle_through("p0", &long), None);
    }

    #[test]
    fn upstream_inputs_split_at_the_dot() {
        assert_eq!(
            upstream_input("app-build.image"),
            Some(("app-build", "image"))
        );
        assert_eq!(upstream_input("image"), None);
    }
}
