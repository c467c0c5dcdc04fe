//! Reads a deploy action's settings: `environment`, `strategy`,
//! `min_healthy`, `rollback`, `keep_releases` and its timeouts.

use marked_yaml::types::MarkedMappingNode;

use crate::deploy::{Count, Deploy, MAX_KEEP_RELEASES, Strategy};
use crate::name::validate_name;
use crate::yaml::{Reader, Value, field, mapping_pos};

const STRATEGY_KEYS: &[&str] = &["batch"];

impl Reader<'_> {
    /// The deploy settings; `None` (with errors) when `environment` is missing.
    pub(super) fn deploy(&mut self, map: &MarkedMappingNode, required: bool) -> Option<Deploy> {
        let environment = match field(map, "environment") {
            Some(value) => self.string(value, "`environment`").map(|(name, at)| {
                if let Err(reason) = validate_name(&name) {
                    self.error(at, format!("invalid environment name {name:?}: {reason}"));
                }
                name
            }),
            None => {
                if required {
                    self.error(
                        mapping_pos(map),
                        "missing required key `environment` in deploy action",
                    );
                }
                None
            }
        };
        let mut deploy = Deploy::new(environment.clone().unwrap_or_default());
        if let Some(value) = field(map, "strategy") {
            deploy.strategy = self.strategy(value).unwrap_or(deploy.strategy);
        }
        if let Some(value) = field(map, "min_healthy") {
            deploy.min_healthy = self.count(value, "`min_healthy`");
        }
        if let Some((text, at)) =
            field(map, "rollback").and_then(|value| self.string(value, "`rollback`"))
        {
            match text.as_str() {
                "auto" => deploy.rollback = true,
                "none" => deploy.rollback = false,
                _ => self.error(
                    at,
                    format!("`rollback` must be `auto` or `none`, found {text:?}"),
                ),
            }
        }
        if let Some((n, at)) =
            field(map, "keep_releases").and_then(|value| self.integer(value, "`keep_releases`"))
        {
            match u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_KEEP_RELEASES).contains(n))
            {
                Some(n) => deploy.keep_releases = n,
                None => self.error(
                    at,
                    format!("`keep_releases` must be between 1 and {MAX_KEEP_RELEASES}, found {n}"),
                ),
            }
        }
        for (key, slot) in [
            ("hook_timeout", &mut deploy.hook_timeout_ms),
            ("connect_timeout", &mut deploy.connect_timeout_ms),
        ] {
            let what = format!("`{key}`");
            if let Some((ms, at)) = field(map, key).and_then(|value| self.duration(value, &what)) {
                if ms == 0 {
                    self.error(at, format!("{what} must be greater than zero"));
                }
                *slot = ms;
            }
        }
        environment.map(|_| deploy)
    }

    /// `strategy`: a name, or a mapping `{batch: N | N%}`.
    pub(super) fn strategy(&mut self, value: Value<'_>) -> Option<Strategy> {
        if let Some(map) = value.node.as_mapping() {
            self.check_keys(map, "strategy", STRATEGY_KEYS);
            let batch = self.required(map, "batch", "strategy")?;
            return self.count(batch, "`batch`").map(Strategy::Batch);
        }
        let (text, at) = self.string(value, "`strategy`")?;
        let strategy = Strategy::named(&text);
        if strategy.is_none() {
            self.error(
                at,
                format!(
                    "unknown strategy {text:?}; expected all_at_once, one_at_a_time, \
                     half_at_a_time or a mapping such as `{{batch: 2}}` or `{{batch: 25%}}`"
                ),
            );
        }
        strategy
    }

    /// A host count: a whole number or a percentage string.
    pub(super) fn count(&mut self, value: Value<'_>, what: &str) -> Option<Count> {
        let (text, at) = self.string(value, what)?;
        match Count::parse(&text) {
            Ok(count) => Some(count),
            Err(message) => {
                self.error(at, format!("{what}: {message}"));
                None
            }
        }
    }
}
