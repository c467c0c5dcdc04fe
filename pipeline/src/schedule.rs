//! `schedule:` of a pipeline: a cron pattern read in an IANA time zone, and
//! the pure computation of its next fire time. The coordinator keeps the
//! clock; this module only answers "when after this instant".
//!
//! Patterns have 5 fields (minute first, firing at second 0) or 6 (seconds
//! first), as croner reads them: `*/2 * * * * *` fires every 2 seconds,
//! `0 3 * * 1-5` at 03:00 on weekdays. A day-of-month and a day-of-week
//! that are both restricted fire on either (as in Vixie cron). Wall-clock
//! times follow the zone's daylight saving rules: a time skipped by a
//! spring-forward gap fires at the first instant after the gap, once, and
//! a time repeated by a fall-back fold fires once, on its first pass.

use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

/// Time zone of a schedule that names none.
pub const DEFAULT_TIMEZONE: &str = "UTC";

/// Longest accepted cron pattern, in bytes.
pub const MAX_CRON_LEN: usize = 256;

/// When a pipeline starts on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// A 5-field or 6-field (seconds first) cron pattern.
    pub cron: String,
    /// IANA time zone name the pattern's wall-clock times are in.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.to_string()
}

/// The one parser configuration: optional seconds field, no year field.
fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// Parses a cron pattern as schedules take it; the error says what is wrong.
fn parse_cron(text: &str) -> Result<Cron, String> {
    if text.len() > MAX_CRON_LEN {
        return Err(format!(
            "`cron` is at most {MAX_CRON_LEN} bytes long, found {}",
            text.len()
        ));
    }
    let fields = text.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "`cron` needs 5 fields (minute hour day-of-month month day-of-week) or 6 \
             (seconds first), found {fields} in {text:?}"
        ));
    }
    parser()
        .parse(text)
        .map_err(|e| format!("invalid `cron` {text:?}: {e}"))
}

/// Checks a cron pattern: it parses, and it fires at least once.
pub fn check_cron(text: &str) -> Result<(), String> {
    let cron = parse_cron(text)?;
    // Without a year field a pattern repeats every 28 years at most (the
    // calendar's cycle of weekdays and leap years), so one that does not
    // fire from 1970 on never fires (`0 0 30 2 *`).
    let epoch = DateTime::from_timestamp(0, 0).map(|t| t.with_timezone(&chrono_tz::UTC));
    match epoch.map(|t| cron.find_next_occurrence(&t, false)) {
        Some(Ok(_)) => Ok(()),
        _ => Err(format!("`cron` {text:?} never fires")),
    }
}

/// Checks an IANA time zone name such as `Europe/Berlin` or `UTC`.
pub fn check_timezone(name: &str) -> Result<(), String> {
    name.parse::<Tz>().map(|_| ()).map_err(|_| {
        format!(
            "unknown time zone {name:?}; expected an IANA name such as UTC, \
             Europe/Berlin or America/New_York"
        )
    })
}

impl Schedule {
    /// Both rules, without positions (for schedules not read from YAML).
    pub fn check(&self) -> Result<(), String> {
        check_cron(&self.cron)?;
        check_timezone(&self.timezone)
    }

    /// The first fire time strictly after `after_ms` (unix milliseconds),
    /// in unix milliseconds; `None` if the pattern or zone is invalid or
    /// it never fires again (within croner's search range). Parses the
    /// pattern on each call (microseconds); proving that a pattern never
    /// fires takes a search of the years ahead (tenths of a second in a
    /// debug build), which checked schedules never need.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let tz: Tz = self.timezone.parse().ok()?;
        let cron = parse_cron(&self.cron).ok()?;
        // Fire times are whole seconds, so the first one after `after_ms`
        // is the first one after the whole second it falls in.
        let start = tz.timestamp_opt(after_ms.div_euclid(1_000), 0).single()?;
        let next = cron.find_next_occurrence(&start, false).ok()?;
        Some(next.timestamp_millis()).filter(|&ms| ms > after_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, timezone: &str) -> Schedule {
        Schedule {
            cron: cron.to_string(),
            timezone: timezone.to_string(),
        }
    }

    /// Unix milliseconds of a UTC date and time.
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
        chrono::Utc
            .with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .map(|t| t.timestamp_millis())
            .expect("a valid UTC time")
    }

    #[test]
    fn every_two_seconds_strictly_after() {
        let s = schedule("*/2 * * * * *", DEFAULT_TIMEZONE);
        let t = utc(2025, 6, 1, 12, 0, 0);
        assert_eq!(s.next_after(t), Some(t + 2_000));
        assert_eq!(s.next_after(t - 1), Some(t));
        assert_eq!(s.next_after(t + 1), Some(t + 2_000));
        assert_eq!(s.next_after(t + 1_999), Some(t + 2_000));
        // Before 1970 too (negative milliseconds round down, not up).
        assert_eq!(s.next_after(-1), Some(0));
        assert_eq!(s.next_after(-1_500), Some(0));
    }

    #[test]
    fn five_fields_fire_at_second_zero_in_their_zone() {
        let s = schedule("0 3 * * 1-5", "Europe/Berlin");
        // Friday 2025-06-06 03:00 CEST is 01:00 UTC; the next is Monday.
        let friday = utc(2025, 6, 6, 1, 0, 0);
        assert_eq!(s.next_after(friday - 1), Some(friday));
        assert_eq!(s.next_after(friday), Some(utc(2025, 6, 9, 1, 0, 0)));
        let u = schedule("30 4 * * *", DEFAULT_TIMEZONE);
        assert_eq!(
            u.next_after(utc(2025, 1, 1, 0, 0, 0)),
            Some(utc(2025, 1, 1, 4, 30, 0))
        );
    }

    #[test]
    fn daylight_saving_gap_and_fold() {
        // 2025-03-30 in Berlin: 02:00 CET jumps to 03:00 CEST (01:00 UTC),
        // so 02:30 does not exist; it fires once, right after the gap.
        let s = schedule("30 2 * * *", "Europe/Berlin");
        let before = utc(2025, 3, 29, 12, 0, 0);
        let gap_day = s.next_after(before).expect("fires");
        assert_eq!(gap_day, utc(2025, 3, 30, 1, 0, 0));
        // The next day it is 02:30 CEST again (00:30 UTC).
        assert_eq!(s.next_after(gap_day), Some(utc(2025, 3, 31, 0, 30, 0)));
        // 2025-10-26: 03:00 CEST falls back to 02:00 CET, so 02:30 happens
        // twice (00:30 and 01:30 UTC); it fires on the first pass only.
        let first = s.next_after(utc(2025, 10, 25, 12, 0, 0)).expect("fires");
        assert_eq!(first, utc(2025, 10, 26, 0, 30, 0));
        assert_eq!(s.next_after(first), Some(utc(2025, 10, 27, 1, 30, 0)));
    }

    #[test]
    fn invalid_or_never_firing_schedules() {
        assert_eq!(schedule("0 0 30 2 *", "UTC").next_after(0), None);
        assert_eq!(schedule("bad", "UTC").next_after(0), None);
        assert_eq!(schedule("* * * * *", "Mars/Olympus").next_after(0), None);
        assert!(check_cron("0 0 30 2 *").is_err_and(|e| e.contains("never fires")));
        assert!(check_cron("* * * *").is_err_and(|e| e.contains("found 4")));
        assert!(check_cron("0 0 * * * * 2030").is_err_and(|e| e.contains("found 7")));
        assert!(check_cron("61 * * * *").is_err_and(|e| e.contains("invalid `cron`")));
        assert!(check_cron(&"* ".repeat(200)).is_err());
        assert_eq!(check_cron("0 0 29 2 *"), Ok(()));
        assert_eq!(check_cron("*/2 * * * * *"), Ok(()));
        assert_eq!(check_cron("0 3 * * MON-FRI"), Ok(()));
        assert_eq!(check_timezone("Europe/Berlin"), Ok(()));
        assert_eq!(check_timezone("UTC"), Ok(()));
        assert!(check_timezone("europe/berlin").is_err());
        assert!(check_timezone("").is_err());
        assert_eq!(schedule("0 3 * * *", "Asia/Tokyo").check(), Ok(()));
    }

    #[test]
    fn serde_defaults_the_timezone() {
        let s: Schedule = serde_json::from_str(r#"{"cron":"0 3 * * *"}"#).expect("deserialize");
        assert_eq!(s, schedule("0 3 * * *", "UTC"));
        let json = serde_json::to_string(&s).expect("serialize");
        assert_eq!(serde_json::from_str::<Schedule>(&json).ok(), Some(s));
    }
}
