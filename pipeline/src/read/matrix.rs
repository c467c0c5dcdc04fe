//! Reads a build or test action's `matrix:` (axes of values, `exclude`,
//! `max_parallel`, `fail_fast`) and expands the action into one action per
//! combination, each named `NAME [AXIS=VALUE, ...]` with its cell, its
//! output names' `#{matrix.NAME}` filled in.

use marked_yaml::types::MarkedMappingNode;

use crate::matrix::{MAX_AXES, MAX_COMBINATIONS, MatrixCell, cell_name, check_value, combinations};
use crate::model::Action;
use crate::parse::Pos;
use crate::rules;
use crate::yaml::{Reader, Value, pos};

use super::ActionLoc;

/// Keys of `matrix:` that are not axes.
const SETTINGS: &[&str] = &["exclude", "max_parallel", "fail_fast"];

/// A matrix as read, before expansion.
pub(super) struct MatrixRead {
    pub at: Pos,
    pub axes: Vec<(String, Vec<String>)>,
    pub exclude: Vec<Vec<(String, String)>>,
    pub max_parallel: u32,
    pub fail_fast: bool,
}

impl Reader<'_> {
    pub(super) fn matrix(&mut self, value: Value<'_>) -> Option<MatrixRead> {
        let map = self.mapping(value, "`matrix`")?;
        let mut m = MatrixRead {
            at: value.pos(),
            axes: Vec::new(),
            exclude: Vec::new(),
            max_parallel: 0,
            fail_fast: true,
        };
        for (key, node) in map.iter() {
            let name = key.as_str();
            let entry = Value::entry(key, node);
            match name {
                "exclude" => continue,
                "max_parallel" => {
                    if let Some((n, at)) = self.integer(entry, "`max_parallel`") {
                        match u32::try_from(n) {
                            Ok(n) if n >= 1 => m.max_parallel = n,
                            _ => self
                                .error(at, format!("`max_parallel` must be at least 1, found {n}")),
                        }
                    }
                }
                "fail_fast" => m.fail_fast = self.boolean(entry, "`fail_fast`").unwrap_or(true),
                _ => {
                    if let Err(e) = crate::vars::check_name(name) {
                        self.error(pos(key.span()), format!("matrix axis: {e}"));
                        continue;
                    }
                    let values = self.axis_values(entry, name);
                    m.axes.push((name.to_string(), values));
                }
            }
        }
        if let Some(value) = map
            .get_key_value("exclude")
            .map(|(k, n)| Value::entry(k, n))
        {
            m.exclude = self.excludes(value, &m.axes);
        }
        if m.axes.is_empty() {
            self.error(
                m.at,
                format!(
                    "`matrix` needs at least one axis besides {}",
                    SETTINGS.join(", ")
                ),
            );
            return None;
        }
        if m.axes.len() > MAX_AXES {
            self.error(
                m.at,
                format!("`matrix` has {} axes; at most {MAX_AXES}", m.axes.len()),
            );
            return None;
        }
        Some(m)
    }

    fn axis_values(&mut self, value: Value<'_>, axis: &str) -> Vec<String> {
        let Some(list) = self.sequence(value, &format!("matrix axis `{axis}`")) else {
            return Vec::new();
        };
        if list.is_empty() {
            self.error(
                pos(list.span()),
                format!("matrix axis `{axis}` must list at least one value"),
            );
        }
        let mut values: Vec<String> = Vec::new();
        for item in list.iter() {
            let Some((v, at)) = self.string(Value::item(item), "each matrix value") else {
                continue;
            };
            if let Err(e) = check_value(&v) {
                self.error(at, e);
            } else if values.contains(&v) {
                self.error(at, format!("matrix axis `{axis}` lists {v:?} twice"));
            } else {
                values.push(v);
            }
        }
        values
    }

    /// `exclude: [{AXIS: VALUE, ...}]`, each naming axes and values the
    /// matrix has (a typo would silently exclude nothing).
    fn excludes(
        &mut self,
        value: Value<'_>,
        axes: &[(String, Vec<String>)],
    ) -> Vec<Vec<(String, String)>> {
        let Some(list) = self.sequence(value, "`exclude`") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in list.iter() {
            let Some(map) = self.mapping(Value::item(item), "each `exclude` entry") else {
                continue;
            };
            // An entry with a mistake in it excludes nothing (it was reported).
            let pairs = self.exclude(map, axes);
            if !pairs.is_empty() && pairs.len() == map.len() {
                out.push(pairs);
            }
        }
        out
    }

    fn exclude(
        &mut self,
        map: &MarkedMappingNode,
        axes: &[(String, Vec<String>)],
    ) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for (key, node) in map.iter() {
            let axis = key.as_str();
            let Some((_, values)) = axes.iter().find(|(n, _)| n == axis) else {
                self.error(
                    pos(key.span()),
                    format!("`exclude` names `{axis}`, which is not an axis of the matrix"),
                );
                continue;
            };
            let Some((v, at)) = self.string(Value::entry(key, node), "an `exclude` value") else {
                continue;
            };
            if !values.contains(&v) {
                self.error(at, format!("`exclude`: axis `{axis}` has no value {v:?}"));
                continue;
            }
            pairs.push((axis.to_string(), v));
        }
        pairs
    }

    /// `action` once per combination of `m`, with its position records.
    pub(super) fn expand(
        &mut self,
        action: Action,
        loc: ActionLoc,
        m: MatrixRead,
    ) -> Vec<(Action, ActionLoc)> {
        let Some(cells) = combinations(&m.axes, &m.exclude) else {
            let total = m
                .axes
                .iter()
                .map(|(_, v)| v.len() as u128)
                .fold(1u128, u128::saturating_mul);
            self.error(
                m.at,
                format!("the matrix has {total} combinations; at most {MAX_COMBINATIONS}"),
            );
            return vec![first_cell_only(action, loc, &m)];
        };
        if cells.is_empty() {
            self.error(m.at, "`exclude` leaves no combination of the matrix");
            return vec![first_cell_only(action, loc, &m)];
        }
        // Every cell writes each output: its name must tell the cells apart.
        if cells.len() > 1 {
            for (name, at) in &loc.outputs {
                if !name.contains("#{matrix.") {
                    self.error(
                        *at,
                        format!(
                            "output `{name}` would be written by each of the matrix's {} actions: \
                             name it with a matrix value, e.g. `{name}-#{{matrix.{}}}`",
                            cells.len(),
                            m.axes[0].0
                        ),
                    );
                }
            }
        }
        let mut out = Vec::with_capacity(cells.len());
        for (i, values) in cells.into_iter().enumerate() {
            let cell = MatrixCell {
                base: action.name.clone(),
                values,
                max_parallel: m.max_parallel,
                fail_fast: m.fail_fast,
            };
            // In an artifact name a value is lowercase, `.` and `_` as `-`.
            let fill = |text: &str| cell.fill(text, name_safe);
            let mut a = action.clone();
            a.name = cell_name(&action.name, &cell.values);
            // A label takes the value as it is (`runs_on: ["#{matrix.os}"]`).
            a.runs_on = a
                .runs_on
                .iter()
                .map(|label| cell.fill(label, str::to_string))
                .collect();
            if i == 0
                && let Some(label) = a.runs_on.iter().find(|l| l.contains("#{"))
            {
                self.error(
                    m.at,
                    format!("`runs_on` label `{label}` names no axis of this matrix"),
                );
            }
            a.outputs = a.outputs.into_iter().map(|(n, p)| (fill(&n), p)).collect();
            a.output_when = a
                .output_when
                .into_iter()
                .map(|(n, w)| (fill(&n), w))
                .collect();
            let mut l = ActionLoc {
                name: loc.name,
                run_order_known: loc.run_order_known,
                inputs: loc.inputs.clone(),
                outputs: Vec::new(),
                refs: loc.refs.clone(),
            };
            for (n, at) in &loc.outputs {
                if i > 0 && !n.contains("#{matrix.") {
                    // Reported above; not again as a duplicate per cell.
                    continue;
                }
                let filled = fill(n);
                if n.contains("#{") {
                    match rules::check_artifact_name(&filled) {
                        Ok(()) => {}
                        Err(e) => {
                            self.error(*at, format!("in {}: {e}", a.name));
                            continue;
                        }
                    }
                }
                l.outputs.push((filled, *at));
            }
            a.matrix = Some(cell);
            out.push((a, l));
        }
        out
    }
}

/// `value` as it may stand in an artifact name: lowercase, with `.` and
/// `_` as `-` (`1.85` gives `1-85`).
fn name_safe(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '.' | '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// A refused matrix still reads as one action with its axes' first values,
/// so its `#{matrix.NAME}` references are not reported a second time.
fn first_cell_only(mut action: Action, loc: ActionLoc, m: &MatrixRead) -> (Action, ActionLoc) {
    action.matrix = Some(MatrixCell {
        base: action.name.clone(),
        values: m
            .axes
            .iter()
            .filter_map(|(n, v)| Some((n.clone(), v.first()?.clone())))
            .collect(),
        max_parallel: m.max_parallel,
        fail_fast: m.fail_fast,
    });
    (action, loc)
}
