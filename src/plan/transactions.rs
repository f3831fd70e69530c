//! Per-host planning: which baselines and requests apply, and the package changes that
//! satisfy them given what the host has installed and what its repositories offer.

use std::collections::BTreeMap;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::{Change, Fix, HostPlan, HostStatus, PlanInput, Reason, Rule, Skipped};
use crate::advisory::{HostFindings, Severity};
use crate::model::{Host, PackageManager, PackageRequirement, UpdateClass};
use crate::observed::{InstalledPackage, ObservedHost, PendingUpdate};
use crate::version::{self, Ecosystem};

/// Plans every inventory host (sorted by name); batches are assigned later.
pub(super) fn plan_hosts(input: &PlanInput<'_>) -> Vec<HostPlan> {
    use rayon::prelude::*;
    let globs = BaselineGlobs::compile(input);
    // Hosts are independent: plan them in parallel; `collect` keeps the name order.
    let hosts: Vec<&Host> = input.fleet.hosts().collect();
    hosts
        .par_iter()
        .map(|host| plan_host(input, &globs, host))
        .collect()
}

/// Plans one inventory host (the first pass: no window state, no batch). Used to re-derive
/// what a fleet commit allows for a host when a saved plan is applied.
pub(super) fn plan_one(input: &PlanInput<'_>, host: &Host) -> HostPlan {
    plan_host(input, &BaselineGlobs::compile(input), host)
}

/// Compiled hold/exclude patterns per baseline name (compiled once, used for every host),
/// and the promoting baselines' rules with their source hosts resolved.
struct BaselineGlobs {
    hold: BTreeMap<String, (GlobSet, Vec<String>)>,
    exclude: BTreeMap<String, (GlobSet, Vec<String>)>,
    promotion: BTreeMap<String, super::promotion::Rules>,
}

impl BaselineGlobs {
    fn compile(input: &PlanInput<'_>) -> BaselineGlobs {
        let build = |patterns: &[String]| {
            let mut b = GlobSetBuilder::new();
            for p in patterns {
                // Validation rejected invalid patterns; an invalid one here matches nothing.
                if let Ok(g) = Glob::new(p) {
                    b.add(g);
                }
            }
            (
                b.build().unwrap_or_else(|_| GlobSet::empty()),
                patterns.to_vec(),
            )
        };
        let mut hold = BTreeMap::new();
        let mut exclude = BTreeMap::new();
        let mut promotion = BTreeMap::new();
        for b in &input.fleet.fleet().baselines {
            hold.insert(b.name().to_owned(), build(&b.doc.spec.hold));
            exclude.insert(b.name().to_owned(), build(&b.doc.spec.exclude));
            if let Some(p) = &b.doc.spec.promotion {
                promotion.insert(
                    b.name().to_owned(),
                    super::promotion::Rules::new(b.name(), p, input.fleet.hosts()),
                );
            }
        }
        BaselineGlobs {
            hold,
            exclude,
            promotion,
        }
    }
}

/// What the fleet assigns a host, whatever its state: the baselines and requests that
/// apply, and the window and rollout that govern its changes.
pub(super) struct Assignment {
    /// Baseline names, sorted.
    pub baselines: Vec<String>,
    /// Patch request names, sorted.
    pub requests: Vec<String>,
    /// The governing window.
    pub window: Option<String>,
    /// The governing window is an emergency window: only requests' changes use it.
    pub emergency: bool,
    /// The baselines' (normal) window.
    pub normal: Option<String>,
    /// Why that window, when an emergency window was considered.
    pub window_why: Option<String>,
    /// The governing rollout.
    pub rollout: Option<String>,
}

pub(super) fn assignment(
    fleet: &crate::validate::ValidFleet,
    host: &Host,
    at: jiff::Timestamp,
) -> Assignment {
    let baselines = fleet.baselines_for(host);
    let requests = fleet.requests_for(host);
    // Baselines on one host agree on window and rollout (validated); a request may name
    // its own, which then governs the host's whole transaction (an emergency window only
    // when the request's deadline comes before the normal window opens).
    let normal = baselines.first().map(|b| b.doc.spec.window.as_str());
    let choice = super::emergency::choose(fleet, &requests, normal, at);
    Assignment {
        baselines: sorted(baselines.iter().map(|b| b.name().to_owned())),
        requests: sorted(requests.iter().map(|r| r.name().to_owned())),
        window: choice.window,
        emergency: choice.emergency,
        normal: normal.map(str::to_owned),
        window_why: choice.why,
        rollout: requests
            .iter()
            .find_map(|r| r.doc.spec.rollout.clone())
            .or_else(|| baselines.first().map(|b| b.doc.spec.rollout.clone())),
    }
}

fn plan_host(input: &PlanInput<'_>, globs: &BaselineGlobs, host: &Host) -> HostPlan {
    let baselines = input.fleet.baselines_for(host);
    let requests = input.fleet.requests_for(host);
    let assigned = assignment(input.fleet, host, input.at);
    let mut plan = HostPlan {
        host: host.name.clone(),
        status: HostStatus::Compliant,
        package_manager: host.package_manager,
        baselines: assigned.baselines,
        requests: assigned.requests,
        window: assigned.window.clone(),
        window_reason: assigned.window_why.clone(),
        rollout: assigned.rollout,
        changes: Vec::new(),
        reasons: Vec::new(),
        skipped: Vec::new(),
        fingerprint: None,
        batch: None,
        reboot_required: false,
        dependencies: None,
        notes: Vec::new(),
    };

    let Some(observed) = input.observed.host(&host.name) else {
        plan.status = HostStatus::Unreachable;
        plan.reasons
            .push("not in the observed state: observe it first".to_owned());
        return plan;
    };
    if let Some(pm) = observed.package_manager {
        plan.package_manager = Some(pm);
    }
    plan.reboot_required = observed.reboot_required.required;
    if !observed.status.is_reachable() {
        plan.status = HostStatus::Unreachable;
        plan.reasons.push(match observed.status.reason() {
            Some(r) => r.to_string(),
            None => "not observed".to_owned(),
        });
        return plan;
    }
    plan.fingerprint = Some(observed.fingerprint());
    if let Some(lock) = &observed.package_manager_locked {
        plan.notes.push(format!(
            "the package manager was locked when observed ({lock}): apply waits for it up to apply.lockWait, else skips the host"
        ));
    }
    if baselines.is_empty() && requests.is_empty() {
        plan.status = HostStatus::Unmanaged;
        return plan;
    }
    if plan.window.is_none() || plan.rollout.is_none() {
        plan.status = HostStatus::Blocked;
        plan.reasons.push(
            "no baseline applies and the patch request names no window and rollout".to_owned(),
        );
        return plan;
    }
    let Some(pm) = plan.package_manager else {
        plan.status = HostStatus::Blocked;
        plan.reasons
            .push("package manager unknown: the host was observed without one".to_owned());
        return plan;
    };
    let eco = match pm {
        PackageManager::Apt => Ecosystem::Deb,
        PackageManager::Dnf => Ecosystem::Rpm,
    };

    let mut ctx = HostCtx {
        eco,
        observed,
        findings: input.advisories.and_then(|a| a.host(&host.name)),
        changes: BTreeMap::new(),
        reasons: Vec::new(),
        skipped: Vec::new(),
    };
    let host_holds = |name: &str| {
        observed
            .held
            .binary_search_by(|h| h.as_str().cmp(name))
            .is_ok()
    };
    // (why, who): a baseline's `hold` or `exclude` pattern matching the package.
    let baseline_hold = |name: &str| -> Option<(String, String)> {
        baselines.iter().find_map(|b| {
            let (set, pats) = globs.hold.get(b.name())?;
            let m = set.matches(name);
            m.first().map(|i| {
                (
                    format!("held by baseline/{} (`{}`)", b.name(), pats[*i]),
                    format!("baseline/{}", b.name()),
                )
            })
        })
    };
    let exclude_of = |name: &str| -> Option<(String, String)> {
        baselines.iter().find_map(|b| {
            let (set, pats) = globs.exclude.get(b.name())?;
            let m = set.matches(name);
            m.first().map(|i| {
                (
                    format!("excluded by baseline/{} (`{}`)", b.name(), pats[*i]),
                    format!("baseline/{}", b.name()),
                )
            })
        })
    };
    let hold_of = |name: &str| -> Option<String> {
        if host_holds(name) {
            return Some("held on the host".to_owned());
        }
        baseline_hold(name).map(|(why, _)| why)
    };

    for b in &baselines {
        for req in &b.doc.spec.packages {
            ctx.require(req, &format!("baseline/{}", b.name()), None, &hold_of);
        }
    }
    for r in &requests {
        for req in &r.doc.spec.packages {
            ctx.require(
                req,
                &format!("request/{}", r.name()),
                r.doc.spec.deadline.as_deref(),
                &hold_of,
            );
        }
    }
    let classes = baselines
        .iter()
        .map(|b| b.doc.spec.updates.classes)
        .max()
        .unwrap_or(UpdateClass::None);
    let delay = baselines
        .first()
        .and_then(|b| b.doc.spec.updates.delay.as_deref())
        .and_then(|d| crate::duration::parse_duration(d).ok());
    let source = baselines
        .first()
        .map(|b| format!("baseline/{}", b.name()))
        .unwrap_or_default();
    let min_severity = baselines
        .first()
        .and_then(|b| b.doc.spec.updates.min_severity);
    if classes != UpdateClass::None {
        // Updates the host's package manager offers, then those its holds keep back (listed,
        // never installed: nothing held back is invisible).
        let offered = observed.updates.iter().map(|u| (u, false));
        let held_back = observed.held_updates.iter().map(|u| (u, true));
        for (u, on_host) in offered.chain(held_back) {
            let rule = if u.security {
                Rule::SecurityUpdate
            } else if classes == UpdateClass::All {
                if u.installed_version.is_none() {
                    Rule::Dependency
                } else {
                    Rule::AllUpdates
                }
            } else {
                continue;
            };
            let fixes = ctx.fixes_of(&u.name, &u.candidate_version, &u.advisories);
            if on_host {
                let mut why = vec![if host_holds(&u.name) {
                    "held on the host".to_owned()
                } else {
                    "kept back on the host (installing it would move a held package)".to_owned()
                }];
                let mut by = vec!["host".to_owned()];
                for (w, b) in baseline_hold(&u.name)
                    .into_iter()
                    .chain(exclude_of(&u.name))
                {
                    why.push(w);
                    by.push(b);
                }
                ctx.skip(u, why.join(", "), by, fixes);
                continue;
            }
            if let Some((why, by)) = baseline_hold(&u.name).or_else(|| exclude_of(&u.name)) {
                ctx.skip(u, why, vec![by], fixes);
                continue;
            }
            if let Some(delay) = delay {
                let key = (
                    host.name.clone(),
                    u.name.clone(),
                    u.candidate_version.clone(),
                );
                let first = input.first_seen.get(&key).copied().unwrap_or(input.at);
                let age = input.at.duration_since(first);
                let needed =
                    jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX);
                if age < needed {
                    ctx.skip(
                        u,
                        format!("offered for {}, {source} waits {}", days(age), days(needed)),
                        Vec::new(),
                        fixes,
                    );
                    continue;
                }
            }
            if let (Rule::SecurityUpdate, Some(min)) = (rule, min_severity) {
                let worst = fixes.iter().map(|f| f.severity).max();
                let needed = Severity::from_word(min.as_str()).unwrap_or(Severity::Critical);
                if worst.is_none_or(|w| w < needed) {
                    let what = match worst {
                        Some(w) if w > Severity::Unknown => {
                            format!("it fixes at most {w} advisories")
                        }
                        _ => "no advisory data rates it".to_owned(),
                    };
                    ctx.skip(
                        u,
                        format!(
                            "{what}, {source} asks for updates.minSeverity {}",
                            min.as_str()
                        ),
                        Vec::new(),
                        fixes,
                    );
                    continue;
                }
            }
            ctx.add(
                &u.name,
                &u.arch,
                u.installed_version.clone(),
                u,
                Reason {
                    source: source.clone(),
                    rule,
                    due: None,
                },
            );
        }
    }

    // Staged promotion: the host's baselines agree on it (validated); what they ask for
    // moves only to versions the source hosts have proven.
    let promotion = baselines.iter().find_map(|b| globs.promotion.get(b.name()));
    if let Some(rules) = promotion {
        let mins: BTreeMap<&str, &str> = baselines
            .iter()
            .flat_map(|b| &b.doc.spec.packages)
            .filter_map(|r| Some((r.name.as_str(), r.min_version.as_deref()?)))
            .fold(BTreeMap::new(), |mut m, (n, v)| {
                // The highest minimum wins (baselines' minimums are not conflicts).
                let keep = m.get(n).is_none_or(|old: &&str| {
                    version::compare(eco, v, old).is_ok_and(|o| o.is_gt())
                });
                if keep {
                    m.insert(n, v);
                }
                m
            });
        ctx.promote(rules, input, pm, &mins);
    }

    if assigned.emergency {
        let normal = baselines.first().map(|b| b.doc.spec.window.as_str());
        let for_requests = ctx
            .changes
            .values()
            .any(|c| c.reasons.iter().any(|r| r.source.starts_with("request/")));
        if for_requests || normal.is_none() {
            ctx.defer_to_normal_window(plan.window.as_deref().unwrap_or_default(), normal);
        } else {
            // The requests are satisfied: the emergency window has nothing to carry, and
            // the normal window governs the rest.
            plan.window = normal.map(str::to_owned);
            plan.window_reason = None;
        }
    }

    // What a host reports is data, not trusted: a change whose name, version or
    // architecture is outside the host's grammar could not be carried by a command, and a
    // host reporting one blocks rather than getting a guess.
    ctx.changes.retain(|_, c| {
        let values = [
            (crate::package::Field::Name, Some(c.package.as_str())),
            (crate::package::Field::Version, Some(c.to.as_str())),
            (crate::package::Field::Version, c.from.as_deref()),
            (crate::package::Field::Arch, Some(c.arch.as_str())),
        ];
        for (field, value) in values {
            if let Some(Err(e)) = value.map(|v| crate::package::check(eco, field, v)) {
                ctx.reasons.push(format!(
                    "the host reports a package patchkeeper will not name on a command line: {e}"
                ));
                return false;
            }
        }
        true
    });
    let protected = |name: &str| hold_of(name).or_else(|| exclude_of(name).map(|(why, _)| why));
    let merged = super::simulation::merge(
        &mut ctx.changes,
        &mut ctx.reasons,
        observed,
        input.simulations.and_then(|s| s.get(&host.name)),
        &protected,
    );
    plan.dependencies = merged.check;
    if let Some(rules) = promotion {
        // What the package manager pulls in alongside must be proven too: apt and dnf pick
        // the newest version of a dependency, which the sources may never have run.
        for c in ctx.changes.values() {
            if c.reasons.iter().all(|r| r.source == super::PACKAGE_MANAGER)
                && !super::promotion::is_eligible(
                    rules,
                    input.promotion,
                    pm,
                    &c.package,
                    &c.to,
                    input.at,
                )
            {
                ctx.reasons.push(format!(
                    "the package manager would pull in {} {} alongside, a version {} has not promoted",
                    c.package, c.to, rules.baseline
                ));
            }
        }
    }
    if let Some(why) = merged.unreachable {
        plan.status = HostStatus::Unreachable;
        plan.reasons.push(why);
        return plan;
    }
    plan.changes = ctx.changes.values().cloned().collect();
    for c in &mut plan.changes {
        let ids: Vec<String> = observed
            .updates
            .iter()
            .find(|u| u.name == c.package && u.candidate_version == c.to)
            .map(|u| u.advisories.clone())
            .unwrap_or_default();
        c.fixes = ctx.fixes_of(&c.package, &c.to, &ids);
    }
    if !plan.changes.is_empty() && !observed.db_health.is_empty() {
        // The package manager would refuse (dpkg "was interrupted") or trip over duplicates:
        // the transaction waits until the database is repaired.
        let repair = match pm {
            PackageManager::Apt => "dpkg --configure -a",
            PackageManager::Dnf => "dnf remove --duplicates",
        };
        let broken: Vec<String> = observed
            .db_health
            .iter()
            .map(|b| format!("{} {} {}", b.name, b.version, b.state))
            .collect();
        plan.reasons.push(format!(
            "the package database needs repair first ({}): run `{repair}` on the host",
            broken.join(", ")
        ));
    }
    // An update left alone by one rule but planned by another (a minimum version) is
    // not "left alone": drop it from the skipped list.
    let changes = &plan.changes;
    plan.skipped = ctx
        .skipped
        .into_iter()
        .filter(|s| {
            !changes
                .iter()
                .any(|c| c.package == s.package && c.to == s.version)
        })
        .collect();
    plan.skipped.sort();
    plan.reasons.extend(ctx.reasons);
    plan.status = if !plan.reasons.is_empty() {
        HostStatus::Blocked
    } else if plan.changes.is_empty() {
        HostStatus::Compliant
    } else {
        // Refined by the batch planner from the window state.
        HostStatus::Update
    };
    if plan
        .changes
        .iter()
        .any(|c| observed.reboot_required.packages.contains(&c.package))
    {
        plan.reboot_required = true;
    }
    plan
}

struct HostCtx<'a> {
    eco: Ecosystem,
    observed: &'a ObservedHost,
    findings: Option<&'a HostFindings>,
    changes: BTreeMap<String, Change>,
    reasons: Vec<String>,
    skipped: Vec<Skipped>,
}

impl HostCtx<'_> {
    fn installed(&self, name: &str) -> Option<&InstalledPackage> {
        let list = &self.observed.installed;
        let i = list.partition_point(|p| p.name.as_str() < name);
        list.get(i).filter(|p| p.name == name)
    }

    fn update(&self, name: &str) -> Option<&PendingUpdate> {
        let list = &self.observed.updates;
        let i = list.partition_point(|p| p.name.as_str() < name);
        list.get(i).filter(|p| p.name == name)
    }

    fn at_least(&mut self, have: &str, min: &str, package: &str) -> Option<bool> {
        match version::compare(self.eco, have, min) {
            Ok(o) => Some(o.is_ge()),
            Err(e) => {
                self.reasons.push(format!("{package}: {e}"));
                None
            }
        }
    }

    /// Lists `u` as left alone; `held_by` gains the exceptions that accept what it would fix.
    fn skip(&mut self, u: &PendingUpdate, why: String, mut held_by: Vec<String>, fixes: Vec<Fix>) {
        held_by.extend(super::exception_holders(&fixes));
        self.skipped.push(Skipped {
            package: u.name.clone(),
            version: u.candidate_version.clone(),
            why,
            from: u.installed_version.clone(),
            security: u.security,
            held_by,
            fixes,
            promotion: None,
        });
    }

    /// In an emergency window only patch requests' changes go: what only baselines ask
    /// for waits for the normal window, listed as skipped.
    fn defer_to_normal_window(&mut self, emergency: &str, normal: Option<&str>) {
        let deferred: Vec<String> = self
            .changes
            .values()
            .filter(|c| !c.reasons.iter().any(|r| r.source.starts_with("request/")))
            .map(|c| c.package.clone())
            .collect();
        for name in deferred {
            let Some(c) = self.changes.remove(&name) else {
                continue;
            };
            let why = match normal {
                Some(n) => format!("waits for window `{n}`: emergency window `{emergency}` takes only patch requests' changes"),
                None => format!("emergency window `{emergency}` takes only patch requests' changes"),
            };
            self.skipped.push(Skipped {
                package: c.package,
                version: c.to,
                why,
                promotion: None,
                from: c.from,
                security: c.security,
                held_by: super::exception_holders(&c.fixes),
                fixes: c.fixes,
            });
        }
    }

    /// Moves every change the baselines ask for to the version promotion allows: exactly
    /// the newest proven one (possibly older than the candidate), or nothing yet (the
    /// update waits, listed as skipped), or a block when the proven version is no longer
    /// offered. Changes a patch request asks for are the request's call and stay.
    fn promote(
        &mut self,
        rules: &super::promotion::Rules,
        input: &PlanInput<'_>,
        pm: PackageManager,
        mins: &BTreeMap<&str, &str>,
    ) {
        use super::promotion::{decide, wait_label, Decision};
        let names: Vec<String> = self
            .changes
            .values()
            .filter(|c| !c.reasons.iter().any(|r| r.source.starts_with("request/")))
            .map(|c| c.package.clone())
            .collect();
        for name in names {
            let Some(c) = self.changes.get(&name) else {
                continue;
            };
            let decision = decide(
                rules,
                input.promotion,
                self.observed,
                pm,
                &c.package,
                &c.arch,
                c.from.as_deref(),
                &c.to,
                mins.get(name.as_str()).copied(),
                input.at,
            );
            match decision {
                Decision::Promote { version, promoted } => {
                    let offered = self
                        .observed
                        .offered_versions(&name, &c.arch)
                        .and_then(|o| o.versions.iter().find(|v| v.version == version))
                        .cloned();
                    if let Some(c) = self.changes.get_mut(&name) {
                        if c.to != version {
                            c.to = version;
                            if let Some(o) = offered {
                                c.security = o.security;
                                c.origin = o.origin;
                            }
                        }
                        c.promotion = Some(promoted);
                    }
                }
                Decision::NotOffered(why) => {
                    self.changes.remove(&name);
                    self.reasons.push(why);
                }
                Decision::Wait(wait) => {
                    if let Some(c) = self.changes.remove(&name) {
                        let why = wait_label(&wait, &rules.noun, &c.to, c.from.as_deref());
                        // The advisories it would close, as for any update left alone.
                        let ids = self
                            .update(&c.package)
                            .filter(|u| u.candidate_version == c.to)
                            .map(|u| u.advisories.clone())
                            .unwrap_or_default();
                        let fixes = self.fixes_of(&c.package, &c.to, &ids);
                        self.skipped.push(Skipped {
                            package: c.package,
                            version: c.to,
                            why,
                            from: c.from,
                            security: c.security,
                            held_by: super::exception_holders(&fixes),
                            fixes,
                            promotion: Some(wait),
                        });
                    }
                }
            }
        }
    }

    /// The advisories that moving `package` to `to` closes: the host's findings it fixes,
    /// and the advisories the package manager names for the update (dnf updateinfo), most
    /// severe first.
    fn fixes_of(&self, package: &str, to: &str, advisory_ids: &[String]) -> Vec<Fix> {
        let mut out: Vec<Fix> = self
            .findings
            .map(|hf| {
                hf.fixed_by(package, to)
                    .map(|f| Fix {
                        id: f.id().to_owned(),
                        cves: f.cves(),
                        severity: f.severity,
                        exception: f.exception.as_deref().cloned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        for id in advisory_ids {
            if out.iter().any(|f| f.id == *id) {
                continue;
            }
            let known = self
                .observed
                .advisories
                .binary_search_by(|a| a.id.as_str().cmp(id))
                .ok()
                .map(|i| &self.observed.advisories[i]);
            out.push(Fix {
                id: id.clone(),
                cves: known.map(|a| a.cves.clone()).unwrap_or_default(),
                severity: known
                    .and_then(|a| a.severity.as_deref())
                    .and_then(Severity::from_word)
                    .unwrap_or(Severity::Unknown),
                exception: None,
            });
        }
        out.sort_by(|a, b| b.severity.cmp(&a.severity).then_with(|| a.id.cmp(&b.id)));
        out.dedup_by(|a, b| a.id == b.id);
        out
    }

    /// A baseline or request needs `req`: plan the change, or record why it cannot happen.
    fn require(
        &mut self,
        req: &PackageRequirement,
        source: &str,
        due: Option<&str>,
        hold_of: &dyn Fn(&str) -> Option<String>,
    ) {
        let name = req.name.as_str();
        let installed = self.installed(name).map(|p| p.version.to_string());
        let satisfied = match (&installed, &req.min_version) {
            (Some(_), None) => true,
            (Some(have), Some(min)) => match self.at_least(have, min, name) {
                Some(ok) => ok,
                None => return,
            },
            (None, _) => false,
        };
        if satisfied {
            return;
        }
        let wanted = match &req.min_version {
            Some(min) => format!("{name} >= {min}"),
            None => format!("{name} installed"),
        };
        if let Some(why) = hold_of(name) {
            self.reasons.push(format!(
                "{source} requires {wanted}, but the package is {why}"
            ));
            return;
        }
        let Some(u) = self.update(name).cloned() else {
            let kept_back = self
                .observed
                .kept_back
                .binary_search_by(|k| k.as_str().cmp(name))
                .is_ok();
            self.reasons.push(match &installed {
                Some(have) if kept_back => format!(
                    "{source} requires {wanted}; {have} is installed and the package manager keeps the newer version back (installing it would move a held package, or a dependency is unavailable)"
                ),
                Some(have) => format!(
                    "{source} requires {wanted}; {have} is installed and the host's repositories offer nothing newer"
                ),
                None => format!(
                    "{source} requires {wanted}; it is not installed and the host's repositories do not offer it"
                ),
            });
            return;
        };
        if let Some(min) = &req.min_version {
            match self.at_least(&u.candidate_version, min, name) {
                Some(true) => {}
                Some(false) => {
                    self.reasons.push(format!(
                        "{source} requires {wanted}; the host's repositories offer at most {}",
                        u.candidate_version
                    ));
                    return;
                }
                None => return,
            }
        }
        self.add(
            name,
            &u.arch,
            installed,
            &u,
            Reason {
                source: source.to_owned(),
                rule: Rule::MinVersion,
                due: due.map(str::to_owned),
            },
        );
    }

    fn add(
        &mut self,
        name: &str,
        arch: &str,
        from: Option<String>,
        u: &PendingUpdate,
        reason: Reason,
    ) {
        let change = self
            .changes
            .entry(name.to_owned())
            .or_insert_with(|| Change {
                package: name.to_owned(),
                arch: arch.to_owned(),
                from,
                to: u.candidate_version.clone(),
                security: u.security,
                origin: u.origin.clone(),
                reasons: Vec::new(),
                promotion: None,
                fixes: Vec::new(),
            });
        if !change.reasons.contains(&reason) {
            change.reasons.push(reason);
            change.reasons.sort();
        }
    }
}

fn sorted(it: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = it.collect();
    v.sort();
    v.dedup();
    v
}

/// Whole days, for messages about update age.
fn days(d: jiff::SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    let days = secs / 86_400;
    if days == 1 {
        "1 day".to_owned()
    } else if days == 0 && secs > 0 {
        format!("{}h", secs / 3600)
    } else {
        format!("{days} days")
    }
}
