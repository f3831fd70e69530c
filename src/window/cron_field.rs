//! The syntax of each cron field, read before croner so that a bad field is explained in
//! the user's words.
//!
//! croner's messages name internal rewrites (`MON-FRY` becomes `'1-FRY'`), say little
//! (`number out of bounds`) and stop at the first field; it also replaces names anywhere in
//! a field, so it reads `JANJAN` as November and `JAN` as minute 1. This module reads each
//! field item by item (`*`, `?`, values, `a-b` ranges, `/n` steps, names where they belong,
//! `L`, `W` and `#` where they mean something) and names the first thing wrong with the
//! value as written, with the allowed range or names and a "did you mean" for names.
//! croner still parses what passes here.

/// One of the five fields.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    /// `minute`, `hour`, `day-of-month`, `month` or `day-of-week`.
    pub name: &'static str,
    /// What its values count, for messages: `minutes`, `hours`, ...
    unit: &'static str,
    low: u32,
    high: u32,
    /// Names accepted for values (`JAN`…, `SUN`…), numbered from `low`.
    names: &'static [&'static str],
    /// An example of a valid field, for the fallback message.
    example: &'static str,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// The five fields of a schedule, in order.
pub(super) const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        unit: "minutes",
        low: 0,
        high: 59,
        names: &[],
        example: "`0`, `0,30` or `*/15`",
    },
    Field {
        name: "hour",
        unit: "hours",
        low: 0,
        high: 23,
        names: &[],
        example: "`2`, `1-5` or `*/6`",
    },
    Field {
        name: "day-of-month",
        unit: "days of the month",
        low: 1,
        high: 31,
        names: &[],
        example: "`1`, `1-15`, `L` (last day) or `15W` (weekday nearest the 15th)",
    },
    Field {
        name: "month",
        unit: "months",
        low: 1,
        high: 12,
        names: &MONTHS,
        example: "`1`, `JAN-MAR` or `*/3`",
    },
    Field {
        name: "day-of-week",
        unit: "days of the week",
        low: 0,
        high: 7,
        names: &DAYS,
        example: "`MON-FRI`, `0` (Sunday), `5L` (last Friday) or `FRI#2` (second Friday)",
    },
];

impl Field {
    fn is_day_of_month(&self) -> bool {
        self.name == "day-of-month"
    }

    fn is_day_of_week(&self) -> bool {
        self.name == "day-of-week"
    }

    /// What is wrong with `text`, a value of this field that croner refused (a generic
    /// message when this module finds nothing).
    pub(super) fn explain(&self, text: &str) -> String {
        self.problem(text).unwrap_or_else(|| {
            format!(
                "not a valid {} field (expected e.g. {})",
                self.name, self.example
            )
        })
    }

    /// The first problem found in `text` (`None`: well-formed).
    pub(super) fn problem(&self, text: &str) -> Option<String> {
        let items: Vec<&str> = text.split(',').filter(|i| !i.is_empty()).collect();
        if text.contains(',') {
            if let Some(star) = items.iter().find(|i| **i == "*" || **i == "?") {
                return Some(format!(
                    "`{star}` cannot be combined with other values in a list"
                ));
            }
        }
        items.iter().find_map(|item| self.explain_item(item))
    }

    fn explain_item(&self, item: &str) -> Option<String> {
        if item.is_empty() {
            // croner skips empty list items (`1,,2`).
            return None;
        }
        let parts: Vec<&str> = item.split('/').collect();
        if parts.len() > 2 {
            return Some(format!("`{item}` has more than one `/` step"));
        }
        if let Some(step) = parts.get(1) {
            match step.parse::<u32>() {
                Ok(0) => return Some(format!("a step of 0 in `{item}` never advances")),
                Ok(_) => {}
                Err(_) => {
                    return Some(format!(
                        "the step `{step}` in `{item}` is not a whole number"
                    ))
                }
            }
        }
        let range = parts[0];
        if range == "?" && !(self.is_day_of_month() || self.is_day_of_week()) {
            return Some(
                "`?` only means something in the day-of-month and day-of-week fields; use `*`"
                    .to_owned(),
            );
        }
        if range == "*" || range == "?" {
            return None;
        }
        if parts.len() == 2 && !range.contains('-') {
            return Some(format!(
                "`{item}`: a step goes after `*` or a range (e.g. `*/{step}` or `{range}-{high}/{step}`)",
                step = parts[1],
                high = self.high
            ));
        }
        if self.is_special(range) {
            return self.explain_special(range);
        }
        if self.is_day_of_month() && range.to_ascii_uppercase().starts_with("L-") {
            return Some(format!(
                "`{range}`: offsets from the last day are not supported; `L` is the last day"
            ));
        }
        if range.starts_with('-') {
            return Some(format!(
                "`{range}`: values cannot be negative ({} are {}-{})",
                self.unit, self.low, self.high
            ));
        }
        let ends: Vec<&str> = range.split('-').collect();
        if ends.len() > 2 {
            return Some(format!(
                "`{range}` is not a range (write it as `first-last`, e.g. `{}-{}`)",
                self.low,
                self.low + 1
            ));
        }
        let mut values = Vec::new();
        for (i, v) in ends.iter().enumerate() {
            match self.value(v, i == 1) {
                Ok(n) => values.push(n),
                Err(why) => return Some(why),
            }
        }
        if let [a, b] = values[..] {
            if a > b {
                return Some(format!(
                    "the range `{range}` runs backwards: write the smaller value first"
                ));
            }
        }
        None
    }

    /// Whether `range` is one value in an `L`, `W` or `#` form (`L`, `15W`, `5L`, `FRI#2`),
    /// not a name that happens to hold such a letter (`JUL`, `WED`).
    fn is_special(&self, range: &str) -> bool {
        let upper = range.to_ascii_uppercase();
        !range.contains('-')
            && !self.names.contains(&upper.as_str())
            && (upper.contains('#') || upper.ends_with('L') || upper.ends_with('W'))
    }

    /// What is wrong with an `L`, `W` or `#` form (`None`: nothing): only where they mean
    /// something, and well-formed.
    fn explain_special(&self, range: &str) -> Option<String> {
        let upper = range.to_ascii_uppercase();
        if self.is_day_of_month() {
            if upper == "L" || upper == "LW" {
                return None;
            }
            if let Some(day) = upper.strip_suffix('W') {
                return match day.parse::<u32>() {
                    Ok(d) if (1..=31).contains(&d) => None,
                    _ => Some(format!(
                        "`{range}`: `W` follows a day of the month from 1 to 31 (e.g. `15W`)"
                    )),
                };
            }
            return Some(format!(
                "`{range}` is not a day of the month (1-31, `L` for the last day, `15W` for the weekday nearest the 15th)"
            ));
        }
        if self.is_day_of_week() {
            if upper == "L" {
                return None;
            }
            if let Some((day, nth)) = upper.split_once('#') {
                if let Err(why) = self.value(day, false) {
                    return Some(why);
                }
                return match nth.parse::<u32>() {
                    Ok(n) if (1..=5).contains(&n) => None,
                    _ => Some(format!(
                        "`{range}`: `#` is followed by which occurrence in the month, 1 to 5 (e.g. `FRI#2`)"
                    )),
                };
            }
            if let Some(day) = upper.strip_suffix('L') {
                return self.value(day, false).err();
            }
            return Some(format!(
                "`{range}` is not a day of the week (`SUN`-`SAT` or 0-7, `5L` for the last Friday, `FRI#2` for the second)"
            ));
        }
        Some(format!(
            "`{range}`: `L`, `W` and `#` only mean something in the day-of-month and day-of-week fields"
        ))
    }

    /// A number or a name; `end`: the end of a range (where `SUN` is 7).
    fn value(&self, v: &str, end: bool) -> Result<u32, String> {
        let range = format!("{} are {}-{}", self.unit, self.low, self.high);
        if v.is_empty() {
            return Err(format!("a value is missing ({range})"));
        }
        if v.bytes().all(|b| b.is_ascii_digit()) {
            return match v.parse::<u32>() {
                Ok(n) if (self.low..=self.high).contains(&n) => Ok(n),
                _ => Err(format!("{v} is out of range ({range})")),
            };
        }
        if self.names.is_empty() {
            return Err(format!("`{v}` is not a number ({range})"));
        }
        let upper = v.to_ascii_uppercase();
        if let Some(i) = self.names.iter().position(|n| *n == upper) {
            let n = self.low + i as u32;
            // `SUN` ends a day-of-week range as 7 (`MON-SUN`).
            return Ok(if end && self.is_day_of_week() && n == 0 {
                7
            } else {
                n
            });
        }
        let kind = if self.is_day_of_week() {
            "day"
        } else {
            "month"
        };
        let closest = self
            .names
            .iter()
            .map(|n| (strsim::levenshtein(n, &upper), *n))
            .filter(|(d, _)| *d <= 1)
            .min_by_key(|(d, _)| *d)
            .map(|(_, n)| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        Err(format!(
            "unknown {kind} name `{v}` ({closest}{kind}s are {} or {}-{})",
            self.names.join(", "),
            self.low,
            self.high
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explain(field: usize, text: &str) -> String {
        FIELDS[field].explain(text)
    }

    #[test]
    fn each_problem_in_the_users_words() {
        assert_eq!(explain(1, "25"), "25 is out of range (hours are 0-23)");
        assert_eq!(
            explain(4, "MON-FRY"),
            "unknown day name `FRY` (did you mean `FRI`? days are SUN, MON, TUE, WED, THU, FRI, SAT or 0-7)"
        );
        assert_eq!(
            explain(3, "JANU"),
            "unknown month name `JANU` (did you mean `JAN`? months are JAN, FEB, MAR, APR, MAY, JUN, JUL, AUG, SEP, OCT, NOV, DEC or 1-12)"
        );
        assert_eq!(explain(0, "60"), "60 is out of range (minutes are 0-59)");
        assert_eq!(explain(0, "0-60"), "60 is out of range (minutes are 0-59)");
        assert_eq!(
            explain(0, "5-2"),
            "the range `5-2` runs backwards: write the smaller value first"
        );
        assert_eq!(explain(0, "*/0"), "a step of 0 in `*/0` never advances");
        assert_eq!(explain(0, "*/5/2"), "`*/5/2` has more than one `/` step");
        assert_eq!(explain(0, "a"), "`a` is not a number (minutes are 0-59)");
        assert_eq!(
            explain(0, "-1"),
            "`-1`: values cannot be negative (minutes are 0-59)"
        );
        assert_eq!(
            explain(1, "L"),
            "`L`: `L`, `W` and `#` only mean something in the day-of-month and day-of-week fields"
        );
        assert_eq!(
            explain(2, "L-3"),
            "`L-3`: offsets from the last day are not supported; `L` is the last day"
        );
        assert_eq!(
            explain(2, "0"),
            "0 is out of range (days of the month are 1-31)"
        );
        assert_eq!(
            explain(4, "5#6"),
            "`5#6`: `#` is followed by which occurrence in the month, 1 to 5 (e.g. `FRI#2`)"
        );
        assert_eq!(
            explain(4, "8"),
            "8 is out of range (days of the week are 0-7)"
        );
        assert_eq!(
            explain(4, "5-1"),
            "the range `5-1` runs backwards: write the smaller value first"
        );
        // Names far from any: no guess.
        assert_eq!(
            explain(4, "FUNDAY"),
            "unknown day name `FUNDAY` (days are SUN, MON, TUE, WED, THU, FRI, SAT or 0-7)"
        );
    }

    #[test]
    fn croners_misreadings_are_refused() {
        assert_eq!(
            explain(3, "JANJAN"),
            "unknown month name `JANJAN` (months are JAN, FEB, MAR, APR, MAY, JUN, JUL, AUG, SEP, OCT, NOV, DEC or 1-12)"
        );
        assert_eq!(
            explain(0, "JAN"),
            "`JAN` is not a number (minutes are 0-59)"
        );
        assert_eq!(
            explain(3, "*/JAN"),
            "the step `JAN` in `*/JAN` is not a whole number"
        );
    }

    #[test]
    fn valid_forms_are_not_blamed() {
        for (f, v) in [
            (4, "MON-SUN"),
            (4, "FRI#2"),
            (4, "5L"),
            (4, "fri"),
            (2, "LW"),
            (2, "15W"),
            (2, "1,L"),
            (0, "*/15"),
            (3, "JAN-MAR"),
            (3, "JUN-JUL"),
            (4, "MON-WED"),
            (4, "WED"),
        ] {
            assert!(
                FIELDS[f].problem(v).is_none(),
                "{v}: {:?}",
                FIELDS[f].problem(v)
            );
        }
    }

    mod agreement {
        use super::*;
        use proptest::prelude::*;

        fn value(field: usize) -> BoxedStrategy<String> {
            let f = FIELDS[field];
            let number = (f.low..=f.high).prop_map(|n| n.to_string());
            if f.names.is_empty() {
                number.boxed()
            } else {
                prop_oneof![
                    number,
                    prop::sample::select(f.names.to_vec()).prop_map(str::to_owned)
                ]
                .boxed()
            }
        }

        /// Well-formed items of a field.
        fn item(field: usize) -> BoxedStrategy<String> {
            let f = FIELDS[field];
            let special: Vec<&str> = match field {
                2 => vec!["L", "LW", "15W", "1W", "31W"],
                4 => vec![
                    "5L", "FRIL", "FRI#2", "1#5", "L", "SUN#1", "MON-SUN", "SAT-SUN",
                ],
                3 => vec!["JAN-DEC", "jun-jul", "JAN-DEC/3"],
                _ => vec!["*/60"],
            };
            prop_oneof![
                value(field),
                (f.low..=f.high, f.low..=f.high).prop_map(|(a, b)| format!(
                    "{}-{}",
                    a.min(b),
                    a.max(b)
                )),
                (1u32..30).prop_map(|s| format!("*/{s}")),
                (f.low..=f.high, 1u32..10).prop_map(move |(a, s)| format!("{a}-{}/{s}", f.high)),
                prop::sample::select(special).prop_map(str::to_owned),
            ]
            .boxed()
        }

        fn well_formed() -> impl Strategy<Value = (usize, String)> {
            (0..5usize).prop_flat_map(|f| {
                prop_oneof![
                    Just("*".to_owned()),
                    prop::collection::vec(item(f), 1..4).prop_map(|v| v.join(",")),
                ]
                .prop_map(move |t| (f, t))
            })
        }

        /// Pieces of a field, put together at random.
        fn token() -> impl Strategy<Value = String> {
            prop_oneof![
                (0u32..70).prop_map(|n| n.to_string()),
                prop::sample::select(vec![
                    "*", "?", "L", "W", "#", "-", "/", "LW", "5L", "15W", "#2", "#6", "/0", "/5",
                    ",", "JAN", "jul", "DEC", "JANU", "SUN", "fri", "SAT", "FRY", "FRIL", "FRI#2",
                ])
                .prop_map(str::to_owned),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(super::super::super::schedule::tests::cases(256)))]

            /// What this module passes, croner accepts; and well-formed fields pass.
            #[test]
            fn well_formed_fields_pass_both((field, text) in well_formed()) {
                prop_assert_eq!(FIELDS[field].problem(&text), None, "{} {:?}", FIELDS[field].name, text);
                let mut probe = ["*"; 5];
                probe[field] = &text;
                prop_assert!(crate::window::cron_parser().parse(&probe.join(" ")).is_ok(), "croner refuses {} {text:?}", FIELDS[field].name);
            }

            /// Whatever croner refuses, this module refuses too, with a reason.
            #[test]
            fn what_croner_refuses_is_explained(field in 0..5usize, tokens in prop::collection::vec(token(), 1..4)) {
                let text = tokens.concat();
                let mut probe = ["*"; 5];
                probe[field] = &text;
                if crate::window::cron_parser().parse(&probe.join(" ")).is_err() {
                    prop_assert!(FIELDS[field].problem(&text).is_some(), "{} {text:?} refused by croner, no reason found", FIELDS[field].name);
                }
            }
        }
    }
}
