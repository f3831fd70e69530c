//! Which window governs a host's changes when a patch request names an emergency window
//! (`emergency: true`, `docs/rapid-response.md`): the request may use it only when its
//! deadline comes before the next opening of the host's normal (baseline) window; else the
//! normal window governs. Either way the plan says which window and why. Pure.

use jiff::Timestamp;

use crate::fleet::Loaded;
use crate::model::{self, PatchRequest};
use crate::validate::ValidFleet;
use crate::window::CompiledWindow;

/// The governing window of a host and, when an emergency window was considered, why it
/// was or was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WindowChoice {
    /// The window name.
    pub window: Option<String>,
    /// Whether it is an emergency window (only the requests' changes may use it).
    pub emergency: bool,
    /// Why this window (set when an emergency window was taken or refused).
    pub why: Option<String>,
}

/// Chooses the window for a host with these requests (fleet order) and this normal
/// window (its baselines'), at `at`.
pub(super) fn choose(
    fleet: &ValidFleet,
    requests: &[&Loaded<PatchRequest>],
    normal: Option<&str>,
    at: Timestamp,
) -> WindowChoice {
    let is_emergency = |name: &str| fleet.window(name).is_some_and(|w| w.doc.spec.emergency);
    let next_open = |name: &str| -> Option<Timestamp> {
        let w = fleet.window(name)?;
        CompiledWindow::compile(&w.doc.spec).ok()?.next_open_at(at)
    };
    let mut refused = Vec::new();
    for r in requests {
        let Some(w) = r.doc.spec.window.as_deref() else {
            continue;
        };
        if !is_emergency(w) {
            return WindowChoice {
                window: Some(w.to_owned()),
                emergency: false,
                why: None,
            };
        }
        match usable(r.name(), &r.doc.spec, w, normal, normal.and_then(next_open)) {
            Ok(why) => {
                return WindowChoice {
                    window: Some(w.to_owned()),
                    emergency: true,
                    why: Some(why),
                }
            }
            Err(why) => refused.push(why),
        }
    }
    WindowChoice {
        window: normal.map(str::to_owned),
        emergency: false,
        why: (!refused.is_empty()).then(|| refused.join("; ")),
    }
}

/// Whether request `name` may use emergency window `window`, given the host's normal
/// window and its next opening: `Ok(why)` or `Err(why not)`, each a sentence for the plan.
fn usable(
    name: &str,
    spec: &model::PatchRequestSpec,
    window: &str,
    normal: Option<&str>,
    normal_opens: Option<Timestamp>,
) -> Result<String, String> {
    let Some(deadline) = spec
        .deadline
        .as_deref()
        .and_then(|d| d.parse::<Timestamp>().ok())
    else {
        return Err(format!(
            "request `{name}` names emergency window `{window}` but has no deadline; it waits for the normal window"
        ));
    };
    match (normal, normal_opens) {
        (None, _) => Ok(format!(
            "emergency window `{window}`: request `{name}` is due {deadline} and the host has no normal window"
        )),
        (Some(n), None) => Ok(format!(
            "emergency window `{window}`: request `{name}` is due {deadline} and window `{n}` does not open again"
        )),
        (Some(n), Some(opens)) if deadline < opens => Ok(format!(
            "emergency window `{window}`: request `{name}` is due {deadline}, before window `{n}` next opens at {opens}"
        )),
        (Some(n), Some(opens)) => Err(format!(
            "window `{n}`: request `{name}` is due {deadline}, not before `{n}` next opens at {opens}, so emergency window `{window}` is not needed"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(deadline: Option<&str>) -> model::PatchRequestSpec {
        model::PatchRequestSpec {
            selector: model::Selector::default(),
            packages: Vec::new(),
            reason: "CVE".into(),
            requested_by: None,
            advisories: Vec::new(),
            deadline: deadline.map(str::to_owned),
            window: Some("urgent".into()),
            rollout: None,
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn a_deadline_before_the_normal_window_takes_the_emergency_window() {
        let why = usable(
            "fix",
            &spec(Some("2026-12-02T00:00:00Z")),
            "urgent",
            Some("weekly"),
            Some(ts("2026-12-06T02:00:00Z")),
        )
        .expect("usable");
        assert_eq!(why, "emergency window `urgent`: request `fix` is due 2026-12-02T00:00:00Z, before window `weekly` next opens at 2026-12-06T02:00:00Z");
    }

    #[test]
    fn a_deadline_after_the_normal_window_keeps_the_normal_window() {
        let why = usable(
            "fix",
            &spec(Some("2026-12-07T00:00:00Z")),
            "urgent",
            Some("weekly"),
            Some(ts("2026-12-06T02:00:00Z")),
        )
        .expect_err("not usable");
        assert!(why.contains("not before `weekly` next opens"), "{why}");
        // Equal is not sooner.
        assert!(usable(
            "fix",
            &spec(Some("2026-12-06T02:00:00Z")),
            "urgent",
            Some("weekly"),
            Some(ts("2026-12-06T02:00:00Z")),
        )
        .is_err());
    }

    #[test]
    fn no_deadline_never_takes_the_emergency_window() {
        let why = usable("fix", &spec(None), "urgent", Some("weekly"), None).expect_err("no");
        assert!(why.contains("has no deadline"), "{why}");
    }

    #[test]
    fn a_normal_window_that_never_opens_or_none_at_all_allows_it() {
        assert!(usable(
            "fix",
            &spec(Some("2026-12-02T00:00:00Z")),
            "urgent",
            Some("weekly"),
            None
        )
        .is_ok());
        assert!(usable(
            "fix",
            &spec(Some("2026-12-02T00:00:00Z")),
            "urgent",
            None,
            None
        )
        .is_ok());
    }
}
