//! Cross-reference checks over the whole pipeline: unique stage, action and
//! artifact names, inputs that only use artifacts produced earlier, and
//! variable references that can be set when the action starts (a matrix
//! value only in an action of a matrix with that axis).

use std::collections::HashMap;

use crate::model::SOURCE_ARTIFACT;
use crate::parse::{Diagnostic, Pos};
use crate::read::Draft;

/// Appends a diagnostic for every cross-reference problem in `draft`.
pub(crate) fn check(draft: &Draft, diags: &mut Vec<Diagnostic>) {
    check_unique_names(draft, diags);
    check_inputs(draft, diags);
    check_references(draft, diags);
}

/// `#{variables.NAME}` must name a declared variable; `#{S.A.NAME}` an
/// earlier build, test or plugin action (one that finishes before this one
/// starts),
/// the only kinds that write output variables. Whether that action writes
/// NAME is only known when it ran: a missing one fails the action then.
fn check_references(draft: &Draft, diags: &mut Vec<Diagnostic>) {
    let stages = &draft.pipeline.stages;
    for (si, (stage, stage_loc)) in stages.iter().zip(&draft.stages).enumerate() {
        // A stage's `when` is decided before any of its actions runs.
        for (reference, at) in &stage_loc.refs {
            if let Some(problem) = reference_problem(draft, reference, si, None) {
                diags.push(Diagnostic::at(*at, problem));
            }
        }
        for (action, loc) in stage.actions.iter().zip(&stage_loc.actions) {
            for (reference, at) in &loc.refs {
                if let Some(problem) = reference_problem(draft, reference, si, Some(action)) {
                    diags.push(Diagnostic::at(*at, problem));
                }
            }
        }
    }
}

/// Why `reference`, used in stage `si` (by `action`, or by the stage
/// itself), can never have a value; None when it can.
fn reference_problem(
    draft: &Draft,
    reference: &crate::vars::Ref,
    si: usize,
    action: Option<&crate::Action>,
) -> Option<String> {
    use crate::vars::Ref;
    let run_order = action.map(|a| a.run_order);
    match reference {
        // A cache key's are checked where it is read (`read/caches.rs`),
        // and never reach here.
        Ref::HashFiles(_) => Some(format!(
            "{reference}: hash_files is only for a cache's `key` and `restore_keys`"
        )),
        Ref::Matrix(name) => match action.and_then(|a| a.matrix.as_ref()) {
            Some(cell) if cell.value(name).is_some() => None,
            Some(cell) => Some(format!(
                "{reference}: the matrix of `{}` has no axis `{name}`",
                cell.base
            )),
            None => Some(format!(
                "{reference}: only an action with a `matrix:` has matrix values"
            )),
        },
        Ref::Pipeline(name) => (!draft.pipeline.variables.contains_key(name)).then(|| {
            format!("{reference}: the pipeline declares no variable `{name}` under `variables:`")
        }),
        Ref::Output {
            stage: s,
            action: a,
            ..
        } => {
            let found = draft
                .pipeline
                .stages
                .iter()
                .enumerate()
                .find_map(|(i, st)| {
                    (st.name == *s)
                        .then_some(i)
                        .and_then(|i| st.actions.iter().find(|x| x.name == *a).map(|x| (i, x)))
                });
            match found {
                None => Some(format!(
                    "{reference}: there is no action `{a}` in a stage `{s}`"
                )),
                Some((_, producer)) if !producer.kind.runs_in_container() => Some(format!(
                    "{reference}: `{s}.{a}` is not a build, test or plugin action; only those write output variables"
                )),
                Some((i, producer))
                    if i > si
                        || (i == si
                            && run_order.is_none_or(|order| producer.run_order >= order)) =>
                {
                    Some(format!(
                        "{reference}: `{s}.{a}` does not finish before this {} starts",
                        if run_order.is_some() {
                            "action"
                        } else {
                            "stage"
                        }
                    ))
                }
                Some(_) => None,
            }
        }
    }
}

fn check_unique_names(draft: &Draft, diags: &mut Vec<Diagnostic>) {
    let stages = draft.pipeline.stages.iter().zip(&draft.stages);
    let mut stage_names: HashMap<&str, Pos> = HashMap::new();
    let mut artifacts: HashMap<&str, (Pos, String)> = HashMap::new();
    for (stage, stage_loc) in stages {
        if let Some(at) = stage_loc.name {
            if let Some(first) = stage_names.get(stage.name.as_str()) {
                diags.push(Diagnostic::at(
                    at,
                    format!(
                        "duplicate stage name `{}` (first defined at {first})",
                        stage.name
                    ),
                ));
            } else {
                stage_names.insert(&stage.name, at);
            }
        }
        let mut action_names: HashMap<&str, Pos> = HashMap::new();
        for (action, loc) in stage.actions.iter().zip(&stage_loc.actions) {
            if let Some(at) = loc.name {
                if let Some(first) = action_names.get(action.name.as_str()) {
                    diags.push(Diagnostic::at(
                        at,
                        format!(
                            "duplicate action name `{}` in stage `{}` (first defined at {first})",
                            action.name, stage.name
                        ),
                    ));
                } else {
                    action_names.insert(&action.name, at);
                }
            }
            for (artifact, at) in &loc.outputs {
                if let Some((first, producer)) = artifacts.get(artifact.as_str()) {
                    diags.push(Diagnostic::at(
                        *at,
                        format!(
                            "duplicate output artifact `{artifact}`: already produced by \
                             {producer} at {first}"
                        ),
                    ));
                } else {
                    let producer = action_label(&stage.name, &action.name);
                    artifacts.insert(artifact, (*at, producer));
                }
            }
        }
    }
}

/// An action that produces an artifact, located in the pipeline.
struct Producer<'p> {
    stage_index: usize,
    stage: &'p str,
    action_index: usize,
    action: &'p str,
    /// `None` when the action's `run_order` was invalid.
    run_order: Option<u32>,
}

/// Every input must be `source` or an output of an action that finishes
/// before this one starts: in an earlier stage, or in the same stage with a
/// strictly smaller `run_order`.
fn check_inputs(draft: &Draft, diags: &mut Vec<Diagnostic>) {
    let mut producers: HashMap<&str, Vec<Producer<'_>>> = HashMap::new();
    for (stage_index, (stage, stage_loc)) in
        draft.pipeline.stages.iter().zip(&draft.stages).enumerate()
    {
        for (action_index, (action, loc)) in
            stage.actions.iter().zip(&stage_loc.actions).enumerate()
        {
            for (artifact, _) in &loc.outputs {
                producers.entry(artifact).or_default().push(Producer {
                    stage_index,
                    stage: &stage.name,
                    action_index,
                    action: &action.name,
                    run_order: loc.run_order_known.then_some(action.run_order),
                });
            }
        }
    }

    for (stage_index, (stage, stage_loc)) in
        draft.pipeline.stages.iter().zip(&draft.stages).enumerate()
    {
        for (action_index, (action, loc)) in
            stage.actions.iter().zip(&stage_loc.actions).enumerate()
        {
            let run_order = loc.run_order_known.then_some(action.run_order);
            for (input, at) in &loc.inputs {
                if input == SOURCE_ARTIFACT {
                    continue;
                }
                if let Some((upstream, _)) = crate::upstream::upstream_input(input) {
                    let upstreams = &draft.pipeline.source.upstreams;
                    if !upstreams.iter().any(|u| u.pipeline == upstream) {
                        diags.push(Diagnostic::at(
                            *at,
                            format!(
                                "input `{input}`: `{upstream}` is not an upstream of this pipeline \
                                 (name it in `source: {{pipeline: ...}}`)"
                            ),
                        ));
                    }
                    // Whether it outputs that is known when it has run.
                    continue;
                }
                let candidates = producers.get(input.as_str()).map_or(&[][..], Vec::as_slice);
                let runs_earlier = |p: &&Producer<'_>| {
                    p.stage_index < stage_index
                        || (p.stage_index == stage_index
                            // An unknown run_order was already reported; do not pile on.
                            && match (p.run_order, run_order) {
                                (Some(theirs), Some(ours)) => theirs < ours,
                                _ => true,
                            })
                };
                if candidates.iter().any(|p| runs_earlier(&p)) {
                    continue;
                }
                let detail = match candidates.first() {
                    None => "no action produces it".to_string(),
                    Some(p) if p.stage_index == stage_index && p.action_index == action_index => {
                        "it is produced by this same action".to_string()
                    }
                    Some(p) if p.stage_index == stage_index && p.run_order == run_order => format!(
                        "it is produced by {}, which runs in parallel (same run_order {})",
                        action_label(p.stage, p.action),
                        action.run_order
                    ),
                    Some(p) => format!(
                        "it is produced by {}, which runs later",
                        action_label(p.stage, p.action)
                    ),
                };
                diags.push(Diagnostic::at(
                    *at,
                    format!("input `{input}` is not produced by any earlier action; {detail}"),
                ));
            }
        }
    }
}

fn action_label(stage: &str, action: &str) -> String {
    format!("action `{action}` in stage `{stage}`")
}
