//! Entry point: loads YAML text with positions, turns loader errors into
//! diagnostics, then runs the reader and the cross-reference checks.

use std::fmt;

use marked_yaml::{LoadError, LoaderOptions, Marker};

use crate::model::Pipeline;
use crate::read::read_pipeline;
use crate::validate;

/// One problem in a pipeline file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn at(pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// A 1-based line and column in the pipeline text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl From<&Marker> for Pos {
    fn from(marker: &Marker) -> Self {
        Pos {
            line: marker.line(),
            column: marker.column(),
        }
    }
}

/// Parses and validates a pipeline; on failure returns every error found, sorted by position.
pub fn parse(text: &str) -> Result<Pipeline, Vec<Diagnostic>> {
    // YAML allows a byte order mark; the scanner would read it as part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if is_blank(text) {
        return Err(vec![Diagnostic::at(
            Pos { line: 1, column: 1 },
            "the pipeline file is empty; expected a mapping with `name`, `source` and `stages`",
        )]);
    }
    let options = LoaderOptions::default()
        .toplevel_mapping()
        .error_on_duplicate_keys(true)
        // Keeps quoted scalars distinguishable: "1" is a string, ~ is null but "~" is not.
        .prevent_coercion(true);
    let root =
        marked_yaml::parse_yaml_with_options(0, text, options).map_err(|e| vec![load_error(&e)])?;
    let Some(map) = root.as_mapping() else {
        // The loader guarantees a top-level mapping; report rather than panic.
        return Err(vec![Diagnostic::at(
            Pos { line: 1, column: 1 },
            TOP_LEVEL_MESSAGE,
        )]);
    };
    let mut diags = Vec::new();
    if let Some(end) = map.span().end() {
        diags.extend(extra_document(text, end));
    }
    let draft = read_pipeline(map, &mut diags);
    validate::check(&draft, &mut diags);
    if diags.is_empty() {
        Ok(draft.pipeline)
    } else {
        // Stable sort: diagnostics at the same position keep their discovery order.
        diags.sort_by_key(|d| (d.line, d.column));
        Err(diags)
    }
}

const TOP_LEVEL_MESSAGE: &str =
    "a pipeline file must be a mapping with `name`, `source` and `stages` at the top level";

/// Nothing but whitespace, comments and document markers.
fn is_blank(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---" || line == "..."
    })
}

/// The loader reads only the first YAML document and silently ignores
/// whatever follows; report a second document (or trailing garbage) instead
/// of dropping it. `end` is where
/// the loader says the top-level mapping ends.
fn extra_document(text: &str, end: &Marker) -> Option<Diagnostic> {
    let byte = text
        .char_indices()
        .nth(end.character())
        .map_or(text.len(), |(i, _)| i);
    let rest = text.get(byte..)?;
    // A flow mapping (`{...}`) ends *at* its closing brace.
    let (rest, first_column) = match rest.strip_prefix('}') {
        Some(after_brace) => (after_brace, end.column() + 1),
        None => (rest, end.column()),
    };
    let mut separator = None;
    for (offset, line) in rest.lines().enumerate() {
        let indent = line.chars().take_while(|c| c.is_whitespace()).count();
        let here = Pos {
            line: end.line() + offset,
            column: if offset == 0 { first_column } else { 1 } + indent,
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "..." {
            continue;
        }
        if let Some(after) = trimmed.strip_prefix("---") {
            let after = after.trim_start();
            if after.is_empty() || after.starts_with('#') {
                separator.get_or_insert(here);
                continue;
            }
        }
        return Some(match separator {
            Some(at) => Diagnostic::at(at, "a pipeline file must contain a single YAML document"),
            None => Diagnostic::at(here, "unexpected content after the top-level mapping"),
        });
    }
    None
}

fn load_error(error: &LoadError) -> Diagnostic {
    let (marker, message) = match error {
        LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => {
            (Some(m), TOP_LEVEL_MESSAGE.to_string())
        }
        LoadError::UnexpectedAnchor(m) => (
            Some(m),
            "YAML anchors and aliases are not supported".to_string(),
        ),
        LoadError::MappingKeyMustBeScalar(m) => {
            (Some(m), "mapping keys must be plain strings".to_string())
        }
        LoadError::UnexpectedTag(m) => (
            Some(m),
            "YAML tags (like `!!str`) are not supported".to_string(),
        ),
        LoadError::ScanError(m, e) => (Some(m), format!("YAML syntax error: {}", e.info())),
        LoadError::DuplicateKey(inner) => {
            let first = inner
                .prev_key
                .span()
                .start()
                .map(|m| format!(" (first defined at {})", Pos::from(m)))
                .unwrap_or_default();
            (
                inner.key.span().start(),
                format!("duplicate key `{}`{first}", inner.key.as_str()),
            )
        }
    };
    let pos = marker.map_or(Pos { line: 1, column: 1 }, Pos::from);
    Diagnostic::at(pos, message)
}
