//! Reads what a build or test action leaves behind: `outputs` (each a list
//! of paths, or `{paths: [...], when: on_success | on_failure | always}`)
//! and `reports` (`{junit: [paths]}`).

use std::collections::BTreeMap;

use crate::parse::Pos;
use crate::reports::{MAX_REPORT_FILES, OutputWhen, Reports};
use crate::rules;
use crate::yaml::{Reader, Value, field, pos};

const OUTPUT_KEYS: &[&str] = &["paths", "when"];
const REPORT_KEYS: &[&str] = &["junit"];

/// What `outputs` says: name -> paths, name -> when (only the outputs not
/// kept on success only), and where each valid name was written.
pub(super) struct ReadOutputs {
    pub paths: BTreeMap<String, Vec<String>>,
    pub when: BTreeMap<String, OutputWhen>,
    pub locs: Vec<(String, Pos)>,
}

impl Reader<'_> {
    pub(super) fn outputs(&mut self, value: Value<'_>) -> ReadOutputs {
        let mut out = ReadOutputs {
            paths: BTreeMap::new(),
            when: BTreeMap::new(),
            locs: Vec::new(),
        };
        let Some(map) = self.mapping(value, "`outputs`") else {
            return out;
        };
        for (key, value) in map.iter() {
            let name = key.as_str();
            let key_pos = pos(key.span());
            // A name with `#{matrix.NAME}` is checked once the matrix fills it in.
            match rules::check_artifact_name(name) {
                _ if name.contains("#{matrix.") => out.locs.push((name.to_string(), key_pos)),
                Ok(()) => out.locs.push((name.to_string(), key_pos)),
                Err(message) => self.error(key_pos, message),
            }
            let entry = Value::entry(key, value);
            let what = format!("output `{name}`");
            let list = match value.as_mapping() {
                Some(fields) => {
                    self.check_keys(fields, &what, OUTPUT_KEYS);
                    if let Some(w) = field(fields, "when").and_then(|v| self.output_when(v))
                        && w != OutputWhen::OnSuccess
                    {
                        out.when.insert(name.to_string(), w);
                    }
                    self.required(fields, "paths", &what)
                }
                None => Some(entry),
            };
            let Some(list) = list else { continue };
            let paths = self.paths(list, &what, "each output path");
            if let Some(at) = paths.1 {
                self.error(at, format!("output `{name}` must list at least one path"));
            }
            out.paths.insert(name.to_string(), paths.0);
        }
        out
    }

    fn output_when(&mut self, value: Value<'_>) -> Option<OutputWhen> {
        let (text, at) = self.string(value, "`when` of an output")?;
        let when = OutputWhen::parse(&text);
        if when.is_none() {
            let expected: Vec<&str> = OutputWhen::ALL.iter().map(|w| w.as_str()).collect();
            self.error(
                at,
                format!(
                    "unknown output `when` {text:?}; expected one of: {}",
                    expected.join(", ")
                ),
            );
        }
        when
    }

    /// `reports: {junit: [paths]}` (a single path may be written bare).
    pub(super) fn reports(&mut self, value: Value<'_>) -> Reports {
        let mut reports = Reports::default();
        let Some(map) = self.mapping(value, "`reports`") else {
            return reports;
        };
        self.check_keys(map, "reports", REPORT_KEYS);
        let Some(junit) = field(map, "junit") else {
            return reports;
        };
        let at = junit.pos();
        let (paths, empty) = if junit.node.as_scalar().is_some() {
            let path = self.string(junit, "`junit`");
            (self.checked_paths(path.into_iter().collect()), None)
        } else {
            self.paths(junit, "`junit`", "each report path")
        };
        if let Some(at) = empty {
            self.error(at, "`junit` must list at least one path");
        }
        if paths.len() > MAX_REPORT_FILES {
            self.error(
                at,
                format!(
                    "`junit` lists {} reports; at most {MAX_REPORT_FILES} are read",
                    paths.len()
                ),
            );
        }
        reports.junit = paths;
        reports
    }

    /// A list of workspace paths, each checked; and where the list is if it
    /// is empty.
    pub(super) fn paths(
        &mut self,
        value: Value<'_>,
        what: &str,
        each: &str,
    ) -> (Vec<String>, Option<Pos>) {
        let Some(list) = self.sequence(value, what) else {
            return (Vec::new(), None);
        };
        let empty = list.is_empty().then(|| pos(list.span()));
        let read = list
            .iter()
            .filter_map(|item| self.string(Value::item(item), each))
            .collect();
        (self.checked_paths(read), empty)
    }

    fn checked_paths(&mut self, read: Vec<(String, Pos)>) -> Vec<String> {
        read.into_iter()
            .map(|(path, at)| {
                if let Err(message) = rules::check_output_path(&path) {
                    self.error(at, message);
                }
                path
            })
            .collect()
    }
}
