//! Maintenance windows: when hosts may be changed, as a pure function of (window, instant).
//!
//! `croner` parses the cron expression; `schedule` turns it into instants in the window's
//! `jiff` time zone (DST rules there) and chains overlapping occurrences into runs. This
//! module adds freezes and the cutoff. Only instants (`jiff::Timestamp`) are added,
//! compared and subtracted here.
//!
//! Semantics:
//! - A scheduled window opens at every occurrence of its cron schedule (read in the
//!   window's time zone) and stays open for `duration` of elapsed time: a 4h window opening
//!   at 01:00 in Europe/Berlin on 2026-10-25 (the fall-back night) closes 4 real hours
//!   later, at 04:00 on the wall clock. Occurrences that overlap or touch form one window,
//!   whose bounds are exact however long it is; only a schedule whose occurrences overlap
//!   for ever is open with no start or end.
//! - DST: a schedule with one time of day (`30 2 * * *`) whose time falls in a
//!   spring-forward gap opens at the first instant after the gap (03:00 local in
//!   Europe/Berlin on 2026-03-29), if the day of the missing time is a scheduled day, even
//!   when that instant is on the next calendar day (a gap ending at midnight); in a
//!   fall-back overlap it opens once, at the first of the two 02:30s. Schedules with
//!   several times of day (`*/30 * * * *`, `30 1,2 * * *`) skip wall-clock times in a gap
//!   and open at both instants of an overlap.
//! - Freezes close the window from `start` (inclusive) to `end` (exclusive). A civil time
//!   is read in the window's zone; one in a DST gap is moved forward by the gap's length,
//!   one in an overlap means the first instant (RFC 9557 "compatible").
//! - Cutoff: no new batch starts in the last `cutoff` before the window closes, whether it
//!   closes because its duration ends or because a freeze begins (so an always-open window
//!   with a cutoff stops starting batches `cutoff` before each freeze).

use std::fmt;

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::duration::parse_duration;
use crate::model::MaintenanceWindowSpec;
use schedule::Schedule;

mod cron_field;
pub mod report;
mod schedule;
#[cfg(test)]
mod tests;

/// How many scheduled intervals or freeze hops one evaluation may walk before it gives up
/// and reports that the window does not open (only pathological freeze patterns get here).
const MAX_STEPS: usize = 20_000;

/// The field of a `MaintenanceWindow` spec an error is about, so that validation can point
/// at its YAML node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowField {
    /// The spec as a whole (e.g. a required field is missing).
    Spec,
    /// `alwaysOpen`.
    AlwaysOpen,
    /// `schedule`.
    Schedule,
    /// `timezone`.
    Timezone,
    /// `duration`.
    Duration,
    /// `cutoff`.
    Cutoff,
    /// `freezes[i].start`.
    FreezeStart(usize),
    /// `freezes[i].end`.
    FreezeEnd(usize),
}

impl WindowField {
    /// The field's JSON pointer in the document, e.g. `/spec/freezes/2/start`.
    pub fn pointer(self) -> String {
        match self {
            WindowField::Spec => "/spec".into(),
            WindowField::AlwaysOpen => "/spec/alwaysOpen".into(),
            WindowField::Schedule => "/spec/schedule".into(),
            WindowField::Timezone => "/spec/timezone".into(),
            WindowField::Duration => "/spec/duration".into(),
            WindowField::Cutoff => "/spec/cutoff".into(),
            WindowField::FreezeStart(i) => format!("/spec/freezes/{i}/start"),
            WindowField::FreezeEnd(i) => format!("/spec/freezes/{i}/end"),
        }
    }

    /// The field's path below `spec`, e.g. `freezes[2].start`.
    pub fn path(self) -> String {
        match self {
            WindowField::Spec => String::new(),
            WindowField::AlwaysOpen => "alwaysOpen".into(),
            WindowField::Schedule => "schedule".into(),
            WindowField::Timezone => "timezone".into(),
            WindowField::Duration => "duration".into(),
            WindowField::Cutoff => "cutoff".into(),
            WindowField::FreezeStart(i) => format!("freezes[{i}].start"),
            WindowField::FreezeEnd(i) => format!("freezes[{i}].end"),
        }
    }
}

/// What kind of problem a [`WindowError`] is (validation maps it to a diagnostic code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowErrorKind {
    /// Fields missing, excluding each other, or not fitting together (cutoff ≥ duration).
    Structure,
    /// The cron schedule does not parse or never fires.
    Schedule,
    /// Unknown time zone.
    Timezone,
    /// A duration (`duration`, `cutoff`) does not parse or is zero.
    Duration,
    /// A freeze bound does not parse, or a freeze ends before it starts.
    Time,
}

/// One problem in a window spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WindowError {
    /// The field the problem is in.
    pub field: WindowField,
    /// What kind of problem it is.
    pub kind: WindowErrorKind,
    /// What is wrong, quoting the value.
    pub message: String,
}

impl WindowError {
    fn new(field: WindowField, message: impl Into<String>) -> WindowError {
        let kind = match field {
            WindowField::Spec | WindowField::AlwaysOpen => WindowErrorKind::Structure,
            WindowField::Schedule => WindowErrorKind::Schedule,
            WindowField::Timezone => WindowErrorKind::Timezone,
            WindowField::Duration | WindowField::Cutoff => WindowErrorKind::Duration,
            WindowField::FreezeStart(_) | WindowField::FreezeEnd(_) => WindowErrorKind::Time,
        };
        WindowError {
            field,
            kind,
            message: message.into(),
        }
    }

    fn structure(field: WindowField, message: impl Into<String>) -> WindowError {
        WindowError {
            kind: WindowErrorKind::Structure,
            ..WindowError::new(field, message)
        }
    }
}

/// A freeze, with its bounds resolved to instants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledFreeze {
    /// Name shown when it blocks a change.
    pub name: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// First frozen instant.
    pub start: Timestamp,
    /// First instant after the freeze.
    pub end: Timestamp,
}

/// A validated window, ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledWindow {
    timezone: TimeZone,
    timezone_name: String,
    /// `None`: always open.
    schedule: Option<Schedule>,
    cutoff: Option<SignedDuration>,
    /// Sorted by start.
    freezes: Vec<CompiledFreeze>,
}

/// Why a window is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum ClosedReason {
    /// Not inside a scheduled occurrence.
    OutsideSchedule,
    /// A freeze is in force.
    Frozen {
        /// The freeze's name.
        name: Option<String>,
        /// The freeze's reason.
        #[serde(skip_serializing_if = "Option::is_none")]
        why: Option<String>,
        /// When the freeze (with any freezes overlapping it) ends.
        until: Timestamp,
    },
    /// Inside the window, but in its last `cutoff`: batches already running may finish,
    /// no new one starts.
    Cutoff {
        /// When the window itself closes.
        closes_at: Timestamp,
    },
}

/// A window's state at an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum WindowState {
    /// A new batch may start now.
    Open {
        /// When this stretch of openness began (`None`: always open, or occurrences that
        /// overlap for ever, and never frozen before).
        since: Option<Timestamp>,
        /// When it ends, by schedule or by a freeze (`None`: never).
        until: Option<Timestamp>,
        /// When the cutoff begins (`None`: no cutoff, or never closes).
        cutoff_at: Option<Timestamp>,
    },
    /// No new batch may start now.
    Closed {
        /// The next instant a batch may start (`None`: not within the search horizon).
        next_open: Option<Timestamp>,
        /// Why it is closed.
        #[serde(flatten)]
        reason: ClosedReason,
    },
}

impl WindowState {
    /// Whether a new batch may start.
    pub fn is_open(&self) -> bool {
        matches!(self, WindowState::Open { .. })
    }
}

/// A stretch of time in which new batches may start (before `cutoff_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OpenPeriod {
    /// When it begins (`None`: always open, or occurrences that overlap for ever, and
    /// never frozen before).
    pub opens: Option<Timestamp>,
    /// When it ends, by schedule or freeze (`None`: never).
    pub closes: Option<Timestamp>,
    /// When the cutoff begins (`None`: no cutoff or never closes).
    pub cutoff_at: Option<Timestamp>,
}

fn add(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

fn finite(t: Timestamp) -> Option<Timestamp> {
    (t != Timestamp::MIN && t != Timestamp::MAX).then_some(t)
}

fn cron_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

/// Parses a 5-field cron schedule; the errors name every field at fault, each with its own
/// problem.
fn parse_schedule(s: &str) -> Result<Cron, Vec<String>> {
    let fields: Vec<&str> = s.split_whitespace().collect();
    if s.trim_start().starts_with('@') {
        return cron_parser().parse(s).map_err(|_| {
            vec![format!(
                "invalid schedule {s:?}: unknown shortcut (expected `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily` or `@hourly`, or 5 fields)"
            )]
        });
    }
    if fields.len() != 5 {
        return Err(vec![format!(
            "invalid schedule {s:?}: expected 5 fields (minute hour day-of-month month day-of-week), found {}",
            fields.len()
        )]);
    }
    let blame = |i: usize, why: String| {
        format!(
            "invalid schedule {s:?}: {} field {:?}: {why}",
            cron_field::FIELDS[i].name,
            fields[i]
        )
    };
    // Our reading of each field first: it names every bad field in the user's words, and
    // refuses what croner would misread (`JANJAN` as November).
    let problems: Vec<String> = (0..5)
        .filter_map(|i| {
            cron_field::FIELDS[i]
                .problem(fields[i])
                .map(|why| blame(i, why))
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    cron_parser().parse(s).map_err(|e| {
        // croner neither says which field is wrong nor stops at one: try each alone.
        let culprits: Vec<String> = (0..5)
            .filter(|&i| {
                let mut probe = ["*"; 5];
                probe[i] = fields[i];
                cron_parser().parse(&probe.join(" ")).is_err()
            })
            .map(|i| blame(i, cron_field::FIELDS[i].explain(fields[i])))
            .collect();
        if culprits.is_empty() {
            let why = e.to_string();
            let why = why.trim_end_matches('.');
            let why = why.rsplit(": ").next().unwrap_or(why).to_lowercase();
            vec![format!("invalid schedule {s:?}: {why}")]
        } else {
            culprits
        }
    })
}

/// Reads a freeze bound: RFC 3339 (with an offset) or a civil date-time in `tz`.
fn parse_instant(s: &str, tz: &TimeZone) -> Result<Timestamp, String> {
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(ts);
    }
    if s.contains('[') {
        return Err(format!(
            "{s:?} names a time zone but no offset; write a civil time (read in the window's zone) or RFC 3339"
        ));
    }
    let dt = s.parse::<jiff::civil::DateTime>().map_err(|e| {
        format!(
            "{s:?} is not a date-time: {e} (expected a civil time in the window's zone such as \
             `2026-12-20T00:00`, or RFC 3339 such as `2026-12-20T00:00:00Z`)"
        )
    })?;
    tz.to_ambiguous_timestamp(dt)
        .compatible()
        .map_err(|e| format!("{s:?}: {e}"))
}

impl CompiledWindow {
    /// Validates and compiles a window spec, reporting every problem.
    pub fn compile(spec: &MaintenanceWindowSpec) -> Result<CompiledWindow, Vec<WindowError>> {
        let mut errors = Vec::new();

        let timezone_name = spec.timezone.clone().unwrap_or_else(|| "UTC".to_owned());
        let timezone = match TimeZone::get(&timezone_name) {
            Ok(tz) => Some(tz),
            Err(e) => {
                errors.push(WindowError::new(
                    WindowField::Timezone,
                    format!("unknown time zone {timezone_name:?}: {e} (expected an IANA name such as `Europe/Berlin`)"),
                ));
                None
            }
        };

        let duration = spec
            .duration
            .as_deref()
            .and_then(|d| match parse_duration(d) {
                Ok(x) if x.is_zero() => {
                    errors.push(WindowError::new(
                        WindowField::Duration,
                        format!("duration {d:?} must be longer than zero"),
                    ));
                    None
                }
                Ok(x) => match SignedDuration::try_from(x) {
                    Ok(x) => Some(x),
                    Err(_) => {
                        errors.push(WindowError::new(
                            WindowField::Duration,
                            format!("duration {d:?} is too long"),
                        ));
                        None
                    }
                },
                Err(e) => {
                    errors.push(WindowError::new(WindowField::Duration, e.to_string()));
                    None
                }
            });
        let cutoff = spec
            .cutoff
            .as_deref()
            .and_then(|c| match parse_duration(c) {
                Ok(x) => SignedDuration::try_from(x).ok().or_else(|| {
                    errors.push(WindowError::new(
                        WindowField::Cutoff,
                        format!("cutoff {c:?} is too long"),
                    ));
                    None
                }),
                Err(e) => {
                    errors.push(WindowError::new(WindowField::Cutoff, e.to_string()));
                    None
                }
            });
        if let (Some(c), Some(d), Some(ct), Some(dt)) =
            (&spec.cutoff, &spec.duration, cutoff, duration)
        {
            if ct >= dt {
                errors.push(WindowError::structure(
                    WindowField::Cutoff,
                    format!("cutoff {c:?} is not shorter than duration {d:?}: no batch could ever start"),
                ));
            }
        }

        let cron = spec
            .schedule
            .as_deref()
            .and_then(|s| match parse_schedule(s) {
                Ok(cron) => Some(cron),
                Err(messages) => {
                    for message in messages {
                        errors.push(WindowError::new(WindowField::Schedule, message));
                    }
                    None
                }
            });

        let schedule = if spec.always_open {
            if spec.schedule.is_some() {
                errors.push(WindowError::structure(
                    WindowField::Schedule,
                    "schedule is not allowed with `alwaysOpen: true`",
                ));
            }
            if spec.duration.is_some() {
                errors.push(WindowError::structure(
                    WindowField::Duration,
                    "duration is not allowed with `alwaysOpen: true`",
                ));
            }
            None
        } else {
            if spec.schedule.is_none() {
                errors.push(WindowError::new(
                    WindowField::Spec,
                    "a window needs a `schedule` (or `alwaysOpen: true`)",
                ));
            }
            if spec.duration.is_none() && spec.schedule.is_some() {
                errors.push(WindowError::new(
                    WindowField::Spec,
                    "a scheduled window needs a `duration` (e.g. `4h`)",
                ));
            }
            match (cron, duration, &timezone, &spec.schedule) {
                (Some(cron), Some(duration), Some(tz), Some(text)) => {
                    // A pattern such as `0 0 31 4 *` parses but never fires.
                    match Schedule::new(cron, text.clone(), duration, tz.clone()) {
                        Ok(s) => Some(s),
                        Err(message) => {
                            errors.push(WindowError::new(WindowField::Schedule, message));
                            None
                        }
                    }
                }
                _ => None,
            }
        };

        let mut freezes = Vec::new();
        if let Some(tz) = &timezone {
            for (i, f) in spec.freezes.iter().enumerate() {
                let start = parse_instant(&f.start, tz).map_err(|m| {
                    errors.push(WindowError::new(
                        WindowField::FreezeStart(i),
                        format!("freeze start {m}"),
                    ));
                });
                let end = parse_instant(&f.end, tz).map_err(|m| {
                    errors.push(WindowError::new(
                        WindowField::FreezeEnd(i),
                        format!("freeze end {m}"),
                    ));
                });
                if let (Ok(start), Ok(end)) = (start, end) {
                    if end <= start {
                        errors.push(WindowError::new(
                            WindowField::FreezeEnd(i),
                            format!(
                                "freeze end {:?} is not after its start {:?}",
                                f.end, f.start
                            ),
                        ));
                    } else {
                        freezes.push(CompiledFreeze {
                            name: f.name.clone(),
                            reason: f.reason.clone(),
                            start,
                            end,
                        });
                    }
                }
            }
        }
        freezes.sort_by_key(|f| (f.start, f.end));

        match timezone {
            Some(timezone) if errors.is_empty() => Ok(CompiledWindow {
                timezone,
                timezone_name,
                schedule,
                cutoff,
                freezes,
            }),
            _ => Err(errors),
        }
    }

    /// The window's time zone.
    pub fn timezone(&self) -> &TimeZone {
        &self.timezone
    }

    /// The time zone's name as written (default `UTC`).
    pub fn timezone_name(&self) -> &str {
        &self.timezone_name
    }

    /// Whether the window is always open (apart from freezes).
    pub fn is_always_open(&self) -> bool {
        self.schedule.is_none()
    }

    /// The cron schedule as written (`None`: always open).
    pub fn schedule(&self) -> Option<&str> {
        self.schedule.as_ref().map(|s| s.text())
    }

    /// How long each occurrence stays open (`None`: always open).
    pub fn duration(&self) -> Option<SignedDuration> {
        self.schedule.as_ref().map(|s| s.duration())
    }

    /// The cutoff, if any.
    pub fn cutoff(&self) -> Option<SignedDuration> {
        self.cutoff
    }

    /// The freezes, sorted by start.
    pub fn freezes(&self) -> &[CompiledFreeze] {
        &self.freezes
    }

    /// The window's state at `t`.
    pub fn state_at(&self, t: Timestamp) -> WindowState {
        if let Some((freeze, until)) = self.freeze_at(t) {
            return WindowState::Closed {
                next_open: self.next_open_at(t),
                reason: ClosedReason::Frozen {
                    name: freeze.name.clone(),
                    why: freeze.reason.clone(),
                    until,
                },
            };
        }
        let Some((ws, we)) = self.interval_containing(t) else {
            return WindowState::Closed {
                next_open: self.next_open_at(t),
                reason: ClosedReason::OutsideSchedule,
            };
        };
        let (since, until) = self.piece_around(ws, we, t);
        let cutoff_at = self.cutoff.and_then(|c| finite(until).map(|u| add(u, -c)));
        if cutoff_at.is_some_and(|c| t >= c) {
            return WindowState::Closed {
                next_open: self.next_open_at(t),
                reason: ClosedReason::Cutoff { closes_at: until },
            };
        }
        WindowState::Open {
            since: finite(since),
            until: finite(until),
            cutoff_at,
        }
    }

    /// Whether a new batch may start at `t`.
    pub fn can_start_batch(&self, t: Timestamp) -> bool {
        self.state_at(t).is_open()
    }

    /// Whether `t` is inside the window and not frozen, cutoff included: work already under
    /// way may continue, though no new batch starts in the cutoff.
    pub fn is_inside(&self, t: Timestamp) -> bool {
        self.freeze_at(t).is_none() && self.interval_containing(t).is_some()
    }

    /// The first instant at or after `t` at which a new batch may start (`t` itself when
    /// open), or `None` if there is none within the search horizon.
    pub fn next_open_at(&self, t: Timestamp) -> Option<Timestamp> {
        self.open_period_from(t)
            .map(|p| p.opens.map_or(t, |o| o.max(t)))
    }

    /// The open period that contains `t` (a batch may start at `t`), or else the next one.
    pub fn open_period_from(&self, t: Timestamp) -> Option<OpenPeriod> {
        let mut from = t;
        let mut steps = 0;
        while steps < MAX_STEPS {
            let (ws, we) = self.interval_at_or_after(from)?;
            let mut a = ws.max(from);
            while a < we && steps < MAX_STEPS {
                steps += 1;
                if let Some((_, until)) = self.freeze_at(a) {
                    a = until;
                    continue;
                }
                let (opens, closes) = self.piece_around(ws, we, a);
                let limit = self.cutoff.map_or(closes, |c| {
                    if closes == Timestamp::MAX {
                        closes
                    } else {
                        add(closes, -c)
                    }
                });
                if a < limit {
                    let cutoff_at = self.cutoff.and_then(|_| finite(closes).map(|_| limit));
                    return Some(OpenPeriod {
                        opens: finite(opens),
                        closes: finite(closes),
                        cutoff_at,
                    });
                }
                a = closes;
            }
            if we == Timestamp::MAX {
                return None;
            }
            // `a` may be past `we` after a long freeze: skip the frozen intervals at once.
            from = we.max(a);
            steps += 1;
        }
        None
    }

    /// The first freeze in force at `t`, and when freezes stop (overlapping and touching
    /// freezes chained).
    fn freeze_at(&self, t: Timestamp) -> Option<(&CompiledFreeze, Timestamp)> {
        let first = self.freezes.iter().find(|f| f.start <= t && t < f.end)?;
        let mut until = first.end;
        loop {
            let further = self
                .freezes
                .iter()
                .filter(|f| f.start <= until && f.end > until)
                .map(|f| f.end)
                .max();
            match further {
                Some(end) => until = end,
                None => return Some((first, until)),
            }
        }
    }

    /// The freeze-free stretch of the scheduled interval `[ws, we)` around the unfrozen `t`.
    fn piece_around(&self, ws: Timestamp, we: Timestamp, t: Timestamp) -> (Timestamp, Timestamp) {
        let since = self
            .freezes
            .iter()
            .map(|f| f.end)
            .filter(|&e| e > ws && e <= t)
            .max()
            .unwrap_or(ws);
        let until = self
            .freezes
            .iter()
            .map(|f| f.start)
            .filter(|&s| s > t && s < we)
            .min()
            .unwrap_or(we);
        (since, until)
    }

    /// The scheduled interval (occurrences chained) containing `t`.
    fn interval_containing(&self, t: Timestamp) -> Option<(Timestamp, Timestamp)> {
        self.interval_at_or_after(t).filter(|&(ws, _)| ws <= t)
    }

    /// The scheduled interval containing `t`, or else the next one: a run of chained
    /// occurrences, from its first occurrence to `duration` after its last
    /// (`Timestamp::MIN`/`MAX`: a run that never began / never ends).
    fn interval_at_or_after(&self, t: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let Some(sch) = &self.schedule else {
            return Some((Timestamp::MIN, Timestamp::MAX));
        };
        let start = match sch.previous_occurrence(t, true) {
            Some(p) if add(p, sch.duration()) > t => p,
            _ => sch.next_occurrence(t, false)?,
        };
        let (first, last) = sch.run(start);
        Some((
            first.unwrap_or(Timestamp::MIN),
            last.map_or(Timestamp::MAX, |l| add(l, sch.duration())),
        ))
    }
}

impl fmt::Display for WindowField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowField::Spec => f.write_str("spec"),
            other => write!(f, "spec.{}", other.path()),
        }
    }
}
