//! Readers several sections share: lengths of time and checked lists of
//! strings.

use crate::duration::parse_duration_ms;
use crate::parse::Pos;
use crate::rules;
use crate::yaml::{Reader, Value};

impl Reader<'_> {
    pub(super) fn duration(&mut self, value: Value<'_>, what: &str) -> Option<(u64, Pos)> {
        let (text, at) = self.string(value, what)?;
        match parse_duration_ms(&text) {
            Ok(ms) => Some((ms, at)),
            Err(e) => {
                self.error(at, e.to_string());
                None
            }
        }
    }

    /// A list of non-empty, whitespace-free strings (agent labels, approvers).
    pub(super) fn plain_list(
        &mut self,
        value: Value<'_>,
        what: &str,
        item_what: &str,
    ) -> Vec<String> {
        self.checked_list(value, (what, item_what), rules::check_plain_text)
    }

    /// A list of strings, each checked by `check`.
    pub(super) fn checked_list(
        &mut self,
        value: Value<'_>,
        (what, item_what): (&str, &str),
        check: fn(&str) -> Result<(), String>,
    ) -> Vec<String> {
        let Some(list) = self.sequence(value, what) else {
            return Vec::new();
        };
        let mut values = Vec::new();
        for item in list.iter() {
            let item_what_each = format!("each {item_what}");
            if let Some((text, at)) = self.string(Value::item(item), &item_what_each) {
                if let Err(reason) = check(&text) {
                    self.error(at, format!("invalid {item_what} {text:?}: {reason}"));
                }
                values.push(text);
            }
        }
        values
    }
}
