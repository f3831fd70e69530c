//! The plan as a merge-request comment (`plan --format markdown`): counts, the fleet commit
//! and digest, blocked and unreachable hosts first with their reasons, the batches as a
//! table, updates waiting for promotion (once each, with the hosts waiting), and each
//! host's changes in a collapsible section. The output depends only on the
//! plan (no clock, no terminal), so CI can find its comment by the first line's marker and
//! replace it. Text from hosts is escaped: it cannot close a table cell, open a tag or
//! inject a link.

use std::fmt::Write;

use super::{BatchWindow, DependencyCheck, HostStatus, Plan};

/// The first line of every markdown plan: CI finds its previous comment by it.
pub const MARKER: &str = "<!-- patchkeeper-plan -->";

/// Text as inert markdown inside a paragraph or a table cell: control characters escaped
/// ([`crate::terminal::escape`]), newlines folded, HTML and markdown punctuation escaped.
fn md(s: &str) -> String {
    // Newlines first: the terminal escape would spell them `\n`.
    let folded = s.replace(['\n', '\r'], " ");
    let s = crate::terminal::escape(&folded);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn window_state(w: &BatchWindow) -> String {
    match w {
        BatchWindow::RunsNow { until: Some(u), .. } => {
            format!("runs now (window open until {})", md(u))
        }
        BatchWindow::RunsNow { until: None, .. } => "runs now".to_owned(),
        BatchWindow::Waits {
            until: Some(t),
            why,
        } => format!("waits until {} ({})", md(t), md(why)),
        BatchWindow::Waits { until: None, why } => {
            format!("waits: the window never opens ({})", md(why))
        }
        BatchWindow::Frozen { freeze, until, .. } => format!(
            "blocked by freeze{} until {}",
            freeze
                .as_ref()
                .map(|f| format!(" {}", md(f)))
                .unwrap_or_default(),
            md(until)
        ),
    }
}

/// Renders the plan as GitHub/GitLab-flavoured markdown.
pub fn render_markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let s = &plan.summary;
    let _ = writeln!(out, "{MARKER}");
    let _ = writeln!(out, "### patchkeeper plan");
    let _ = writeln!(out);
    let mut parts = vec![format!(
        "**{} to update** ({})",
        plural(s.hosts_to_update, "host", "hosts"),
        plural(s.packages, "package", "packages")
    )];
    if s.waiting > 0 {
        parts.push(format!("{} waiting for a window", s.waiting));
    }
    parts.push(if s.blocked > 0 {
        format!("**{} blocked**", s.blocked)
    } else {
        "0 blocked".to_owned()
    });
    if s.unreachable > 0 {
        parts.push(format!("**{} unreachable**", s.unreachable));
    }
    parts.push(format!("{} compliant", s.compliant));
    if s.unmanaged > 0 {
        parts.push(format!("{} unmanaged", s.unmanaged));
    }
    let _ = writeln!(out, "{}.", parts.join(", "));
    let _ = writeln!(out);
    let commit = plan
        .fleet_commit
        .as_deref()
        .map(|c| format!("fleet commit `{}`", md(crate::terminal::short(c, 12))))
        .unwrap_or_else(|| "fleet repo not in Git".to_owned());
    let _ = writeln!(
        out,
        "{commit} · digest `{}` · planned at {} · observed {}",
        md(crate::terminal::short(&plan.fleet_digest, 12)),
        md(&plan.planned_at),
        md(&plan.observed_at)
    );

    // What needs a person comes first.
    let attention: Vec<_> = plan
        .hosts
        .iter()
        .filter(|h| matches!(h.status, HostStatus::Blocked | HostStatus::Unreachable))
        .collect();
    if !attention.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "#### Needs attention ({})",
            plural(attention.len(), "host", "hosts")
        );
        let _ = writeln!(out);
        for h in attention {
            let reasons: Vec<String> = h.reasons.iter().map(|r| md(r)).collect();
            let _ = writeln!(
                out,
                "- **{}** {}: {}",
                md(&h.host),
                h.status.as_str(),
                if reasons.is_empty() {
                    "no reason recorded".to_owned()
                } else {
                    reasons.join("; ")
                }
            );
        }
    }

    if !plan.batches.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "#### Batches");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| # | rollout / stage | window | at once | hosts | state |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for b in &plan.batches {
            let hosts: Vec<String> = b.hosts.iter().map(|h| md(h)).collect();
            let _ = writeln!(
                out,
                "| {} | {} / {} | {} | {} | {} | {} |",
                b.index + 1,
                md(&b.rollout),
                md(&b.stage),
                md(&b.window),
                b.parallelism,
                hosts.join(", "),
                window_state(&b.window_state)
            );
        }
    }

    // Updates waiting for promotion, on any host: one row per update and reason, with
    // every host that waits for it (not repeated in the per-host sections).
    let waiting = super::promotion::waiting(plan);
    if !waiting.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "#### Waiting for promotion ({})",
            plural(waiting.len(), "update", "updates")
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "| package | version | hosts | why |");
        let _ = writeln!(out, "|---|---|---|---|");
        for w in &waiting {
            let hosts: Vec<String> = w.hosts.iter().map(|h| md(h)).collect();
            let mut why = md(w.why);
            if !w.fixes.is_empty() {
                why.push_str(&format!("; would fix {}", md(&w.fixes)));
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {why} |",
                md(w.package),
                md(w.version),
                hosts.join(", ")
            );
        }
    }

    let changing: Vec<_> = plan
        .hosts
        .iter()
        .filter(|h| !h.changes.is_empty())
        .collect();
    if !changing.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "<details><summary>Changes per host ({}, {})</summary>",
            plural(changing.len(), "host", "hosts"),
            plural(s.packages, "package", "packages")
        );
        for h in changing {
            let _ = writeln!(out);
            let batch = h
                .batch
                .and_then(|b| plan.batches.get(b))
                .map(|b| format!(", batch {} ({})", b.index + 1, md(&b.stage)))
                .unwrap_or_default();
            let _ = writeln!(out, "**{}** ({}{batch})", md(&h.host), h.status.as_str());
            if let Some(w) = &h.window_reason {
                let _ = writeln!(out);
                let _ = writeln!(out, "Window: {}", md(w));
            }
            let _ = writeln!(out);
            let _ = writeln!(out, "| package | from | to | why |");
            let _ = writeln!(out, "|---|---|---|---|");
            for c in &h.changes {
                let mut why: Vec<String> = c
                    .reasons
                    .iter()
                    .map(|r| {
                        let mut w = r.rule.as_str().to_owned();
                        if !r.source.is_empty() {
                            w.push(' ');
                            w.push_str(&md(&r.source));
                        }
                        w
                    })
                    .collect();
                why.dedup();
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    md(&c.package),
                    c.from.as_deref().map(md).unwrap_or_else(|| "(new)".into()),
                    md(&c.to),
                    why.join(", ")
                );
            }
            // Updates waiting for promotion have their own section above.
            for sk in h.skipped.iter().filter(|sk| sk.promotion.is_none()) {
                let _ = writeln!(
                    out,
                    "\n{} {} left alone: {}",
                    md(&sk.package),
                    md(&sk.version),
                    md(&sk.why)
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "</details>");
    }

    let not_simulated = plan
        .hosts
        .iter()
        .filter(|h| h.status.has_changes() && h.dependencies == Some(DependencyCheck::NotSimulated))
        .count();
    if not_simulated > 0 {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "> Dependencies not simulated for {} (planned offline): packages pulled in alongside are not listed; apply verifies and records everything it changes.",
            plural(not_simulated, "host", "hosts")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_text_cannot_break_out_of_a_cell_or_open_a_tag() {
        assert_eq!(md("a|b"), "a\\|b");
        assert_eq!(
            md("<img src=x onerror=alert(1)>"),
            "&lt;img src=x onerror=alert(1)&gt;"
        );
        assert_eq!(md("[click](http://x)"), "\\[click\\](http://x)");
        assert_eq!(md("line\nbreak"), "line break");
        assert_eq!(md("1.2-3~deb12u1"), "1.2-3\\~deb12u1");
        assert!(!md("\x1b[31mred").contains('\x1b'));
    }
}
