//! Maintenance windows. (Placeholder until the versions/windows branch lands.)

/// Which field an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowField {
    /// `schedule`.
    Schedule,
}

/// A window spec error.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WindowError {
    /// Field.
    pub field: WindowField,
    /// Message.
    pub message: String,
}

/// A compiled window.
pub struct CompiledWindow;

impl CompiledWindow {
    /// Compiles.
    pub fn compile(
        _spec: &crate::model::MaintenanceWindowSpec,
    ) -> Result<CompiledWindow, Vec<WindowError>> {
        Ok(CompiledWindow)
    }
}
