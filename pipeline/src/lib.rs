//! Ferry pipeline definitions: the data model shared by every Ferry crate,
//! and the YAML parser/validator that turns a `pipeline.yaml` into it while
//! reporting every problem with its line and column.

pub mod cache;
pub mod condition;
pub mod deploy;
pub mod environment;
pub mod execution;
pub mod limits;
pub mod mask;
pub mod matrix;
pub mod notify;
pub mod plugin;
pub mod reports;
pub mod revision;
pub mod schedule;
pub mod service;
pub mod spec;
pub mod trigger;
pub mod upstream;
pub mod vars;

mod duration;
mod model;
mod name;
mod parse;
mod read;
mod rules;
mod validate;
mod yaml;

pub use deploy::{Count, Deploy, Strategy};
pub use environment::{
    DockerTarget, Environment, Host, HostKey, SshTarget, Target, parse_environment,
};
pub use limits::{
    MAX_DURATION_MS, MAX_ENVIRONMENT_BYTES, MAX_NESTING_DEPTH, MAX_PIPELINE_BYTES,
    MAX_REVISION_SPEC_BYTES,
};
pub use model::*;
pub use name::{MAX_NAME_LEN, validate_name};
pub use notify::{
    EventKind, MAX_NOTIFICATION_TARGETS, NotificationTarget, NotifyFormat, check_event_filter,
    check_notify_url, check_targets, event_filter_matches,
};
pub use parse::{Diagnostic, parse};
pub use revision::{
    DockerSpec, Hook, PREVIOUS_CONTAINER_SUFFIX, REVISION_SPEC_FILE, RevisionSpec,
    parse_revision_spec,
};
pub use rules::{
    MAX_LABEL_BYTES, MAX_SECRET_NAME_LEN, check_label, parse_cpus, parse_memory_bytes,
    validate_secret_name,
};
pub use schedule::{DEFAULT_TIMEZONE, Schedule};
pub use service::{MAX_SERVICES, Ready, Service, ServiceCommand};
pub use trigger::{GitRefEvent, GlobFilter, RefKind, Trigger, parse_ref};

#[cfg(test)]
mod automation_tests;
#[cfg(test)]
mod build_tests;
#[cfg(test)]
mod cache_tests;
#[cfg(test)]
mod environment_tests;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod plugin_tests;
#[cfg(test)]
mod proptest_tests;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
