//! Window evaluation tests: DST gaps and overlaps, chained runs, freezes, cutoff, validation.

use super::*;
use crate::model::Freeze;

fn spec(schedule: &str, tz: &str, duration: &str) -> MaintenanceWindowSpec {
    MaintenanceWindowSpec {
        emergency: false,
        always_open: false,
        schedule: Some(schedule.to_owned()),
        timezone: Some(tz.to_owned()),
        duration: Some(duration.to_owned()),
        cutoff: None,
        freezes: Vec::new(),
    }
}

fn freeze(name: &str, start: &str, end: &str) -> Freeze {
    Freeze {
        name: Some(name.to_owned()),
        start: start.to_owned(),
        end: end.to_owned(),
        reason: None,
    }
}

fn compile(s: &MaintenanceWindowSpec) -> CompiledWindow {
    CompiledWindow::compile(s).unwrap_or_else(|e| panic!("{e:?}"))
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A civil time in a zone, which must be unambiguous.
fn local(tz: &str, civil: &str) -> Timestamp {
    let dt: jiff::civil::DateTime = civil.parse().expect("civil time");
    TimeZone::get(tz)
        .expect("zone")
        .to_ambiguous_timestamp(dt)
        .unambiguous()
        .expect("unambiguous")
}

fn open(since: &str, until: &str, cutoff_at: Option<&str>) -> WindowState {
    WindowState::Open {
        since: Some(ts(since)),
        until: Some(ts(until)),
        cutoff_at: cutoff_at.map(ts),
    }
}

fn outside(next: &str) -> WindowState {
    WindowState::Closed {
        next_open: Some(ts(next)),
        reason: ClosedReason::OutsideSchedule,
    }
}

// ---------------------------------------------------------------------------------------
// DST: spring forward

#[test]
fn berlin_spring_forward_fixed_time_in_gap_opens_at_end_of_gap() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    let w = compile(&spec("30 2 * * *", "Europe/Berlin", "2h"));
    // The day before: 02:30 CET = 01:30Z.
    assert_eq!(
        w.state_at(ts("2026-03-28T01:30:00Z")),
        open("2026-03-28T01:30:00Z", "2026-03-28T03:30:00Z", None)
    );
    // On the day: at the first instant after the gap, 03:00 CEST = 01:00Z, for 2 real hours.
    assert_eq!(
        w.state_at(ts("2026-03-29T00:59:59Z")),
        outside("2026-03-29T01:00:00Z")
    );
    assert_eq!(
        w.state_at(ts("2026-03-29T01:00:00Z")),
        open("2026-03-29T01:00:00Z", "2026-03-29T03:00:00Z", None)
    );
    assert_eq!(
        local("Europe/Berlin", "2026-03-29T03:00"),
        ts("2026-03-29T01:00:00Z")
    );
    // The day after: 02:30 CEST = 00:30Z.
    assert_eq!(
        w.state_at(ts("2026-03-29T03:00:00Z")),
        outside("2026-03-30T00:30:00Z")
    );
}

#[test]
fn new_york_spring_forward_fixed_time_in_gap_opens_at_end_of_gap() {
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT.
    let w = compile(&spec("30 2 * * *", "America/New_York", "1h"));
    assert_eq!(
        w.state_at(ts("2026-03-08T06:00:00Z")),
        outside(&local("America/New_York", "2026-03-08T03:00").to_string())
    );
    assert_eq!(
        local("America/New_York", "2026-03-08T03:00"),
        ts("2026-03-08T07:00:00Z")
    );
    assert_eq!(
        w.state_at(ts("2026-03-08T07:30:00Z")),
        open("2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z", None)
    );
    // The next day at 02:30 EDT = 06:30Z.
    assert_eq!(
        w.next_open_at(ts("2026-03-08T08:00:00Z")),
        Some(ts("2026-03-09T06:30:00Z"))
    );
}

#[test]
fn spring_forward_multi_value_schedule_skips_the_missing_time() {
    // Only schedules with one time of day are carried past a gap.
    let w = compile(&spec("30 1,2 * * *", "Europe/Berlin", "20m"));
    assert_eq!(
        w.state_at(ts("2026-03-29T00:40:00Z")),
        open("2026-03-29T00:30:00Z", "2026-03-29T00:50:00Z", None)
    );
    // No 02:30 that day: next is 01:30 CEST on the 30th = 23:30Z on the 29th.
    assert_eq!(
        w.state_at(ts("2026-03-29T00:50:00Z")),
        outside("2026-03-29T23:30:00Z")
    );
}

#[test]
fn window_opening_before_the_gap_lasts_real_hours() {
    // 01:00 CET + 3h of elapsed time = 05:00 CEST on the wall clock.
    let w = compile(&spec("0 1 * * *", "Europe/Berlin", "3h"));
    let WindowState::Open {
        until: Some(until), ..
    } = w.state_at(ts("2026-03-29T01:30:00Z"))
    else {
        panic!("open")
    };
    assert_eq!(until, ts("2026-03-29T03:00:00Z"));
    assert_eq!(until.to_zoned(w.timezone().clone()).hour(), 5);
}

// ---------------------------------------------------------------------------------------
// DST: fall back

#[test]
fn berlin_fall_back_fixed_time_in_overlap_opens_once_at_first_instant() {
    // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens at 00:30Z and 01:30Z.
    let w = compile(&spec("30 2 * * *", "Europe/Berlin", "30m"));
    assert_eq!(
        w.state_at(ts("2026-10-25T00:30:00Z")),
        open("2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z", None)
    );
    // The second 02:30 does not open it again: next is 02:30 CET on the 26th.
    assert_eq!(
        w.state_at(ts("2026-10-25T01:30:00Z")),
        outside("2026-10-26T01:30:00Z")
    );
    assert_eq!(
        w.next_open_at(ts("2026-10-25T00:31:00Z")),
        Some(ts("2026-10-25T00:31:00Z"))
    );
    assert_eq!(
        w.next_open_at(ts("2026-10-25T01:00:00Z")),
        Some(ts("2026-10-26T01:30:00Z"))
    );
}

#[test]
fn berlin_window_spanning_the_fall_back_hour_lasts_real_hours() {
    // Opens 01:00 CEST (23:00Z) and stays open 4 elapsed hours, to 03:00Z = 04:00 CET.
    let w = compile(&spec("0 1 * * *", "Europe/Berlin", "4h"));
    let state = w.state_at(ts("2026-10-25T01:30:00Z"));
    assert_eq!(
        state,
        open("2026-10-24T23:00:00Z", "2026-10-25T03:00:00Z", None)
    );
    let WindowState::Open {
        until: Some(until), ..
    } = state
    else {
        panic!("open")
    };
    assert_eq!(
        until.to_zoned(w.timezone().clone()).to_string(),
        "2026-10-25T04:00:00+01:00[Europe/Berlin]"
    );
    assert_eq!(
        w.state_at(ts("2026-10-25T03:00:00Z")),
        outside("2026-10-26T00:00:00Z")
    );
}

#[test]
fn fall_back_interval_schedule_opens_at_both_instants() {
    // Schedules with several times of day open at both instants of a repeated time.
    let w = compile(&spec("30 * * * *", "Europe/Berlin", "10m"));
    assert_eq!(
        w.state_at(ts("2026-10-25T00:35:00Z")),
        open("2026-10-25T00:30:00Z", "2026-10-25T00:40:00Z", None)
    );
    assert_eq!(
        w.state_at(ts("2026-10-25T00:45:00Z")),
        outside("2026-10-25T01:30:00Z")
    );
    assert_eq!(
        w.state_at(ts("2026-10-25T01:35:00Z")),
        open("2026-10-25T01:30:00Z", "2026-10-25T01:40:00Z", None)
    );
}

#[test]
fn new_york_fall_back_fixed_time_in_overlap_opens_once() {
    // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens at 05:30Z and 06:30Z.
    let w = compile(&spec("30 1 * * SUN", "America/New_York", "15m"));
    assert_eq!(
        w.next_open_at(ts("2026-11-01T00:00:00Z")),
        Some(ts("2026-11-01T05:30:00Z"))
    );
    assert_eq!(
        w.next_open_at(ts("2026-11-01T05:45:00Z")),
        Some(ts("2026-11-08T06:30:00Z"))
    );
}

// ---------------------------------------------------------------------------------------
// Midnight, month ends, year ends

#[test]
fn window_crossing_midnight() {
    // Saturday 22:00 UTC for 6h; 2026-11-28 is a Saturday.
    let w = compile(&spec("0 22 * * SAT", "UTC", "6h"));
    assert_eq!(
        w.state_at(ts("2026-11-25T12:00:00Z")),
        outside("2026-11-28T22:00:00Z")
    );
    assert_eq!(
        w.state_at(ts("2026-11-29T03:59:59Z")),
        open("2026-11-28T22:00:00Z", "2026-11-29T04:00:00Z", None)
    );
    assert_eq!(
        w.state_at(ts("2026-11-29T04:00:00Z")),
        outside("2026-12-05T22:00:00Z")
    );
}

#[test]
fn window_crossing_month_and_year_ends() {
    // The 31st only exists in some months: April is skipped.
    let w = compile(&spec("0 23 31 * *", "Europe/Berlin", "3h"));
    assert_eq!(
        w.next_open_at(ts("2026-04-15T00:00:00Z")),
        Some(local("Europe/Berlin", "2026-05-31T23:00"))
    );
    let in_june = local("Europe/Berlin", "2026-06-01T01:30");
    assert!(w.can_start_batch(in_june));
    assert_eq!(
        w.state_at(in_june),
        open("2026-05-31T21:00:00Z", "2026-06-01T00:00:00Z", None)
    );
    // New Year's Eve into the new year.
    let new_year = local("Europe/Berlin", "2027-01-01T01:00");
    assert_eq!(
        w.state_at(new_year),
        open("2026-12-31T22:00:00Z", "2027-01-01T01:00:00Z", None)
    );
}

#[test]
fn last_day_of_month_and_leap_day() {
    let w = compile(&spec("0 0 L * *", "UTC", "1h"));
    assert_eq!(
        w.next_open_at(ts("2028-02-10T00:00:00Z")),
        Some(ts("2028-02-29T00:00:00Z"))
    );
    assert_eq!(
        w.next_open_at(ts("2027-02-10T00:00:00Z")),
        Some(ts("2027-02-28T00:00:00Z"))
    );
    let leap = compile(&spec("0 3 29 2 *", "UTC", "1h"));
    assert_eq!(
        leap.next_open_at(ts("2026-11-25T00:00:00Z")),
        Some(ts("2028-02-29T03:00:00Z"))
    );
}

// ---------------------------------------------------------------------------------------
// Freezes and cutoff

fn nightly_berlin() -> MaintenanceWindowSpec {
    spec("0 2 * * *", "Europe/Berlin", "4h")
}

#[test]
fn freeze_in_window_zone() {
    let mut s = nightly_berlin();
    s.freezes
        .push(freeze("year-end", "2026-12-20T00:00", "2027-01-04T00:00"));
    let w = compile(&s);
    assert_eq!(w.freezes()[0].start, ts("2026-12-19T23:00:00Z"));
    let state = w.state_at(local("Europe/Berlin", "2026-12-24T03:00"));
    assert_eq!(
        state,
        WindowState::Closed {
            next_open: Some(local("Europe/Berlin", "2027-01-04T02:00")),
            reason: ClosedReason::Frozen {
                name: Some("year-end".into()),
                why: None,
                until: ts("2027-01-03T23:00:00Z")
            },
        }
    );
    // The window of the 19th (02:00-06:00) is not touched.
    assert!(w.can_start_batch(local("Europe/Berlin", "2026-12-19T03:00")));
}

#[test]
fn freeze_in_rfc3339_and_date_only() {
    let mut s = nightly_berlin();
    s.freezes.push(freeze(
        "a",
        "2026-12-01T02:30:00+01:00",
        "2026-12-01T03:00:00Z",
    ));
    s.freezes.push(freeze("b", "2026-12-10", "2026-12-11"));
    let w = compile(&s);
    assert_eq!(w.freezes()[0].start, ts("2026-12-01T01:30:00Z"));
    assert_eq!(w.freezes()[1].start, ts("2026-12-09T23:00:00Z"));
    // Open 02:00-02:30 local, frozen 02:30 local to 04:00 local, then open to 06:00.
    assert_eq!(
        w.state_at(ts("2026-12-01T01:10:00Z")),
        open("2026-12-01T01:00:00Z", "2026-12-01T01:30:00Z", None)
    );
    assert!(matches!(
        w.state_at(ts("2026-12-01T02:00:00Z")),
        WindowState::Closed {
            reason: ClosedReason::Frozen { .. },
            ..
        }
    ));
    assert_eq!(
        w.state_at(ts("2026-12-01T04:00:00Z")),
        open("2026-12-01T03:00:00Z", "2026-12-01T05:00:00Z", None)
    );
    assert!(!w.can_start_batch(local("Europe/Berlin", "2026-12-10T03:00")));
}

#[test]
fn freeze_start_in_a_dst_gap_moves_forward() {
    let mut s = nightly_berlin();
    s.freezes
        .push(freeze("gap", "2026-03-29T02:30", "2026-03-30T00:00"));
    let w = compile(&s);
    // "compatible": 02:30 does not exist; read with the offset before the gap, 03:30 CEST.
    assert_eq!(w.freezes()[0].start, ts("2026-03-29T01:30:00Z"));
}

#[test]
fn overlapping_freezes_chain() {
    let mut s = nightly_berlin();
    s.freezes
        .push(freeze("one", "2026-12-01T00:00", "2026-12-03T00:00"));
    s.freezes
        .push(freeze("two", "2026-12-02T00:00", "2026-12-05T00:00"));
    s.freezes
        .push(freeze("three", "2026-12-05T00:00", "2026-12-06T00:00"));
    let w = compile(&s);
    let WindowState::Closed {
        reason: ClosedReason::Frozen { name, until, .. },
        next_open,
    } = w.state_at(local("Europe/Berlin", "2026-12-01T03:00"))
    else {
        panic!("frozen")
    };
    assert_eq!(name.as_deref(), Some("one"));
    assert_eq!(until, local("Europe/Berlin", "2026-12-06T00:00"));
    assert_eq!(next_open, Some(local("Europe/Berlin", "2026-12-06T02:00")));
}

#[test]
fn cutoff_stops_new_batches_before_the_end() {
    let mut s = nightly_berlin();
    s.cutoff = Some("30m".into());
    let w = compile(&s);
    let at = |c: &str| w.state_at(local("Europe/Berlin", c));
    assert_eq!(
        at("2026-12-01T05:29"),
        open(
            "2026-12-01T01:00:00Z",
            "2026-12-01T05:00:00Z",
            Some("2026-12-01T04:30:00Z")
        )
    );
    assert_eq!(
        at("2026-12-01T05:30"),
        WindowState::Closed {
            next_open: Some(local("Europe/Berlin", "2026-12-02T02:00")),
            reason: ClosedReason::Cutoff {
                closes_at: ts("2026-12-01T05:00:00Z")
            },
        }
    );
    assert!(w.is_inside(local("Europe/Berlin", "2026-12-01T05:45")));
    assert!(!w.can_start_batch(local("Europe/Berlin", "2026-12-01T05:45")));
    assert!(!w.is_inside(local("Europe/Berlin", "2026-12-01T06:00")));
}

#[test]
fn cutoff_applies_before_a_freeze_inside_the_window() {
    let mut s = nightly_berlin();
    s.cutoff = Some("15m".into());
    s.freezes
        .push(freeze("db", "2026-12-01T03:00", "2026-12-01T04:00"));
    let w = compile(&s);
    let at = |c: &str| w.state_at(local("Europe/Berlin", c));
    assert_eq!(
        at("2026-12-01T02:30"),
        open(
            "2026-12-01T01:00:00Z",
            "2026-12-01T02:00:00Z",
            Some("2026-12-01T01:45:00Z")
        )
    );
    assert_eq!(
        at("2026-12-01T02:50"),
        WindowState::Closed {
            next_open: Some(ts("2026-12-01T03:00:00Z")),
            reason: ClosedReason::Cutoff {
                closes_at: ts("2026-12-01T02:00:00Z")
            },
        }
    );
    assert_eq!(
        at("2026-12-01T04:10"),
        open(
            "2026-12-01T03:00:00Z",
            "2026-12-01T05:00:00Z",
            Some("2026-12-01T04:45:00Z")
        )
    );
}

#[test]
fn always_open_window() {
    let s = MaintenanceWindowSpec {
        emergency: false,
        always_open: true,
        schedule: None,
        timezone: None,
        duration: None,
        cutoff: Some("1h".into()),
        freezes: vec![freeze(
            "release",
            "2026-12-01T00:00:00Z",
            "2026-12-02T00:00:00Z",
        )],
    };
    let w = compile(&s);
    assert!(w.is_always_open());
    assert_eq!(w.timezone_name(), "UTC");
    assert_eq!(
        w.state_at(ts("2026-11-01T00:00:00Z")),
        WindowState::Open {
            since: None,
            until: Some(ts("2026-12-01T00:00:00Z")),
            cutoff_at: Some(ts("2026-11-30T23:00:00Z"))
        }
    );
    assert!(matches!(
        w.state_at(ts("2026-11-30T23:30:00Z")),
        WindowState::Closed { reason: ClosedReason::Cutoff { .. }, next_open: Some(n) } if n == ts("2026-12-02T00:00:00Z")
    ));
    assert_eq!(
        w.state_at(ts("2026-12-03T00:00:00Z")),
        WindowState::Open {
            since: Some(ts("2026-12-02T00:00:00Z")),
            until: None,
            cutoff_at: None
        }
    );
}

#[test]
fn overlapping_occurrences_form_one_window() {
    // Every hour for 2h: open for good, with no known start or end.
    let w = compile(&spec("0 * * * *", "UTC", "2h"));
    assert_eq!(
        w.state_at(ts("2026-11-25T12:30:00Z")),
        WindowState::Open {
            since: None,
            until: None,
            cutoff_at: None
        }
    );
    // Daily for 25h: the same.
    let w = compile(&spec("30 2 * * *", "Europe/Berlin", "25h"));
    assert_eq!(
        w.state_at(ts("2026-03-29T12:00:00Z")),
        WindowState::Open {
            since: None,
            until: None,
            cutoff_at: None
        }
    );
    // Every minute from 02:00 to 05:59, 2 minutes each: one stretch of 241 minutes.
    let w = compile(&spec("* 2-5 * * *", "UTC", "2m"));
    assert_eq!(
        w.state_at(ts("2026-11-25T04:00:30Z")),
        open("2026-11-25T02:00:00Z", "2026-11-25T06:01:00Z", None)
    );
    // Touching occurrences (every 4h for 4h) chain too.
    let w = compile(&spec("0 */4 * * *", "UTC", "4h"));
    assert!(w.can_start_batch(ts("2026-11-25T03:59:59Z")));
    assert!(w.can_start_batch(ts("2026-11-25T04:00:00Z")));
}

fn with_cutoff(mut s: MaintenanceWindowSpec, cutoff: &str) -> MaintenanceWindowSpec {
    s.cutoff = Some(cutoff.to_owned());
    s
}

#[test]
fn a_weekend_of_minutes_is_one_window_with_exact_bounds() {
    // Every minute of Saturday and Sunday for 30m: one window from Saturday 00:00 to
    // Monday 00:29 local, 2880 occurrences long.
    let w = compile(&with_cutoff(
        spec("* * * * SAT,SUN", "Europe/Berlin", "30m"),
        "15m",
    ));
    let weekend = open(
        "2026-01-30T23:00:00Z",
        "2026-02-01T23:29:00Z",
        Some("2026-02-01T23:14:00Z"),
    );
    assert_eq!(w.state_at(ts("2026-01-31T12:00:00Z")), weekend);
    assert_eq!(w.state_at(ts("2026-02-01T22:50:00Z")), weekend);
    assert_eq!(
        local("Europe/Berlin", "2026-02-02T00:29"),
        ts("2026-02-01T23:29:00Z")
    );
    assert_eq!(
        w.state_at(ts("2026-02-01T23:20:00Z")),
        WindowState::Closed {
            next_open: Some(ts("2026-02-06T23:00:00Z")),
            reason: ClosedReason::Cutoff {
                closes_at: ts("2026-02-01T23:29:00Z")
            }
        }
    );
    // Closed: the next opening's bounds are the next weekend's.
    let next = OpenPeriod {
        opens: Some(ts("2026-02-06T23:00:00Z")),
        closes: Some(ts("2026-02-08T23:29:00Z")),
        cutoff_at: Some(ts("2026-02-08T23:14:00Z")),
    };
    assert_eq!(w.open_period_from(ts("2026-02-03T12:00:00Z")), Some(next));
    // A far freeze does not stand in for the end.
    let mut s = with_cutoff(spec("* * * * SAT,SUN", "Europe/Berlin", "30m"), "15m");
    s.freezes
        .push(freeze("year-end", "2026-12-20T00:00", "2027-01-04T00:00"));
    let w = compile(&s);
    assert_eq!(w.open_period_from(ts("2026-02-03T12:00:00Z")), Some(next));
    assert_eq!(w.state_at(ts("2026-01-31T12:00:00Z")), weekend);
}

#[test]
fn chained_weekends_across_dst_changes_last_real_time() {
    let w = compile(&spec("* * * * SAT,SUN", "Europe/Berlin", "30m"));
    // Spring forward on Sunday 2026-03-29: Saturday 00:00 CET to Monday 00:29 CEST.
    assert_eq!(
        w.state_at(ts("2026-03-29T12:00:00Z")),
        open("2026-03-27T23:00:00Z", "2026-03-29T22:29:00Z", None)
    );
    // Fall back on Sunday 2026-10-25: Saturday 00:00 CEST to Monday 00:29 CET.
    assert_eq!(
        w.state_at(ts("2026-10-25T12:00:00Z")),
        open("2026-10-23T22:00:00Z", "2026-10-25T23:29:00Z", None)
    );
}

#[test]
fn long_finite_runs_have_exact_bounds() {
    // Every 5 minutes from 08:00 to 17:55 for 10m: 08:00 to 18:05 each weekday.
    let w = compile(&spec("*/5 8-17 * * MON-FRI", "America/New_York", "10m"));
    assert_eq!(
        w.state_at(local("America/New_York", "2026-11-30T12:00")),
        open(
            &local("America/New_York", "2026-11-30T08:00").to_string(),
            &local("America/New_York", "2026-11-30T18:05").to_string(),
            None
        )
    );
    // Every minute of the working week, 1m each: Monday 00:00 to Saturday 00:00.
    let w = compile(&spec("* * * * MON-FRI", "UTC", "1m"));
    assert_eq!(
        w.state_at(ts("2026-12-02T12:00:00Z")),
        open("2026-11-30T00:00:00Z", "2026-12-05T00:00:00Z", None)
    );
    // Every minute of the first 30 days of a month, 1m each: a 31st ends the run.
    let w = compile(&spec("* * 1-30 * *", "UTC", "1m"));
    assert_eq!(
        w.state_at(ts("2026-10-15T00:00:00Z")),
        open("2026-09-01T00:00:00Z", "2026-10-31T00:00:00Z", None)
    );
    // November has 30 days: its run goes on to the end of December 30th.
    assert_eq!(
        w.state_at(ts("2026-12-15T00:00:00Z")),
        open("2026-11-01T00:00:00Z", "2026-12-31T00:00:00Z", None)
    );
}

#[test]
fn dst_breaks_a_run_that_the_wall_clock_would_chain_for_ever() {
    // Every two hours for 2h chains for ever on the wall clock, but on the spring-forward
    // night 02:00 does not exist: 00:00 CET to 04:00 CEST is 3 real hours.
    let w = compile(&spec("0 */2 * * *", "Europe/Berlin", "2h"));
    assert_eq!(
        w.state_at(ts("2026-06-01T00:00:00Z")),
        open("2026-03-29T02:00:00Z", "2027-03-28T01:00:00Z", None)
    );
    assert_eq!(
        w.state_at(ts("2026-03-29T01:30:00Z")),
        outside("2026-03-29T02:00:00Z")
    );
    // Daily at midnight for 24h: the fall-back day is 25 hours long.
    let w = compile(&spec("0 0 * * *", "Europe/Berlin", "24h"));
    assert_eq!(
        w.state_at(ts("2026-06-01T00:00:00Z")),
        open("2025-10-26T23:00:00Z", "2026-10-25T22:00:00Z", None)
    );
    // The same in UTC never closes.
    let w = compile(&spec("0 0 * * *", "UTC", "24h"));
    assert_eq!(
        w.state_at(ts("2026-06-01T00:00:00Z")),
        WindowState::Open {
            since: None,
            until: None,
            cutoff_at: None
        }
    );
}

// ---------------------------------------------------------------------------------------
// DST gaps and overlaps at local midnight: the scheduled day counts

#[test]
fn nuuk_gap_ending_at_midnight_opens_for_the_scheduled_saturday() {
    // America/Nuuk, 2026-03-28: Saturday 23:00 -02 jumps to Sunday 00:00 -01 (01:00Z).
    let w = compile(&spec("30 23 * * 6", "America/Nuuk", "1h"));
    assert_eq!(
        w.next_open_at(ts("2026-03-28T20:00:00Z")),
        Some(ts("2026-03-29T01:00:00Z"))
    );
    assert_eq!(
        w.state_at(ts("2026-03-29T01:15:00Z")),
        open("2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z", None)
    );
    // The Saturday after: 23:30 -01 = 00:30Z.
    assert_eq!(
        w.next_open_at(ts("2026-03-29T02:00:00Z")),
        Some(ts("2026-04-05T00:30:00Z"))
    );
    // A date schedule does not skip the year.
    let w = compile(&spec("30 23 28 3 *", "America/Nuuk", "1h"));
    assert_eq!(
        w.next_open_at(ts("2026-03-01T00:00:00Z")),
        Some(ts("2026-03-29T01:00:00Z"))
    );
    // Daily: Saturday's opening after the gap, and Sunday's own at 23:30 -01.
    let w = compile(&spec("30 23 * * *", "America/Nuuk", "1h"));
    assert_eq!(
        w.next_open_at(ts("2026-03-28T20:00:00Z")),
        Some(ts("2026-03-29T01:00:00Z"))
    );
    assert_eq!(
        w.next_open_at(ts("2026-03-29T02:00:00Z")),
        Some(ts("2026-03-30T00:30:00Z"))
    );
    // Sunday only: Saturday's missing 23:30 is not Sunday's, though the gap ends on Sunday.
    let w = compile(&spec("30 23 * * SUN", "America/Nuuk", "1h"));
    assert_eq!(
        w.next_open_at(ts("2026-03-28T20:00:00Z")),
        Some(ts("2026-03-30T00:30:00Z"))
    );
}

#[test]
fn nuuk_overlap_at_midnight_opens_once() {
    // 2026-10-24: Saturday 23:59:59 -01 falls back to 23:00 -02 (01:00Z on the 25th).
    let w = compile(&spec("30 23 * * SAT", "America/Nuuk", "10m"));
    assert_eq!(
        w.next_open_at(ts("2026-10-24T20:00:00Z")),
        Some(ts("2026-10-25T00:30:00Z"))
    );
    assert_eq!(
        w.next_open_at(ts("2026-10-25T00:40:00Z")),
        Some(ts("2026-11-01T01:30:00Z"))
    );
}

#[test]
fn day_of_week_names_and_ranges() {
    let w = compile(&spec("0 2 * * MON-FRI", "UTC", "1h"));
    // 2026-11-28 is a Saturday: the next weekday is Monday the 30th.
    assert_eq!(
        w.next_open_at(ts("2026-11-28T00:00:00Z")),
        Some(ts("2026-11-30T02:00:00Z"))
    );
    let w = compile(&spec("0 2 * * sun", "UTC", "1h"));
    assert_eq!(
        w.next_open_at(ts("2026-11-28T00:00:00Z")),
        Some(ts("2026-11-29T02:00:00Z"))
    );
}

#[test]
fn long_freezes_are_skipped_in_one_step() {
    let mut s = nightly_berlin();
    s.freezes
        .push(freeze("long", "2026-01-01T00:00", "4000-01-01T00:00"));
    let w = compile(&s);
    assert_eq!(
        w.next_open_at(ts("2026-06-01T00:00:00Z")),
        Some(local("Europe/Berlin", "4000-01-01T02:00"))
    );
    s.freezes[0].end = "6000-01-01T00:00".into();
    let w = compile(&s);
    assert_eq!(
        w.next_open_at(ts("2026-06-01T00:00:00Z")),
        Some(local("Europe/Berlin", "6000-01-01T02:00"))
    );
    // Frozen to the end of representable time: no opening.
    s.freezes[0].end = "9999-12-30T21:00:00Z".into();
    let w = compile(&s);
    assert_eq!(w.next_open_at(ts("2026-06-01T00:00:00Z")), None);
}

// ---------------------------------------------------------------------------------------
// Validation

fn errors(s: &MaintenanceWindowSpec) -> Vec<(WindowField, String)> {
    CompiledWindow::compile(s)
        .expect_err("invalid")
        .into_iter()
        .map(|e| (e.field, e.message))
        .collect()
}

#[test]
fn every_problem_is_reported_at_its_field() {
    let s = MaintenanceWindowSpec {
        emergency: false,
        always_open: false,
        schedule: Some("0 2 * *".into()),
        timezone: Some("Mars/Olympus".into()),
        duration: Some("4 hours-ish".into()),
        cutoff: Some("5M".into()),
        freezes: vec![
            freeze("x", "christmas", "2026-12-01"),
            freeze("y", "2026-12-05", "2026-12-01"),
        ],
    };
    let errs = errors(&s);
    let fields: Vec<WindowField> = errs.iter().map(|e| e.0).collect();
    assert_eq!(
        fields,
        vec![
            WindowField::Timezone,
            WindowField::Duration,
            WindowField::Cutoff,
            WindowField::Schedule
        ]
    );
    assert!(errs[0].1.contains("\"Mars/Olympus\""), "{}", errs[0].1);
    assert!(
        errs[3].1.starts_with("invalid schedule \"0 2 * *\""),
        "{}",
        errs[3].1
    );

    let mut s = nightly_berlin();
    s.freezes = vec![
        freeze("x", "christmas", "2026-12-01"),
        freeze("y", "2026-12-05", "2026-12-01"),
    ];
    let errs = errors(&s);
    assert_eq!(
        errs.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![WindowField::FreezeStart(0), WindowField::FreezeEnd(1)]
    );
    assert!(
        errs[0].1.contains("\"christmas\" is not a date-time"),
        "{}",
        errs[0].1
    );
    assert!(
        errs[1].1.contains("is not after its start"),
        "{}",
        errs[1].1
    );
    assert_eq!(WindowField::FreezeEnd(1).to_string(), "spec.freezes[1].end");
}

#[test]
fn structural_errors() {
    let mut s = spec("0 2 * * *", "UTC", "4h");
    s.always_open = true;
    assert_eq!(
        errors(&s).iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![WindowField::Schedule, WindowField::Duration]
    );

    let mut s = spec("0 2 * * *", "UTC", "4h");
    s.schedule = None;
    s.duration = None;
    assert_eq!(errors(&s)[0].0, WindowField::Spec);

    let mut s = spec("0 2 * * *", "UTC", "4h");
    s.duration = None;
    assert_eq!(
        errors(&s),
        vec![(
            WindowField::Spec,
            "a scheduled window needs a `duration` (e.g. `4h`)".to_owned()
        )]
    );

    let mut s = spec("0 2 * * *", "UTC", "30m");
    s.cutoff = Some("30m".into());
    assert_eq!(errors(&s)[0].0, WindowField::Cutoff);

    assert_eq!(
        errors(&spec("0 2 * * *", "UTC", "0s"))[0].0,
        WindowField::Duration
    );
    assert_eq!(
        errors(&spec("0 2 * * *", "UTC", "1mo"))[0].0,
        WindowField::Duration
    );
}

#[test]
fn schedule_syntax() {
    for bad in [
        "0 0 2 * * *",
        "0 0 2 * * * 2026",
        "61 2 * * *",
        "0 2 * * FUNDAY",
        "",
        "0 2 32 * *",
    ] {
        let errs = errors(&spec(bad, "UTC", "1h"));
        assert_eq!(
            errs.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![WindowField::Schedule],
            "{bad:?}: {errs:?}"
        );
    }
    let msg = |s: &str| errors(&spec(s, "UTC", "1h")).remove(0).1;
    assert_eq!(msg("0 2 * *"), "invalid schedule \"0 2 * *\": expected 5 fields (minute hour day-of-month month day-of-week), found 4");
    assert_eq!(
        msg("0 25 * * *"),
        "invalid schedule \"0 25 * * *\": hour field \"25\": 25 is out of range (hours are 0-23)"
    );
    // Two bad fields: each with its own problem, in the words written.
    assert_eq!(
        errors(&spec("0 25 * * MON-FRY", "UTC", "1h")),
        vec![
            (
                WindowField::Schedule,
                "invalid schedule \"0 25 * * MON-FRY\": hour field \"25\": 25 is out of range (hours are 0-23)".to_owned()
            ),
            (
                WindowField::Schedule,
                "invalid schedule \"0 25 * * MON-FRY\": day-of-week field \"MON-FRY\": unknown day name `FRY` (did you mean `FRI`? days are SUN, MON, TUE, WED, THU, FRI, SAT or 0-7)".to_owned()
            ),
        ]
    );
    assert_eq!(
        msg("@fortnightly"),
        "invalid schedule \"@fortnightly\": unknown shortcut (expected `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily` or `@hourly`, or 5 fields)"
    );
    assert!(msg("0 2 * * FUNDAY")
        .starts_with("invalid schedule \"0 2 * * FUNDAY\": day-of-week field \"FUNDAY\": "));
    let errs = errors(&spec("0 0 31 4 *", "UTC", "1h"));
    assert_eq!(
        errs,
        vec![(
            WindowField::Schedule,
            "schedule \"0 0 31 4 *\" never matches a real date".to_owned()
        )]
    );
}

// ---------------------------------------------------------------------------------------
// Consistency over many zones, schedules and instants: guards against DST regressions
// and against state and next-opening computations drifting apart.

mod consistency {
    use super::*;
    use proptest::prelude::*;

    const ZONES: [&str; 6] = [
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "Asia/Kolkata",
        "UTC",
    ];
    const SCHEDULES: [&str; 8] = [
        "30 2 * * *",
        "0 1 * * *",
        "*/30 * * * *",
        "30 1,2 * * SUN",
        "0 0 L * *",
        "15 3 * * MON-FRI",
        "45 23 * * *",
        "0 2 29 2 *",
    ];
    /// With `*/30 * * * *`, 2h and 3h overlap forever (see
    /// `overlapping_occurrences_form_one_window`), so that schedule only gets the first two.
    const DURATIONS: [&str; 4] = ["20m", "30m", "2h", "3h"];

    /// Instants in 2026 and 2027, weighted towards the DST transitions of the zones above.
    fn instant() -> impl Strategy<Value = Timestamp> {
        let year = (
            ts("2026-01-01T00:00:00Z").as_second(),
            ts("2027-12-31T00:00:00Z").as_second(),
        );
        let around = |s: &'static str| {
            let c = ts(s).as_second();
            (c - 2 * 86400)..(c + 2 * 86400)
        };
        prop_oneof![
            (year.0..year.1),
            around("2026-03-29T01:00:00Z"),
            around("2026-10-25T01:00:00Z"),
            around("2026-03-08T07:00:00Z"),
            around("2026-11-01T06:00:00Z"),
            around("2026-04-05T02:00:00Z"),
            around("2026-10-04T02:00:00Z"),
            around("2026-09-27T02:00:00Z"),
        ]
        .prop_map(|s| Timestamp::from_second(s).expect("in range"))
    }

    fn window() -> impl Strategy<Value = CompiledWindow> {
        (
            0..ZONES.len(),
            0..SCHEDULES.len(),
            0..DURATIONS.len(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(z, s, d, with_cutoff, with_freeze)| {
                let d = if SCHEDULES[s].starts_with("*/30") {
                    d % 2
                } else {
                    d
                };
                let mut sp = spec(SCHEDULES[s], ZONES[z], DURATIONS[d]);
                if with_cutoff {
                    sp.cutoff = Some("10m".into());
                }
                if with_freeze {
                    sp.freezes
                        .push(freeze("f", "2026-03-28T12:00", "2026-03-29T02:45"));
                    sp.freezes
                        .push(freeze("g", "2026-10-25T02:15", "2026-10-26T00:00"));
                }
                compile(&sp)
            })
    }

    proptest! {
        // Each case costs dozens of searches; 150 keeps this about a second in debug.
        #![proptest_config(ProptestConfig::with_cases(150))]

        #[test]
        fn state_and_next_opening_agree(w in window(), t in instant()) {
            match w.state_at(t) {
                WindowState::Open { since, until, cutoff_at } => {
                    prop_assert!(w.can_start_batch(t));
                    prop_assert!(w.is_inside(t));
                    prop_assert_eq!(w.next_open_at(t), Some(t));
                    if let Some(s) = since {
                        prop_assert!(s <= t);
                        prop_assert!(w.state_at(s).is_open(), "not open at its own start {}", s);
                    }
                    if let Some(u) = until {
                        prop_assert!(t < u);
                        prop_assert!(!w.state_at(u).is_open(), "still open at its end {}", u);
                    }
                    if let Some(c) = cutoff_at {
                        prop_assert!(t < c);
                        prop_assert!(!w.can_start_batch(c));
                    }
                }
                WindowState::Closed { next_open, reason } => {
                    prop_assert!(!w.can_start_batch(t));
                    if let ClosedReason::Frozen { until, .. } = &reason {
                        prop_assert!(*until > t);
                        prop_assert!(!w.is_inside(t));
                    }
                    if let ClosedReason::Cutoff { closes_at } = &reason {
                        prop_assert!(*closes_at > t);
                        prop_assert!(w.is_inside(t));
                    }
                    let n = next_open.expect("these windows open again within the horizon");
                    prop_assert!(n > t);
                    prop_assert!(w.state_at(n).is_open(), "not open at its next opening {}", n);
                    // Closed all the way there: probe a few instants in between.
                    let span = n.duration_since(t);
                    for k in 1..4 {
                        let probe = add(t, span / 4 * k);
                        prop_assert!(!w.can_start_batch(probe), "open at {} before next opening {}", probe, n);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Chained runs: a window whose schedule has a gap somewhere in the week always closes, at
// the end of its chained run. The run is found here the slow way, occurrence by occurrence
// with croner's own search, which agrees with ours in these zones (no gap at midnight).

mod chains {
    use super::*;
    use proptest::prelude::*;

    const ZONES: [&str; 7] = [
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "Antarctica/Troll",
        "Asia/Kolkata",
        "UTC",
    ];
    /// The largest DST shift among `ZONES` (Antarctica/Troll's).
    const MAX_SHIFT: i64 = 2 * 3600;
    const MINUTES: [&str; 8] = ["0", "30", "*/15", "*/10", "0,20,40", "*", "5-10", "*/5"];
    const HOURS: [&str; 8] = ["*", "0-22", "8-17", "*/3", "1,2,3", "22,23,0", "2", "0-11"];
    const DAYS: [&str; 7] = ["*", "SAT,SUN", "MON-FRI", "1-6", "0", "FRI-SUN", "2,4"];
    const DURATIONS: [&str; 11] = [
        "1m", "5m", "10m", "15m", "30m", "1h", "2h", "3h", "6h", "1d", "2d",
    ];

    /// Whether some stretch of the week has no occurrence for longer than `reach` plus any
    /// DST shift, so that every real week has a gap (read on a UTC week: no DST).
    fn has_gap_in_the_week(cron: &Cron, reach: i64) -> bool {
        let monday = ts("2026-01-05T00:00:00Z");
        let minutes: Vec<i64> = (0..7 * 24 * 60)
            .filter(|m| {
                let z = add(monday, SignedDuration::from_mins(*m)).to_zoned(TimeZone::UTC);
                cron.is_time_matching(&z).unwrap_or(false)
            })
            .collect();
        let Some(first) = minutes.first() else {
            return false;
        };
        let wrap = first + 7 * 24 * 60 - minutes[minutes.len() - 1];
        let max_gap = minutes
            .windows(2)
            .map(|p| p[1] - p[0])
            .chain([wrap])
            .max()
            .unwrap_or(0);
        max_gap * 60 > reach + MAX_SHIFT
    }

    /// The run of chained occurrences around the occurrence `o`, walked one occurrence at
    /// a time with croner: its first occurrence and its end.
    fn slow_run(
        cron: &Cron,
        tz: &TimeZone,
        d: SignedDuration,
        o: Timestamp,
    ) -> (Timestamp, Timestamp) {
        let step_limit = 20_000;
        let mut last = o.to_zoned(tz.clone());
        for steps in 0.. {
            assert!(
                steps < step_limit,
                "run longer than {step_limit} occurrences"
            );
            match cron.find_next_occurrence(&last, false) {
                Ok(n) if n.timestamp() <= add(last.timestamp(), d) => last = n,
                _ => break,
            }
        }
        let mut first = o.to_zoned(tz.clone());
        for steps in 0.. {
            assert!(
                steps < step_limit,
                "run longer than {step_limit} occurrences"
            );
            match cron.find_previous_occurrence(&first, false) {
                Ok(p) if add(p.timestamp(), d) >= first.timestamp() => first = p,
                _ => break,
            }
        }
        (first.timestamp(), add(last.timestamp(), d))
    }

    fn case() -> impl Strategy<Value = (String, usize, usize, bool, (bool, u16, i64, i64))> {
        (
            (0..MINUTES.len(), 0..HOURS.len(), 0..DAYS.len())
                .prop_map(|(m, h, d)| format!("{} {} * * {}", MINUTES[m], HOURS[h], DAYS[d])),
            0..ZONES.len(),
            0..DURATIONS.len(),
            any::<bool>(),
            (
                any::<bool>(),
                any::<u16>(),
                -3 * 86400i64..3 * 86400,
                0..2 * 365 * 86400i64,
            ),
        )
    }

    /// An instant in 2026–2027, half of them within three days of a transition.
    fn instant(tz: &TimeZone, (near, which, offset, plain): (bool, u16, i64, i64)) -> Timestamp {
        let from = ts("2026-01-01T00:00:00Z");
        let transitions: Vec<Timestamp> = tz
            .following(from)
            .map(|t| t.timestamp())
            .take_while(|t| *t < ts("2028-01-01T00:00:00Z"))
            .collect();
        let base = if near && !transitions.is_empty() {
            add(
                transitions[usize::from(which) % transitions.len()],
                SignedDuration::from_secs(offset),
            )
        } else {
            add(from, SignedDuration::from_secs(plain))
        };
        // Whole minutes and half-minutes alike.
        add(base, SignedDuration::from_secs(30 * (offset & 1)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(super::super::schedule::tests::cases(64)))]

        #[test]
        fn a_window_with_a_gap_in_its_week_closes_at_the_end_of_its_run(
            (expr, zone, duration, with_cutoff, pick) in case()
        ) {
            let cron = cron_parser().parse(&expr).expect("valid");
            let d = SignedDuration::try_from(parse_duration(DURATIONS[duration]).expect("valid")).expect("fits");
            prop_assume!(has_gap_in_the_week(&cron, d.as_secs()));
            let mut s = spec(&expr, ZONES[zone], DURATIONS[duration]);
            let cutoff = SignedDuration::from_secs(d.as_secs() / 2);
            if with_cutoff && cutoff.as_secs() >= 60 {
                s.cutoff = Some(format!("{}s", cutoff.as_secs()));
            }
            let w = compile(&s);
            let tz = w.timezone().clone();
            let t = instant(&tz, pick);
            let cutoff = s.cutoff.is_some().then_some(cutoff);

            // The occurrence whose run holds `t`, or else the next one.
            let z = t.to_zoned(tz.clone());
            let o = match cron.find_previous_occurrence(&z, true) {
                Ok(p) if add(p.timestamp(), d) > t => p.timestamp(),
                _ => cron.find_next_occurrence(&z, false).expect("fires").timestamp(),
            };
            let (first, end) = slow_run(&cron, &tz, d, o);
            let cutoff_at = cutoff.map(|c| add(end, -c));
            match w.state_at(t) {
                WindowState::Open { since, until, cutoff_at: c } => {
                    prop_assert!(first <= t, "{expr} {}: open at {t} before its run {first}", ZONES[zone]);
                    prop_assert_eq!(since, Some(first));
                    prop_assert_eq!(until, Some(end), "{} in {} at {}", expr, ZONES[zone], t);
                    prop_assert_eq!(c, cutoff_at);
                }
                WindowState::Closed { reason: ClosedReason::Cutoff { closes_at }, .. } => {
                    prop_assert!(first <= t);
                    prop_assert_eq!(closes_at, end, "{} in {} at {}", expr, ZONES[zone], t);
                    prop_assert!(cutoff_at.is_some_and(|c| c <= t));
                }
                WindowState::Closed { reason, next_open } => {
                    prop_assert_eq!(reason, ClosedReason::OutsideSchedule);
                    prop_assert!(first > t);
                    prop_assert_eq!(next_open, Some(first));
                    let period = w.open_period_from(t).expect("opens");
                    prop_assert_eq!(period.opens, Some(first));
                    prop_assert_eq!(period.closes, Some(end), "{} in {} at {}", expr, ZONES[zone], t);
                    prop_assert_eq!(period.cutoff_at, cutoff_at);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// DST changes at local midnight, in every zone of the system's IANA database: a schedule
// with one time of day placed in the gap or overlap opens exactly once per scheduled day,
// where the documented rule says (the scheduled day is the day of the wall-clock time).

mod midnight {
    use super::*;
    use jiff::civil::DateTime;
    use jiff::tz::{AmbiguousOffset, Offset};

    /// A gap or overlap in 2026–2030 whose wall-clock times touch local midnight.
    struct Change {
        zone: String,
        tz: TimeZone,
        at: Timestamp,
        /// The wall-clock times skipped (gap) or repeated (overlap): `[from, to)`.
        from: DateTime,
        to: DateTime,
    }

    fn changes_at_midnight() -> Vec<Change> {
        let (first, last) = (ts("2026-01-01T00:00:00Z"), ts("2031-01-01T00:00:00Z"));
        let mut out = Vec::new();
        for name in jiff::tz::db().available() {
            let Ok(tz) = TimeZone::get(name.as_str()) else {
                continue;
            };
            for tr in tz.following(first) {
                let at = tr.timestamp();
                if at >= last {
                    break;
                }
                let before = tz.to_offset(add(at, SignedDuration::from_secs(-1)));
                let after = tr.offset();
                if before == after {
                    continue;
                }
                let wall = |o: Offset| o.to_datetime(at);
                let (from, to) = if after > before {
                    (wall(before), wall(after))
                } else {
                    (wall(after), wall(before))
                };
                let last_second = to - SignedDuration::from_secs(1);
                let midnight = jiff::civil::Time::midnight();
                if from.time() == midnight
                    || to.time() == midnight
                    || from.date() != last_second.date()
                {
                    out.push(Change {
                        zone: name.as_str().to_owned(),
                        tz: tz.clone(),
                        at,
                        from,
                        to,
                    });
                }
            }
        }
        out
    }

    /// Where the documented rules open a one-time-of-day schedule at `dt`: the instant;
    /// in an overlap the first; in a gap the first instant after it.
    fn documented_opening(tz: &TimeZone, dt: DateTime) -> Timestamp {
        let amb = tz.to_ambiguous_timestamp(dt);
        match amb.offset() {
            AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).expect("in range"),
            AmbiguousOffset::Fold { .. } => amb.earlier().expect("in range"),
            AmbiguousOffset::Gap { .. } => {
                let inside = amb.earlier().expect("in range");
                tz.following(inside)
                    .next()
                    .expect("the gap ends")
                    .timestamp()
            }
        }
    }

    const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

    /// Which days a schedule names, as the test reads its day fields.
    type DayRule = Box<dyn Fn(jiff::civil::Date) -> bool>;

    #[test]
    fn one_opening_per_scheduled_day_around_every_change_at_midnight() {
        let changes = changes_at_midnight();
        // The zones named in docs/versions-and-windows.md are among them.
        for zone in [
            "America/Nuuk",
            "America/Santiago",
            "America/Havana",
            "Africa/Cairo",
            "Asia/Beirut",
            "Atlantic/Azores",
        ] {
            assert!(
                changes.iter().any(|c| c.zone == zone),
                "{zone}: no change at midnight found"
            );
        }
        let mut checked = 0;
        for c in &changes {
            // The middle of the skipped or repeated times, to the minute.
            let half = c.from.duration_until(c.to).as_secs() / 2 / 60 * 60;
            let placed = c.from + SignedDuration::from_secs(half);
            let day = placed.date();
            let next_day = day.tomorrow().expect("in range");
            let (m, h) = (placed.minute(), placed.hour());
            let weekday =
                |d: jiff::civil::Date| WEEKDAYS[d.weekday().to_sunday_zero_offset() as usize];
            let schedules: [(String, DayRule); 4] = [
                (format!("{m} {h} * * *"), Box::new(|_| true)),
                (
                    format!("{m} {h} * * {}", weekday(day)),
                    Box::new(move |d| d.weekday() == day.weekday()),
                ),
                (
                    format!("{m} {h} * * {}", weekday(next_day)),
                    Box::new(move |d| d.weekday() == next_day.weekday()),
                ),
                (
                    format!("{m} {h} {} {} *", day.day(), day.month()),
                    Box::new(move |d| d == day),
                ),
            ];
            let window_start = add(c.at, SignedDuration::from_hours(-72));
            let window_end = add(c.at, SignedDuration::from_hours(72));
            for (expr, scheduled) in &schedules {
                let mut expected: Vec<Timestamp> = (-4..=4)
                    .map(|k| {
                        day.checked_add(jiff::Span::new().days(k))
                            .expect("in range")
                    })
                    .filter(|d| scheduled(*d))
                    .map(|d| documented_opening(&c.tz, d.to_datetime(placed.time())))
                    .filter(|t| (window_start..window_end).contains(t))
                    .collect();
                expected.sort();
                let w = compile(&spec(expr, &c.zone, "1m"));
                let mut actual = Vec::new();
                let mut t = window_start;
                while let Some(o) = w.next_open_at(t).filter(|o| *o < window_end) {
                    actual.push(o);
                    t = add(o, SignedDuration::from_mins(1));
                }
                assert_eq!(
                    actual, expected,
                    "`{expr}` in {} around {} ({} to {})",
                    c.zone, c.at, c.from, c.to
                );
                checked += 1;
            }
        }
        assert!(checked >= 100, "only {checked} schedules checked");
    }
}
