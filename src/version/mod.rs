//! Package versions. (Placeholder until the versions/windows branch lands.)

/// A package ecosystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ecosystem {
    /// Debian.
    Deb,
    /// RPM.
    Rpm,
}

/// An invalid version.
#[derive(Debug, thiserror::Error)]
#[error("invalid version `{0}`")]
pub struct VersionError(String);

/// Parses a version.
pub fn parse(_eco: Ecosystem, s: &str) -> Result<String, VersionError> {
    if s.is_empty() {
        Err(VersionError(s.into()))
    } else {
        Ok(s.into())
    }
}
