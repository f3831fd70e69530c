//! A window's schedule: the instants its cron expression names in the window's time zone,
//! and the runs that overlapping or touching occurrences chain into.
//!
//! croner parses the expression and answers which wall-clock minutes, days and months it
//! names; turning those into instants, DST included, is done here, so that the rules below
//! are ours and exact, and so that a chained run's bounds come from the schedule's
//! structure rather than from walking every occurrence.
//!
//! The model:
//! - *Wall clock*: local civil date-times, counted as seconds since 1970-01-01T00:00 of the
//!   local calendar. The schedule's occurrences on the wall clock are the product of its
//!   times of day (minute × hour fields) and its days (day-of-month, month, day-of-week).
//! - *Stretch*: a maximal span of instants with one UTC offset, between two time-zone
//!   transitions that change the offset. Inside a stretch an instant is its wall-clock time
//!   minus the offset, so the wall-clock structure holds exactly; DST only matters where
//!   two stretches meet.
//! - Where a stretch starts at instant `s`, the offset going from `before` to `after`:
//!   - spring forward (`after > before`): the wall-clock times `[s+before, s+after)` do not
//!     exist. A schedule with one time of day whose time falls in there on a scheduled day
//!     opens at `s`, the first instant after the gap. The scheduled day is the day of the
//!     missing time, even when `s` is on the next calendar day (a gap that ends at local
//!     midnight, as in America/Nuuk). Schedules with several times of day skip them.
//!   - fall back (`after < before`): the wall-clock times `[s+after, s+before)` happen
//!     twice. A schedule with one time of day opens at the first (in the earlier stretch);
//!     others open at both.
//! - A *run*: occurrences each starting no later than the previous one's end (`duration`
//!   after it) form one window. Within a stretch a run can only end at a gap of the
//!   wall-clock structure, found by jumping over whole segments of a day (times of day no
//!   more than `duration` apart) and over whole days; where stretches meet, the pair of
//!   occurrences around the transition is checked on the real time line. A run that never
//!   ends: the wall-clock structure has no gap anywhere (`dense`) and no transition ever
//!   makes one. Transitions are finite in the past; in the future, after the tz database's
//!   explicit transitions (which end by 2038) a zone follows a yearly rule, and calendar,
//!   rule and schedule all repeat every 400 years, so a run that passes one full such
//!   cycle after 2040 never ends.

use croner::{Cron, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Seconds in a day of the wall clock.
const DAY: i64 = 86_400;
/// Days in the Gregorian 400-year cycle, a whole number of weeks: every cron day pattern
/// and every yearly DST rule repeats after it.
const CYCLE_DAYS: i64 = 146_097;
/// The cycle in seconds.
const CYCLE: i64 = CYCLE_DAYS * DAY;
/// 2040-01-01T00:00:00Z: after it, every zone of the tz database follows its yearly rule.
const RULES_ONLY_FROM: i64 = 2_208_988_800;

/// The instants (whole seconds) the time line is clamped to.
fn min_second() -> i64 {
    Timestamp::MIN.as_second() + 1
}

fn max_second() -> i64 {
    Timestamp::MAX.as_second() - 1
}

/// A whole second as an instant, clamped to the representable range.
pub(super) fn instant(s: i64) -> Timestamp {
    Timestamp::from_second(s.clamp(min_second(), max_second())).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The first whole second at or after `t` (`inclusive`), or after it.
fn second_from(t: Timestamp, inclusive: bool) -> i64 {
    let s = t.as_second();
    if t.subsec_nanosecond() > 0 || !inclusive {
        s + 1
    } else {
        s
    }
}

/// The last whole second at or before `t` (`inclusive`), or before it.
fn second_to(t: Timestamp, inclusive: bool) -> i64 {
    let s = t.as_second();
    if t.subsec_nanosecond() > 0 || inclusive {
        s
    } else {
        s - 1
    }
}

/// The civil date of a day number (days since 1970-01-01), by Howard Hinnant's
/// `civil_from_days`: proleptic Gregorian, any year.
fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Years of ±2^31 are far beyond any instant here; clamping keeps the cast total.
    let year = year.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    (year, month as u32, day as u32)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// The weekday of a day number (1970-01-01 was a Thursday).
fn weekday(days: i64) -> Weekday {
    Weekday::from_days_from_sunday((days + 4).rem_euclid(7) as u32)
}

/// A span of instants with one UTC offset (see the module docs). Whole seconds.
#[derive(Debug, Clone, Copy)]
struct Stretch {
    /// Its first instant, a transition (`None`: since the beginning of time).
    start: Option<i64>,
    /// The first instant after it (`None`: never ends).
    end: Option<i64>,
    /// Its offset, in seconds.
    offset: i64,
    /// The offset before `start`.
    offset_before: i64,
}

impl Stretch {
    fn springs_forward(&self) -> bool {
        self.start.is_some() && self.offset > self.offset_before
    }

    fn falls_back(&self) -> bool {
        self.start.is_some() && self.offset < self.offset_before
    }
}

/// A cron schedule in a time zone with a duration per occurrence.
#[derive(Debug, Clone)]
pub(super) struct Schedule {
    cron: Cron,
    text: String,
    duration: SignedDuration,
    /// `duration` in whole seconds: consecutive occurrences (whole seconds apart) chain when
    /// no more than this apart.
    reach: i64,
    tz: TimeZone,
    /// The times of day, in seconds after midnight, ascending; never empty.
    times: Vec<i64>,
    /// For each time of day, the index of the last time of its segment (times no more
    /// than `reach` apart).
    segment_last: Vec<usize>,
    /// For each time of day, the index of the first time of its segment.
    segment_first: Vec<usize>,
    /// Whether no two consecutive wall-clock occurrences are ever more than `reach` apart.
    dense: bool,
}

impl Schedule {
    /// Builds the schedule; `Err` when it names no real date (`0 0 31 4 *`).
    pub(super) fn new(
        cron: Cron,
        text: String,
        duration: SignedDuration,
        tz: TimeZone,
    ) -> Result<Schedule, String> {
        let p = &cron.pattern;
        let mut times = Vec::new();
        for hour in 0..24u32 {
            for minute in 0..60u32 {
                if p.hour_match(hour).unwrap_or(false) && p.minute_match(minute).unwrap_or(false) {
                    times.push(i64::from(hour * 3600 + minute * 60));
                }
            }
        }
        if times.is_empty() {
            return Err(format!("schedule {text:?} names no time of day"));
        }
        let reach = duration.as_secs();
        let n = times.len();
        let mut segment_last = vec![n - 1; n];
        for i in (0..n - 1).rev() {
            if times[i + 1] - times[i] <= reach {
                segment_last[i] = segment_last[i + 1];
            } else {
                segment_last[i] = i;
            }
        }
        let mut segment_first = vec![0; n];
        for i in 1..n {
            if times[i] - times[i - 1] <= reach {
                segment_first[i] = segment_first[i - 1];
            } else {
                segment_first[i] = i;
            }
        }
        let mut s = Schedule {
            cron,
            text,
            duration,
            reach,
            tz,
            times,
            segment_last,
            segment_first,
            dense: false,
        };
        if s.next_allowed_day(0, CYCLE_DAYS).is_none() {
            return Err(format!("schedule {:?} never matches a real date", s.text));
        }
        s.dense = s.compute_dense();
        Ok(s)
    }

    /// The expression as written.
    pub(super) fn text(&self) -> &str {
        &self.text
    }

    /// How long each occurrence lasts.
    pub(super) fn duration(&self) -> SignedDuration {
        self.duration
    }

    /// A schedule with one time of day (one minute and one hour): carried past a DST gap,
    /// once in an overlap.
    fn is_fixed(&self) -> bool {
        self.times.len() == 1
    }

    /// Whether the day `days` (since 1970-01-01) is named by the day and month fields.
    fn allowed(&self, days: i64) -> bool {
        let (y, m, d) = civil_from_days(days);
        let p = &self.cron.pattern;
        p.month_match(m).unwrap_or(false) && p.day_match(y, m, d, weekday(days)).unwrap_or(false)
    }

    /// The first named day in `[from, to]`.
    fn next_allowed_day(&self, from: i64, to: i64) -> Option<i64> {
        let mut day = from;
        while day <= to {
            let (y, m, d) = civil_from_days(day);
            if !self.cron.pattern.month_match(m).unwrap_or(false) {
                // Skip the rest of the month at once.
                day += i64::from(days_in_month(y, m) - d + 1);
                continue;
            }
            if self.allowed(day) {
                return Some(day);
            }
            day += 1;
        }
        None
    }

    /// The last named day in `[to, from]`.
    fn prev_allowed_day(&self, from: i64, to: i64) -> Option<i64> {
        let mut day = from;
        while day >= to {
            let (_, m, d) = civil_from_days(day);
            if !self.cron.pattern.month_match(m).unwrap_or(false) {
                day -= i64::from(d);
                continue;
            }
            if self.allowed(day) {
                return Some(day);
            }
            day -= 1;
        }
        None
    }

    /// Whether the wall-clock structure has no gap longer than `reach` anywhere: every
    /// time-of-day segment is one, it reaches the next day's first time, and named days are
    /// never so far apart that the gap between them exceeds `reach`.
    fn compute_dense(&self) -> bool {
        let last = self.times.len() - 1;
        if self.segment_last[0] != last {
            return false;
        }
        let wrap = self.times[0] + DAY - self.times[last];
        if wrap > self.reach {
            return false;
        }
        // Named days at most this many days apart keep the chain going.
        let max_step = 1 + (self.reach - wrap) / DAY;
        let p = &self.cron.pattern;
        let every_month = (1..=12).all(|m| p.month_match(m).unwrap_or(false));
        if every_month && p.is_dom_wildcard() && p.is_dow_wildcard() {
            return true;
        }
        // Walk one full cycle (plus the step into the next) day by day.
        let Some(mut prev) = self.next_allowed_day(0, CYCLE_DAYS) else {
            return false;
        };
        let end = prev + CYCLE_DAYS;
        while prev < end {
            match self.next_allowed_day(prev + 1, prev + max_step) {
                Some(d) => prev = d,
                None => return false,
            }
        }
        true
    }

    /// `(day, index)` when the wall-clock second `w` is an occurrence.
    fn position(&self, w: i64) -> Option<(i64, usize)> {
        let day = w.div_euclid(DAY);
        let i = self.times.binary_search(&(w - day * DAY)).ok()?;
        self.allowed(day).then_some((day, i))
    }

    /// The first wall-clock occurrence at or after (`inclusive`) / after `w`, below `limit`.
    fn next_wall(&self, w: i64, inclusive: bool, limit: i64) -> Option<i64> {
        let day = w.div_euclid(DAY);
        let tod = w - day * DAY;
        if self.allowed(day) {
            let i = if inclusive {
                self.times.partition_point(|&x| x < tod)
            } else {
                self.times.partition_point(|&x| x <= tod)
            };
            if let Some(t) = self.times.get(i) {
                let r = day * DAY + t;
                return (r < limit).then_some(r);
            }
        }
        let last_day = (day + CYCLE_DAYS + 1).min(limit.saturating_sub(1).div_euclid(DAY));
        let next = self.next_allowed_day(day + 1, last_day)?;
        let r = next * DAY + self.times[0];
        (r < limit).then_some(r)
    }

    /// The last wall-clock occurrence at or before (`inclusive`) / before `w`, at or above
    /// `low`.
    fn prev_wall(&self, w: i64, inclusive: bool, low: i64) -> Option<i64> {
        let day = w.div_euclid(DAY);
        let tod = w - day * DAY;
        if self.allowed(day) {
            let i = if inclusive {
                self.times.partition_point(|&x| x <= tod)
            } else {
                self.times.partition_point(|&x| x < tod)
            };
            if i > 0 {
                let r = day * DAY + self.times[i - 1];
                return (r >= low).then_some(r);
            }
        }
        let first_day = (day - CYCLE_DAYS - 1).max(low.div_euclid(DAY));
        let prev = self.prev_allowed_day(day - 1, first_day)?;
        let r = prev * DAY + self.times[self.times.len() - 1];
        (r >= low).then_some(r)
    }

    /// The stretch containing the instant `t`.
    fn stretch(&self, t: i64) -> Stretch {
        let at = instant(t);
        let offset = i64::from(self.tz.to_offset(at).seconds());
        let end = self
            .tz
            .following(at)
            .find(|tr| i64::from(tr.offset().seconds()) != offset)
            .map(|tr| tr.timestamp().as_second());
        let mut start = None;
        let mut offset_before = offset;
        // Transitions that change nothing (a new abbreviation) do not end a stretch.
        for tr in self.tz.preceding(instant(t + 1)) {
            let s = tr.timestamp().as_second();
            let before = i64::from(self.tz.to_offset(instant(s - 1)).seconds());
            if before != offset {
                start = Some(s);
                offset_before = before;
                break;
            }
        }
        Stretch {
            start,
            end,
            offset,
            offset_before,
        }
    }

    /// Whether a schedule with one time of day has its time on a named day inside the
    /// spring-forward gap at the start of `s` (it then opens at `s.start`).
    fn opens_after_gap(&self, s: &Stretch) -> bool {
        match s.start {
            Some(start) if self.is_fixed() && s.springs_forward() => self
                .next_wall(start + s.offset_before, true, start + s.offset)
                .is_some(),
            _ => false,
        }
    }

    /// The first wall-clock second of `s` that may hold an occurrence: after a fall back, a
    /// schedule with one time of day already opened at the repeated times' first instant.
    fn first_wall(&self, s: &Stretch) -> i64 {
        match s.start {
            None => i64::MIN,
            Some(start) if self.is_fixed() && s.falls_back() => start + s.offset_before,
            Some(start) => start + s.offset,
        }
    }

    /// The first occurrence at or after `t` (`inclusive`) / after `t`.
    pub(super) fn next_occurrence(&self, t: Timestamp, inclusive: bool) -> Option<Timestamp> {
        self.next_from(second_from(t, inclusive)).map(instant)
    }

    /// The last occurrence at or before `t` (`inclusive`) / before `t`.
    pub(super) fn previous_occurrence(&self, t: Timestamp, inclusive: bool) -> Option<Timestamp> {
        self.prev_to(second_to(t, inclusive)).map(instant)
    }

    /// The first occurrence at or after the second `from`.
    fn next_from(&self, mut from: i64) -> Option<i64> {
        let horizon = from.saturating_add(CYCLE + 2 * DAY);
        while from <= horizon && from < max_second() {
            let s = self.stretch(from);
            if s.start == Some(from) && self.opens_after_gap(&s) {
                return Some(from);
            }
            let w_from = (from + s.offset).max(self.first_wall(&s));
            let limit = s.end.map_or(i64::MAX, |e| e + s.offset);
            if let Some(w) = self.next_wall(w_from, true, limit) {
                // Past the end of representable time there is no occurrence.
                return Some(w - s.offset).filter(|&r| r < max_second());
            }
            from = s.end?;
        }
        None
    }

    /// The last occurrence at or before the second `to`.
    fn prev_to(&self, mut to: i64) -> Option<i64> {
        let horizon = to.saturating_sub(CYCLE + 2 * DAY);
        while to >= horizon && to > min_second() {
            let s = self.stretch(to);
            if let Some(w) = self.prev_wall(to + s.offset, true, self.first_wall(&s)) {
                return Some(w - s.offset).filter(|&r| r > min_second());
            }
            let start = s.start?;
            if self.opens_after_gap(&s) {
                return Some(start);
            }
            to = start - 1;
        }
        None
    }

    /// The run of chained occurrences that the occurrence `o` belongs to: its first and its
    /// last occurrence (`None`: the run never began / never ends). The run is open from its
    /// first occurrence to `duration` after its last.
    pub(super) fn run(&self, o: Timestamp) -> (Option<Timestamp>, Option<Timestamp>) {
        let o = o.as_second();
        (
            self.run_first(o).map(instant),
            self.run_last(o).map(instant),
        )
    }

    fn run_last(&self, o: i64) -> Option<i64> {
        let horizon = o.max(RULES_ONLY_FROM).saturating_add(CYCLE + 2 * DAY);
        let mut last = o;
        loop {
            if last > horizon {
                return None;
            }
            let s = self.stretch(last);
            let limit = s.end.map_or(i64::MAX, |e| e + s.offset);
            let (p, q) = self.wall_run_forward(last + s.offset, limit)?;
            let p = p - s.offset;
            if s.end.is_none() || q.is_some_and(|q| q < limit) {
                return Some(p);
            }
            // Chained to the end of the stretch: is the next occurrence, across the
            // transition, close enough on the real time line?
            match self.next_from(p + 1) {
                Some(n) if n - p <= self.reach => last = n,
                _ => return Some(p),
            }
        }
    }

    fn run_first(&self, o: i64) -> Option<i64> {
        let mut first = o;
        loop {
            let s = self.stretch(first);
            let low = self.first_wall(&s);
            let (p, q) = self.wall_run_backward(first + s.offset, low)?;
            let p = p - s.offset;
            if s.start.is_none() || q.is_some_and(|q| q >= low) {
                return Some(p);
            }
            match self.prev_to(p - 1) {
                Some(n) if p - n <= self.reach => first = n,
                _ => return Some(p),
            }
        }
    }

    /// From the wall-clock occurrence (or moved occurrence) `w`, the last occurrence below
    /// `limit` that `w` chains to, with the occurrence after it (beyond a gap, at or past
    /// `limit`, or `None`: none). `None`: chained for ever.
    fn wall_run_forward(&self, w: i64, limit: i64) -> Option<(i64, Option<i64>)> {
        if self.dense {
            if limit == i64::MAX {
                return None;
            }
            let p = self.prev_wall(limit, false, w).unwrap_or(w);
            return Some((p, self.next_wall(p, false, i64::MAX)));
        }
        let mut cur = w;
        loop {
            if let Some((day, i)) = self.position(cur) {
                let j = self.segment_last[i];
                let end = day * DAY + self.times[j];
                if end >= limit {
                    // The segment crosses the limit: stop at its last time below it.
                    let k = i + self.times[i..=j].partition_point(|&x| day * DAY + x < limit) - 1;
                    return Some((
                        day * DAY + self.times[k],
                        Some(day * DAY + self.times[k + 1]),
                    ));
                }
                cur = end;
            }
            match self.next_wall(cur, false, i64::MAX) {
                Some(q) if q - cur <= self.reach && q < limit => cur = q,
                q => return Some((cur, q)),
            }
        }
    }

    /// The mirror of [`Schedule::wall_run_forward`]: the first occurrence at or above `low`
    /// that chains to `w`, with the one before it. `None`: chained since ever.
    fn wall_run_backward(&self, w: i64, low: i64) -> Option<(i64, Option<i64>)> {
        if self.dense {
            if low == i64::MIN {
                return None;
            }
            let p = self.next_wall(low, true, w.saturating_add(1)).unwrap_or(w);
            return Some((p, self.prev_wall(p, false, i64::MIN)));
        }
        let mut cur = w;
        loop {
            if let Some((day, i)) = self.position(cur) {
                let j = self.segment_first[i];
                let start = day * DAY + self.times[j];
                if start < low {
                    let k = j + self.times[j..=i].partition_point(|&x| day * DAY + x < low);
                    return Some((
                        day * DAY + self.times[k],
                        Some(day * DAY + self.times[k - 1]),
                    ));
                }
                cur = start;
            }
            match self.prev_wall(cur, false, i64::MIN) {
                Some(q) if cur - q <= self.reach && q >= low => cur = q,
                q => return Some((cur, q)),
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
