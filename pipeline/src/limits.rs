//! Bounds on what Ferry's YAML readers accept: the size of each kind of
//! document, how deeply lists and mappings may nest, and the longest
//! duration. Sizes and depth are checked before any node tree is built, so
//! hostile text costs a single pass over at most the size limit and never a
//! recursion deeper than [`MAX_NESTING_DEPTH`]. Public so that the
//! coordinator, the agent and the CLI can refuse an oversized document
//! before they even read all of it.

/// Largest pipeline file, in bytes (1 MiB).
pub const MAX_PIPELINE_BYTES: usize = 1 << 20;

/// Largest environment file, in bytes (1 MiB).
pub const MAX_ENVIRONMENT_BYTES: usize = 1 << 20;

/// Largest `ferry-deploy.yml`, in bytes (256 KiB).
pub const MAX_REVISION_SPEC_BYTES: usize = 256 << 10;

/// Deepest nesting of lists and mappings (the top-level mapping is level 1)
/// in any document. The deepest legitimate document nests 8 levels: a
/// pipeline's `stages`, a stage, its `actions`, an action, its `services`,
/// a service and its `env` or `command`; environments nest 4 and revision
/// specs 3.
pub const MAX_NESTING_DEPTH: usize = 32;

/// Longest accepted duration (action and approval timeouts, poll interval,
/// hook, connect and health timeouts): 365 days, in milliseconds. Far from
/// every overflow: deadlines are epoch milliseconds in an `i64`.
pub const MAX_DURATION_MS: u64 = 365 * 24 * 60 * 60 * 1_000;

/// [`MAX_DURATION_MS`] as people write it.
pub(crate) const MAX_DURATION_TEXT: &str = "365 days";
