//! The dashboard's HTML, pure: view values in, markup out (maud escapes every value it
//! interpolates). Also the pure parts of the pages — host filtering and sorting, rollout
//! progress per batch, the banners — so they are unit-tested without a server.
//!
//! Every page is complete without JavaScript; the live region (`#live`) is what the
//! embedded script re-renders in place when an event arrives.

use std::collections::BTreeSet;

use maud::{html, Markup, DOCTYPE};

use crate::advisory::Severity;
use crate::compliance::ComplianceState;
use crate::events::{Event, EventData};
use crate::plan::{HostPlan, Plan};
use crate::report::StatePoint;
use crate::status::ReconcileStatus;
use crate::view::{FleetCounts, HostDetail, HostSummary, RequestStatus};
use crate::window::report::{Report as WindowsReport, StateName};

use super::super::api::RunSummary;

/// Which page is shown (for the navigation's `aria-current`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// `/`.
    Overview,
    /// `/hosts` and a host.
    Hosts,
    /// `/runs`.
    Runs,
    /// `/requests`.
    Requests,
}

/// What every signed-in page carries.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// The signed-in token's name.
    pub user: String,
    /// The session's CSRF token (hidden field of every form that writes).
    pub csrf: String,
    /// Banners to show above the page.
    pub banners: Vec<Banner>,
}

/// A banner: something an on-call administrator must see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// `critical` or `warning`.
    pub level: &'static str,
    /// What happened.
    pub text: String,
    /// Where to look.
    pub link: Option<String>,
}

/// The banners of the fleet's state: open critical advisories, a halted rollout in the
/// current reconcile, a desired commit that failed validation, a failing reconcile.
pub fn banners(
    counts: &FleetCounts,
    reconcile: &ReconcileStatus,
    events: &[std::sync::Arc<Event>],
) -> Vec<Banner> {
    let mut out = Vec::new();
    if counts.hosts_with_critical_advisories > 0 {
        let n = counts.hosts_with_critical_advisories;
        out.push(Banner {
            level: "critical",
            text: format!(
                "A critical vulnerability is open on {n} host{}",
                if n == 1 { "" } else { "s" }
            ),
            link: Some("/hosts?sort=severity".into()),
        });
    }
    for (rollout, failures) in halted(events) {
        out.push(Banner {
            level: "critical",
            text: format!(
                "Rollout `{rollout}` halted: {failures} failure{} exceeded its failure budget",
                if failures == 1 { "" } else { "s" }
            ),
            link: Some("/runs".into()),
        });
    }
    if let Some(commit) = &reconcile.rejected_commit {
        out.push(Banner {
            level: "critical",
            text: format!(
                "The desired commit {} is invalid; the last valid commit stays in force",
                short(commit)
            ),
            link: None,
        });
    }
    if reconcile.ok == Some(false) {
        out.push(Banner {
            level: "warning",
            text: format!(
                "The last reconcile failed: {}",
                reconcile.error.as_deref().unwrap_or("see the server's log")
            ),
            link: None,
        });
    }
    out
}

/// Rollouts halted since the last reconcile started (from the event buffer).
fn halted(events: &[std::sync::Arc<Event>]) -> Vec<(String, usize)> {
    let start = events
        .iter()
        .rposition(|e| matches!(e.data, EventData::ReconcileStarted { .. }))
        .map_or(0, |i| i + 1);
    events[start..]
        .iter()
        .filter_map(|e| match &e.data {
            EventData::RolloutHalted { rollout, failures } => Some((rollout.clone(), *failures)),
            _ => None,
        })
        .collect()
}

/// One batch of the current plan and how far the running reconcile got with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchProgress {
    /// 0-based index.
    pub index: usize,
    /// Its rollout.
    pub rollout: String,
    /// Its stage.
    pub stage: String,
    /// Its window.
    pub window: String,
    /// Hosts in it.
    pub hosts: usize,
    /// Hosts whose apply ended well (compliant, pending reboot).
    pub done: usize,
    /// Hosts whose apply ended badly (failed, rolled back, ...).
    pub failed: usize,
    /// Whether the reconcile in progress (or the last) started it.
    pub started: bool,
}

/// Progress of every batch of `plan` in the reconcile `reconcile` (per-host results) with
/// the batches the event buffer says it started.
pub fn progress(
    plan: &Plan,
    reconcile: &ReconcileStatus,
    events: &[std::sync::Arc<Event>],
) -> Vec<BatchProgress> {
    let start = events
        .iter()
        .rposition(|e| matches!(e.data, EventData::ReconcileStarted { .. }))
        .map_or(0, |i| i + 1);
    let started: BTreeSet<usize> = events[start..]
        .iter()
        .filter_map(|e| match &e.data {
            EventData::BatchStarted { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    plan.batches
        .iter()
        .map(|b| {
            let mut done = 0;
            let mut failed = 0;
            for h in &b.hosts {
                match reconcile.hosts.get(h).and_then(|p| p.applied.as_deref()) {
                    Some("compliant" | "pending-reboot") => done += 1,
                    Some(
                        "failed" | "rolled-back" | "stale" | "skipped" | "unreachable"
                        | "recovery-failed",
                    ) => failed += 1,
                    _ => {}
                }
            }
            BatchProgress {
                index: b.index,
                rollout: b.rollout.clone(),
                stage: b.stage.clone(),
                window: b.window.clone(),
                hosts: b.hosts.len(),
                done,
                failed,
                started: started.contains(&b.index) || done + failed > 0,
            }
        })
        .collect()
}

/// The hosts table's query: filters, search and sort (query parameters, so it works
/// without JavaScript).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFilter {
    /// Only hosts in this group.
    pub group: Option<String>,
    /// Only hosts with every one of these labels.
    pub labels: Vec<(String, String)>,
    /// Only hosts in these states (`None` in the list: never reported).
    pub states: Option<Vec<Option<ComplianceState>>>,
    /// Name contains this (case-insensitive).
    pub search: Option<String>,
    /// Sort key.
    pub sort: SortKey,
    /// Descending.
    pub desc: bool,
}

/// What the hosts table sorts by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Name.
    #[default]
    Name,
    /// Compliance state (worst first when descending).
    State,
    /// Pending updates.
    Pending,
    /// Security updates.
    Security,
    /// Most severe open advisory, then their count.
    Severity,
    /// When last observed.
    Observed,
}

impl SortKey {
    /// Every key with its query value and label.
    pub const ALL: [(SortKey, &'static str, &'static str); 6] = [
        (SortKey::Name, "name", "Name"),
        (SortKey::State, "state", "State"),
        (SortKey::Pending, "pending", "Pending updates"),
        (SortKey::Security, "security", "Security updates"),
        (SortKey::Severity, "severity", "Advisory severity"),
        (SortKey::Observed, "observed", "Last observed"),
    ];

    /// The key of a query value.
    pub fn parse(s: &str) -> Option<SortKey> {
        SortKey::ALL
            .iter()
            .find(|(_, v, _)| *v == s)
            .map(|(k, _, _)| *k)
    }

    /// The query value.
    pub fn as_str(self) -> &'static str {
        SortKey::ALL
            .iter()
            .find(|(k, _, _)| *k == self)
            .map_or("name", |(_, v, _)| v)
    }
}

/// How bad a state is, for sorting (worse is greater).
fn badness(state: Option<ComplianceState>) -> u8 {
    match state {
        Some(ComplianceState::Compliant) => 0,
        Some(ComplianceState::Excluded) => 1,
        None => 2,
        Some(ComplianceState::PendingReboot) => 3,
        Some(ComplianceState::NonCompliant) => 4,
        Some(ComplianceState::Unreachable) => 5,
        Some(ComplianceState::RolledBack) => 6,
        Some(ComplianceState::Failed) => 7,
    }
}

/// The hosts the filter selects, in its order (names break ties, so the order is total).
pub fn select<'a>(hosts: &'a [HostSummary], f: &HostFilter) -> Vec<&'a HostSummary> {
    let needle = f.search.as_ref().map(|s| s.to_lowercase());
    let mut out: Vec<&HostSummary> = hosts
        .iter()
        .filter(|h| f.group.as_ref().is_none_or(|g| h.groups.contains(g)))
        .filter(|h| f.labels.iter().all(|(k, v)| h.labels.get(k) == Some(v)))
        .filter(|h| f.states.as_ref().is_none_or(|ss| ss.contains(&h.state)))
        .filter(|h| {
            needle
                .as_ref()
                .is_none_or(|n| h.name.to_lowercase().contains(n.as_str()))
        })
        .collect();
    out.sort_by(|a, b| {
        let by = match f.sort {
            SortKey::Name => a.name.cmp(&b.name),
            SortKey::State => badness(a.state).cmp(&badness(b.state)),
            SortKey::Pending => a.pending_updates.cmp(&b.pending_updates),
            SortKey::Security => a.security_updates.cmp(&b.security_updates),
            SortKey::Severity => (a.advisory_severity, a.open_advisories)
                .cmp(&(b.advisory_severity, b.open_advisories)),
            SortKey::Observed => a.observed_at.cmp(&b.observed_at),
        };
        let by = if f.desc { by.reverse() } else { by };
        by.then_with(|| a.name.cmp(&b.name))
    });
    out
}

/// The first 12 characters of a commit id.
pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn state_name(state: Option<ComplianceState>) -> &'static str {
    state.map_or("unknown", ComplianceState::as_str)
}

fn state_badge(state: Option<ComplianceState>) -> Markup {
    let name = state_name(state);
    html! { span class={"badge state-" (name)} { (name) } }
}

fn severity_badge(severity: Option<Severity>) -> Markup {
    match severity {
        Some(s) => html! { span class={"badge sev-" (s.as_str())} { (s.as_str()) } },
        None => html! { span.muted { "none" } },
    }
}

fn time(t: Option<jiff::Timestamp>) -> Markup {
    match t {
        Some(t) => {
            let text = t.strftime("%Y-%m-%d %H:%M UTC").to_string();
            html! { time datetime=(t.to_string()) { (text) } }
        }
        None => html! { span.muted { "never" } },
    }
}

fn commit(c: Option<&str>) -> Markup {
    match c {
        Some(c) => html! { code title=(c) { (short(c)) } },
        None => html! { span.muted { "none" } },
    }
}

/// A complete page: head, navigation, banners, the live region, and the script.
pub fn layout(title: &str, nav: Nav, chrome: &Chrome, live: Markup, after: Markup) -> Markup {
    let item = |target: Nav, href: &str, label: &str| {
        html! {
            li { a href=(href) aria-current=[(nav == target).then_some("page")] { (label) } }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · patchkeeper" }
                link rel="stylesheet" href="/assets/dashboard.css";
                script src="/assets/dashboard.js" defer {}
            }
            body {
                a.skip href="#live" { "Skip to content" }
                header.top {
                    a.brand href="/" { "patchkeeper" }
                    nav aria-label="Main" {
                        ul {
                            (item(Nav::Overview, "/", "Overview"))
                            (item(Nav::Hosts, "/hosts", "Hosts"))
                            (item(Nav::Runs, "/runs", "Runs"))
                            (item(Nav::Requests, "/requests", "Patch requests"))
                        }
                    }
                    form.signout method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(chrome.csrf);
                        span.muted { "Signed in as " strong { (chrome.user) } }
                        " "
                        button type="submit" { "Sign out" }
                    }
                }
                p #live-status .live-status role="status" aria-live="polite" {}
                main #live data-live="on" {
                    div #banners {
                        @for b in &chrome.banners {
                            div class={"banner banner-" (b.level)} role="alert" {
                                (b.text)
                                @if let Some(l) = &b.link { " " a href=(l) { "Show" } }
                            }
                        }
                    }
                    (live)
                }
                (after)
            }
        }
    }
}

/// The sign-in page (`error`: why the last attempt failed).
pub fn login(error: Option<&str>, next: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { "Sign in · patchkeeper" }
                link rel="stylesheet" href="/assets/dashboard.css";
            }
            body.login {
                main {
                    h1 { "patchkeeper" }
                    p { "Sign in with an API token that has the " code { "read" } " scope (" code { "patchkeeper token new" } ")." }
                    @if let Some(e) = error {
                        div.banner.banner-critical role="alert" { (e) }
                    }
                    form method="post" action="/login" {
                        input type="hidden" name="next" value=(next);
                        label for="token" { "API token" }
                        input #token type="password" name="token" autocomplete="current-password" required placeholder="pk_…";
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

/// An error page (bad query, unknown host, refused write).
pub fn error(chrome: &Chrome, nav: Nav, title: &str, message: &str) -> Markup {
    layout(
        title,
        nav,
        chrome,
        html! {
            h1 { (title) }
            div.banner.banner-critical role="alert" { (message) }
        },
        html! {},
    )
}

/// Everything the overview shows.
pub struct Overview<'a> {
    /// Counts.
    pub counts: &'a FleetCounts,
    /// The desired commit in force.
    pub desired_commit: Option<&'a str>,
    /// The reconcile in progress or the last one.
    pub reconcile: &'a ReconcileStatus,
    /// The plan's batches with their progress.
    pub batches: Vec<BatchProgress>,
    /// The windows now.
    pub windows: Option<&'a WindowsReport>,
    /// Hosts with open critical or high advisories, worst first.
    pub exposed: Vec<&'a HostSummary>,
    /// Hosts per state of recent report commits, oldest first.
    pub history: &'a [StatePoint],
}

/// `/`.
pub fn overview(o: &Overview<'_>) -> Markup {
    let c = o.counts;
    let r = o.reconcile;
    html! {
        h1 { "Fleet overview" }
        section aria-labelledby="h-state" {
            h2 #h-state { "Compliance" }
            ul.tiles {
                li.tile { span.n { (c.hosts) } span.l { "hosts" } }
                // Report order (compliant first), `unknown` last; colour only what is there.
                @for state in ComplianceState::ALL.iter().map(|s| s.as_str()).chain(["unknown"]) {
                    @let n = c.states.get(state).copied().unwrap_or(0);
                    li class={"tile" @if n > 0 { " state-" (state) }} {
                        a href={"/hosts?state=" (state)} {
                            span.n data-count=(state) { (n) } span.l { (state) }
                        }
                    }
                }
            }
            ul.tiles {
                li class={"tile" @if c.hosts_with_critical_advisories > 0 { " sev-critical" }} {
                    a href="/hosts?sort=severity&dir=desc" {
                        span.n #critical-hosts { (c.hosts_with_critical_advisories) }
                        span.l { "hosts with open critical vulnerabilities" }
                    }
                }
                li class={"tile" @if c.hosts_with_high_advisories > 0 { " sev-high" }} {
                    span.n #high-hosts { (c.hosts_with_high_advisories) }
                    span.l { "hosts with open high vulnerabilities" }
                }
                li.tile { span.n { (c.open_advisories) } span.l { "open advisories" } }
                li.tile { span.n { (c.pending_updates) } span.l { "pending updates (" (c.security_updates) " security)" } }
                li.tile { span.n { (c.reboot_required) } span.l { "hosts need a reboot" } }
            }
        }
        section aria-labelledby="h-history" {
            h2 #h-history { "Compliance over time" }
            (state_chart(o.history))
        }
        section aria-labelledby="h-commits" {
            h2 #h-commits { "Desired state" }
            dl.facts {
                dt { "Desired commit" } dd #desired-commit { (commit(o.desired_commit)) }
                dt { "Last report commit" } dd #reports-commit { (commit(c.reports_commit.as_deref())) }
                dt { "Last observed" } dd { (c.observed_at.as_deref().unwrap_or("never")) }
                dt { "Reconcile" } dd #phase {
                    (serde_json::to_value(r.phase).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())
                    @if let Some(ok) = r.ok { " · last " (if ok { "succeeded" } else { "failed" }) }
                    @if let Some(t) = r.finished_at { " at " (time(Some(t))) }
                }
                @if let Some(p) = &c.plan {
                    dt { "Plan" } dd { (p.hosts_to_update) " hosts to update, " (p.packages) " changes, " (p.blocked) " blocked" }
                }
            }
        }
        section aria-labelledby="h-rollout" {
            h2 #h-rollout { "Rollout" }
            @if o.batches.is_empty() {
                p.muted { "The plan has no batch: nothing to roll out." }
            } @else {
                table {
                    caption.sr-only { "Batches of the current plan and their progress" }
                    thead { tr { th scope="col" { "#" } th scope="col" { "Rollout / stage" } th scope="col" { "Window" } th scope="col" { "Progress" } } }
                    tbody {
                        @for b in &o.batches {
                            tr {
                                td { (b.index + 1) }
                                td { (b.rollout) " / " (b.stage) }
                                td { (b.window) }
                                td {
                                    progress value=(b.done + b.failed) max=(b.hosts.max(1)) aria-label={"batch " (b.index + 1) " progress"} {}
                                    " " (b.done) " done"
                                    @if b.failed > 0 { ", " span.bad { (b.failed) " failed" } }
                                    " of " (b.hosts)
                                    @if !b.started { " " span.muted { "(not started)" } }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-windows" {
            h2 #h-windows { "Maintenance windows" }
            @match o.windows {
                None => p.muted { "No desired commit yet." },
                Some(w) => table {
                    caption.sr-only { "Maintenance windows now" }
                    thead { tr { th scope="col" { "Window" } th scope="col" { "State" } th scope="col" { "Next opening / closes" } th scope="col" { "Schedule" } } }
                    tbody {
                        @for win in &w.windows {
                            tr {
                                td { (win.name) }
                                td {
                                    @match win.state {
                                        StateName::Open => span.badge.state-compliant { "open" },
                                        StateName::Closed => span.badge.state-unknown { "closed" },
                                        StateName::Invalid => span.badge.state-failed { "invalid" },
                                    }
                                    @if let Some(reason) = win.reason { " " span.muted { (reason) } }
                                }
                                td {
                                    @if let Some(t) = win.next_open { "opens " (time(Some(t))) }
                                    @else if let Some(t) = win.closes { "closes " (time(Some(t))) }
                                    @else { span.muted { "always open" } }
                                }
                                td { code { (win.schedule.as_deref().unwrap_or("always")) } " " (win.timezone) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-exposed" {
            h2 #h-exposed { "Hosts with open critical or high vulnerabilities" }
            @if o.exposed.is_empty() {
                p.muted { "None." }
            } @else {
                (host_rows(&o.exposed, "Hosts with open critical or high vulnerabilities"))
            }
        }
    }
}

/// The chart's drawing size (the SVG scales to its container through its `viewBox`).
const CHART_W: f64 = 720.0;
const CHART_H: f64 = 200.0;
const CHART_BAR: f64 = 28.0;
const CHART_LEFT: f64 = 44.0;
const CHART_BOTTOM: f64 = 26.0;
const CHART_TOP: f64 = 10.0;

/// The compliance-over-time chart, server-side SVG: one stacked bar per report commit
/// (hosts per compliance state, compliant at the bottom), oldest left; each bar's tooltip
/// names its commit, time and counts, and the description sums up first and last.
pub fn state_chart(points: &[StatePoint]) -> Markup {
    if points.is_empty() {
        return html! { p.muted { "No report commit yet." } };
    }
    let total = |p: &StatePoint| p.counts.values().sum::<usize>();
    let max = points.iter().map(total).max().unwrap_or(0).max(1);
    let plot_w = CHART_W - CHART_LEFT - 4.0;
    let plot_h = CHART_H - CHART_TOP - CHART_BOTTOM;
    // Bars no wider than CHART_BAR: a young branch's few commits stay bars, not walls.
    let slot = (plot_w / points.len() as f64).min(CHART_BAR);
    let right = CHART_LEFT + slot * points.len() as f64;
    let gap = if slot >= 4.0 { 1.0 } else { 0.0 };
    let y = |n: usize| CHART_TOP + plot_h - plot_h * n as f64 / max as f64;
    let counts_text = |p: &StatePoint| {
        ComplianceState::ALL
            .iter()
            .filter_map(|s| {
                let n = p.counts.get(s).copied().unwrap_or(0);
                (n > 0).then(|| format!("{n} {}", s.as_str()))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let first = &points[0];
    let last = &points[points.len() - 1];
    let day = |t: jiff::Timestamp| t.strftime("%Y-%m-%d %H:%M").to_string();
    let desc = format!(
        "{} report commits from {} UTC to {} UTC. First: {}. Last: {}.",
        points.len(),
        day(first.at),
        day(last.at),
        counts_text(first),
        counts_text(last)
    );
    let ticks = if max >= 2 {
        vec![0, max / 2, max]
    } else {
        vec![0, max]
    };
    html! {
        figure.chart {
            svg #state-chart viewBox={"0 0 " (CHART_W) " " (CHART_H)} role="img" aria-labelledby="chart-title chart-desc" preserveAspectRatio="xMidYMid meet" {
                title #chart-title { "Hosts per compliance state, per report commit" }
                desc #chart-desc { (desc) }
                @for t in &ticks {
                    line.grid x1=(CHART_LEFT) x2=(CHART_W - 4.0) y1=(fmt(y(*t))) y2=(fmt(y(*t))) {}
                    text.axis x=(CHART_LEFT - 6.0) y=(fmt(y(*t) + 4.0)) text-anchor="end" { (t) }
                }
                @for (i, p) in points.iter().enumerate() {
                    @let x = CHART_LEFT + slot * i as f64;
                    g data-commit=(p.commit) {
                        title { (short(&p.commit)) " · " (day(p.at)) " UTC · " (counts_text(p)) }
                        // A transparent column so the tooltip works on the whole slot.
                        rect.hit x=(fmt(x)) y=(fmt(CHART_TOP)) width=(fmt(slot)) height=(fmt(plot_h)) {}
                        @for (s, below, n) in stack(p) {
                            rect class={"s-" (s.as_str())} data-n=(n) x=(fmt(x + gap / 2.0)) y=(fmt(y(below + n))) width=(fmt((slot - gap).max(0.5))) height=(fmt(y(below) - y(below + n))) {}
                        }
                    }
                }
                text.axis x=(CHART_LEFT) y=(CHART_H - 6.0) text-anchor="start" { (day(first.at)) }
                @if points.len() > 1 {
                    // Far enough right of the first label not to overlap it.
                    text.axis x=(fmt(right.max(CHART_LEFT + 240.0))) y=(CHART_H - 6.0) text-anchor="end" { (day(last.at)) }
                }
            }
            figcaption {
                ul.legend {
                    @for s in ComplianceState::ALL {
                        li { svg.swatch viewBox="0 0 10 10" aria-hidden="true" { rect class={"s-" (s.as_str())} width="10" height="10" {} } " " (s.as_str()) }
                    }
                }
            }
        }
    }
}

/// The non-empty states of a point, bottom up: (state, hosts below it, hosts in it).
fn stack(p: &StatePoint) -> Vec<(ComplianceState, usize, usize)> {
    let mut below = 0;
    let mut out = Vec::new();
    for s in ComplianceState::ALL {
        let n = p.counts.get(&s).copied().unwrap_or(0);
        if n > 0 {
            out.push((s, below, n));
            below += n;
        }
    }
    out
}

/// A coordinate with at most one decimal (stable output, small SVG).
fn fmt(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

fn host_rows(hosts: &[&HostSummary], caption: &str) -> Markup {
    html! {
        div.scroll {
            table #hosts {
                caption.sr-only { (caption) }
                thead { tr {
                    th scope="col" { "Host" } th scope="col" { "State" } th scope="col" { "Groups" }
                    th scope="col" { "Pending (security)" } th scope="col" { "Advisories" }
                    th scope="col" { "Plan" } th scope="col" { "Last observed" }
                } }
                tbody {
                    @for h in hosts {
                        tr data-host=(h.name) {
                            th scope="row" { a href={"/hosts/" (urlencode(&h.name))} { (h.name) } }
                            td { (state_badge(h.state)) @if h.reachable == Some(false) { " " span.muted { "unreachable" } } }
                            td { (h.groups.join(", ")) }
                            td { (h.pending_updates) " (" (h.security_updates) ")" @if h.reboot_required { " " span.badge.state-pending-reboot { "reboot" } } }
                            td { (h.open_advisories) " " @if h.open_advisories > 0 { (severity_badge(h.advisory_severity)) } }
                            td {
                                @if let Some(s) = h.plan_status { (s.as_str()) @if h.planned_changes > 0 { " · " (h.planned_changes) " changes" } }
                                @else { span.muted { "no plan" } }
                            }
                            td { (time(h.observed_at)) }
                        }
                    }
                }
            }
        }
    }
}

/// Percent-encodes a path segment or query value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/hosts`: the filter form (GET, so it works without JavaScript) and the table.
pub fn hosts(
    all: &[HostSummary],
    selected: &[&HostSummary],
    f: &HostFilter,
    raw_label: &str,
    page: usize,
    per_page: usize,
) -> Markup {
    let groups: BTreeSet<&str> = all
        .iter()
        .flat_map(|h| h.groups.iter().map(String::as_str))
        .collect();
    let state_value = f
        .states
        .as_ref()
        .map(|ss| {
            ss.iter()
                .map(|s| state_name(*s))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let pages = selected.len().div_ceil(per_page).max(1);
    let shown: Vec<&HostSummary> = selected
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .copied()
        .collect();
    let link = |p: usize| -> String {
        let mut q: Vec<String> = Vec::new();
        if let Some(g) = &f.group {
            q.push(format!("group={}", urlencode(g)));
        }
        if !raw_label.is_empty() {
            q.push(format!("label={}", urlencode(raw_label)));
        }
        if !state_value.is_empty() {
            q.push(format!("state={}", urlencode(&state_value)));
        }
        if let Some(s) = &f.search {
            q.push(format!("q={}", urlencode(s)));
        }
        q.push(format!("sort={}", f.sort.as_str()));
        q.push(format!("dir={}", if f.desc { "desc" } else { "asc" }));
        q.push(format!("page={p}"));
        format!("/hosts?{}", q.join("&"))
    };
    html! {
        h1 { "Hosts" }
        form.filters method="get" action="/hosts" role="search" {
            div { label for="f-q" { "Name contains" } input #f-q type="search" name="q" value=(f.search.as_deref().unwrap_or("")); }
            div {
                label for="f-group" { "Group" }
                select #f-group name="group" {
                    option value="" { "any" }
                    @for g in &groups { option value=(g) selected[f.group.as_deref() == Some(*g)] { (g) } }
                }
            }
            div { label for="f-label" { "Labels (key=value,…)" } input #f-label type="text" name="label" value=(raw_label); }
            div {
                label for="f-state" { "State" }
                select #f-state name="state" {
                    option value="" { "any" }
                    @for s in ComplianceState::ALL.iter().map(|s| s.as_str()).chain(["unknown"]) {
                        option value=(s) selected[state_value == s] { (s) }
                    }
                    @if state_value.contains(',') {
                        option value=(state_value) selected { (state_value) }
                    }
                }
            }
            div {
                label for="f-sort" { "Sort by" }
                select #f-sort name="sort" {
                    @for (k, v, l) in SortKey::ALL { option value=(v) selected[f.sort == k] { (l) } }
                }
            }
            div {
                label for="f-dir" { "Order" }
                select #f-dir name="dir" {
                    option value="asc" selected[!f.desc] { "ascending" }
                    option value="desc" selected[f.desc] { "descending" }
                }
            }
            div { button type="submit" { "Apply" } " " a href="/hosts" { "Reset" } }
        }
        p #host-count { (selected.len()) " of " (all.len()) " hosts" @if pages > 1 { " · page " (page) " of " (pages) } }
        (host_rows(&shown, "Hosts matching the filters"))
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if page > 1 { a href=(link(page - 1)) rel="prev" { "← Previous" } " " }
                @if page < pages { a href=(link(page + 1)) rel="next" { "Next →" } }
            }
        }
    }
}

/// One run of a host, for its page.
#[derive(Debug, Clone)]
pub struct HostRunLine {
    /// The run.
    pub run: RunSummary,
    /// The host's outcome in it.
    pub outcome: String,
    /// The report commit that recorded it (when among the recent ones).
    pub report_commit: Option<String>,
}

/// `/hosts/{name}`.
pub fn host(d: &HostDetail, runs: &[HostRunLine]) -> Markup {
    let h = &d.summary;
    html! {
        h1 { "Host " (h.name) }
        dl.facts {
            dt { "State" } dd #host-state { (state_badge(h.state)) }
            @if let Some(c) = &d.compliance {
                @if !c.compliance.reasons.is_empty() {
                    dt { "Why" } dd { ul { @for r in &c.compliance.reasons { li { (r) } } } }
                }
            }
            dt { "Reachable" } dd { @match h.reachable { Some(true) => "yes", Some(false) => "no", None => "not observed yet" } }
            @if let Some(a) = &h.address { dt { "Address" } dd { (a) } }
            dt { "Groups" } dd { (h.groups.join(", ")) }
            dt { "Labels" } dd { @for (k, v) in &h.labels { code { (k) "=" (v) } " " } }
            @if let Some(pm) = h.package_manager { dt { "Package manager" } dd { (serde_json::to_value(pm).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) } }
            dt { "Pending updates" } dd { (h.pending_updates) " (" (h.security_updates) " security)" @if h.reboot_required { " · needs a reboot" } }
            dt { "Last observed" } dd { (time(h.observed_at)) }
            @if !h.broken_rules.is_empty() { dt { "Broken policy rules" } dd { (h.broken_rules.join(", ")) } }
        }
        section aria-labelledby="h-required" {
            h2 #h-required { "Installed vs required" }
            @match d.compliance.as_ref().map(|c| &c.compliance.missing) {
                Some(m) if !m.is_empty() => table #required {
                    caption.sr-only { "Packages below what the desired state requires" }
                    thead { tr { th scope="col" { "Package" } th scope="col" { "Installed" } th scope="col" { "Required" } th scope="col" { "Required by" } th scope="col" { "Deadline" } } }
                    tbody { @for p in m { tr {
                        th scope="row" { (p.package) }
                        td { (p.installed.as_deref().unwrap_or("not installed")) }
                        td { (p.required.as_deref().unwrap_or("any version")) }
                        td { (p.source) }
                        td { (time(p.deadline)) }
                    } } }
                },
                Some(_) => p.muted { "Every required minimum is met." },
                None => p.muted { "Not reported yet." },
            }
        }
        section aria-labelledby="h-changes" {
            h2 #h-changes { "Pending changes" }
            (changes(d.plan.as_ref()))
        }
        section aria-labelledby="h-advisories" {
            h2 #h-advisories { "Open vulnerabilities" }
            @if d.advisories.is_empty() {
                p.muted { "None open in the last report." }
            } @else {
                div.scroll { table #advisories {
                    caption.sr-only { "Open advisories, most severe first" }
                    thead { tr { th scope="col" { "Advisory" } th scope="col" { "Severity" } th scope="col" { "Package" } th scope="col" { "Installed" } th scope="col" { "Fixed in" } th scope="col" { "State" } th scope="col" { "Deadline" } } }
                    tbody { @for a in &d.advisories { tr {
                        th scope="row" { (a.id) @if !a.cves.is_empty() { br; span.muted { (a.cves.join(", ")) } } }
                        td { (severity_badge(Some(a.severity))) }
                        td { (a.package) }
                        td { (a.installed) }
                        td { (a.fixed.as_deref().unwrap_or("no fix yet")) }
                        td { (serde_json::to_value(a.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) @if let Some(e) = &a.exception { " · excepted by " (e) } }
                        td { (time(a.deadline)) }
                    } } }
                } }
            }
        }
        section aria-labelledby="h-runs" {
            h2 #h-runs { "Recent runs" }
            @if runs.is_empty() {
                p.muted { "No run on the reports branch names this host yet." }
            } @else {
                table #host-runs {
                    caption.sr-only { "Recent runs with this host" }
                    thead { tr { th scope="col" { "Run" } th scope="col" { "Kind" } th scope="col" { "Finished" } th scope="col" { "Outcome" } th scope="col" { "Report commit" } th scope="col" { "Desired commit" } } }
                    tbody { @for l in runs { tr {
                        th scope="row" { a href={"/api/v1/runs/" (urlencode(&l.run.run_id))} { (l.run.run_id) } }
                        td { (l.run.kind.as_str()) }
                        td { (time(Some(l.run.finished_at))) }
                        td { (l.outcome) }
                        td.report-commit { (commit(l.report_commit.as_deref())) }
                        td { (commit(Some(&l.run.desired_commit))) }
                    } } }
                }
            }
        }
    }
}

fn changes(plan: Option<&HostPlan>) -> Markup {
    let Some(p) = plan else {
        return html! { p.muted { "No plan yet." } };
    };
    html! {
        p { "Plan: " strong { (p.status.as_str()) }
            @if let Some(w) = &p.window { " · window " (w) }
            @if let Some(r) = &p.rollout { " · rollout " (r) } }
        @if !p.reasons.is_empty() { ul { @for r in &p.reasons { li { (r) } } } }
        @if p.changes.is_empty() {
            p.muted { "No package changes." }
        } @else {
            table #changes {
                caption.sr-only { "Package changes the plan makes, with the reasons" }
                thead { tr { th scope="col" { "Package" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Why" } th scope="col" { "Fixes" } } }
                tbody { @for c in &p.changes { tr {
                    th scope="row" { (c.package) " " span.muted { (c.arch) } @if c.security { " " span.badge.sev-high { "security" } } }
                    td { (c.from.as_deref().unwrap_or("not installed")) }
                    td { (c.to) }
                    td { @for r in &c.reasons {
                        (r.source) " (" (r.rule.as_str()) @if let Some(d) = &r.due { ", due " (d) } ")" br;
                    } }
                    td { @for f in &c.fixes { (f.id) " " } }
                } } }
            }
        }
    }
}

/// `/runs`.
pub fn runs(runs: &[RunSummary], total: usize) -> Markup {
    html! {
        h1 { "Runs" }
        p { (runs.len()) " most recent of " (total) " runs on the reports branch." }
        @if runs.is_empty() {
            p.muted { "No runs yet." }
        } @else {
            div.scroll { table #runs {
                caption.sr-only { "Runs, newest first" }
                thead { tr { th scope="col" { "Run" } th scope="col" { "Kind" } th scope="col" { "Started" } th scope="col" { "Finished" } th scope="col" { "Hosts" } th scope="col" { "Outcomes" } th scope="col" { "Desired commit" } } }
                tbody { @for r in runs { tr {
                    th scope="row" { a href={"/api/v1/runs/" (urlencode(&r.run_id))} { (r.run_id) } }
                    td { (r.kind.as_str()) }
                    td { (time(Some(r.started_at))) }
                    td { (time(Some(r.finished_at))) }
                    td { (r.hosts) }
                    td { @for (k, n) in &r.outcomes { span class={"badge state-" (k)} { (k) " " (n) } " " } @if r.errors > 0 { span.bad { (r.errors) " errors" } } }
                    td { (commit(Some(&r.desired_commit))) }
                } } }
            } }
        }
    }
}

/// What the request form was filled with (kept on a refused submission).
#[derive(Debug, Clone, Default)]
pub struct RequestForm {
    /// `metadata.name`.
    pub name: String,
    /// Groups, comma-separated.
    pub groups: String,
    /// Hosts, comma-separated.
    pub hosts: String,
    /// One package a line: `name [minVersion]`.
    pub packages: String,
    /// Why.
    pub reason: String,
    /// Advisory ids, comma-separated.
    pub advisories: String,
    /// RFC 3339 deadline.
    pub deadline: String,
}

/// The outcome of the last submission, shown above the form.
#[derive(Debug, Clone)]
pub enum Filed {
    /// Committed.
    Ok {
        /// The request's name.
        name: String,
        /// The branch.
        branch: String,
        /// The commit.
        commit: String,
    },
    /// Refused: the message and the diagnostics (`field: message`).
    Refused {
        /// The message.
        message: String,
        /// Each diagnostic, with its field.
        details: Vec<String>,
    },
}

/// `/requests`: the list (live) and the form (outside the live region, so typing is never
/// replaced under the user's hands).
pub fn requests(list: &[RequestStatus]) -> Markup {
    html! {
        h1 { "Patch requests" }
        @if list.is_empty() {
            p.muted { "No patch request yet." }
        } @else {
            div.scroll { table #requests {
                caption.sr-only { "Patch requests and where they stand" }
                thead { tr { th scope="col" { "Request" } th scope="col" { "State" } th scope="col" { "Progress" } th scope="col" { "Packages" } th scope="col" { "Reason" } th scope="col" { "Requested by" } th scope="col" { "Deadline" } } }
                tbody { @for r in list { tr data-request=(r.name) {
                    th scope="row" { (r.name) @if let Some(b) = &r.branch { br; span.muted { code { (b) } } } }
                    td { span class={"badge req-" (serde_json::to_value(r.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())} {
                        (serde_json::to_value(r.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) } }
                    td { progress value=(r.applied) max=(r.hosts.max(1)) aria-label={"hosts with the fix for " (r.name)} {} " " (r.applied) " of " (r.hosts) " hosts" }
                    td { @for p in &r.packages { code { (p.name) @if let Some(v) = &p.min_version { " ≥ " (v) } } " " } }
                    td { (r.reason) }
                    td { (r.requested_by.as_deref().unwrap_or("")) }
                    td { (r.deadline.as_deref().unwrap_or("")) }
                } } }
            } }
        }
    }
}

/// The form filing a patch request (needs a token with the `request` scope: the session's,
/// or one typed into the form).
pub fn request_form(
    csrf: &str,
    session_may_request: bool,
    form: &RequestForm,
    filed: Option<&Filed>,
) -> Markup {
    html! {
        section.card aria-labelledby="h-new" {
            h2 #h-new { "File a patch request" }
            @match filed {
                Some(Filed::Ok { name, branch, commit: c }) => div.banner.banner-ok role="status" {
                    "Filed " strong { (name) } " as commit " code { (short(c)) } " on " code { (branch) } "."
                },
                Some(Filed::Refused { message, details }) => div.banner.banner-critical role="alert" {
                    (message)
                    @if !details.is_empty() { ul { @for d in details { li { (d) } } } }
                },
                None => {},
            }
            form #request-form method="post" action="/requests" {
                input type="hidden" name="csrf" value=(csrf);
                div { label for="r-name" { "Name" } input #r-name name="name" required value=(form.name) placeholder="cve-2026-1234"; }
                div { label for="r-groups" { "Groups (comma-separated)" } input #r-groups name="groups" value=(form.groups); }
                div { label for="r-hosts" { "Hosts (comma-separated)" } input #r-hosts name="hosts" value=(form.hosts); }
                div.wide { label for="r-packages" { "Packages, one a line: name [minimum version]" }
                    textarea #r-packages name="packages" rows="3" required { (form.packages) } }
                div.wide { label for="r-reason" { "Reason" } input #r-reason name="reason" required value=(form.reason); }
                div { label for="r-advisories" { "Advisories (comma-separated)" } input #r-advisories name="advisories" value=(form.advisories); }
                div { label for="r-deadline" { "Deadline (RFC 3339, optional)" } input #r-deadline name="deadline" value=(form.deadline) placeholder="2026-12-31T00:00:00Z"; }
                @if !session_may_request {
                    div.wide { label for="r-token" { "A token with the " code { "request" } " scope (your session's token has only " code { "read" } ")" }
                        input #r-token type="password" name="token" required autocomplete="off"; }
                }
                div { button type="submit" { "File request" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;
    use crate::status::HostProgress;
    use std::sync::Arc;

    fn host(name: &str, state: Option<ComplianceState>, pending: usize) -> HostSummary {
        HostSummary {
            name: name.into(),
            address: None,
            groups: vec![if name.starts_with("db") { "db" } else { "web" }.into()],
            labels: [("env".to_string(), "prod".to_string())].into(),
            package_manager: None,
            state,
            reachable: Some(true),
            pending_updates: pending,
            security_updates: 0,
            reboot_required: false,
            plan_status: None,
            planned_changes: 0,
            broken_rules: vec![],
            observed_at: None,
            last_run_id: None,
            open_advisories: 0,
            advisory_severity: None,
        }
    }

    #[test]
    fn hosts_filter_search_and_sort_server_side() {
        let mut hosts = vec![
            host("web-1", Some(ComplianceState::Compliant), 3),
            host("web-2", Some(ComplianceState::Failed), 1),
            host("db-1", None, 7),
            host("web-10", Some(ComplianceState::NonCompliant), 7),
        ];
        hosts[1].advisory_severity = Some(Severity::Critical);
        hosts[1].open_advisories = 1;
        hosts[2].labels.insert("env".into(), "staging".into());
        let names = |f: &HostFilter| -> Vec<String> {
            select(&hosts, f).iter().map(|h| h.name.clone()).collect()
        };
        assert_eq!(
            names(&HostFilter::default()),
            ["db-1", "web-1", "web-10", "web-2"]
        );
        let f = HostFilter {
            group: Some("web".into()),
            ..Default::default()
        };
        assert_eq!(names(&f), ["web-1", "web-10", "web-2"]);
        let f = HostFilter {
            search: Some("WEB-1".into()),
            ..Default::default()
        };
        assert_eq!(names(&f), ["web-1", "web-10"]);
        let f = HostFilter {
            labels: vec![("env".into(), "staging".into())],
            ..Default::default()
        };
        assert_eq!(names(&f), ["db-1"]);
        let f = HostFilter {
            states: Some(vec![None, Some(ComplianceState::Failed)]),
            ..Default::default()
        };
        assert_eq!(names(&f), ["db-1", "web-2"]);
        // Pending descending, names break the tie.
        let f = HostFilter {
            sort: SortKey::Pending,
            desc: true,
            ..Default::default()
        };
        assert_eq!(names(&f), ["db-1", "web-10", "web-1", "web-2"]);
        let f = HostFilter {
            sort: SortKey::State,
            desc: true,
            ..Default::default()
        };
        assert_eq!(names(&f), ["web-2", "web-10", "db-1", "web-1"]);
        let f = HostFilter {
            desc: true,
            ..Default::default()
        };
        assert_eq!(names(&f), ["web-2", "web-10", "web-1", "db-1"]);
        let f = HostFilter {
            sort: SortKey::Severity,
            desc: true,
            ..Default::default()
        };
        assert_eq!(names(&f)[0], "web-2");
    }

    fn event(id: u64, data: EventData) -> Arc<Event> {
        Arc::new(Event {
            id,
            at: jiff::Timestamp::UNIX_EPOCH,
            data,
        })
    }

    #[test]
    fn banners_name_critical_advisories_halts_and_invalid_commits() {
        let mut counts = FleetCounts::default();
        let mut reconcile = ReconcileStatus::default();
        assert!(banners(&counts, &reconcile, &[]).is_empty());
        counts.hosts_with_critical_advisories = 2;
        reconcile.rejected_commit = Some("0123456789abcdef0123".into());
        let halted_before = event(
            1,
            EventData::RolloutHalted {
                rollout: "old".into(),
                failures: 1,
            },
        );
        let started = event(
            2,
            EventData::ReconcileStarted {
                commit: "c".into(),
                reason: "interval".into(),
            },
        );
        let halted_now = event(
            3,
            EventData::RolloutHalted {
                rollout: "web".into(),
                failures: 3,
            },
        );
        let b = banners(&counts, &reconcile, &[halted_before, started, halted_now]);
        let texts: Vec<&str> = b.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "A critical vulnerability is open on 2 hosts",
                "Rollout `web` halted: 3 failures exceeded its failure budget",
                "The desired commit 0123456789ab is invalid; the last valid commit stays in force",
            ]
        );
    }

    #[test]
    fn batch_progress_counts_outcomes_of_the_current_reconcile() {
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "format": 1, "fleetDigest": "d", "plannedAt": "2026-01-01T00:00:00Z",
            "observedAt": "2026-01-01T00:00:00Z", "hosts": [],
            "batches": [
                {"index": 0, "rollout": "web", "stage": "canary", "window": "always", "hosts": ["a"], "parallelism": 1, "windowState": {"state": "runs-now"}},
                {"index": 1, "rollout": "web", "stage": "rest", "window": "always", "hosts": ["b", "c", "d"], "parallelism": 2, "windowState": {"state": "runs-now"}}
            ],
            "summary": {"hostsToUpdate": 4, "packages": 4, "runsNow": 4, "waiting": 0, "blocked": 0, "unreachable": 0, "compliant": 0, "unmanaged": 0}
        }))
        .expect("plan");
        let mut reconcile = ReconcileStatus::default();
        let applied = |o: &str| HostProgress {
            reachable: Some(true),
            failure: None,
            applied: Some(o.into()),
        };
        reconcile.hosts.insert("a".into(), applied("compliant"));
        reconcile.hosts.insert("b".into(), applied("rolled-back"));
        reconcile
            .hosts
            .insert("c".into(), applied("pending-reboot"));
        let events = [
            event(
                1,
                EventData::ReconcileStarted {
                    commit: "c".into(),
                    reason: "manual".into(),
                },
            ),
            event(
                2,
                EventData::BatchStarted {
                    index: 0,
                    rollout: "web".into(),
                    stage: "canary".into(),
                    hosts: 1,
                },
            ),
        ];
        let p = progress(&plan, &reconcile, &events);
        assert_eq!(
            p.iter()
                .map(|b| (b.hosts, b.done, b.failed, b.started))
                .collect::<Vec<_>>(),
            [(1, 1, 0, true), (3, 1, 1, true)]
        );
    }

    #[test]
    fn the_host_page_shows_open_advisories_with_fixed_version_and_deadline() {
        let mut h = host("web-1", Some(ComplianceState::NonCompliant), 1);
        h.open_advisories = 1;
        h.advisory_severity = Some(Severity::Critical);
        let detail = HostDetail {
            summary: h,
            observed: None,
            compliance: None,
            plan: None,
            advisories: vec![crate::view::HostAdvisory {
                id: "PKLAB-2026:0005".into(),
                cves: vec!["CVE-2026-9005".into()],
                severity: Severity::Critical,
                package: "pk-kernel".into(),
                packages: vec!["pk-kernel".into()],
                installed: "1.0-1".into(),
                fixed: Some("1.1-1".into()),
                state: crate::advisory::FindingState::FixOffered,
                deadline: Some("2026-12-07T12:00:00Z".parse().expect("time")),
                first_seen: "2026-11-30T12:00:00Z".parse().expect("time"),
                exception: None,
            }],
            advisory_snapshot: None,
        };
        let html = super::host(&detail, &[]).into_string();
        let row = &html[html.find("<table id=\"advisories\">").expect("table")..];
        for cell in [
            "PKLAB-2026:0005",
            "CVE-2026-9005",
            "badge sev-critical\">critical",
            "<td>pk-kernel</td>",
            "<td>1.0-1</td>",
            "<td>1.1-1</td>",
            "fix-offered",
            "2026-12-07 12:00 UTC",
        ] {
            assert!(row.contains(cell), "{cell} missing: {row}");
        }
        assert!(html.contains("No plan yet."), "{html}");
        assert!(html.contains("Not reported yet."), "{html}");
    }

    #[test]
    fn host_text_is_escaped() {
        let mut h = host("web-1", None, 0);
        h.groups = vec!["<script>alert(1)</script>".into()];
        let html = host_rows(&[&h], "t").into_string();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    fn point(commit: &str, at: &str, counts: &[(ComplianceState, usize)]) -> StatePoint {
        StatePoint {
            commit: commit.into(),
            run_id: format!("run-{commit}"),
            at: at.parse().expect("time"),
            counts: counts.iter().copied().collect(),
        }
    }

    #[test]
    fn the_state_chart_stacks_hosts_per_state_per_report_commit() {
        use ComplianceState::*;
        let points = vec![
            point(
                "aaaaaaaaaaaaaaaa",
                "2026-11-28T10:00:00Z",
                &[(Compliant, 1), (NonCompliant, 2), (Unreachable, 1)],
            ),
            point(
                "bbbbbbbbbbbbbbbb",
                "2026-11-29T10:00:00Z",
                &[
                    (Compliant, 2),
                    (NonCompliant, 1),
                    (Unreachable, 1),
                    (Failed, 0),
                ],
            ),
            point(
                "cccccccccccccccc",
                "2026-11-30T10:00:00Z",
                &[(Compliant, 4)],
            ),
        ];
        let svg = state_chart(&points).into_string();
        // One group per commit, one rectangle per non-empty state (plus the hover column).
        assert_eq!(svg.matches("<g data-commit=").count(), 3);
        assert_eq!(svg.matches("class=\"s-compliant\" data-n").count(), 3);
        assert_eq!(svg.matches("class=\"s-failed\" data-n").count(), 0);
        // Heights are proportional to hosts: the full bar spans the plot (4 of 4 hosts).
        assert!(svg.contains("class=\"s-compliant\" data-n=\"4\""), "{svg}");
        assert!(svg.contains("<desc id=\"chart-desc\">3 report commits from 2026-11-28 10:00 UTC to 2026-11-30 10:00 UTC. First: 1 compliant, 2 non-compliant, 1 unreachable. Last: 4 compliant.</desc>"), "{svg}");
        insta::assert_snapshot!(svg.replace("><", ">\n<"));
        assert_eq!(
            state_chart(&[]).into_string(),
            "<p class=\"muted\">No report commit yet.</p>"
        );
    }
}
