//! Entry point: loads YAML text with positions (through `yaml`), then runs
//! the reader and the cross-reference checks; defines the positioned
//! `Diagnostic` every check reports.

use std::fmt;

use marked_yaml::Marker;

use crate::limits::MAX_PIPELINE_BYTES;
use crate::model::Pipeline;
use crate::read::read_pipeline;
use crate::validate;
use crate::yaml::{self, DocumentKind};

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

/// The wording for pipeline files in loader errors.
const PIPELINE_FILE: DocumentKind = DocumentKind {
    name: "a pipeline file",
    subject: "the pipeline file",
    max_bytes: MAX_PIPELINE_BYTES,
    empty_message: "the pipeline file is empty; expected a mapping with `name`, `source` and `stages`",
    top_level_message: "a pipeline file must be a mapping with `name`, `source` and `stages` at the top level",
};

/// Parses and validates a pipeline; on failure returns every error found, sorted by position.
pub fn parse(text: &str) -> Result<Pipeline, Vec<Diagnostic>> {
    yaml::load(text, &PIPELINE_FILE, |map, diags| {
        let draft = read_pipeline(map, diags);
        validate::check(&draft, diags);
        draft.pipeline
    })
}
