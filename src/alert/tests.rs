use super::*;
use crate::compliance::{HostCompliance, OpenAdvisory};
use crate::report::HostReport;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("time")
}

fn host(name: &str, state: Option<ComplianceState>) -> HostSummary {
    HostSummary {
        name: name.into(),
        address: None,
        groups: vec!["web".into()],
        labels: Default::default(),
        package_manager: None,
        state,
        reachable: Some(state != Some(ComplianceState::Unreachable)),
        pending_updates: 0,
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

fn advisory(id: &str, severity: &str, due: Option<&str>) -> OpenAdvisory {
    let mut v = serde_json::json!({
        "id": id, "severity": severity, "source": "openssl", "installed": "3.0.14-1",
        "packages": ["libssl3"], "fixed": "3.0.15-1", "state": "fix-offered",
        "firstSeen": "2026-11-01T00:00:00Z",
    });
    if let Some(d) = due {
        v["due"] = d.into();
    }
    serde_json::from_value(v).expect("an open advisory")
}

fn report(name: &str, advisories: Vec<OpenAdvisory>) -> HostReport {
    let now = ts("2026-11-01T00:00:00Z");
    HostReport {
        desired_commit: "c1".into(),
        run_id: "run-1".into(),
        incidents: vec![],
        installed_digest: None,
        compliance: HostCompliance {
            host: name.into(),
            state: ComplianceState::NonCompliant,
            reasons: vec![],
            baselines: vec![],
            missing: vec![],
            outstanding: vec![],
            deferred: vec![],
            reboot_required_since: None,
            broken_rules: vec![],
            last_run: None,
            observed_at: Some(now),
            evaluated_at: now,
            advisories,
            advisory_snapshot: None,
        },
    }
}

fn snapshot(hosts: Vec<HostReport>) -> Snapshot {
    Snapshot {
        commit: "r1".into(),
        summary: None,
        hosts,
        runs: vec![],
        rejected: None,
    }
}

fn known<'a>(hosts: &'a [HostSummary], reports: &'a Snapshot) -> Inputs<'a> {
    Inputs {
        hosts: Some(hosts),
        reports: Some(reports),
        commit_known: true,
        rejected_commit: None,
        reconcile: Some((true, None)),
        halted: Some(vec![]),
        requests: &[],
    }
}

fn keys(list: &[Standing]) -> Vec<&str> {
    list.iter().map(|s| s.condition.key.as_str()).collect()
}

#[test]
fn a_condition_alerts_once_when_it_opens_and_once_when_it_clears() {
    let now = ts("2026-12-01T00:00:00Z");
    let hosts = vec![
        host("web-1", Some(ComplianceState::Unreachable)),
        host("web-2", Some(ComplianceState::Compliant)),
    ];
    let reports = snapshot(vec![]);
    let first = evaluate(&BTreeMap::new(), &known(&hosts, &reports), now);
    assert_eq!(keys(&first.opened), ["host-unreachable/web-1"]);
    assert!(first.cleared.is_empty());

    // The next rounds: the condition stands, nothing new is sent.
    let later = ts("2026-12-01T00:05:00Z");
    let again = evaluate(&first.standing, &known(&hosts, &reports), later);
    assert!(again.opened.is_empty() && again.cleared.is_empty());
    assert_eq!(again.standing, first.standing, "opened_at and id kept");

    // It clears: one resolved notice with the same alert id.
    let fixed = vec![
        host("web-1", Some(ComplianceState::Compliant)),
        host("web-2", Some(ComplianceState::Compliant)),
    ];
    let cleared = evaluate(&again.standing, &known(&fixed, &reports), later);
    assert_eq!(keys(&cleared.cleared), ["host-unreachable/web-1"]);
    assert_eq!(cleared.cleared[0].id, first.opened[0].id);
    assert!(cleared.standing.is_empty());

    // It comes back: a new alert, with a new id.
    let back = evaluate(
        &cleared.standing,
        &known(&hosts, &reports),
        ts("2026-12-02T00:00:00Z"),
    );
    assert_eq!(keys(&back.opened), ["host-unreachable/web-1"]);
    assert_ne!(back.opened[0].id, first.opened[0].id);
}

#[test]
fn what_is_not_known_yet_keeps_standing() {
    let now = ts("2026-12-01T00:00:00Z");
    let hosts = vec![host("web-1", Some(ComplianceState::Failed))];
    let reports = snapshot(vec![]);
    let mut inputs = known(&hosts, &reports);
    inputs.rejected_commit = Some("0123456789abcdef");
    inputs.reconcile = Some((false, Some("fetch failed")));
    inputs.halted = Some(vec![("canary".into(), 2)]);
    let first = evaluate(&BTreeMap::new(), &inputs, now);
    assert_eq!(
        keys(&first.opened),
        [
            "commit-invalid/0123456789abcdef",
            "host-failed/web-1",
            "reconcile-failing/loop",
            "rollout-halted/canary"
        ]
    );
    // A restart: nothing published yet. Nothing is resolved, nothing opens.
    let restarted = evaluate(&first.standing, &Inputs::default(), now);
    assert!(restarted.opened.is_empty() && restarted.cleared.is_empty());
    assert_eq!(restarted.standing.len(), 4);
}

#[test]
fn critical_and_high_advisories_alert_per_host_and_when_overdue() {
    let now = ts("2026-12-01T00:00:00Z");
    let hosts = vec![host("web-1", Some(ComplianceState::Compliant))];
    let reports = snapshot(vec![report(
        "web-1",
        vec![
            advisory("DSA-1", "critical", Some("2026-12-15T00:00:00Z")),
            advisory("DSA-2", "high", Some("2026-11-15T00:00:00Z")),
            advisory("DSA-3", "medium", Some("2026-11-15T00:00:00Z")),
        ],
    )]);
    let e = evaluate(&BTreeMap::new(), &known(&hosts, &reports), now);
    assert_eq!(
        keys(&e.opened),
        [
            "vulnerability-opened/web-1/DSA-1",
            "vulnerability-opened/web-1/DSA-2",
            "vulnerability-overdue/web-1/DSA-2"
        ]
    );
    let c = &e.opened[0].condition;
    assert_eq!(c.severity, Some(Severity::Critical));
    assert_eq!(
        c.summary,
        "critical vulnerability DSA-1 open on web-1: openssl 3.0.14-1 (fixed in 3.0.15-1)"
    );

    let hook = |min: Option<AlertSeverity>, events: Vec<AlertEvent>| Webhook {
        name: "ops".into(),
        url: "https://example.com/hook".into(),
        events,
        format: WebhookFormat::Json,
        secret_env: None,
        min_severity: min,
    };
    assert!(wants(&hook(None, vec![]), &e.opened[1].condition));
    assert!(!wants(
        &hook(Some(AlertSeverity::Critical), vec![]),
        &e.opened[1].condition
    ));
    assert!(wants(
        &hook(Some(AlertSeverity::Critical), vec![]),
        &e.opened[0].condition
    ));
    assert!(!wants(
        &hook(None, vec![AlertEvent::HostFailed]),
        &e.opened[0].condition
    ));
}

#[test]
fn bodies_generic_and_slack() {
    let s = Standing::open(
        Condition {
            key: "host-failed/web-1".into(),
            event: AlertEvent::HostFailed,
            severity: None,
            host: Some("web-1".into()),
            summary: "host web-1 failed its last apply".into(),
        },
        ts("2026-12-01T00:00:00Z"),
    );
    let firing = Alert::of(&s, AlertStatus::Firing, ts("2026-12-01T00:00:00Z"));
    let v: serde_json::Value =
        serde_json::from_slice(&firing.body(WebhookFormat::Json)).expect("JSON");
    assert_eq!(
        v,
        serde_json::json!({
            "id": s.id, "status": "firing", "event": "host-failed", "key": "host-failed/web-1",
            "host": "web-1", "summary": "host web-1 failed its last apply",
            "openedAt": "2026-12-01T00:00:00Z",
        })
    );
    let resolved = Alert::of(&s, AlertStatus::Resolved, ts("2026-12-01T01:00:00Z"));
    let v: serde_json::Value =
        serde_json::from_slice(&resolved.body(WebhookFormat::Slack)).expect("JSON");
    assert_eq!(
        v,
        serde_json::json!({"text": ":white_check_mark: *patchkeeper RESOLVED* `host-failed`: host web-1 failed its last apply"})
    );
}

#[test]
fn signature_is_rfc_4231_hmac_sha256() {
    // RFC 4231, test case 2.
    assert_eq!(
        signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let s = Duration::from_secs;
    assert_eq!(backoff(1, s(10), s(60)), s(10));
    assert_eq!(backoff(2, s(10), s(60)), s(20));
    assert_eq!(backoff(3, s(10), s(60)), s(40));
    assert_eq!(backoff(4, s(10), s(60)), s(60));
    assert_eq!(backoff(400, s(10), s(60)), s(60));
}

#[test]
fn the_outbox_keeps_standing_conditions_and_deliveries_across_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("alerts.sqlite");
    let now = ts("2026-12-01T00:00:00Z");
    let hosts = vec![host("web-1", Some(ComplianceState::Unreachable))];
    let reports = snapshot(vec![]);
    let hooks = vec![Webhook {
        name: "ops".into(),
        url: "http://127.0.0.1:9/hook".into(),
        events: vec![],
        format: WebhookFormat::Json,
        secret_env: Some("PK_SECRET".into()),
        min_severity: None,
    }];
    {
        let mut o = outbox::Outbox::open(&path).expect("open");
        let e = evaluate(
            &o.standing().expect("standing"),
            &known(&hosts, &reports),
            now,
        );
        assert_eq!(o.record(&e, &hooks, now).expect("record"), 1);
        let due = o.due(now, 10).expect("due");
        assert_eq!(due.len(), 1);
        o.failed(due[0].seq, ts("2026-12-01T00:00:10Z"), "500")
            .expect("failed");
        assert!(
            o.due(now, 10).expect("due").is_empty(),
            "not due before its retry"
        );
    }
    let o = outbox::Outbox::open(&path).expect("reopen");
    assert_eq!(o.standing().expect("standing").len(), 1);
    let e = evaluate(
        &o.standing().expect("standing"),
        &known(&hosts, &reports),
        now,
    );
    assert!(e.opened.is_empty(), "no second alert after a restart");
    let due = o.due(ts("2026-12-01T00:00:10Z"), 10).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
    assert_eq!(due[0].secret_env.as_deref(), Some("PK_SECRET"));
    o.delivered(due[0].seq, now).expect("delivered");
    assert_eq!(o.pending().expect("pending"), 0);
}

#[test]
fn a_proposed_request_alerts_with_its_branch_until_it_is_merged() {
    use crate::view::{RequestState, RequestStatus};
    let now = ts("2026-12-01T00:00:00Z");
    let hosts = vec![host("web-1", Some(ComplianceState::Compliant))];
    let reports = snapshot(vec![]);
    let request = |state| RequestStatus {
        name: "dsa-6000-1".into(),
        state,
        branch: Some("patchkeeper/requests/dsa-6000-1".into()),
        commit: None,
        reason: "critical DSA-6000-1".into(),
        selector: crate::model::Selector {
            hosts: vec!["web-1".into()],
            ..Default::default()
        },
        packages: vec![],
        advisories: vec!["DSA-6000-1".into()],
        deadline: None,
        requested_by: Some("patchkeeper".into()),
        hosts: 1,
        applied: 0,
        remaining: vec![],
    };
    let open = [request(RequestState::Submitted)];
    let inputs = Inputs {
        requests: &open,
        ..known(&hosts, &reports)
    };
    let e = evaluate(&Default::default(), &inputs, now);
    assert_eq!(keys(&e.opened), ["request-proposed/dsa-6000-1"]);
    assert!(
        e.opened[0]
            .condition
            .summary
            .contains("on branch patchkeeper/requests/dsa-6000-1"),
        "{:?}",
        e.opened[0].condition
    );
    // Not yet known which branches exist: it keeps standing.
    let unknown = Inputs {
        commit_known: false,
        requests: &[],
        ..known(&hosts, &reports)
    };
    assert!(evaluate(&e.standing, &unknown, now).cleared.is_empty());
    // Merged: resolved.
    let merged = [request(RequestState::Merged)];
    let after = Inputs {
        requests: &merged,
        ..known(&hosts, &reports)
    };
    assert_eq!(
        keys(&evaluate(&e.standing, &after, now).cleared),
        ["request-proposed/dsa-6000-1"]
    );
}
