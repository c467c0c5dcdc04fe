//! Reads a pipeline's `schedule: {cron, timezone}`, reporting an invalid
//! pattern or an unknown time zone at its position. The rules live in
//! `crate::schedule`.

use crate::schedule::{DEFAULT_TIMEZONE, Schedule, check_cron, check_timezone};
use crate::yaml::{Reader, Value, field};

const SCHEDULE_KEYS: &[&str] = &["cron", "timezone"];

impl Reader<'_> {
    pub(super) fn schedule(&mut self, value: Value<'_>) -> Option<Schedule> {
        let map = self.mapping(value, "`schedule`")?;
        self.check_keys(map, "schedule", SCHEDULE_KEYS);
        let cron = self
            .required_string(map, "cron", "schedule")
            .map(|(cron, at)| {
                if let Err(message) = check_cron(&cron) {
                    self.error(at, message);
                }
                cron
            });
        let timezone = match field(map, "timezone") {
            Some(value) => {
                let (timezone, at) = self.string(value, "`timezone`")?;
                if let Err(message) = check_timezone(&timezone) {
                    self.error(at, message);
                }
                timezone
            }
            None => DEFAULT_TIMEZONE.to_string(),
        };
        Some(Schedule {
            cron: cron?,
            timezone,
        })
    }
}
