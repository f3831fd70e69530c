//! Batch planning: hosts with changes are grouped by (rollout, window), ordered by the
//! rollout's group ordering (`after:`), cut into its stages, and each batch gets its
//! window's state at the plan's instant.
//!
//! Guarantees (property-tested): every host with changes is in exactly one batch; a host
//! never shares a batch with, or precedes, a host of a group it waits for; stage sizes add
//! up to the hosts to update.

use std::collections::BTreeMap;

use super::{Batch, BatchWindow, HostPlan, HostStatus, PlanInput};
use crate::model::{Host, RolloutSpec};
use crate::window::{ClosedReason, CompiledWindow, WindowState};

/// Hosts changed at once when the rollout does not say.
pub const DEFAULT_PARALLELISM: u32 = 10;

pub(super) fn plan_batches(input: &PlanInput<'_>, hosts: &mut [HostPlan]) -> Vec<Batch> {
    // Lanes: (rollout, window) -> indexes into `hosts`, in host-name order.
    let mut lanes: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, h) in hosts.iter().enumerate() {
        if h.status != HostStatus::Update {
            continue;
        }
        if let (Some(r), Some(w)) = (&h.rollout, &h.window) {
            lanes.entry((r.clone(), w.clone())).or_default().push(i);
        }
    }
    let mut batches = Vec::new();
    for ((rollout_name, window_name), members) in lanes {
        let Some(rollout) = input.fleet.rollout(&rollout_name) else {
            continue;
        };
        let window_state = match input.fleet.window(&window_name) {
            Some(w) => match CompiledWindow::compile(&w.doc.spec) {
                Ok(c) => batch_window(c.state_at(input.at)),
                Err(_) => BatchWindow::Waits {
                    until: None,
                    why: "window does not compile".to_owned(),
                },
            },
            None => BatchWindow::Waits {
                until: None,
                why: "window does not exist".to_owned(),
            },
        };
        let spec = &rollout.doc.spec;
        let group_levels = group_levels(spec);
        let inventory: Vec<&Host> = members
            .iter()
            .filter_map(|i| input.fleet.host(&hosts[*i].host))
            .collect();
        let level = |h: &Host| {
            h.groups
                .iter()
                .filter_map(|g| group_levels.get(g.as_str()))
                .max()
                .copied()
                .unwrap_or(0)
        };
        let mut remaining: Vec<(usize, &Host)> = inventory.iter().map(|h| (level(h), *h)).collect();
        remaining.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
        let total = remaining.len();
        let parallelism = spec.parallelism.unwrap_or(DEFAULT_PARALLELISM);
        for (si, stage) in spec.stages.iter().enumerate() {
            if remaining.is_empty() {
                break;
            }
            let last = si + 1 == spec.stages.len();
            let want = if last {
                remaining.len()
            } else {
                stage.size.of(total).min(remaining.len())
            };
            let mut taken: Vec<(usize, &Host)> = Vec::new();
            let mut keep: Vec<(usize, &Host)> = Vec::new();
            // Lowest level among hosts after each position, and among hosts kept back so
            // far: O(n) per stage instead of rescanning.
            let mut suffix_min = vec![usize::MAX; remaining.len() + 1];
            for i in (0..remaining.len()).rev() {
                suffix_min[i] = suffix_min[i + 1].min(remaining[i].0);
            }
            let mut kept_min = usize::MAX;
            for (pos, (lvl, h)) in remaining.iter().enumerate() {
                let selected = stage.selector.as_ref().is_none_or(|s| s.matches(h));
                // A host may only go once every host of a lower level is placed, so that no
                // host precedes (or shares a batch with) a group it waits for.
                let lower_pending = kept_min < *lvl || suffix_min[pos + 1] < *lvl;
                if taken.len() < want && selected && !lower_pending {
                    taken.push((*lvl, h));
                } else {
                    kept_min = kept_min.min(*lvl);
                    keep.push((*lvl, h));
                }
            }
            remaining = keep;
            // One batch per level inside the stage.
            let mut by_level: BTreeMap<usize, Vec<String>> = BTreeMap::new();
            for (lvl, h) in taken {
                by_level.entry(lvl).or_default().push(h.name.clone());
            }
            for (_, names) in by_level {
                batches.push(Batch {
                    index: batches.len(),
                    rollout: rollout_name.clone(),
                    stage: stage.name.clone(),
                    window: window_name.clone(),
                    hosts: names,
                    parallelism,
                    window_state: window_state.clone(),
                });
            }
        }
    }
    // Record each host's batch and refine its status from the window.
    for b in &batches {
        for name in &b.hosts {
            if let Ok(i) = hosts.binary_search_by(|h| h.host.as_str().cmp(name)) {
                let h = &mut hosts[i];
                h.batch = Some(b.index);
                match &b.window_state {
                    BatchWindow::RunsNow { .. } => h.status = HostStatus::Update,
                    BatchWindow::Waits { until, why } => {
                        h.status = HostStatus::Waiting;
                        h.reasons.push(match until {
                            Some(t) => {
                                format!("window `{}` is closed ({why}); it opens at {t}", b.window)
                            }
                            None => format!(
                                "window `{}` is closed ({why}) and does not open again",
                                b.window
                            ),
                        });
                    }
                    BatchWindow::Frozen { freeze, until, .. } => {
                        h.status = HostStatus::Frozen;
                        h.reasons.push(format!(
                            "window `{}` is frozen{} until {until}",
                            b.window,
                            freeze
                                .as_ref()
                                .map(|f| format!(" by `{f}`"))
                                .unwrap_or_default()
                        ));
                    }
                }
            }
        }
    }
    batches
}

/// Level of each group in the rollout's ordering: 0 for groups that wait for nobody.
fn group_levels(spec: &RolloutSpec) -> BTreeMap<&str, usize> {
    let mut levels: BTreeMap<&str, usize> = BTreeMap::new();
    // Validation guarantees no cycles, so this reaches a fixed point within n rounds.
    for _ in 0..=spec.order.len() {
        let mut changed = false;
        for o in &spec.order {
            let l = o
                .after
                .iter()
                .map(|a| levels.get(a.as_str()).copied().unwrap_or(0) + 1)
                .max()
                .unwrap_or(0);
            if levels.get(o.group.as_str()).copied().unwrap_or(0) < l {
                levels.insert(&o.group, l);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    levels
}

fn batch_window(state: WindowState) -> BatchWindow {
    match state {
        WindowState::Open {
            until, cutoff_at, ..
        } => BatchWindow::RunsNow {
            until: until.map(|t| t.to_string()),
            cutoff_at: cutoff_at.map(|t| t.to_string()),
        },
        WindowState::Closed { next_open, reason } => match reason {
            ClosedReason::Frozen { name, until, .. } => BatchWindow::Frozen {
                freeze: name,
                until: until.to_string(),
                next_open: next_open.map(|t| t.to_string()),
            },
            ClosedReason::OutsideSchedule => BatchWindow::Waits {
                until: next_open.map(|t| t.to_string()),
                why: "outside-schedule".to_owned(),
            },
            ClosedReason::Cutoff { .. } => BatchWindow::Waits {
                until: next_open.map(|t| t.to_string()),
                why: "cutoff".to_owned(),
            },
        },
    }
}
