//! Human-friendly durations ("10s", "10m", "7d") converted to milliseconds,
//! at most [`MAX_DURATION_MS`], so that no deadline computed from one can
//! overflow or wrap into the past.

use thiserror::Error;

use crate::limits::{MAX_DURATION_MS, MAX_DURATION_TEXT};

/// Why a duration string was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum DurationError {
    #[error("invalid duration {text:?}: {reason}")]
    Invalid { text: String, reason: String },
    #[error("duration {text:?} is longer than the limit of {MAX_DURATION_TEXT}")]
    TooLong { text: String },
}

/// Parses a humantime duration such as `10s`, `1h 30m` or `7d` into
/// milliseconds; longer than [`MAX_DURATION_MS`] is [`DurationError::TooLong`].
pub(crate) fn parse_duration_ms(text: &str) -> Result<u64, DurationError> {
    let duration = humantime::parse_duration(text).map_err(|e| {
        // humantime's arithmetic overflowed (or a fraction went below 1 ns):
        // its own words, and the limit that applies anyway.
        let reason = match e {
            humantime::DurationError::NumberOverflow => {
                format!("{e}; a duration is at most {MAX_DURATION_TEXT}")
            }
            e => e.to_string(),
        };
        DurationError::Invalid {
            text: text.to_string(),
            reason,
        }
    })?;
    u64::try_from(duration.as_millis())
        .ok()
        .filter(|&ms| ms <= MAX_DURATION_MS)
        .ok_or_else(|| DurationError::TooLong {
            text: text.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_units() {
        assert_eq!(parse_duration_ms("10s"), Ok(10_000));
        assert_eq!(parse_duration_ms("10m"), Ok(600_000));
        assert_eq!(parse_duration_ms("1h 30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("7d"), Ok(604_800_000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
    }

    #[test]
    fn rejects_garbage_with_quoted_text() {
        let err = parse_duration_ms("10 parsecs").expect_err("must fail");
        assert!(
            err.to_string()
                .starts_with("invalid duration \"10 parsecs\": "),
            "{err}"
        );
        let err = parse_duration_ms("10").expect_err("unit required");
        assert!(
            err.to_string().starts_with("invalid duration \"10\": "),
            "{err}"
        );
    }

    #[test]
    fn rejects_overflow_and_anything_over_the_limit() {
        assert_eq!(parse_duration_ms("365d"), Ok(MAX_DURATION_MS));
        for text in [
            "365d 1ms",
            "366d",
            "2y",
            // Past i64::MAX milliseconds but inside u64: once wrapped to a
            // deadline in the past.
            "300000000y",
            "10000000000000ms",
        ] {
            assert_eq!(
                parse_duration_ms(text).map_err(|e| e.to_string()),
                Err(format!(
                    "duration {text:?} is longer than the limit of 365 days"
                )),
            );
        }
        // Past what humantime's own arithmetic holds.
        for text in [
            "600000000000000000000000000s",
            "99999999999999999999999999999999999999999999d",
        ] {
            let err = parse_duration_ms(text).expect_err("overflow").to_string();
            assert!(
                err.starts_with(&format!("invalid duration {text:?}: ")),
                "{err}"
            );
            assert!(err.ends_with("; a duration is at most 365 days"), "{err}");
        }
    }
}
