//! Durations as written in fleet-repo files and flags (`30s`, `5m`, `4h`, `7d`, `1h30m`).
//!
//! One strict grammar: whole numbers, each followed by a unit (`d`, `h`, `m`, `s`: days of
//! 24 hours, hours, minutes, seconds), largest unit first, each unit at most once, no
//! spaces. A duration is an exact elapsed time; months and years, which have no fixed
//! length, are refused. Anything else is refused with the same duration written the strict
//! way when it can be read at all (`3 hours` → `3h`, `3.5h` → `3h30m`, `PT4H` → `4h`,
//! `3H` → `3h`), using jiff's lenient "friendly" and ISO 8601 readers only to make that
//! suggestion, so a typo is never half-understood.

use std::time::Duration;

use jiff::{Span, SpanRelativeTo};

/// What the grammar accepts, for messages.
const EXPECTED: &str =
    "a whole number and a unit: `d`, `h`, `m` or `s`, largest first, without spaces, e.g. `30s`, `5m`, `4h`, `7d`, `1h30m`";

/// Errors of [`parse_duration`].
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    /// Not a duration in the strict grammar.
    #[error("invalid duration {value:?}: {hint}")]
    Syntax {
        /// The string as given.
        value: String,
        /// What is wrong and, where the value could be read, how to write it.
        hint: String,
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

/// Parses a duration such as `30s`, `5m`, `4h`, `7d` or `1h30m` (surrounding blanks are
/// ignored).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let text = s.trim();
    strict(text).ok_or_else(|| explain(s, text))
}

/// `d`, `h`, `m`, `s` with their length in seconds, largest first.
const UNITS: [(u8, u64); 4] = [(b'd', 86_400), (b'h', 3_600), (b'm', 60), (b's', 1)];

/// The strict grammar; `None` when `text` is not in it.
fn strict(text: &str) -> Option<Duration> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let number: u64 = text.get(start..i)?.parse().ok()?;
        let unit = *bytes.get(i)?;
        i += 1;
        let k = next_unit + UNITS[next_unit..].iter().position(|(u, _)| *u == unit)?;
        next_unit = k + 1;
        total = total.checked_add(number.checked_mul(UNITS[k].1)?)?;
    }
    (!text.is_empty()).then(|| Duration::from_secs(total))
}

/// The strict grammar's pieces in any order or repeated (`30m1h`), in seconds.
fn any_order(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let number: u64 = rest.get(..digits)?.parse().ok()?;
        let unit = *rest.as_bytes().get(digits)?;
        let len = UNITS.iter().find(|(u, _)| *u == unit)?.1;
        total = total.checked_add(number.checked_mul(len)?)?;
        rest = rest.get(digits + 1..)?;
    }
    Some(total)
}

/// `seconds` written the strict way (`0s` for zero).
pub fn format_duration(seconds: u64) -> String {
    let mut out = String::new();
    let mut rest = seconds;
    for (unit, len) in UNITS {
        if rest >= len {
            out.push_str(&(rest / len).to_string());
            out.push(char::from(unit));
            rest %= len;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Why `text` (trimmed from `value`) is refused, with the strict spelling when the lenient
/// readers understand it.
fn explain(value: &str, text: &str) -> DurationError {
    let syntax = |hint: String| DurationError::Syntax {
        value: value.to_owned(),
        hint,
    };
    if text.is_empty() {
        return syntax(format!("empty (expected {EXPECTED})"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return syntax(format!(
            "`{text}` has no unit: write `{text}s`, `{text}m`, `{text}h` or `{text}d`"
        ));
    }
    // Units in capitals: `3H` is `3h`, but `M` could mean minutes or months.
    let lower = text.to_ascii_lowercase();
    if lower != text {
        if let Some(d) = strict(&lower) {
            let months = text.contains('M') && !text.contains('m');
            return syntax(if months {
                format!(
                    "units are lowercase: did you mean `{}` (minutes)? Months have no fixed length; use days",
                    format_duration(d.as_secs())
                )
            } else {
                format!(
                    "units are lowercase: write `{}`",
                    format_duration(d.as_secs())
                )
            });
        }
    }
    if let Some(secs) = any_order(text) {
        return syntax(format!(
            "units go from largest to smallest, each once: write `{}`",
            format_duration(secs)
        ));
    }
    match text.parse::<Span>() {
        Ok(span) if span.get_years() != 0 || span.get_months() != 0 => {
            DurationError::CalendarUnit {
                value: value.to_owned(),
            }
        }
        Ok(span) if span.is_negative() => DurationError::Negative {
            value: value.to_owned(),
        },
        Ok(span) => match span
            .to_duration(SpanRelativeTo::days_are_24_hours())
            .ok()
            .and_then(|d| Duration::try_from(d).ok())
        {
            Some(d) if d.subsec_nanos() == 0 => syntax(format!(
                "write `{}` ({EXPECTED})",
                format_duration(d.as_secs())
            )),
            Some(_) => syntax(format!("durations are whole seconds (expected {EXPECTED})")),
            None => syntax(format!("expected {EXPECTED}")),
        },
        Err(_) => syntax(format!("expected {EXPECTED}")),
    }
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
            ("90m", 5400),
            ("1d2h3m4s", 93_784),
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
    }

    fn hint(s: &str) -> String {
        parse_duration(s).expect_err(s).to_string()
    }

    #[test]
    fn refuses_the_rest_with_the_strict_spelling() {
        assert_eq!(
            hint("3H"),
            "invalid duration \"3H\": units are lowercase: write `3h`"
        );
        assert_eq!(
            hint("5M"),
            "invalid duration \"5M\": units are lowercase: did you mean `5m` (minutes)? Months have no fixed length; use days"
        );
        let lenient = [
            ("3 hours", "3h"),
            ("3.5h", "3h30m"),
            ("1h 30m", "1h30m"),
            ("2 hours 30 minutes", "2h30m"),
            ("PT4H", "4h"),
            ("1w", "7d"),
        ];
        for (s, strict) in lenient {
            assert_eq!(
                hint(s),
                format!("invalid duration {s:?}: write `{strict}` ({EXPECTED})"),
                "{s}"
            );
        }
        assert_eq!(
            hint("30m1h"),
            "invalid duration \"30m1h\": units go from largest to smallest, each once: write `1h30m`"
        );
        assert_eq!(
            hint("5"),
            "invalid duration \"5\": `5` has no unit: write `5s`, `5m`, `5h` or `5d`"
        );
        assert_eq!(
            hint("250ms"),
            format!(
                "invalid duration \"250ms\": durations are whole seconds (expected {EXPECTED})"
            )
        );
        for s in ["", "5x", "h", "4 h 30", "5m30", "three hours", "1h1h"] {
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

    #[test]
    fn formats_the_strict_way() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(93_784), "1d2h3m4s");
        assert_eq!(format_duration(7 * 86_400), "7d");
    }

    proptest::proptest! {
        /// Every strict spelling reads back as itself.
        #[test]
        fn strict_spellings_round_trip(secs in 0u64..10_000_000) {
            let s = format_duration(secs);
            proptest::prop_assert_eq!(parse_duration(&s).expect("strict"), Duration::from_secs(secs));
        }
    }
}
