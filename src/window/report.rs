//! Every maintenance window's state at an instant, as data: what `patchkeeper windows`
//! prints (`--json`) and `GET /api/v1/windows` serves. Pure.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;

use super::{ClosedReason, CompiledWindow, WindowState};
use crate::model::MaintenanceWindowSpec;

/// What `windows` prints, as data (also the `--json` format, `schemas/windows.schema.json`).
/// Times are RFC 3339 in UTC.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "WindowsReport")]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The instant evaluated.
    #[schemars(with = "String")]
    pub at: Timestamp,
    /// Every window, by name.
    pub windows: Vec<WindowReport>,
}

/// The state names of `--json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StateName {
    /// A batch may start now.
    Open,
    /// No batch may start now.
    Closed,
    /// The window does not compile.
    Invalid,
}

/// One window's line of the report. Times are RFC 3339 in UTC; `null` when not applicable.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowReport {
    /// `metadata.name`.
    pub name: String,
    /// The time zone the schedule is read in.
    pub timezone: String,
    /// The cron schedule (`null`: always open).
    pub schedule: Option<String>,
    /// How long each opening lasts, as written.
    pub duration: Option<String>,
    /// The cutoff, as written.
    pub cutoff: Option<String>,
    /// `open`, `closed` or `invalid`.
    pub state: StateName,
    /// Why closed: `outside-schedule`, `frozen` or `cutoff`.
    pub reason: Option<&'static str>,
    /// The freeze in force (when `reason` is `frozen`).
    pub freeze: Option<FreezeReport>,
    /// When the current opening began (open windows).
    #[schemars(with = "Option<String>")]
    pub since: Option<Timestamp>,
    /// When a new batch may next start (closed windows).
    #[schemars(with = "Option<String>")]
    pub next_open: Option<Timestamp>,
    /// When no new batch may start any more: the current opening's cutoff, or the next one's.
    #[schemars(with = "Option<String>")]
    pub cutoff_at: Option<Timestamp>,
    /// When the current (open, or in cutoff) or else the next opening closes.
    #[schemars(with = "Option<String>")]
    pub closes: Option<Timestamp>,
    /// What is wrong with an invalid window.
    pub errors: Vec<ErrorReport>,
}

/// The freeze that keeps a window closed.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreezeReport {
    /// Its name.
    pub name: Option<String>,
    /// Its reason.
    pub reason: Option<String>,
    /// When freezing stops.
    #[schemars(with = "String")]
    pub until: Timestamp,
}

/// One problem in an invalid window.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReport {
    /// The field, e.g. `spec.schedule`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// File name of the `windows --json` schema in `schemas/`.
pub const SCHEMA_FILE: &str = "windows.schema.json";

/// The JSON Schema of `windows --json` ([`Report`]), titled.
pub fn schema_text() -> String {
    crate::schema::schema_text_for::<Report>("Maintenance windows")
}

/// Evaluates every window at `at` (pure).
pub fn report(windows: &[(String, MaintenanceWindowSpec)], at: Timestamp) -> Report {
    let mut windows: Vec<WindowReport> = windows
        .iter()
        .map(|(name, spec)| window_report(name, spec, at))
        .collect();
    windows.sort_by(|a, b| a.name.cmp(&b.name));
    Report { at, windows }
}

fn window_report(name: &str, spec: &MaintenanceWindowSpec, at: Timestamp) -> WindowReport {
    let mut r = WindowReport {
        name: name.to_owned(),
        timezone: spec.timezone.clone().unwrap_or_else(|| "UTC".to_owned()),
        schedule: if spec.always_open {
            None
        } else {
            spec.schedule.clone()
        },
        duration: spec.duration.clone(),
        cutoff: spec.cutoff.clone(),
        state: StateName::Invalid,
        reason: None,
        freeze: None,
        since: None,
        next_open: None,
        cutoff_at: None,
        closes: None,
        errors: Vec::new(),
    };
    let w = match CompiledWindow::compile(spec) {
        Ok(w) => w,
        Err(errors) => {
            r.errors = errors
                .into_iter()
                .map(|e| ErrorReport {
                    field: e.field.to_string(),
                    message: e.message,
                })
                .collect();
            return r;
        }
    };
    match w.state_at(at) {
        WindowState::Open {
            since,
            until,
            cutoff_at,
        } => {
            r.state = StateName::Open;
            r.since = since;
            r.closes = until;
            r.cutoff_at = cutoff_at;
        }
        WindowState::Closed { next_open, reason } => {
            r.state = StateName::Closed;
            r.next_open = next_open;
            match reason {
                ClosedReason::OutsideSchedule => r.reason = Some("outside-schedule"),
                ClosedReason::Frozen { name, why, until } => {
                    r.reason = Some("frozen");
                    r.freeze = Some(FreezeReport {
                        name,
                        reason: why,
                        until,
                    });
                }
                ClosedReason::Cutoff { closes_at } => {
                    r.reason = Some("cutoff");
                    r.closes = Some(closes_at);
                }
            }
            if r.closes.is_none() {
                if let Some(WindowState::Open {
                    until, cutoff_at, ..
                }) = next_open.map(|t| w.state_at(t))
                {
                    r.closes = until;
                    r.cutoff_at = cutoff_at;
                }
            }
        }
    }
    r
}
