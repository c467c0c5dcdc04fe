//! Human-friendly durations ("10s", "10m", "7d") converted to milliseconds.

use thiserror::Error;

/// Why a duration string was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum DurationError {
    #[error("invalid duration {text:?}: {reason}")]
    Invalid { text: String, reason: String },
    #[error("duration {text:?} is too long")]
    TooLong { text: String },
}

/// Parses a humantime duration such as `10s`, `1h 30m` or `7d` into milliseconds.
pub(crate) fn parse_duration_ms(text: &str) -> Result<u64, DurationError> {
    let duration = humantime::parse_duration(text).map_err(|e| DurationError::Invalid {
        text: text.to_string(),
        reason: e.to_string(),
    })?;
    u64::try_from(duration.as_millis()).map_err(|_| DurationError::TooLong {
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
    fn rejects_overflow() {
        assert!(parse_duration_ms("600000000000000000000000000s").is_err());
    }
}
