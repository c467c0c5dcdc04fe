//! Shared YAML reading for Ferry's document kinds (pipeline files,
//! environment files, revision specs): bounds the text's size and nesting
//! depth, loads it with positions, turns loader errors and extra documents
//! into diagnostics, and offers a [`Reader`] with the generic key, type and
//! name checks that every document reader builds on. Wording that names the
//! document comes from a [`DocumentKind`].
//!
//! Must never build a node tree from text that is over its size limit or
//! nests deeper than [`MAX_NESTING_DEPTH`]: yaml-rust2's loader recurses once
//! per level, and so do dropping and comparing nodes, so depth is what keeps
//! a small document from overflowing a worker thread's stack.

use std::num::IntErrorKind;

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode, MarkedSequenceNode};
use marked_yaml::{LoadError, LoaderOptions, Marker, Node};
use yaml_rust2::parser::{Event, Parser};

use crate::limits::MAX_NESTING_DEPTH;
use crate::name::validate_name;
use crate::parse::{Diagnostic, Pos};

/// The messages that name the kind of document being read.
pub(crate) struct DocumentKind {
    /// The document with its article, like "a pipeline file".
    pub name: &'static str,
    /// The document as the subject of a sentence, like "the pipeline file".
    pub subject: &'static str,
    /// The largest accepted text, in bytes.
    pub max_bytes: usize,
    /// Reported when the text holds nothing at all.
    pub empty_message: &'static str,
    /// Reported when the top level is not a mapping.
    pub top_level_message: &'static str,
}

/// Loads `text` as one YAML document with a top-level mapping and hands
/// that mapping to `read`; returns what `read` built, or every diagnostic
/// found (by the loader or by `read`), sorted by position. Text over the
/// kind's size limit or nested too deeply is refused before any node exists.
pub(crate) fn load<T>(
    text: &str,
    kind: &DocumentKind,
    read: impl FnOnce(&MarkedMappingNode, &mut Vec<Diagnostic>) -> T,
) -> Result<T, Vec<Diagnostic>> {
    if text.len() > kind.max_bytes {
        return Err(vec![Diagnostic::at(
            Pos { line: 1, column: 1 },
            format!(
                "{} is {} bytes; the limit is {} bytes",
                kind.subject,
                text.len(),
                kind.max_bytes
            ),
        )]);
    }
    // YAML allows a byte order mark; the scanner would read it as part of the first key.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if is_blank(text) {
        return Err(vec![Diagnostic::at(
            Pos { line: 1, column: 1 },
            kind.empty_message,
        )]);
    }
    let options = LoaderOptions::default()
        .toplevel_mapping()
        .error_on_duplicate_keys(true)
        // Keeps quoted scalars distinguishable: "1" is a string, ~ is null but "~" is not.
        .prevent_coercion(true);
    if let Some(too_deep) = too_deep(text) {
        return Err(vec![too_deep]);
    }
    let root = marked_yaml::parse_yaml_with_options(0, text, options)
        .map_err(|e| vec![load_error(&e, kind)])?;
    let Some(map) = root.as_mapping() else {
        // The loader guarantees a top-level mapping; report rather than panic.
        return Err(vec![Diagnostic::at(
            Pos { line: 1, column: 1 },
            kind.top_level_message,
        )]);
    };
    let mut diags = Vec::new();
    if let Some(end) = map.span().end() {
        diags.extend(extra_document(text, end, kind));
    }
    let value = read(map, &mut diags);
    if diags.is_empty() {
        Ok(value)
    } else {
        // Stable sort: diagnostics at the same position keep their discovery order.
        diags.sort_by_key(|d| (d.line, d.column));
        // The actions a matrix expands to share their positions: one
        // mistake is reported once.
        let mut seen = std::collections::HashSet::new();
        diags.retain(|d| seen.insert((d.line, d.column, d.message.clone())));
        Err(diags)
    }
}

/// The first list or mapping nested deeper than [`MAX_NESTING_DEPTH`], as
/// a diagnostic at its start. Runs yaml-rust2's event parser, which keeps
/// its own state on the heap and builds nothing, so it costs one pass over
/// the text however deep the nesting. A syntax error met first ends the
/// walk without a diagnostic: the loader reports it, with its position,
/// after at most the nesting seen so far.
fn too_deep(text: &str) -> Option<Diagnostic> {
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            // The scanner looks ahead over flow brackets and gives up at its
            // own limit (255 open brackets) before the parser sees level 33.
            Err(e) if e.info() == SCANNER_DEPTH_ERROR => return Some(nesting_error(e.marker())),
            Err(_) => return None,
        };
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_NESTING_DEPTH {
                    return Some(nesting_error(&mark));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::StreamEnd => return None,
            _ => {}
        }
    }
}

/// What yaml-rust2's scanner says when flow collections nest too deeply.
const SCANNER_DEPTH_ERROR: &str = "recursion limit exceeded";

fn nesting_error(mark: &yaml_rust2::scanner::Marker) -> Diagnostic {
    let at = Pos {
        line: mark.line(),
        // The parser counts columns from 0, the loader from 1.
        column: mark.col() + 1,
    };
    Diagnostic::at(
        at,
        format!(
            "nesting deeper than {MAX_NESTING_DEPTH} levels of lists and mappings; \
             Ferry's documents need at most 7"
        ),
    )
}

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
fn extra_document(text: &str, end: &Marker, kind: &DocumentKind) -> Option<Diagnostic> {
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
            Some(at) => Diagnostic::at(
                at,
                format!("{} must contain a single YAML document", kind.name),
            ),
            None => Diagnostic::at(here, "unexpected content after the top-level mapping"),
        });
    }
    None
}

fn load_error(error: &LoadError, kind: &DocumentKind) -> Diagnostic {
    let (marker, message) = match error {
        LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => {
            (Some(m), kind.top_level_message.to_string())
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

// ---- reader ------------------------------------------------------------------

/// Reads a node tree, recording every problem and carrying on, so one pass
/// reports everything that is wrong. Each document kind adds its own
/// structure methods in its module (`read`, `environment`).
pub(crate) struct Reader<'d> {
    diags: &'d mut Vec<Diagnostic>,
}

impl<'d> Reader<'d> {
    pub(crate) fn new(diags: &'d mut Vec<Diagnostic>) -> Self {
        Reader { diags }
    }
}

impl Reader<'_> {
    pub(crate) fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic::at(pos, message));
    }

    /// The required `name` key (of a pipeline, stage, action, environment
    /// or host), checked against the name rule.
    pub(crate) fn name_field(
        &mut self,
        map: &MarkedMappingNode,
        what: &str,
    ) -> Option<(String, Pos)> {
        let (name, at) = self.required_string(map, "name", what)?;
        match validate_name(&name) {
            Ok(()) => Some((name, at)),
            Err(reason) => {
                self.error(at, format!("invalid {what} name {name:?}: {reason}"));
                None
            }
        }
    }

    /// Reports every key of `map` that is not in `allowed`.
    pub(crate) fn check_keys(&mut self, map: &MarkedMappingNode, what: &str, allowed: &[&str]) {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                self.error(
                    pos(key.span()),
                    format!(
                        "unknown key `{}` in {what}; expected one of: {}",
                        key.as_str(),
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    pub(crate) fn required<'n>(
        &mut self,
        map: &'n MarkedMappingNode,
        key: &str,
        what: &str,
    ) -> Option<Value<'n>> {
        let value = field(map, key);
        if value.is_none() {
            self.error(
                mapping_pos(map),
                format!("missing required key `{key}` in {what}"),
            );
        }
        value
    }

    pub(crate) fn required_string(
        &mut self,
        map: &MarkedMappingNode,
        key: &str,
        what: &str,
    ) -> Option<(String, Pos)> {
        let value = self.required(map, key, what)?;
        self.string(value, &format!("`{key}`"))
    }

    pub(crate) fn required_list<'n>(
        &mut self,
        map: &'n MarkedMappingNode,
        key: &str,
        what: &str,
    ) -> Option<&'n MarkedSequenceNode> {
        let value = self.required(map, key, what)?;
        self.sequence(value, &format!("`{key}`"))
    }

    pub(crate) fn mapping<'n>(
        &mut self,
        value: Value<'n>,
        what: &str,
    ) -> Option<&'n MarkedMappingNode> {
        let map = value.node.as_mapping();
        if map.is_none() {
            self.error(
                value.pos(),
                format!("{what} must be a mapping, found {}", describe(value.node)),
            );
        }
        map
    }

    pub(crate) fn sequence<'n>(
        &mut self,
        value: Value<'n>,
        what: &str,
    ) -> Option<&'n MarkedSequenceNode> {
        let list = value.node.as_sequence();
        if list.is_none() {
            self.error(
                value.pos(),
                format!("{what} must be a list, found {}", describe(value.node)),
            );
        }
        list
    }

    /// An unquoted integer scalar, at any size (the caller checks the range).
    pub(crate) fn integer(&mut self, value: Value<'_>, what: &str) -> Option<(i128, Pos)> {
        let at = value.pos();
        let scalar = value
            .node
            .as_scalar()
            .filter(|s| s.may_coerce() && !is_null(s));
        let Some(text) = scalar.map(|s| s.as_str()) else {
            let found = describe(value.node);
            self.error(at, format!("{what} must be an integer, found {found}"));
            return None;
        };
        match text.parse::<i128>() {
            Ok(number) => Some((number, at)),
            Err(e) => {
                let message = match e.kind() {
                    IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
                        format!("{what} is out of range, found {text}")
                    }
                    _ => format!("{what} must be an integer, found {:?}", text),
                };
                self.error(at, message);
                None
            }
        }
    }

    /// An unquoted `true` or `false`.
    pub(crate) fn boolean(&mut self, value: Value<'_>, what: &str) -> Option<bool> {
        let scalar = value.node.as_scalar().filter(|s| s.may_coerce());
        match scalar.map(|s| s.as_str()) {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => {
                let found = describe(value.node);
                self.error(
                    value.pos(),
                    format!("{what} must be true or false, found {found}"),
                );
                None
            }
        }
    }

    /// Any non-null scalar, as written (numbers and booleans keep their text).
    pub(crate) fn string(&mut self, value: Value<'_>, what: &str) -> Option<(String, Pos)> {
        let at = value.pos();
        match value.node.as_scalar() {
            Some(scalar) if !is_null(scalar) => Some((scalar.as_str().to_string(), at)),
            _ => {
                self.error(
                    at,
                    format!("{what} must be a string, found {}", describe(value.node)),
                );
                None
            }
        }
    }
}

/// A node together with the position of the key it belongs to, if any.
#[derive(Clone, Copy)]
pub(crate) struct Value<'n> {
    pub node: &'n Node,
    pub key: Option<Pos>,
}

impl<'n> Value<'n> {
    /// A list item: it has no key.
    pub(crate) fn item(node: &'n Node) -> Self {
        Value { node, key: None }
    }

    pub(crate) fn entry(key: &MarkedScalarNode, node: &'n Node) -> Self {
        Value {
            node,
            key: Some(pos(key.span())),
        }
    }

    /// Where to report a problem with this value. An empty value (`key:`
    /// with nothing after it) is positioned by the loader at the next token,
    /// often on a later line, so null values are reported at their key.
    pub(crate) fn pos(&self) -> Pos {
        match (self.node, self.key) {
            (Node::Scalar(s), Some(key)) if is_null(s) => key,
            (Node::Mapping(map), _) => mapping_pos(map),
            _ => pos(self.node.span()),
        }
    }

    /// The key's position, or the value's for a list item.
    pub(crate) fn key_pos(&self) -> Pos {
        self.key.unwrap_or_else(|| self.pos())
    }
}

/// The value under `key` in `map`, with the key's position.
pub(crate) fn field<'n>(map: &'n MarkedMappingNode, key: &str) -> Option<Value<'n>> {
    map.get_key_value(key)
        .map(|(key, node)| Value::entry(key, node))
}

/// Where a mapping starts. The loader marks a block mapping after its first
/// key, so the first key's position is used when it comes earlier.
pub(crate) fn mapping_pos(map: &MarkedMappingNode) -> Pos {
    let start = pos(map.span());
    map.keys()
        .next()
        .map(|key| pos(key.span()))
        .map_or(start, |first_key| first_key.min(start))
}

/// Start of a span (every node the loader produces has one).
pub(crate) fn pos(span: &marked_yaml::Span) -> Pos {
    span.start().map_or(Pos { line: 1, column: 1 }, Pos::from)
}

/// A plain (unquoted) `~`, `null` or empty scalar. Relies on the loader's
/// `prevent_coercion`, which marks quoted scalars as not coercible.
pub(crate) fn is_null(scalar: &MarkedScalarNode) -> bool {
    scalar.may_coerce() && matches!(scalar.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

/// How a node is named in type errors.
pub(crate) fn describe(node: &Node) -> String {
    match node {
        Node::Mapping(_) => "a mapping".to_string(),
        Node::Sequence(_) => "a list".to_string(),
        Node::Scalar(s) if is_null(s) => "nothing (null)".to_string(),
        Node::Scalar(s) => format!("{:?}", s.as_str()),
    }
}
