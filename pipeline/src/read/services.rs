//! Reads a build or test action's `services`: each service's name (the name
//! rule, once per action, neither `workspace` nor the action's own name:
//! the action's container answers to those), image, `env`, `command` (one
//! string for `/bin/sh -c`, or a list of arguments) and `ready` check, at
//! most [`MAX_SERVICES`] of them, with the `#{...}` references in their
//! texts and where each is written.

use std::collections::HashMap;

use crate::parse::Pos;
use crate::rules;
use crate::service::{
    ACTION_HOST_NAME, DEFAULT_READY_TIMEOUT_MS, MAX_READY_TIMEOUT_MS, MAX_SERVICES, Ready, Service,
    ServiceCommand,
};
use crate::vars::Ref;
use crate::yaml::{Reader, Value, describe, field, pos};

const SERVICE_KEYS: &[&str] = &["name", "image", "env", "command", "ready"];
const READY_KEYS: &[&str] = &["command", "timeout"];

/// The services read, and the references in their texts with positions.
pub(super) type ReadServices = (Vec<Service>, Vec<(Ref, Pos)>);

impl Reader<'_> {
    /// `services:` of the action named `action` (None when its name is
    /// missing or invalid).
    pub(super) fn services(&mut self, value: Value<'_>, action: Option<&str>) -> ReadServices {
        let mut services = Vec::new();
        let mut refs = Vec::new();
        let Some(list) = self.sequence(value, "`services`") else {
            return (services, refs);
        };
        if list.len() > MAX_SERVICES {
            self.error(
                pos(list.span()),
                format!(
                    "`services` lists {} services; an action has at most {MAX_SERVICES}",
                    list.len()
                ),
            );
        }
        // Where each name was first given: one lookup per service.
        let mut first_at: HashMap<String, Pos> = HashMap::new();
        for item in list.iter() {
            let Some(map) = self.mapping(Value::item(item), "each service") else {
                continue;
            };
            self.check_keys(map, "service", SERVICE_KEYS);
            let mut service = Service {
                name: String::new(),
                image: String::new(),
                env: Default::default(),
                command: None,
                ready: None,
            };
            if let Some((name, at)) = self.name_field(map, "service") {
                if name == ACTION_HOST_NAME {
                    self.error(
                        at,
                        format!(
                            "service name `{ACTION_HOST_NAME}` is reserved: the action's own \
                             container answers to it"
                        ),
                    );
                } else if Some(name.as_str()) == action {
                    self.error(
                        at,
                        format!(
                            "service `{name}` has its action's name, which the action's own \
                             container answers to"
                        ),
                    );
                } else if let Some(first) = first_at.get(&name) {
                    self.error(
                        at,
                        format!("service `{name}` is listed twice (first at {first})"),
                    );
                } else {
                    first_at.insert(name.clone(), at);
                }
                service.name = name;
            }
            if let Some((image, at)) = self.required_string(map, "image", "service") {
                if let Err(reason) = rules::check_plain_text(&image) {
                    self.error(at, format!("invalid image {image:?}: {reason}"));
                }
                self.text_refs(&image, at, &mut refs);
                service.image = image;
            }
            if let Some(value) = field(map, "env") {
                service.env = self.env(value);
                if let Some(env) = value.node.as_mapping() {
                    for node in env.values() {
                        if let Some(scalar) = node.as_scalar() {
                            self.text_refs(scalar.as_str(), pos(scalar.span()), &mut refs);
                        }
                    }
                }
            }
            if let Some(value) = field(map, "command") {
                service.command = self.service_command(value, &mut refs);
            }
            if let Some(value) = field(map, "ready") {
                service.ready = self.ready(value, &mut refs);
            }
            services.push(service);
        }
        (services, refs)
    }

    /// A service's `command`: a string, or a list of arguments without references.
    fn service_command(
        &mut self,
        value: Value<'_>,
        refs: &mut Vec<(Ref, Pos)>,
    ) -> Option<ServiceCommand> {
        if let Some(list) = value.node.as_sequence() {
            if list.is_empty() {
                self.error(
                    pos(list.span()),
                    "`command` must list at least one argument",
                );
            }
            let mut args = Vec::new();
            for item in list.iter() {
                let Some((arg, at)) = self.string(Value::item(item), "each argument of `command`")
                else {
                    continue;
                };
                if arg.contains("#{") {
                    self.error(
                        at,
                        "a `command` list runs without a shell, so it takes no `#{...}` \
                         references: write `command` as one string, where they reach the shell \
                         as variables",
                    );
                }
                args.push(arg);
            }
            return Some(ServiceCommand::Args(args));
        }
        if value.node.as_mapping().is_some() {
            let found = describe(value.node);
            self.error(
                value.pos(),
                format!("`command` must be a string or a list, found {found}"),
            );
            return None;
        }
        let (text, at) = self.string(value, "`command`")?;
        if text.trim().is_empty() {
            self.error(at, "`command` must not be empty");
        }
        self.text_refs(&text, at, refs);
        Some(ServiceCommand::Shell(text))
    }

    /// A service's `ready`: `command` (required) and `timeout`.
    fn ready(&mut self, value: Value<'_>, refs: &mut Vec<(Ref, Pos)>) -> Option<Ready> {
        let map = self.mapping(value, "`ready`")?;
        self.check_keys(map, "ready", READY_KEYS);
        let mut ready = Ready {
            command: String::new(),
            timeout_ms: DEFAULT_READY_TIMEOUT_MS,
        };
        if let Some((command, at)) = self.required_string(map, "command", "`ready`") {
            if command.trim().is_empty() {
                self.error(at, "the ready `command` must not be empty");
            }
            self.text_refs(&command, at, refs);
            ready.command = command;
        }
        if let Some((ms, at)) =
            field(map, "timeout").and_then(|v| self.duration(v, "the ready `timeout`"))
        {
            if ms == 0 || ms > MAX_READY_TIMEOUT_MS {
                self.error(
                    at,
                    format!(
                        "the ready `timeout` must be greater than zero and at most {} minutes",
                        MAX_READY_TIMEOUT_MS / 60_000
                    ),
                );
            } else {
                ready.timeout_ms = ms;
            }
        }
        Some(ready)
    }

    /// The references in `text` (at `at`) into `refs`; a malformed one is reported.
    fn text_refs(&mut self, text: &str, at: Pos, refs: &mut Vec<(Ref, Pos)>) {
        match crate::vars::references(text) {
            Ok(found) => refs.extend(found.into_iter().map(|r| (r, at))),
            Err(e) => self.error(at, e.to_string()),
        }
    }
}
