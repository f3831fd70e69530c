//! The human form of a plan: a diff per host (like `terraform plan`), the batches with
//! their window state, and a closing summary line. Meaning is never carried by color alone:
//! every line has a symbol (`~` upgrade, `+` install, `!` blocked, `x` unreachable).

use std::fmt::Write;

use super::{BatchWindow, DependencyCheck, HostStatus, Plan};

/// How to render.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// ANSI colors (only on a terminal, and never with `NO_COLOR`).
    pub color: bool,
}

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn yellow(&self, s: &str) -> String {
        self.wrap("33", s)
    }
    fn green(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    fn red(&self, s: &str) -> String {
        self.wrap("31", s)
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
}

/// `= pk-held 1.1-1 left alone: held on the host; would fix PKLAB-2026:0006 (high)`.
fn skipped_line(s: &super::Skipped) -> String {
    let mut line = format!("= {} {} left alone: {}", s.package, s.version, s.why);
    if !s.fixes.is_empty() {
        line.push_str(&format!("; would fix {}", super::fixes_label(&s.fixes)));
    }
    line
}

/// The plan with every string that came from outside (host output, a plan file) escaped
/// for a terminal ([`crate::terminal::escape`]).
fn escaped(plan: &Plan) -> Plan {
    let e = |s: &mut String| {
        if let std::borrow::Cow::Owned(o) = crate::terminal::escape(s) {
            *s = o;
        }
    };
    let mut plan = plan.clone();
    e(&mut plan.planned_at);
    e(&mut plan.observed_at);
    for c in plan
        .fleet_commit
        .iter_mut()
        .chain(&mut plan.advisory_snapshot)
    {
        e(c);
    }
    for h in &mut plan.hosts {
        e(&mut h.host);
        h.reasons.iter_mut().for_each(e);
        h.notes.iter_mut().for_each(e);
        for w in h
            .window
            .iter_mut()
            .chain(h.rollout.iter_mut())
            .chain(h.window_reason.iter_mut())
        {
            e(w);
        }
        for c in &mut h.changes {
            e(&mut c.package);
            e(&mut c.arch);
            e(&mut c.to);
            e(&mut c.origin);
            if let Some(f) = &mut c.from {
                e(f);
            }
            escape_fixes(&mut c.fixes, &e);
        }
        for s in &mut h.skipped {
            e(&mut s.package);
            e(&mut s.version);
            e(&mut s.why);
            if let Some(f) = &mut s.from {
                e(f);
            }
            s.held_by.iter_mut().for_each(e);
            escape_fixes(&mut s.fixes, &e);
        }
    }
    for b in &mut plan.batches {
        e(&mut b.stage);
        e(&mut b.rollout);
        e(&mut b.window);
        b.hosts.iter_mut().for_each(e);
    }
    plan
}

/// Advisory ids and CVEs come from imported advisory data: outside text too.
fn escape_fixes(fixes: &mut [super::Fix], e: &impl Fn(&mut String)) {
    for f in fixes {
        e(&mut f.id);
        f.cves.iter_mut().for_each(e);
        if let Some(x) = &mut f.exception {
            e(&mut x.name);
            e(&mut x.owner);
            e(&mut x.reason);
        }
    }
}

/// Renders the plan for people; text from hosts is escaped for the terminal.
pub fn render_human(plan: &Plan, opts: RenderOptions) -> String {
    let plan = &escaped(plan);
    let p = Paint { on: opts.color };
    let mut out = String::new();
    let commit = plan
        .fleet_commit
        .as_deref()
        .map(|c| format!("fleet commit {}", crate::terminal::short(c, 12)))
        .unwrap_or_else(|| "fleet repo not in Git".to_owned());
    let _ = writeln!(
        out,
        "{}",
        p.bold(&format!(
            "patchkeeper plan: {commit}, at {} (observed {}){}",
            plan.planned_at,
            plan.observed_at,
            plan.advisory_snapshot
                .as_deref()
                .map(|s| format!(", advisories {s}"))
                .unwrap_or_default()
        ))
    );
    let mut compliant: Vec<String> = Vec::new();
    let mut unmanaged = Vec::new();
    for h in &plan.hosts {
        match h.status {
            HostStatus::Compliant => {
                compliant.push(if h.skipped.is_empty() {
                    h.host.clone()
                } else {
                    format!(
                        "{} ({} update{} left alone)",
                        h.host,
                        h.skipped.len(),
                        if h.skipped.len() == 1 { "" } else { "s" }
                    )
                });
                continue;
            }
            HostStatus::Unmanaged => {
                unmanaged.push(h.host.as_str());
                continue;
            }
            _ => {}
        }
        out.push('\n');
        let batch = h
            .batch
            .and_then(|b| plan.batches.get(b))
            .map(|b| format!(", batch {} ({})", b.index + 1, b.stage))
            .unwrap_or_default();
        let pm = h
            .package_manager
            .map(|pm| crate::observed::pm_name(pm).to_owned())
            .unwrap_or_else(|| "?".to_owned());
        let head = match h.status {
            HostStatus::Update => p.yellow(&format!("~ {}", h.host)),
            HostStatus::Waiting | HostStatus::Frozen => p.yellow(&format!("~ {}", h.host)),
            HostStatus::Blocked => p.red(&format!("! {}", h.host)),
            HostStatus::Unreachable => p.red(&format!("x {}", h.host)),
            HostStatus::Compliant | HostStatus::Unmanaged => h.host.clone(),
        };
        let mut detail = vec![h.status.as_str().to_owned(), pm];
        if let Some(w) = &h.window {
            detail.push(format!("window {w}"));
        }
        let _ = writeln!(
            out,
            "{}  {}",
            head,
            p.dim(&format!("({}{batch})", detail.join(", ")))
        );
        let width = h.changes.iter().map(|c| c.package.len()).max().unwrap_or(0);
        let from_width = h
            .changes
            .iter()
            .map(|c| c.from.as_deref().unwrap_or("(new)").len())
            .max()
            .unwrap_or(0);
        let to_width = h.changes.iter().map(|c| c.to.len()).max().unwrap_or(0);
        for c in &h.changes {
            let sym = if c.from.is_some() { "~" } else { "+" };
            let rules: Vec<&str> = {
                let mut r: Vec<&str> = c.reasons.iter().map(|r| r.rule.as_str()).collect();
                r.dedup();
                r
            };
            let sources: Vec<String> = {
                let mut s: Vec<String> = c
                    .reasons
                    .iter()
                    .filter(|r| !r.source.is_empty())
                    .map(|r| match &r.due {
                        Some(due) => format!("{} (due {due})", r.source),
                        None => r.source.clone(),
                    })
                    .collect();
                s.sort();
                s.dedup();
                s
            };
            // A promoted version says what proved it (the plan's JSON carries the same).
            let promoted = c
                .promotion
                .as_ref()
                .map(|pr| format!(" ({})", super::promotion::promoted_label(pr)))
                .unwrap_or_default();
            let fixes = if c.fixes.is_empty() {
                String::new()
            } else {
                format!("  fixes {}", super::fixes_label(&c.fixes))
            };
            let line = format!(
                "    {sym} {:<width$} {:<from_width$} -> {:<to_width$}  {}  {}{promoted}{fixes}",
                c.package,
                c.from.as_deref().unwrap_or("(new)"),
                c.to,
                rules.join(","),
                sources.join(", "),
            );
            let line = line.trim_end().to_owned();
            let _ = writeln!(
                out,
                "{}",
                if c.from.is_some() {
                    p.yellow(&line)
                } else {
                    p.green(&line)
                }
            );
        }
        for r in &h.reasons {
            let _ = writeln!(out, "    {}", p.red(&format!("! {r}")));
        }
        if let Some(w) = &h.window_reason {
            let _ = writeln!(out, "    {}", p.yellow(&format!("window: {w}")));
        }
        for n in &h.notes {
            let _ = writeln!(out, "    {}", p.yellow(&format!("note: {n}")));
        }
        // Updates waiting for promotion are listed once, under their own heading below.
        for s in h.skipped.iter().filter(|s| s.promotion.is_none()) {
            let _ = writeln!(out, "    {}", p.dim(&skipped_line(s)));
        }
    }
    // Compliant hosts show only a count above; their left-alone security updates are
    // listed here, so nothing held back is invisible.
    let pr = &p;
    let held: Vec<String> = plan
        .hosts
        .iter()
        .filter(|h| h.status == HostStatus::Compliant)
        .flat_map(|h| {
            h.skipped
                .iter()
                .filter(|s| s.promotion.is_none() && (s.security || !s.fixes.is_empty()))
                .map(move |s| {
                    format!(
                        "    {}",
                        pr.dim(&format!("{}: {}", h.host, skipped_line(s)))
                    )
                })
        })
        .collect();
    if !compliant.is_empty() {
        let _ = writeln!(out, "\n{} {}", p.green("Compliant:"), compliant.join(", "));
    }
    if !held.is_empty() {
        let _ = writeln!(out, "\nSecurity updates left alone on compliant hosts:");
        for line in held {
            let _ = writeln!(out, "{line}");
        }
    }
    // Updates waiting for promotion, on any host: listed once per update and reason,
    // with every host that waits for it (a fleet's production waits for the same versions).
    let waiting = super::promotion::waiting(plan);
    if !waiting.is_empty() {
        let _ = writeln!(out, "\n{}", p.bold("Waiting for promotion:"));
        for w in &waiting {
            let mut line = format!(
                "= {} {} on {}: {}",
                w.package,
                w.version,
                w.hosts.join(", "),
                w.why
            );
            if !w.fixes.is_empty() {
                line.push_str(&format!("; would fix {}", w.fixes));
            }
            let _ = writeln!(out, "    {}", p.dim(&line));
        }
    }
    if !unmanaged.is_empty() {
        let _ = writeln!(
            out,
            "\nUnmanaged (no baseline applies): {}",
            unmanaged.join(", ")
        );
    }
    if !plan.batches.is_empty() {
        let _ = writeln!(out, "\n{}", p.bold("Batches:"));
        for b in &plan.batches {
            let state = match &b.window_state {
                BatchWindow::RunsNow { until: Some(u), .. } => {
                    p.green(&format!("runs now (window open until {u})"))
                }
                BatchWindow::RunsNow { until: None, .. } => p.green("runs now"),
                BatchWindow::Waits {
                    until: Some(t),
                    why,
                } => p.yellow(&format!("waits until {t} ({why})")),
                BatchWindow::Waits { until: None, why } => {
                    p.red(&format!("waits: the window never opens ({why})"))
                }
                BatchWindow::Frozen { freeze, until, .. } => p.red(&format!(
                    "blocked by freeze{} until {until}",
                    freeze
                        .as_ref()
                        .map(|f| format!(" `{f}`"))
                        .unwrap_or_default()
                )),
            };
            let _ = writeln!(
                out,
                "  {}. {}/{}  window {}, {} at once: {}  {}",
                b.index + 1,
                b.rollout,
                b.stage,
                b.window,
                b.parallelism,
                b.hosts.join(", "),
                state
            );
        }
    }
    let s = &plan.summary;
    let mut parts = vec![format!(
        "{} host{} to update ({} package{})",
        s.hosts_to_update,
        if s.hosts_to_update == 1 { "" } else { "s" },
        s.packages,
        if s.packages == 1 { "" } else { "s" }
    )];
    if s.waiting > 0 {
        parts.push(format!("{} waiting for a window", s.waiting));
    }
    parts.push(format!("{} blocked", s.blocked));
    if s.unreachable > 0 {
        parts.push(format!("{} unreachable", s.unreachable));
    }
    parts.push(format!("{} compliant", s.compliant));
    if s.unmanaged > 0 {
        parts.push(format!("{} unmanaged", s.unmanaged));
    }
    let not_simulated = plan
        .hosts
        .iter()
        .filter(|h| h.status.has_changes() && h.dependencies == Some(DependencyCheck::NotSimulated))
        .count();
    if not_simulated > 0 {
        let _ = writeln!(
            out,
            "\n{}",
            p.yellow(&format!(
                "Note: dependencies not simulated for {not_simulated} host{} (planned offline from an observed state): packages the package manager pulls in alongside are not listed; apply verifies and records everything it changes.",
                if not_simulated == 1 { "" } else { "s" }
            ))
        );
    }
    let _ = writeln!(out, "\n{}", p.bold(&format!("Plan: {}.", parts.join(", "))));
    out
}
