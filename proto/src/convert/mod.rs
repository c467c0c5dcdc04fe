//! The one conversion between each domain type and its wire form: `From`
//! and `TryFrom` impls, used by the coordinator, the agent, the CLI and the
//! console alike, so a field is mapped in exactly one place. A wire word
//! that names no variant (from a newer peer, or a hostile one) is an error
//! or a spec `problem`, never a silent default.

mod action;
mod caches;
mod deployment;
mod reports;
mod status;

use thiserror::Error;

/// A wire message that does not name a domain value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: unknown value {value:?}")]
pub struct UnknownWord {
    pub field: &'static str,
    pub value: String,
}

impl UnknownWord {
    fn new(field: &'static str, value: &str) -> UnknownWord {
        UnknownWord {
            field,
            value: value.chars().take(64).collect(),
        }
    }
}
