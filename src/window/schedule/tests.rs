//! The schedule's own arithmetic, and its occurrences checked against croner's.

use super::*;
use croner::parser::{CronParser, Seconds, Year};
use proptest::prelude::*;

fn schedule(expr: &str, tz: &str, duration: &str) -> Schedule {
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .expect("cron");
    let d = crate::duration::parse_duration(duration).expect("duration");
    Schedule::new(
        cron,
        expr.to_owned(),
        SignedDuration::try_from(d).expect("fits"),
        TimeZone::get(tz).expect("zone"),
    )
    .expect("fires")
}

/// Proptest cases: `default`, or `PATCHKEEPER_PROPTEST_CASES` for a longer sweep.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PATCHKEEPER_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn civil_days_match_jiff() {
    let epoch = jiff::civil::date(1970, 1, 1);
    for days in (-800_000..800_000).step_by(997).chain(-1500..1500) {
        let d = epoch
            .checked_add(jiff::Span::new().days(days))
            .expect("in range");
        let (y, m, dd) = civil_from_days(days);
        assert_eq!(
            (y, m, dd),
            (i32::from(d.year()), d.month() as u32, d.day() as u32),
            "{days}"
        );
        assert_eq!(
            weekday(days).num_days_from_sunday(),
            u32::from(d.weekday().to_sunday_zero_offset() as u8),
            "{days}"
        );
        assert_eq!(days_in_month(y, m), d.days_in_month() as u32);
    }
}

#[test]
fn stretches_skip_transitions_that_change_nothing() {
    let s = schedule("0 2 * * *", "Europe/Berlin", "1h");
    let t = "2026-06-01T00:00:00Z"
        .parse::<Timestamp>()
        .expect("instant");
    let st = s.stretch(t.as_second());
    assert_eq!(st.offset, 7200);
    assert_eq!(st.offset_before, 3600);
    assert_eq!(
        st.start.map(instant),
        Some("2026-03-29T01:00:00Z".parse().expect("instant"))
    );
    assert_eq!(
        st.end.map(instant),
        Some("2026-10-25T01:00:00Z".parse().expect("instant"))
    );
    let utc = schedule("0 2 * * *", "UTC", "1h").stretch(t.as_second());
    assert_eq!((utc.start, utc.end, utc.offset), (None, None, 0));
}

#[test]
fn dense_is_decided_over_the_whole_calendar() {
    assert!(schedule("0 * * * *", "UTC", "1h").dense);
    assert!(!schedule("0 * * * *", "UTC", "59m").dense);
    assert!(schedule("0 0 * * *", "UTC", "24h").dense);
    assert!(!schedule("* * * * SAT,SUN", "UTC", "30m").dense);
    // Every day but the 31st: bridged by a day and a minute.
    assert!(!schedule("* * 1-30 * *", "UTC", "1d").dense);
    assert!(schedule("* * 1-30 * *", "UTC", "1d1m").dense);
    // All days, written the long way.
    assert!(schedule("*/5 * * * 0-6", "UTC", "5m").dense);
    // February 29th: eight years apart around 2100.
    assert!(!schedule("0 0 29 2 *", "UTC", "1461d").dense);
    assert!(schedule("0 0 29 2 *", "UTC", "2922d").dense);
}

/// Expressions over every field form croner supports in five fields.
fn expression() -> impl Strategy<Value = String> {
    let minute = prop::sample::select(vec!["0", "30", "45", "*/15", "*/20", "0,30", "10-12", "*"]);
    let hour = prop::sample::select(vec![
        "0", "1", "2", "3", "23", "22-23", "0-5", "1,2", "*/2", "*/6", "*",
    ]);
    let dom = prop::sample::select(vec!["*", "*", "*", "1-15", "L", "28", "15W", "1,15", "29"]);
    let month = prop::sample::select(vec!["*", "*", "*", "3", "10", "1-6", "3,4,9,10,11"]);
    let dow = prop::sample::select(vec![
        "*", "*", "*", "SAT", "SAT,SUN", "MON-FRI", "0", "5L", "6#4", "1-3",
    ]);
    (minute, hour, dom, month, dow).prop_map(|(a, b, c, d, e)| format!("{a} {b} {c} {d} {e}"))
}

/// Zones with DST gaps and overlaps at 02:00, at midnight, of 30 minutes and of 2 hours.
const ZONES: [&str; 12] = [
    "Europe/Berlin",
    "America/New_York",
    "America/Nuuk",
    "America/Santiago",
    "America/Havana",
    "Africa/Cairo",
    "Asia/Beirut",
    "Atlantic/Azores",
    "Australia/Lord_Howe",
    "Antarctica/Troll",
    "Asia/Kolkata",
    "UTC",
];

/// An instant in 2026–2030, half of them within two days of one of the zone's transitions.
fn instant_near_transitions(tz: &TimeZone, pick: (bool, u16, i64, i64)) -> Timestamp {
    let (near, which, offset, plain) = pick;
    let from: Timestamp = "2026-01-01T00:00:00Z".parse().expect("instant");
    let transitions: Vec<Timestamp> = tz
        .following(from)
        .take_while(|t| t.timestamp().as_second() < from.as_second() + 5 * 365 * DAY)
        .map(|t| t.timestamp())
        .collect();
    if near && !transitions.is_empty() {
        let t = transitions[usize::from(which) % transitions.len()];
        instant(t.as_second() + offset)
    } else {
        instant(from.as_second() + plain)
    }
}

/// croner's one known difference: it checks the day fields against the day *after* a gap
/// that ends at midnight, and so drops the opening of a schedule with one time of day in
/// it (patchkeeper checks the day of the missing time). `ours` is such an opening when it
/// is a gap's end and the gap starts on another calendar day.
fn croner_drops(s: &Schedule, ours: i64) -> bool {
    let st = s.stretch(ours);
    s.is_fixed()
        && st.start == Some(ours)
        && st.springs_forward()
        && (ours + st.offset_before).div_euclid(DAY) != (ours + st.offset).div_euclid(DAY)
}

#[test]
fn croner_drops_the_nuuk_saturday_after_a_gap_ending_at_midnight() {
    let s = schedule("30 23 * * 6", "America/Nuuk", "1h");
    let t: Timestamp = "2026-03-28T20:00:00Z".parse().expect("instant");
    let ours = s.next_occurrence(t, false).expect("opens");
    assert_eq!(
        ours,
        "2026-03-29T01:00:00Z"
            .parse::<Timestamp>()
            .expect("instant")
    );
    assert!(croner_drops(&s, ours.as_second()));
    let theirs = s
        .cron
        .find_next_occurrence(&t.to_zoned(s.tz.clone()), false)
        .expect("croner finds one");
    assert_eq!(
        theirs.timestamp(),
        "2026-04-05T00:30:00Z"
            .parse::<Timestamp>()
            .expect("instant")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(96)))]

    /// Next and previous occurrences agree with croner's searches (which this module
    /// replaced), except where croner drops an opening after a gap ending at midnight.
    #[test]
    fn occurrences_agree_with_croner(
        expr in expression(),
        zone in 0..ZONES.len(),
        pick in (any::<bool>(), any::<u16>(), -2 * DAY..2 * DAY, 0..5 * 365 * DAY),
    ) {
        let s = schedule(&expr, ZONES[zone], "1m");
        let tz = TimeZone::get(ZONES[zone]).expect("zone");
        let t = instant_near_transitions(&tz, pick);
        let zoned = t.to_zoned(tz.clone());

        let ours = s.next_occurrence(t, false);
        let theirs = s.cron.find_next_occurrence(&zoned, false).ok().map(|z| z.timestamp());
        if ours != theirs {
            let o = ours.expect("ours finds one when croner does");
            prop_assert!(croner_drops(&s, o.as_second()), "{expr} in {}: next after {t}: ours {ours:?}, croner {theirs:?}", ZONES[zone]);
            prop_assert!(theirs.is_none_or(|c| c > o));
        }

        let ours = s.previous_occurrence(t, false);
        let theirs = s.cron.find_previous_occurrence(&zoned, false).ok().map(|z| z.timestamp());
        if ours != theirs {
            let o = ours.expect("ours finds one when croner does");
            prop_assert!(croner_drops(&s, o.as_second()), "{expr} in {}: previous before {t}: ours {ours:?}, croner {theirs:?}", ZONES[zone]);
            prop_assert!(theirs.is_none_or(|c| c < o));
        }
    }
}
