//! Durations as written in fleet-repo files (`30s`, `5m`, `4h`, `7d`, `1h30m`).
//!
//! Parsing is jiff's "friendly" duration format (also accepting ISO 8601 such as `PT4H`),
//! chosen over `humantime` because its units are lowercase and unambiguous: `humantime`
//! reads `5M` as five months, jiff refuses it. A duration is an exact elapsed time: a day
//! is 24 hours, and months and years (which have no fixed length) are refused.

use std::time::Duration;

use jiff::{Span, SpanRelativeTo};

/// Errors of [`parse_duration`].
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    /// Not a duration at all.
    #[error(
        "invalid duration {value:?}: {source} (expected e.g. `30s`, `5m`, `4h`, `7d`, `1h30m`)"
    )]
    Syntax {
        /// The string as given.
        value: String,
        /// jiff's explanation.
        #[source]
        source: jiff::Error,
    },
    /// Months or years, whose length depends on the calendar.
    #[error(
        "invalid duration {value:?}: months and years have no fixed length; use days (e.g. `30d`)"
    )]
    CalendarUnit {
        /// The string as given.
        value: String,
    },
    /// A negative duration (`-5m`, `5m ago`).
    #[error("invalid duration {value:?}: must not be negative")]
    Negative {
        /// The string as given.
        value: String,
    },
}

/// Parses a duration such as `30s`, `5m`, `4h`, `7d`, `1h30m` or `2 hours 30 minutes`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    // jiff tolerates trailing but not leading blanks; tolerate both alike.
    let span: Span = s.trim().parse().map_err(|source| DurationError::Syntax {
        value: s.to_owned(),
        source,
    })?;
    if span.get_years() != 0 || span.get_months() != 0 {
        return Err(DurationError::CalendarUnit {
            value: s.to_owned(),
        });
    }
    if span.is_negative() {
        return Err(DurationError::Negative {
            value: s.to_owned(),
        });
    }
    let signed = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|source| DurationError::Syntax {
            value: s.to_owned(),
            source,
        })?;
    Duration::try_from(signed).map_err(|_| DurationError::Negative {
        value: s.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        let cases = [
            ("30s", 30),
            ("5m", 300),
            ("4h", 4 * 3600),
            ("7d", 7 * 86400),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("2 hours 30 minutes", 9000),
            ("1w", 7 * 86400),
            ("PT4H", 4 * 3600),
            ("0s", 0),
            (" 5m ", 300),
        ];
        for (s, secs) in cases {
            assert_eq!(
                parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}")),
                Duration::from_secs(secs),
                "{s}"
            );
        }
        assert_eq!(
            parse_duration("1.5h").expect("fraction"),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_duration("250ms").expect("millis"),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn refuses_the_rest() {
        for s in ["", "5", "5x", "h", "5M", "4 h 30", "5m30"] {
            let e = parse_duration(s).expect_err(s);
            assert!(matches!(e, DurationError::Syntax { .. }), "{s}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid duration {s:?}: ")),
                "{e}"
            );
        }
        for s in ["1mo", "2y", "1 year", "P1M"] {
            assert!(
                matches!(parse_duration(s), Err(DurationError::CalendarUnit { .. })),
                "{s}"
            );
        }
        for s in ["-5m", "5m ago"] {
            assert!(
                matches!(parse_duration(s), Err(DurationError::Negative { .. })),
                "{s}"
            );
        }
    }
}
