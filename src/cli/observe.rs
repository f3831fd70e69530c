//! `patchkeeper observe` (placeholder until the observe branch lands).

/// Observes the fleet for `plan` when no `--observed` file is given.
pub(crate) fn observe_for_plan(
    _fleet: &crate::validate::ValidFleet,
) -> Result<crate::observed::ObservedFleet, u8> {
    eprintln!("error: observing hosts is not available yet; pass --observed FILE");
    Err(super::EXIT_ERROR)
}
