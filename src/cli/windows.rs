//! `patchkeeper windows`: every maintenance window's state at an instant.

use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};

use crate::diagnostic::Diagnostic;
use crate::model::MaintenanceWindowSpec;
pub use crate::window::report::{report, schema_text, Report, StateName, SCHEMA_FILE};

/// Flags of `patchkeeper windows`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = concat!(
        "Exit codes:\n  0  every window is valid\n  1  a window is invalid, or the fleet repo could not be read\n",
        usage_exit!()
    )
)]
pub struct Args {
    #[command(flatten)]
    repo: super::RepoArg,
    /// The instant to evaluate at (RFC 3339, e.g. `2026-12-24T03:00:00+01:00`; default: now).
    #[arg(long, value_name = "TIME", value_parser = parse_at)]
    at: Option<Timestamp>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_at(s: &str) -> Result<Timestamp, String> {
    s.parse::<Timestamp>()
        .map_err(|e| format!("{e} (expected RFC 3339 with an offset, e.g. `2026-12-24T03:00:00Z`)"))
}

/// Runs `patchkeeper windows`; returns the exit code.
pub fn run(args: Args) -> u8 {
    let at = args.at.unwrap_or_else(Timestamp::now);
    let (fleet, diags) = match crate::fleet::load(&args.repo.repo) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return super::EXIT_ERROR;
        }
    };
    let load_errors = diags.iter().filter(|d| Diagnostic::is_error(d)).count();
    if load_errors > 0 {
        eprintln!(
            "error: the fleet repo has {load_errors} unreadable document(s); windows in them are not shown\n\n\
             hint: run `patchkeeper validate` for details"
        );
    }
    let windows: Vec<(String, MaintenanceWindowSpec)> = fleet
        .windows
        .iter()
        .map(|w| (w.name().to_owned(), w.doc.spec.clone()))
        .collect();
    let report = report(&windows, at);
    let out = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("error: cannot render JSON: {e}");
                return super::EXIT_ERROR;
            }
        }
    } else {
        render_text(&report)
    };
    print!("{out}");
    if load_errors > 0 || report.windows.iter().any(|w| w.state == StateName::Invalid) {
        super::EXIT_ERROR
    } else {
        super::EXIT_OK
    }
}

/// The human-readable report: one block per window, times in the window's zone.
pub fn render_text(report: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Maintenance windows at {}", report.at);
    if report.windows.is_empty() {
        let _ = writeln!(s, "\nno MaintenanceWindow documents in the fleet repo");
    }
    for w in &report.windows {
        let tz = jiff::tz::TimeZone::get(&w.timezone).ok();
        let time = |t: Timestamp| match &tz {
            Some(tz) => t
                .to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string(),
            None => t.to_string(),
        };
        let rel = |t: Timestamp| relative(t.duration_since(report.at));
        let _ = writeln!(s);
        let headline = match (w.state, w.reason) {
            (StateName::Open, _) => "open".to_owned(),
            (StateName::Invalid, _) => "invalid".to_owned(),
            (StateName::Closed, Some("frozen")) => {
                let f = w
                    .freeze
                    .as_ref()
                    .and_then(|f| f.name.as_deref())
                    .unwrap_or("unnamed");
                format!("closed (frozen: {f})")
            }
            (StateName::Closed, Some("cutoff")) => "closed (cutoff: no new batches)".to_owned(),
            (StateName::Closed, _) => "closed (outside schedule)".to_owned(),
        };
        let _ = writeln!(s, "{}: {headline}", w.name);
        let mut sched = match (&w.schedule, &w.duration) {
            (Some(c), Some(d)) => format!("`{c}` for {d}"),
            (Some(c), None) => format!("`{c}`"),
            (None, _) => "always open".to_owned(),
        };
        if let Some(c) = &w.cutoff {
            let _ = write!(sched, ", cutoff {c}");
        }
        let _ = writeln!(s, "  schedule   {sched}, in {}", w.timezone);
        for e in &w.errors {
            let _ = writeln!(s, "  error      {}: {}", e.field, e.message);
        }
        if let Some(f) = &w.freeze {
            let why = f
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  frozen     until {} ({}){why}",
                time(f.until),
                rel(f.until)
            );
        }
        if w.state == StateName::Open {
            match w.since {
                Some(t) => writeln!(s, "  since      {} ({})", time(t), rel(t)),
                None => writeln!(s, "  since      always"),
            }
            .ok();
        }
        if w.state == StateName::Closed {
            match w.next_open {
                Some(t) => writeln!(s, "  next open  {} ({})", time(t), rel(t)),
                None => writeln!(s, "  next open  none found"),
            }
            .ok();
        }
        if w.state != StateName::Invalid {
            if let Some(t) = w.cutoff_at {
                let _ = writeln!(s, "  cutoff at  {} ({})", time(t), rel(t));
            }
            match w.closes {
                Some(t) => writeln!(s, "  closes     {} ({})", time(t), rel(t)),
                None => writeln!(s, "  closes     never"),
            }
            .ok();
        }
    }
    s
}

/// `in 3h 5m` / `5m ago`, to the minute (to the second under a minute).
fn relative(d: SignedDuration) -> String {
    let secs = d.as_secs();
    let abs = secs.unsigned_abs();
    let text = if abs < 60 {
        format!("{abs}s")
    } else {
        let (days, hours, minutes) = (abs / 86400, abs % 86400 / 3600, abs % 3600 / 60);
        let mut parts = Vec::new();
        if days > 0 {
            parts.push(format!("{days}d"));
        }
        if hours > 0 {
            parts.push(format!("{hours}h"));
        }
        if minutes > 0 {
            parts.push(format!("{minutes}m"));
        }
        parts.join(" ")
    };
    if secs < 0 {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Freeze;

    fn window(
        schedule: Option<&str>,
        tz: Option<&str>,
        duration: Option<&str>,
        cutoff: Option<&str>,
    ) -> MaintenanceWindowSpec {
        MaintenanceWindowSpec {
            emergency: false,
            always_open: schedule.is_none(),
            schedule: schedule.map(str::to_owned),
            timezone: tz.map(str::to_owned),
            duration: duration.map(str::to_owned),
            cutoff: cutoff.map(str::to_owned),
            freezes: Vec::new(),
        }
    }

    /// One of each: open, closed outside schedule, frozen, cutoff, always open, invalid.
    fn fleet() -> Vec<(String, MaintenanceWindowSpec)> {
        let mut frozen = window(Some("0 2 * * *"), Some("Europe/Berlin"), Some("4h"), None);
        frozen.freezes.push(Freeze {
            name: Some("black-friday".into()),
            start: "2026-11-27T00:00".into(),
            end: "2026-11-30T00:00".into(),
            reason: Some("peak traffic".into()),
        });
        let mut always = window(None, None, None, Some("1h"));
        always.freezes.push(Freeze {
            name: Some("release".into()),
            start: "2026-12-01T00:00:00Z".into(),
            end: "2026-12-02T00:00:00Z".into(),
            reason: None,
        });
        vec![
            (
                "nightly-berlin".into(),
                window(
                    Some("0 2 * * *"),
                    Some("Europe/Berlin"),
                    Some("4h"),
                    Some("30m"),
                ),
            ),
            (
                "weekend-ny".into(),
                window(
                    Some("0 22 * * SAT"),
                    Some("America/New_York"),
                    Some("6h"),
                    None,
                ),
            ),
            ("retail".into(), frozen),
            ("staging".into(), always),
            (
                "broken".into(),
                window(Some("0 25 * * *"), Some("Mars/Olympus"), Some("4h"), None),
            ),
        ]
    }

    #[test]
    fn text_during_a_freeze_and_a_cutoff() {
        // 05:45 in Berlin on Saturday 2026-11-28: nightly-berlin is in its cutoff, retail is
        // frozen, weekend-ny is before its Saturday evening opening.
        let at: Timestamp = "2026-11-28T04:45:00Z".parse().expect("instant");
        insta::assert_snapshot!(render_text(&report(&fleet(), at)));
    }

    #[test]
    fn text_when_open() {
        let at: Timestamp = "2026-11-26T02:10:00Z".parse().expect("instant");
        insta::assert_snapshot!(render_text(&report(&fleet(), at)));
    }

    #[test]
    fn json_shape() {
        let at: Timestamp = "2026-11-28T04:45:00Z".parse().expect("instant");
        insta::assert_json_snapshot!(report(&fleet(), at));
    }

    #[test]
    fn relative_times() {
        assert_eq!(relative(SignedDuration::from_secs(59)), "in 59s");
        assert_eq!(
            relative(SignedDuration::from_secs(3 * 3600 + 5 * 60 + 7)),
            "in 3h 5m"
        );
        assert_eq!(
            relative(SignedDuration::from_secs(-(86400 + 60))),
            "1d 1m ago"
        );
    }
}
