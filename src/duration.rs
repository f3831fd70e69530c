//! Durations as written in the fleet repo (`30s`, `5m`, `4h`, `7d`).
//! (Placeholder until the versions/windows branch lands.)

/// A duration that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid duration `{0}`, expected e.g. `30s`, `5m`, `4h` or `7d`")]
pub struct DurationError(String);

/// Parses a duration.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, DurationError> {
    humantime::parse_duration(s).map_err(|_| DurationError(s.to_owned()))
}
