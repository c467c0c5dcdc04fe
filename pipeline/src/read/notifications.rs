//! Reads a pipeline's `notifications:` list, reporting each broken rule at
//! its position with the same wording as `NotificationTarget::check`
//! (the rules live in `crate::notify`), and names used twice.

use std::collections::HashMap;

use crate::name::validate_name;
use crate::notify::{
    NotificationTarget, NotifyFormat, check_event_count, check_event_filter, check_notify_url,
    check_target_count, default_target_name,
};
use crate::parse::Pos;
use crate::rules::validate_secret_name;
use crate::yaml::{Reader, Value, field, pos};

const NOTIFICATION_KEYS: &[&str] = &["name", "url", "url_secret", "secret", "format", "events"];

impl Reader<'_> {
    pub(super) fn notifications(&mut self, value: Value<'_>) -> Vec<NotificationTarget> {
        let Some(list) = self.sequence(value, "`notifications`") else {
            return Vec::new();
        };
        if let Err(message) = check_target_count(list.len()) {
            self.error(pos(list.span()), message);
        }
        let mut targets = Vec::new();
        let mut first_at: HashMap<String, Pos> = HashMap::new();
        for (index, item) in list.iter().enumerate() {
            let Some((target, at)) = self.notification(Value::item(item), index) else {
                continue;
            };
            if let Some(first) = first_at.get(&target.name) {
                self.error(
                    at,
                    format!(
                        "duplicate notification name `{}` (first defined at {first})",
                        target.name
                    ),
                );
            } else {
                first_at.insert(target.name.clone(), at);
            }
            targets.push(target);
        }
        targets
    }

    /// One target, and where its name is (or the target, when defaulted).
    fn notification(
        &mut self,
        value: Value<'_>,
        index: usize,
    ) -> Option<(NotificationTarget, Pos)> {
        let map = self.mapping(value, "each notification")?;
        self.check_keys(map, "notification", NOTIFICATION_KEYS);
        let (name, name_at) = match field(map, "name").and_then(|v| self.string(v, "`name`")) {
            Some((name, at)) => {
                if let Err(reason) = validate_name(&name) {
                    self.error(at, format!("invalid notification name {name:?}: {reason}"));
                }
                (name, at)
            }
            None => (default_target_name(index), value.pos()),
        };
        let url_secret = field(map, "url_secret")
            .and_then(|v| self.string(v, "`url_secret`"))
            .map(|(secret, at)| {
                if let Err(reason) = validate_secret_name(&secret) {
                    self.error(at, format!("invalid secret name {secret:?}: {reason}"));
                }
                if field(map, "url").is_some() {
                    self.error(at, "set either `url` or `url_secret`, not both".to_string());
                }
                secret
            });
        let url = if url_secret.is_some() {
            String::new()
        } else {
            self.required_string(map, "url", "notification")
                .map(|(url, at)| {
                    if let Err(message) = check_notify_url(&url) {
                        self.error(at, message);
                    }
                    url
                })
                .unwrap_or_default()
        };
        let secret = field(map, "secret")
            .and_then(|v| self.string(v, "`secret`"))
            .map(|(secret, at)| {
                if let Err(reason) = validate_secret_name(&secret) {
                    self.error(at, format!("invalid secret name {secret:?}: {reason}"));
                }
                secret
            });
        let format = field(map, "format")
            .and_then(|v| self.string(v, "`format`"))
            .and_then(|(text, at)| {
                let format = NotifyFormat::parse(&text);
                if format.is_none() {
                    self.error(
                        at,
                        format!("unknown notification format {text:?}; expected json or slack"),
                    );
                }
                format
            })
            .unwrap_or_default();
        let events = field(map, "events")
            .map(|v| self.events(v))
            .unwrap_or_default();
        let target = NotificationTarget {
            name,
            url,
            url_secret,
            secret,
            format,
            events,
        };
        Some((target, name_at))
    }

    fn events(&mut self, value: Value<'_>) -> Vec<String> {
        let Some(list) = self.sequence(value, "`events`") else {
            return Vec::new();
        };
        if let Err(message) = check_event_count(list.len()) {
            self.error(pos(list.span()), message);
        }
        let mut events = Vec::new();
        for item in list.iter() {
            if let Some((text, at)) = self.string(Value::item(item), "each event") {
                if let Err(message) = check_event_filter(&text) {
                    self.error(at, message);
                }
                events.push(text);
            }
        }
        events
    }
}
