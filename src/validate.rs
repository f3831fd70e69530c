//! Semantic validation of a loaded fleet repo: names, references, conflicts, cycles,
//! schedules, durations and versions. Pure: it reads a [`Fleet`] and returns diagnostics.
//!
//! A [`ValidFleet`] can only be made here, so "this repo validated" is in the type: the
//! planner and apply take a `ValidFleet` and never see a repo with errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::diagnostic::{self, Code, Diagnostic, Location};
use crate::fleet::{self, Fleet, Loaded, Origin};
use crate::model::{self, Host, HostCount, Kind, Selector};

/// A fleet repo without errors (warnings may remain), with hosts resolved.
#[derive(Debug, Clone)]
pub struct ValidFleet {
    fleet: Fleet,
    hosts: Vec<HostRef>,
}

/// Where a host is declared: inventory index and host index.
#[derive(Debug, Clone, Copy)]
struct HostRef {
    inventory: usize,
    host: usize,
}

impl ValidFleet {
    /// Resolves relative paths in Settings (SSH keys, `known_hosts`, the policy override)
    /// against `root` instead of the directory the files were read from: `serve` reads an
    /// exact commit from a checkout, while untracked keys live in the local working tree.
    pub fn set_root(&mut self, root: std::path::PathBuf) {
        self.fleet.root = root;
    }

    /// The underlying documents.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The settings (defaults when the repo has no Settings document).
    pub fn settings(&self) -> model::SettingsSpec {
        self.fleet
            .settings
            .first()
            .map(|s| s.doc.spec.clone())
            .unwrap_or_default()
    }

    /// Every host, sorted by name.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts
            .iter()
            .map(|r| &self.fleet.inventories[r.inventory].doc.spec.hosts[r.host])
    }

    /// The host with this name.
    pub fn host(&self, name: &str) -> Option<&Host> {
        let hosts = &self.hosts;
        let get = |r: &HostRef| &self.fleet.inventories[r.inventory].doc.spec.hosts[r.host];
        hosts
            .binary_search_by(|r| get(r).name.as_str().cmp(name))
            .ok()
            .map(|i| get(&hosts[i]))
    }

    /// Baselines whose selector matches `host` (consistent with each other: validated).
    pub fn baselines_for(&self, host: &Host) -> Vec<&Loaded<model::Baseline>> {
        self.fleet
            .baselines
            .iter()
            .filter(|b| b.doc.spec.selector.matches(host))
            .collect()
    }

    /// Patch requests whose selector matches `host`.
    pub fn requests_for(&self, host: &Host) -> Vec<&Loaded<model::PatchRequest>> {
        self.fleet
            .requests
            .iter()
            .filter(|r| r.doc.spec.selector.matches(host))
            .collect()
    }

    /// Vulnerability exceptions whose selector (none: every host) matches `host`.
    pub fn exceptions_for(&self, host: &Host) -> Vec<&Loaded<model::VulnerabilityException>> {
        self.fleet
            .exceptions
            .iter()
            .filter(|e| e.doc.spec.selector.as_ref().is_none_or(|s| s.matches(host)))
            .collect()
    }

    /// The window with this name.
    pub fn window(&self, name: &str) -> Option<&Loaded<model::MaintenanceWindow>> {
        self.fleet.windows.iter().find(|w| w.name() == name)
    }

    /// The rollout with this name.
    pub fn rollout(&self, name: &str) -> Option<&Loaded<model::Rollout>> {
        self.fleet.rollouts.iter().find(|r| r.name() == name)
    }
}

/// The outcome of validating a repo: the valid fleet (when there is no error) and every
/// diagnostic, sorted.
#[derive(Debug)]
pub struct Outcome {
    /// `Some` when there is no error.
    pub fleet: Option<ValidFleet>,
    /// Every diagnostic, errors and warnings, sorted by location.
    pub diagnostics: Vec<Diagnostic>,
}

/// Loads and validates the fleet repo at `root`.
pub fn load_and_validate(root: &Path) -> Result<Outcome, fleet::LoadError> {
    let (fleet, diags) = fleet::load(root)?;
    Ok(validate_fleet(fleet, diags))
}

/// Validates a loaded fleet, given the diagnostics loading produced.
pub fn validate_fleet(fleet: Fleet, mut diags: Vec<Diagnostic>) -> Outcome {
    diags.extend(check(&fleet));
    diagnostic::sort(&mut diags);
    let has_error = diags.iter().any(Diagnostic::is_error);
    let fleet = (!has_error).then(|| {
        let mut hosts: Vec<(String, HostRef)> = fleet
            .inventories
            .iter()
            .enumerate()
            .flat_map(|(i, inv)| {
                inv.doc.spec.hosts.iter().enumerate().map(move |(h, host)| {
                    (
                        host.name.clone(),
                        HostRef {
                            inventory: i,
                            host: h,
                        },
                    )
                })
            })
            .collect();
        hosts.sort_by(|a, b| a.0.cmp(&b.0));
        ValidFleet {
            fleet,
            hosts: hosts.into_iter().map(|(_, r)| r).collect(),
        }
    });
    Outcome {
        fleet,
        diagnostics: diags,
    }
}

/// How long before an exception's expiry `validate` starts warning.
pub const EXCEPTION_WARNING: std::time::Duration = std::time::Duration::from_secs(14 * 86400);

/// Warnings about vulnerability exceptions at `now`: expired ones (they no longer apply)
/// and those expiring within [`EXCEPTION_WARNING`]. Kept apart from [`check`] because it
/// depends on the clock; `validate` adds them.
pub fn exception_expiry(fleet: &Fleet, now: jiff::Timestamp) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for e in &fleet.exceptions {
        let Some(expiry) = model::exception_expiry(&e.doc.spec.expires) else {
            continue;
        };
        let owner = &e.doc.spec.owner;
        if expiry <= now {
            out.push(Diagnostic::new(
                Code::ExceptionExpired,
                e.origin.at("/spec/expires"),
                format!(
                    "exception `{}` (owner {owner}) expired at {expiry}: its advisories count against their deadlines again",
                    e.name()
                ),
            ));
        } else if expiry.duration_since(now).as_secs() < EXCEPTION_WARNING.as_secs() as i64 {
            let left = crate::compliance::human(
                u64::try_from(expiry.duration_since(now).as_secs()).unwrap_or(0),
            );
            out.push(Diagnostic::new(
                Code::ExceptionExpiring,
                e.origin.at("/spec/expires"),
                format!(
                    "exception `{}` (owner {owner}) expires at {expiry}, in {left}: renew it or fix the advisories",
                    e.name()
                ),
            ));
        }
    }
    out
}

/// Runs every semantic check on a loaded fleet.
pub fn check(fleet: &Fleet) -> Vec<Diagnostic> {
    let mut c = Checker {
        fleet,
        diags: Vec::new(),
        group_names: BTreeSet::new(),
    };
    c.settings();
    c.duplicate_names();
    let hosts = c.hosts_and_groups();
    c.selectors(&hosts);
    c.references();
    c.rollouts();
    c.windows();
    c.requests();
    c.exceptions();
    c.baseline_conflicts(&hosts);
    c.promotions(&hosts);
    c.unmanaged_hosts(&hosts);
    c.diags
}

struct Checker<'a> {
    fleet: &'a Fleet,
    diags: Vec<Diagnostic>,
    group_names: BTreeSet<String>,
}

/// A host with where it was declared.
struct HostAt<'a> {
    host: &'a Host,
    origin: &'a Origin,
    pointer: String,
}

impl<'a> Checker<'a> {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn duration(&mut self, origin: &Origin, pointer: &str, value: Option<&String>) {
        if let Some(v) = value {
            if let Err(e) = crate::duration::parse_duration(v) {
                self.push(Diagnostic::new(
                    Code::InvalidDuration,
                    origin.at(pointer),
                    e.to_string(),
                ));
            }
        }
    }

    fn settings(&mut self) {
        let fleet = self.fleet;
        if let Some((first, rest)) = fleet.settings.split_first() {
            for s in rest {
                self.push(
                    Diagnostic::new(
                        Code::DuplicateSettings,
                        s.origin.at("/kind"),
                        "more than one Settings document; a fleet repo has at most one",
                    )
                    .with_note(
                        first.origin.at("/kind"),
                        "the first Settings document is here",
                    ),
                );
            }
            for s in &fleet.settings {
                let o = &s.origin;
                let spec = &s.doc.spec;
                self.duration(
                    o,
                    "/spec/reconcile/interval",
                    spec.reconcile.interval.as_ref(),
                );
                self.ssh_settings(o, "/spec/ssh", &spec.ssh);
                self.duration(
                    o,
                    "/spec/observe/hostTimeout",
                    spec.observe.host_timeout.as_ref(),
                );
                self.duration(o, "/spec/apply/lockWait", spec.apply.lock_wait.as_ref());
                self.duration(
                    o,
                    "/spec/reports/heartbeat",
                    spec.reports.heartbeat.as_ref(),
                );
                self.duration(
                    o,
                    "/spec/apply/transactionTimeout",
                    spec.apply.transaction_timeout.as_ref(),
                );
                self.duration(
                    o,
                    "/spec/apply/staleLockAfter",
                    spec.apply.stale_lock_after.as_ref(),
                );
                self.report_signing(o, &spec.reports);
                self.api_tokens(o, &spec.api);
                self.notifications(o, &spec.notifications);
                self.advisory_settings(o, &spec.advisories);
                self.rapid_response(o, &spec.rapid_response);
            }
        }
    }

    /// Rapid response's window must be an emergency window (proposals name it).
    fn rapid_response(&mut self, o: &Origin, r: &model::RapidResponseSettings) {
        let Some(name) = &r.window else { return };
        let pointer = "/spec/rapidResponse/window";
        match self.fleet.windows.iter().find(|w| w.name() == name) {
            None => self.window_ref(o, pointer, name),
            Some(w) if !w.doc.spec.emergency => self.push(
                Diagnostic::new(
                    Code::EmergencyWindow,
                    o.at(pointer),
                    format!("window `{name}` is not an emergency window; rapid response proposals may only name one with `emergency: true`"),
                )
                .with_note(w.origin.at("/spec"), "the window is declared here"),
            ),
            Some(_) => {}
        }
    }

    fn api_tokens(&mut self, o: &Origin, api: &model::ApiSettings) {
        for (i, t) in api.tokens.iter().enumerate() {
            let at = format!("/spec/api/tokens/{i}");
            if let Some(e) = &t.expires {
                if e.parse::<jiff::Timestamp>().is_err() {
                    self.push(Diagnostic::new(
                        Code::InvalidTime,
                        o.at(&format!("{at}/expires")),
                        format!("invalid token expiry `{e}`, expected an RFC 3339 time such as `2027-03-01T00:00:00Z`"),
                    ));
                }
            }
            // Two entries for one name or one hash make the logs (and `Requested-By:`)
            // ambiguous about who called.
            for (field, value) in [("name", &t.name), ("sha256", &t.sha256)] {
                let first = api.tokens[..i].iter().position(|p| match field {
                    "name" => &p.name == value,
                    _ => &p.sha256 == value,
                });
                if let Some(j) = first {
                    self.push(
                        Diagnostic::new(
                            Code::DuplicateName,
                            o.at(&format!("{at}/{field}")),
                            format!("API token {field} `{value}` is listed twice"),
                        )
                        .with_note(
                            o.at(&format!("/spec/api/tokens/{j}/{field}")),
                            "first listed here",
                        ),
                    );
                }
            }
        }
    }

    fn notifications(&mut self, o: &Origin, n: &model::NotificationSettings) {
        self.duration(
            o,
            "/spec/notifications/retryInitial",
            n.retry_initial.as_ref(),
        );
        self.duration(o, "/spec/notifications/retryMax", n.retry_max.as_ref());
        for (i, w) in n.webhooks.iter().enumerate() {
            let at = format!("/spec/notifications/webhooks/{i}");
            match url::Url::parse(&w.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => self.push(Diagnostic::new(
                    Code::InvalidValue,
                    o.at(&format!("{at}/url")),
                    format!(
                        "webhook `{}`: `{}` is not an http or https URL",
                        w.name,
                        crate::redact::text(&w.url)
                    ),
                )),
            }
            // Two targets of one name would share their outbox entries.
            if let Some(j) = n.webhooks[..i].iter().position(|p| p.name == w.name) {
                self.push(
                    Diagnostic::new(
                        Code::DuplicateName,
                        o.at(&format!("{at}/name")),
                        format!("webhook name `{}` is listed twice", w.name),
                    )
                    .with_note(
                        o.at(&format!("/spec/notifications/webhooks/{j}/name")),
                        "first listed here",
                    ),
                );
            }
        }
    }

    fn advisory_settings(&mut self, o: &Origin, a: &model::AdvisorySettings) {
        self.duration(o, "/spec/advisories/refresh", a.refresh.as_ref());
        self.duration(o, "/spec/advisories/maxAge", a.max_age.as_ref());
        for (i, src) in a.sources.iter().enumerate() {
            if crate::advisory::remote::is_url(src) {
                // Fetched by serve: https only (see `advisory::remote`).
                if let Err(message) = crate::advisory::remote::check_url(src) {
                    self.push(Diagnostic::new(
                        Code::InvalidValue,
                        o.at(&format!("/spec/advisories/sources/{i}")),
                        message,
                    ));
                }
                continue;
            }
            let p = Path::new(src);
            let escapes = p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir));
            if escapes {
                // Fleet-repo writers must not make the controller read files outside the
                // repo; the operator names other paths with `serve --advisories`.
                self.push(Diagnostic::new(
                    Code::InvalidValue,
                    o.at(&format!("/spec/advisories/sources/{i}")),
                    format!("advisory source `{src}` is outside the fleet repo: Settings may only name paths inside it or `https://` URLs (the operator adds others with `serve --advisories PATH`)"),
                ));
            } else if !self.fleet.root.join(p).exists() {
                self.push(Diagnostic::new(
                    Code::MissingFile,
                    o.at(&format!("/spec/advisories/sources/{i}")),
                    format!("`{src}` does not exist"),
                ));
            }
        }
        for (id, eco) in &a.ecosystems {
            if crate::advisory::ecosystem::ordering(eco).is_none() || eco.contains(':') {
                let known: Vec<&str> = crate::advisory::ecosystem::SUPPORTED
                    .iter()
                    .map(|(n, _)| *n)
                    .collect();
                self.push(Diagnostic::new(
                    Code::InvalidValue,
                    o.at(&format!(
                        "/spec/advisories/ecosystems/{}",
                        id.replace('~', "~0").replace('/', "~1")
                    )),
                    format!(
                        "unknown advisory ecosystem `{eco}` for os-release ID `{id}`, expected one of {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }

    fn report_signing(&mut self, o: &Origin, reports: &model::ReportSettings) {
        match (&reports.signing_key, reports.signing_format) {
            (None, Some(_)) => self.push(Diagnostic::new(
                Code::MissingField,
                o.at("/spec/reports/signingFormat"),
                "`signingFormat` is set but `signingKey` is not: report commits would not be signed",
            )),
            (Some(key), None | Some(model::SigningFormat::Ssh))
                if !self.fleet.root.join(key).exists() =>
            {
                self.push(Diagnostic::new(
                    Code::MissingFile,
                    o.at("/spec/reports/signingKey"),
                    format!(
                        "`{key}` does not exist (for an OpenPGP key id, set `signingFormat: openpgp`)"
                    ),
                ));
            }
            _ => {}
        }
    }

    fn ssh_settings(&mut self, o: &Origin, base: &str, ssh: &model::SshSettings) {
        self.duration(
            o,
            &format!("{base}/connectTimeout"),
            ssh.connect_timeout.as_ref(),
        );
        self.duration(
            o,
            &format!("{base}/commandTimeout"),
            ssh.command_timeout.as_ref(),
        );
        self.duration(
            o,
            &format!("{base}/keepaliveInterval"),
            ssh.keepalive_interval.as_ref(),
        );
        for (field, value) in [
            ("identityFile", &ssh.identity_file),
            ("knownHosts", &ssh.known_hosts),
        ] {
            let Some(path) = value else { continue };
            let resolved = if let Some(rest) = path.strip_prefix("~/") {
                std::env::var_os("HOME").map(|h| Path::new(&h).join(rest))
            } else {
                Some(self.fleet.root.join(path))
            };
            if resolved.is_some_and(|p| !p.exists()) {
                self.push(Diagnostic::new(
                    Code::MissingFile,
                    o.at(&format!("{base}/{field}")),
                    format!("`{path}` does not exist"),
                ));
            }
        }
    }

    fn duplicate_names(&mut self) {
        let fleet = self.fleet;
        fn dups<T>(c: &mut Checker, kind: &str, docs: &[Loaded<model::Document<T>>]) {
            let mut seen: BTreeMap<&str, &Origin> = BTreeMap::new();
            for d in docs {
                if let Some(first) = seen.get(d.name()) {
                    let diag = Diagnostic::new(
                        Code::DuplicateName,
                        d.origin.at("/metadata/name"),
                        format!("duplicate {kind} name `{}`", d.name()),
                    )
                    .with_note(first.at("/metadata/name"), "first defined here");
                    c.push(diag);
                } else {
                    seen.insert(d.name(), &d.origin);
                }
            }
        }
        dups(self, "Inventory", &fleet.inventories);
        dups(self, "Baseline", &fleet.baselines);
        dups(self, "MaintenanceWindow", &fleet.windows);
        dups(self, "Rollout", &fleet.rollouts);
        dups(self, "PatchRequest", &fleet.requests);
        dups(self, "VulnerabilityException", &fleet.exceptions);
    }

    /// Checks hosts and groups; returns every host with where it is declared.
    fn hosts_and_groups(&mut self) -> Vec<HostAt<'a>> {
        let fleet = self.fleet;
        let mut groups: BTreeMap<&str, Location> = BTreeMap::new();
        for inv in &fleet.inventories {
            for (i, g) in inv.doc.spec.groups.iter().enumerate() {
                let here = inv.origin.at(&format!("/spec/groups/{i}/name"));
                if let Some(first) = groups.get(g.name.as_str()) {
                    self.push(
                        Diagnostic::new(
                            Code::DuplicateName,
                            here,
                            format!("duplicate group name `{}`", g.name),
                        )
                        .with_note(first.clone(), "first defined here"),
                    );
                } else {
                    groups.insert(&g.name, here);
                }
            }
        }
        let mut hosts: Vec<HostAt<'a>> = Vec::new();
        let mut names: BTreeMap<&str, Location> = BTreeMap::new();
        let mut addresses: BTreeMap<(String, u16), (Location, &str)> = BTreeMap::new();
        let default_port = fleet
            .settings
            .first()
            .and_then(|s| s.doc.spec.ssh.port)
            .unwrap_or(22);
        for inv in &fleet.inventories {
            for (i, h) in inv.doc.spec.hosts.iter().enumerate() {
                let pointer = format!("/spec/hosts/{i}");
                let here = inv.origin.at(&format!("{pointer}/name"));
                if let Some(first) = names.get(h.name.as_str()) {
                    self.push(
                        Diagnostic::new(
                            Code::DuplicateName,
                            here.clone(),
                            format!("duplicate host name `{}`", h.name),
                        )
                        .with_note(first.clone(), "first defined here"),
                    );
                    continue;
                }
                names.insert(&h.name, here.clone());
                for (j, g) in h.groups.iter().enumerate() {
                    if !groups.contains_key(g.as_str())
                        && !fleet.broken.groups.contains(g)
                        && !fleet.broken.incomplete
                    {
                        self.push(Diagnostic::new(
                            Code::DanglingGroupRef,
                            inv.origin.at(&format!("{pointer}/groups/{j}")),
                            format!(
                                "host `{}` is in group `{g}`, which no Inventory declares",
                                h.name
                            ),
                        ));
                    }
                }
                if let Some(ssh) = &h.ssh {
                    self.ssh_settings(&inv.origin, &format!("{pointer}/ssh"), ssh);
                }
                if h.transport != Some(model::TransportKind::Local) {
                    let addr = h.address.clone().unwrap_or_else(|| h.name.clone());
                    let port = h.ssh.as_ref().and_then(|s| s.port).unwrap_or(default_port);
                    let at = inv.origin.at(&format!("{pointer}/address"));
                    if let Some((first, other)) = addresses.get(&(addr.clone(), port)) {
                        self.push(
                            Diagnostic::new(
                                Code::DuplicateAddress,
                                at,
                                format!(
                                    "hosts `{other}` and `{}` both connect to {addr} port {port}",
                                    h.name
                                ),
                            )
                            .with_note(first.clone(), format!("`{other}` is here")),
                        );
                    } else {
                        addresses.insert((addr, port), (at, &h.name));
                    }
                }
                hosts.push(HostAt {
                    host: h,
                    origin: &inv.origin,
                    pointer,
                });
            }
        }
        self.group_names = groups.keys().map(|g| g.to_string()).collect();
        self.group_names.extend(fleet.broken.groups.iter().cloned());
        hosts
    }

    fn selector(&mut self, origin: &Origin, pointer: &str, sel: &Selector, hosts: &[HostAt]) {
        if self.selector_refs(origin, pointer, sel, hosts)
            && !hosts.iter().any(|h| sel.matches(h.host))
        {
            self.push(Diagnostic::new(
                Code::SelectorMatchesNothing,
                origin.key_at(pointer),
                "selector matches no host",
            ));
        }
    }

    /// Checks the groups and hosts a selector names; `true` when they all exist and every
    /// inventory host is known (so whether it matches anything can be judged).
    fn selector_refs(
        &mut self,
        origin: &Origin,
        pointer: &str,
        sel: &Selector,
        hosts: &[HostAt],
    ) -> bool {
        if self.fleet.broken.incomplete {
            return false;
        }
        let mut dangling = false;
        for (j, g) in sel.groups.iter().enumerate() {
            if !self.group_names.contains(g) {
                dangling = true;
                self.push(Diagnostic::new(
                    Code::DanglingGroupRef,
                    origin.at(&format!("{pointer}/groups/{j}")),
                    format!("group `{g}` is not declared in any Inventory"),
                ));
            }
        }
        for (j, h) in sel.hosts.iter().enumerate() {
            if !hosts.iter().any(|x| x.host.name == *h) && !self.fleet.broken.hosts.contains(h) {
                dangling = true;
                self.push(Diagnostic::new(
                    Code::DanglingHostRef,
                    origin.at(&format!("{pointer}/hosts/{j}")),
                    format!("host `{h}` is not declared in any Inventory"),
                ));
            }
        }
        let incomplete = !self.fleet.broken.hosts.is_empty();
        !dangling && !incomplete
    }

    fn selectors(&mut self, hosts: &[HostAt]) {
        let fleet = self.fleet;
        for b in &fleet.baselines {
            self.selector(&b.origin, "/spec/selector", &b.doc.spec.selector, hosts);
        }
        for r in &fleet.requests {
            self.selector(&r.origin, "/spec/selector", &r.doc.spec.selector, hosts);
        }
        for e in &fleet.exceptions {
            if let Some(sel) = &e.doc.spec.selector {
                self.selector(&e.origin, "/spec/selector", sel, hosts);
            }
        }
        for r in &fleet.rollouts {
            for (i, s) in r.doc.spec.stages.iter().enumerate() {
                if let Some(sel) = &s.selector {
                    self.selector(&r.origin, &format!("/spec/stages/{i}/selector"), sel, hosts);
                }
            }
        }
    }

    fn window_ref(&mut self, origin: &Origin, pointer: &str, name: &str) {
        if !self.fleet.broken.incomplete
            && !self.fleet.windows.iter().any(|w| w.name() == name)
            && !self
                .fleet
                .broken
                .has_document(Kind::MaintenanceWindow, name)
        {
            let known: Vec<&str> = self.fleet.windows.iter().map(|w| w.name()).collect();
            self.push(Diagnostic::new(
                Code::DanglingWindowRef,
                origin.at(pointer),
                format!("window `{name}` does not exist{}", known_list(&known)),
            ));
        }
    }

    fn rollout_ref(&mut self, origin: &Origin, pointer: &str, name: &str) {
        if !self.fleet.broken.incomplete
            && !self.fleet.rollouts.iter().any(|w| w.name() == name)
            && !self.fleet.broken.has_document(Kind::Rollout, name)
        {
            let known: Vec<&str> = self.fleet.rollouts.iter().map(|w| w.name()).collect();
            self.push(Diagnostic::new(
                Code::DanglingRolloutRef,
                origin.at(pointer),
                format!("rollout `{name}` does not exist{}", known_list(&known)),
            ));
        }
    }

    fn references(&mut self) {
        let fleet = self.fleet;
        for b in &fleet.baselines {
            let s = &b.doc.spec;
            self.window_ref(&b.origin, "/spec/window", &s.window);
            if let Some(w) = fleet
                .windows
                .iter()
                .find(|w| w.name() == s.window && w.doc.spec.emergency)
            {
                self.push(
                    Diagnostic::new(
                        Code::EmergencyWindow,
                        b.origin.at("/spec/window"),
                        format!(
                            "window `{}` is an emergency window, for patch requests only; a baseline needs a normal window",
                            s.window
                        ),
                    )
                    .with_note(w.origin.at("/spec/emergency"), "marked emergency here"),
                );
            }
            self.rollout_ref(&b.origin, "/spec/rollout", &s.rollout);
            self.duration(&b.origin, "/spec/updates/delay", s.updates.delay.as_ref());
            for (field, list) in [("hold", &s.hold), ("exclude", &s.exclude)] {
                for (i, p) in list.iter().enumerate() {
                    if let Err(e) = globset::Glob::new(p) {
                        self.push(Diagnostic::new(
                            Code::InvalidPattern,
                            b.origin.at(&format!("/spec/{field}/{i}")),
                            format!("invalid pattern `{p}`: {}", e.kind()),
                        ));
                    }
                }
            }
        }
        for r in &fleet.requests {
            if let Some(w) = &r.doc.spec.window {
                self.window_ref(&r.origin, "/spec/window", w);
            }
            if let Some(w) = &r.doc.spec.rollout {
                self.rollout_ref(&r.origin, "/spec/rollout", w);
            }
        }
    }

    fn rollouts(&mut self) {
        let fleet = self.fleet;
        for r in &fleet.rollouts {
            let o = &r.origin;
            let s = &r.doc.spec;
            for (i, st) in s.stages.iter().enumerate() {
                let over_all = matches!(st.size, HostCount::Percent(_))
                    && st.size.percent().is_none_or(|n| n > 100);
                if !over_all && st.size.of(100) == 0 {
                    self.push(Diagnostic::new(
                        Code::InvalidValue,
                        o.at(&format!("/spec/stages/{i}/size")),
                        format!(
                            "stage `{}` has size 0; a stage needs at least one host",
                            st.name
                        ),
                    ));
                }
            }
            let mut stage_names: BTreeMap<&str, usize> = BTreeMap::new();
            for (i, st) in s.stages.iter().enumerate() {
                if let Some(first) = stage_names.insert(&st.name, i) {
                    self.push(
                        Diagnostic::new(
                            Code::DuplicateName,
                            o.at(&format!("/spec/stages/{i}/name")),
                            format!("duplicate stage name `{}`", st.name),
                        )
                        .with_note(
                            o.at(&format!("/spec/stages/{first}/name")),
                            "first defined here",
                        ),
                    );
                }
            }
            let counts = s
                .stages
                .iter()
                .enumerate()
                .map(|(i, st)| (format!("/spec/stages/{i}/size"), &st.size))
                .chain(
                    s.failure_budget
                        .iter()
                        .map(|b| ("/spec/failureBudget".to_owned(), b)),
                );
            for (pointer, count) in counts {
                if let HostCount::Percent(p) = count {
                    if count.percent().is_none_or(|n| n > 100) {
                        self.push(Diagnostic::new(
                            Code::InvalidValue,
                            o.at(&pointer),
                            format!(
                                "`{p}` is more than all the hosts: a percentage is at most `100%` (or write a number of hosts)"
                            ),
                        ));
                    }
                }
            }
            self.duration(o, "/spec/rebootTimeout", s.reboot_timeout.as_ref());
            for (list, field) in [
                (&s.health_checks, "healthChecks"),
                (&s.pre, "pre"),
                (&s.post, "post"),
            ] {
                for (i, c) in list.iter().enumerate() {
                    self.duration(o, &format!("/spec/{field}/{i}/timeout"), c.timeout.as_ref());
                }
            }
            // Group ordering: references and cycles.
            let mut edges: BTreeMap<&str, Vec<(&str, String)>> = BTreeMap::new();
            for (i, ord) in s.order.iter().enumerate() {
                if !self.group_names.contains(&ord.group) && !fleet.broken.incomplete {
                    self.push(Diagnostic::new(
                        Code::DanglingGroupRef,
                        o.at(&format!("/spec/order/{i}/group")),
                        format!("group `{}` is not declared in any Inventory", ord.group),
                    ));
                }
                for (j, a) in ord.after.iter().enumerate() {
                    let p = format!("/spec/order/{i}/after/{j}");
                    if !self.group_names.contains(a) && !fleet.broken.incomplete {
                        self.push(Diagnostic::new(
                            Code::DanglingGroupRef,
                            o.at(&p),
                            format!("group `{a}` is not declared in any Inventory"),
                        ));
                    }
                    edges.entry(&ord.group).or_default().push((a, p));
                }
            }
            if let Some(cycle) = find_cycle(&edges) {
                let (first_group, first_ptr) = &cycle[0];
                let path: Vec<String> = cycle
                    .iter()
                    .map(|(g, _)| format!("`{g}`"))
                    .chain([format!("`{first_group}`")])
                    .collect();
                let mut d = Diagnostic::new(
                    Code::RolloutOrderCycle,
                    o.at(first_ptr),
                    format!(
                        "rollout `{}` orders groups in a cycle: {}",
                        r.name(),
                        path.join(" waits for ")
                    ),
                );
                for (g, p) in cycle.iter().skip(1) {
                    d = d.with_note(o.at(p), format!("`{g}` waits here"));
                }
                self.push(d);
            }
        }
    }

    fn windows(&mut self) {
        let fleet = self.fleet;
        for w in &fleet.windows {
            if let Err(errors) = crate::window::CompiledWindow::compile(&w.doc.spec) {
                for e in errors {
                    let (code, pointer) = window_error_target(&e);
                    self.push(Diagnostic::new(code, w.origin.at(&pointer), e.to_string()));
                }
            }
        }
    }

    fn exceptions(&mut self) {
        let fleet = self.fleet;
        for e in &fleet.exceptions {
            let spec = &e.doc.spec;
            if model::exception_expiry(&spec.expires).is_none() {
                self.push(Diagnostic::new(
                    Code::InvalidTime,
                    e.origin.at("/spec/expires"),
                    format!(
                        "invalid expiry `{}`, expected an RFC 3339 time such as `2026-12-01T00:00:00Z` or a date such as `2026-12-31`",
                        spec.expires
                    ),
                ));
            }
            for (i, a) in spec.advisories.iter().enumerate() {
                if a.trim().is_empty() || a.chars().any(char::is_whitespace) {
                    self.push(Diagnostic::new(
                        Code::InvalidValue,
                        e.origin.at(&format!("/spec/advisories/{i}")),
                        format!("`{a}` is not an advisory id (e.g. `DSA-5800-1`, `CVE-2026-1234`)"),
                    ));
                }
            }
        }
    }

    fn requests(&mut self) {
        let fleet = self.fleet;
        for r in &fleet.requests {
            if let Some(d) = &r.doc.spec.deadline {
                if d.parse::<jiff::Timestamp>().is_err() {
                    self.push(Diagnostic::new(
                        Code::InvalidTime,
                        r.origin.at("/spec/deadline"),
                        format!("invalid deadline `{d}`, expected an RFC 3339 time such as `2026-12-01T00:00:00Z`"),
                    ));
                }
            }
        }
    }

    fn versions_for(
        &mut self,
        origin: &Origin,
        pointer: &str,
        packages: &[model::PackageRequirement],
        managers: &BTreeSet<model::PackageManager>,
    ) {
        for (i, p) in packages.iter().enumerate() {
            // The schema admits the union of the Debian and RPM name grammars; each host's
            // own is checked here.
            for pm in managers {
                if let Err(e) = crate::package::check_name((*pm).into(), &p.name) {
                    self.push(Diagnostic::new(
                        Code::InvalidValue,
                        origin.at(&format!("{pointer}/{i}/name")),
                        e.to_string(),
                    ));
                    break;
                }
            }
            let Some(v) = &p.min_version else { continue };
            for pm in managers {
                let eco = match pm {
                    model::PackageManager::Apt => crate::version::Ecosystem::Deb,
                    model::PackageManager::Dnf => crate::version::Ecosystem::Rpm,
                };
                if let Err(e) = crate::version::parse(eco, v) {
                    self.push(Diagnostic::new(
                        Code::InvalidVersion,
                        origin.at(&format!("{pointer}/{i}/minVersion")),
                        format!("package `{}`: {e}", p.name),
                    ));
                    break;
                }
            }
        }
    }

    fn baseline_conflicts(&mut self, hosts: &[HostAt]) {
        let fleet = self.fleet;
        // Versions are checked in the ecosystems of the hosts each document selects.
        for b in &fleet.baselines {
            let pms = managers(hosts, &b.doc.spec.selector);
            self.versions_for(&b.origin, "/spec/packages", &b.doc.spec.packages, &pms);
        }
        for r in &fleet.requests {
            let pms = managers(hosts, &r.doc.spec.selector);
            self.versions_for(&r.origin, "/spec/packages", &r.doc.spec.packages, &pms);
        }
        let mut reported: BTreeSet<(usize, usize, &'static str)> = BTreeSet::new();
        for h in hosts {
            let matching: Vec<(usize, &Loaded<model::Baseline>)> = fleet
                .baselines
                .iter()
                .enumerate()
                .filter(|(_, b)| b.doc.spec.selector.matches(h.host))
                .collect();
            for (x, (ia, a)) in matching.iter().enumerate() {
                for (ib, b) in matching.iter().skip(x + 1) {
                    for conflict in conflicts(&a.doc.spec, &b.doc.spec) {
                        if !reported.insert((*ia, *ib, conflict.what)) {
                            continue;
                        }
                        self.push(
                            Diagnostic::new(
                                Code::BaselineConflict,
                                b.origin.at(&conflict.pointer_b),
                                format!(
                                    "baselines `{}` and `{}` both apply to host `{}` but disagree on {}",
                                    a.name(),
                                    b.name(),
                                    h.host.name,
                                    conflict.message
                                ),
                            )
                            .with_note(a.origin.at(&conflict.pointer_a), format!("baseline `{}` says this", a.name())),
                        );
                    }
                }
            }
        }
    }

    /// `promotion`: the soak parses, `from` names existing groups and hosts and matches
    /// enough hosts (per package manager the baseline's hosts declare), it does not overlap
    /// the baseline's own hosts, and promoting baselines do not feed each other in a cycle.
    fn promotions(&mut self, hosts: &[HostAt]) {
        let fleet = self.fleet;
        let mut edges: BTreeMap<&str, Vec<(&str, String)>> = BTreeMap::new();
        let judged = !fleet.broken.may_have(Kind::Baseline);
        for b in &fleet.baselines {
            let Some(p) = &b.doc.spec.promotion else {
                continue;
            };
            let o = &b.origin;
            self.duration(o, "/spec/promotion/soak", Some(&p.soak));
            if !self.selector_refs(o, "/spec/promotion/from", &p.from, hosts) {
                continue;
            }
            let sources: Vec<&Host> = hosts
                .iter()
                .map(|h| h.host)
                .filter(|h| p.from.matches(h))
                .collect();
            let covered: Vec<&Host> = hosts
                .iter()
                .map(|h| h.host)
                .filter(|h| b.doc.spec.selector.matches(h))
                .collect();
            if sources.is_empty() {
                self.push(Diagnostic::new(
                    Code::PromotionSource,
                    o.key_at("/spec/promotion/from"),
                    format!(
                        "baseline `{}` promotes from a selector that matches no host: nothing can ever be promoted",
                        b.name()
                    ),
                ));
                continue;
            }
            let both: Vec<&str> = sources
                .iter()
                .filter(|h| b.doc.spec.selector.matches(h))
                .map(|h| h.name.as_str())
                .collect();
            if !both.is_empty() {
                self.push(
                    Diagnostic::new(
                        Code::PromotionOverlap,
                        o.key_at("/spec/promotion/from"),
                        format!(
                            "baseline `{}` promotes from hosts it also covers ({}): a host cannot prove the versions it is waiting for",
                            b.name(),
                            names(&both)
                        ),
                    )
                    .with_note(o.key_at("/spec/selector"), "the baseline covers them here"),
                );
            }
            let min = usize::try_from(p.min_hosts).unwrap_or(usize::MAX);
            if sources.len() < min {
                self.push(Diagnostic::new(
                    Code::PromotionSource,
                    o.at("/spec/promotion/minHosts"),
                    format!(
                        "minHosts is {min} but promotion.from matches only {} ({}): nothing can ever be promoted",
                        plural(sources.len(), "host"),
                        names(&sources.iter().map(|h| h.name.as_str()).collect::<Vec<_>>())
                    ),
                ));
            } else {
                // Versions are proven per package manager: a Debian host's run of a version
                // says nothing about an RPM build of it.
                let declared: BTreeSet<model::PackageManager> =
                    covered.iter().filter_map(|h| h.package_manager).collect();
                for pm in declared {
                    let able = sources
                        .iter()
                        .filter(|h| h.package_manager.is_none_or(|p| p == pm))
                        .count();
                    if able < min {
                        let pm_name = crate::observed::pm_name(pm);
                        let receivers: Vec<&str> = covered
                            .iter()
                            .filter(|h| h.package_manager == Some(pm))
                            .map(|h| h.name.as_str())
                            .collect();
                        self.push(Diagnostic::new(
                            Code::PromotionSource,
                            o.key_at("/spec/promotion/from"),
                            format!(
                                "baseline `{}` covers {pm_name} hosts ({}) but promotion.from matches {} with {pm_name}, fewer than minHosts {min}: versions are proven per package manager, so nothing can be promoted to them",
                                b.name(),
                                names(&receivers),
                                plural(able, "host")
                            ),
                        ));
                    }
                }
            }
            if judged {
                // Edges: this baseline takes its versions from hosts another promoting
                // baseline covers.
                for other in &fleet.baselines {
                    if other.name() == b.name() || other.doc.spec.promotion.is_none() {
                        continue;
                    }
                    if sources.iter().any(|h| other.doc.spec.selector.matches(h)) {
                        edges
                            .entry(b.name())
                            .or_default()
                            .push((other.name(), "/spec/promotion/from".to_owned()));
                    }
                }
            }
        }
        if let Some(cycle) = find_cycle(&edges) {
            let origin_of = |name: &str| {
                fleet
                    .baselines
                    .iter()
                    .find(|b| b.name() == name)
                    .map(|b| &b.origin)
            };
            let (first, ptr) = &cycle[0];
            let path: Vec<String> = cycle
                .iter()
                .map(|(n, _)| format!("`{n}`"))
                .chain([format!("`{first}`")])
                .collect();
            if let Some(o) = origin_of(first) {
                let mut d = Diagnostic::new(
                    Code::PromotionCycle,
                    o.key_at(ptr),
                    format!(
                        "baselines promote from each other's hosts in a cycle: {} (each waits for versions the next has proven, so none ever moves)",
                        path.join(" takes versions from ")
                    ),
                );
                for (n, p) in cycle.iter().skip(1) {
                    if let Some(o) = origin_of(n) {
                        d = d.with_note(o.key_at(p), format!("`{n}` promotes from here"));
                    }
                }
                self.push(d);
            }
        }
    }

    fn unmanaged_hosts(&mut self, hosts: &[HostAt]) {
        let fleet = self.fleet;
        // With no baseline, or a broken one, "unmanaged" would be noise.
        if fleet.baselines.is_empty() || fleet.broken.may_have(Kind::Baseline) {
            return;
        }
        for h in hosts {
            if !fleet
                .baselines
                .iter()
                .any(|b| b.doc.spec.selector.matches(h.host))
            {
                self.push(Diagnostic::new(
                    Code::UnmanagedHost,
                    h.origin.at(&format!("{}/name", h.pointer)),
                    format!(
                        "no baseline applies to host `{}`: it is observed but never patched",
                        h.host.name
                    ),
                ));
            }
        }
    }
}

fn managers(hosts: &[HostAt], sel: &Selector) -> BTreeSet<model::PackageManager> {
    hosts
        .iter()
        .filter(|h| sel.matches(h.host))
        .filter_map(|h| h.host.package_manager)
        .collect()
}

/// `a, b, c` (at most five, then `and N more`).
fn names(list: &[&str]) -> String {
    let shown = list.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    match list.len().saturating_sub(5) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// `1 host`, `2 hosts`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn known_list(known: &[&str]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!(
            " (defined: {})",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

struct Conflict {
    what: &'static str,
    message: String,
    pointer_a: String,
    pointer_b: String,
}

/// Ways two baselines on one host disagree. Minimum versions of the same package are not a
/// conflict (the higher one wins, which satisfies both); everything else that cannot be
/// satisfied at once is.
fn conflicts(a: &model::BaselineSpec, b: &model::BaselineSpec) -> Vec<Conflict> {
    let mut out = Vec::new();
    let same =
        |what: &'static str, field: &str, va: String, vb: String, out: &mut Vec<Conflict>| {
            if va != vb {
                out.push(Conflict {
                    what,
                    message: format!("the {what} (`{va}` vs `{vb}`)"),
                    pointer_a: format!("/spec/{field}"),
                    pointer_b: format!("/spec/{field}"),
                });
            }
        };
    same(
        "window",
        "window",
        a.window.clone(),
        b.window.clone(),
        &mut out,
    );
    same(
        "rollout",
        "rollout",
        a.rollout.clone(),
        b.rollout.clone(),
        &mut out,
    );
    same(
        "update classes",
        "updates/classes",
        format!("{:?}", a.updates.classes).to_lowercase(),
        format!("{:?}", b.updates.classes).to_lowercase(),
        &mut out,
    );
    same(
        "update delay",
        "updates/delay",
        a.updates.delay.clone().unwrap_or_else(|| "none".into()),
        b.updates.delay.clone().unwrap_or_else(|| "none".into()),
        &mut out,
    );
    // One host, one promotion: which versions it may take cannot depend on which of its
    // baselines asked for the change.
    let promotion = |p: &Option<model::Promotion>| match p {
        None => "none".to_owned(),
        Some(p) => format!(
            "from {}, soak {}, minHosts {}",
            selector_text(&p.from),
            p.soak,
            p.min_hosts
        ),
    };
    same(
        "promotion",
        "promotion",
        promotion(&a.promotion),
        promotion(&b.promotion),
        &mut out,
    );
    let held_required = |holder: &model::BaselineSpec, requirer: &model::BaselineSpec| {
        for (hi, pat) in holder.hold.iter().enumerate() {
            let Ok(glob) = globset::Glob::new(pat) else {
                continue;
            };
            let m = glob.compile_matcher();
            for (pi, p) in requirer.packages.iter().enumerate() {
                if m.is_match(&p.name) {
                    return Some((hi, pi, pat.clone(), p.name.clone()));
                }
            }
        }
        None
    };
    if let Some((hi, pi, pat, name)) = held_required(a, b) {
        out.push(Conflict {
            what: "hold",
            message: format!("package `{name}` (held by `{pat}`, required by the other)"),
            pointer_a: format!("/spec/hold/{hi}"),
            pointer_b: format!("/spec/packages/{pi}/name"),
        });
    } else if let Some((hi, pi, pat, name)) = held_required(b, a) {
        out.push(Conflict {
            what: "hold",
            message: format!("package `{name}` (held by `{pat}`, required by the other)"),
            pointer_a: format!("/spec/packages/{pi}/name"),
            pointer_b: format!("/spec/hold/{hi}"),
        });
    }
    out
}

/// A selector as its YAML flow form, for messages.
fn selector_text(sel: &Selector) -> String {
    let mut parts = Vec::new();
    if !sel.hosts.is_empty() {
        parts.push(format!("hosts: [{}]", sel.hosts.join(", ")));
    }
    if !sel.groups.is_empty() {
        parts.push(format!("groups: [{}]", sel.groups.join(", ")));
    }
    if !sel.labels.is_empty() {
        let labels: Vec<String> = sel
            .labels
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        parts.push(format!("labels: {{{}}}", labels.join(", ")));
    }
    format!("{{{}}}", parts.join(", "))
}

/// Finds one cycle in a directed graph (groups that wait after groups, baselines that
/// promote from each other); returns its edges in order as (node, pointer of the entry
/// that continues the cycle).
fn find_cycle<'a>(
    edges: &BTreeMap<&'a str, Vec<(&'a str, String)>>,
) -> Option<Vec<(&'a str, String)>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Active,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, Vec<(&'a str, String)>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<(&'a str, String)>,
    ) -> Option<Vec<(&'a str, String)>> {
        marks.insert(node, Mark::Active);
        for (next, ptr) in edges.get(node).into_iter().flatten() {
            stack.push((node, ptr.clone()));
            match marks.get(next) {
                Some(Mark::Active) => {
                    let start = stack.iter().position(|(g, _)| g == next)?;
                    return Some(stack[start..].to_vec());
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(c) = visit(next, edges, marks, stack) {
                        return Some(c);
                    }
                }
            }
            stack.pop();
        }
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in edges.keys() {
        if !marks.contains_key(node) {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, edges, &mut marks, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// Which diagnostic code and YAML node a window error belongs to.
fn window_error_target(e: &crate::window::WindowError) -> (Code, String) {
    use crate::window::WindowErrorKind as K;
    let code = match e.kind {
        K::Structure => Code::InvalidWindow,
        K::Schedule => Code::InvalidSchedule,
        K::Timezone => Code::InvalidTimezone,
        K::Duration => Code::InvalidDuration,
        K::Time => Code::InvalidTime,
    };
    (code, e.field.pointer())
}
