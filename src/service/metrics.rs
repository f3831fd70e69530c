//! `GET /metrics`: OpenMetrics text (prometheus-client). Fleet gauges and loop counters are
//! read from the published [`Status`] at scrape time; HTTP requests are counted by a
//! middleware labelled with the matched route template (never the raw path), and reconcile
//! durations are observed from the event journal. No label carries a host or package name,
//! so cardinality stays bounded whatever the fleet's size.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::App;
use crate::compliance::ComplianceState;
use crate::events::EventData;
use crate::status::Status;

/// Labels of an HTTP request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: String,
}

/// Labels of the HTTP duration histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// The registry and the metrics updated as things happen.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram>,
    reconcile_duration: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric; fleet metrics are read from `status` at each scrape.
    pub fn new(status: Arc<Status>) -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "patchkeeper_http_requests",
            "API requests by route template, method and status",
            http_requests.clone(),
        );
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 4.0, 9))
        });
        registry.register(
            "patchkeeper_http_request_duration_seconds",
            "API request handling time by route template (streams: until the headers)",
            http_duration.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "patchkeeper_reconcile_duration_seconds",
            "Duration of reconciles (observe, plan, apply, report)",
            reconcile_duration.clone(),
        );
        registry.register_collector(Box::new(FleetCollector { status }));
        Metrics {
            registry,
            http_requests,
            http_duration,
            reconcile_duration,
        }
    }

    /// Observes reconcile durations from the journal until it closes.
    pub fn follow(self: &Arc<Self>, status: &Status) -> tokio::task::JoinHandle<()> {
        let mut live = status.events.subscribe(None).live;
        let metrics = self.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match live.recv().await {
                    Ok(event) => {
                        if let EventData::ReconcileFinished {
                            duration_seconds, ..
                        } = &event.data
                        {
                            metrics.reconcile_duration.observe(*duration_seconds);
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!("metrics missed {n} events");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }

    /// The exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Fleet state and loop totals, read at scrape time.
#[derive(Debug)]
struct FleetCollector {
    status: Arc<Status>,
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    let e = encoder.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(e)
}

fn labelled_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(String, i64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value_label, v) in values {
        let labels = [(label, value_label.as_str())];
        ConstGauge::new(*v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn labelled_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(String, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value_label, v) in values {
        let labels = [(label, value_label.as_str())];
        ConstCounter::new(*v).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for FleetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let view = self.status.view();
        let c = &view.counts;
        let mut states: Vec<(String, i64)> = ComplianceState::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str().to_owned(),
                    c.states.get(s.as_str()).copied().unwrap_or(0) as i64,
                )
            })
            .collect();
        states.push((
            "unknown".into(),
            c.states.get("unknown").copied().unwrap_or(0) as i64,
        ));
        labelled_gauge(
            &mut encoder,
            "patchkeeper_hosts",
            "Inventory hosts by compliance state (unknown: never reported)",
            "state",
            &states,
        )?;
        gauge(
            &mut encoder,
            "patchkeeper_pending_updates",
            "Pending package updates over all hosts (last observation)",
            c.pending_updates as f64,
        )?;
        gauge(
            &mut encoder,
            "patchkeeper_security_updates",
            "Pending security updates over all hosts (last observation)",
            c.security_updates as f64,
        )?;
        gauge(
            &mut encoder,
            "patchkeeper_reboot_required_hosts",
            "Hosts that need a reboot",
            c.reboot_required as f64,
        )?;
        gauge(
            &mut encoder,
            "patchkeeper_open_advisories",
            "Open advisories over all hosts, exceptions aside (last reports)",
            c.open_advisories as f64,
        )?;
        labelled_gauge(
            &mut encoder,
            "patchkeeper_hosts_with_open_advisories",
            "Hosts with at least one open advisory of the severity (last reports)",
            "severity",
            &[
                (
                    "critical".to_owned(),
                    c.hosts_with_critical_advisories as i64,
                ),
                ("high".to_owned(), c.hosts_with_high_advisories as i64),
            ],
        )?;
        if let Some(plan) = &c.plan {
            gauge(
                &mut encoder,
                "patchkeeper_plan_hosts_to_update",
                "Hosts the current plan changes",
                plan.hosts_to_update as f64,
            )?;
        }
        let reconcile = self.status.reconcile_brief();
        if let Some(at) = reconcile.last_success {
            gauge(
                &mut encoder,
                "patchkeeper_last_successful_reconcile_timestamp_seconds",
                "When a reconcile last succeeded (Unix time)",
                at.as_millisecond() as f64 / 1000.0,
            )?;
        }
        gauge(
            &mut encoder,
            "patchkeeper_ready",
            "1 when a desired commit validated and is in force",
            if self.status.ready() { 1.0 } else { 0.0 },
        )?;
        let totals = self.status.counters();
        let reconciles: Vec<(String, u64)> = [("success", true), ("failure", false)]
            .iter()
            .map(|(name, ok)| {
                (
                    (*name).to_owned(),
                    totals.reconciles.get(ok).copied().unwrap_or(0),
                )
            })
            .collect();
        labelled_counter(
            &mut encoder,
            "patchkeeper_reconciles",
            "Reconciles finished, by result",
            "result",
            &reconciles,
        )?;
        let applied: Vec<(String, u64)> = totals
            .applied
            .iter()
            .map(|(o, n)| (o.as_str().to_owned(), *n))
            .collect();
        labelled_counter(
            &mut encoder,
            "patchkeeper_apply_hosts",
            "Hosts an apply ended, by outcome",
            "outcome",
            &applied,
        )?;
        let failures: Vec<(String, u64)> = totals
            .observe_failures
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        labelled_counter(
            &mut encoder,
            "patchkeeper_observe_failures",
            "Hosts that could not be observed (SSH and command failures), by reason",
            "reason",
            &failures,
        )?;
        // One series per configured advisory source (a handful: bounded).
        let sources = self.status.advisory_sources();
        if !sources.is_empty() {
            let label =
                |c: &crate::advisory::SourceCheck| crate::redact::text(&c.source).into_owned();
            let success: Vec<(String, i64)> = sources
                .iter()
                .filter_map(|c| {
                    let t: jiff::Timestamp = c.succeeded_at.as_deref()?.parse().ok()?;
                    Some((label(c), t.as_second()))
                })
                .collect();
            labelled_gauge(
                &mut encoder,
                "patchkeeper_advisory_source_last_success_timestamp_seconds",
                "When each advisory source was last checked successfully (Unix time; alert on its age)",
                "source",
                &success,
            )?;
            let failures: Vec<(String, i64)> = sources
                .iter()
                .map(|c| (label(c), i64::try_from(c.failures).unwrap_or(i64::MAX)))
                .collect();
            labelled_gauge(
                &mut encoder,
                "patchkeeper_advisory_source_failures",
                "Checks of each advisory source failed in a row (0: the last one succeeded; the last good data stays in use)",
                "source",
                &failures,
            )?;
            let records: Vec<(String, i64)> = sources
                .iter()
                .map(|c| (label(c), i64::try_from(c.records).unwrap_or(i64::MAX)))
                .collect();
            labelled_gauge(
                &mut encoder,
                "patchkeeper_advisory_source_records",
                "Advisory records in use from each source",
                "source",
                &records,
            )?;
        }
        // A cluster replica's own part (each replica serves its own /metrics; the replica
        // label names it, one series per process).
        if let Some(r) = self.status.replica() {
            labelled_gauge(
                &mut encoder,
                "patchkeeper_cluster_leader",
                "1 while this replica holds the leader lease (serve --cluster)",
                "replica",
                &[(r.replica.clone(), i64::from(r.leading))],
            )?;
            if let Some(term) = r.term {
                labelled_gauge(
                    &mut encoder,
                    "patchkeeper_cluster_leader_term",
                    "The lease revision of this replica's last leader term (the fencing token of its report commits, with the cluster's epoch)",
                    "replica",
                    &[(
                        r.replica.clone(),
                        i64::try_from(term.revision).unwrap_or(i64::MAX),
                    )],
                )?;
            }
            labelled_counter(
                &mut encoder,
                "patchkeeper_cluster_leadership_changes",
                "Times this replica took or lost the leader lease",
                "replica",
                &[(r.replica.clone(), r.changes)],
            )?;
            labelled_counter(
                &mut encoder,
                "patchkeeper_cluster_lease_renewal_failures",
                "Renewals of the leader lease that failed (the server was slow or unreachable)",
                "replica",
                &[(r.replica.clone(), r.renewal_failures)],
            )?;
        }
        labelled_gauge(
            &mut encoder,
            "patchkeeper_build_info",
            "Always 1; the version label says which patchkeeper serves",
            "version",
            &[(env!("CARGO_PKG_VERSION").to_owned(), 1)],
        )?;
        Ok(())
    }
}

/// Middleware (as a `route_layer`, so only matched routes): counts requests by route
/// template and times them.
pub async fn track(State(app): State<App>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let began = Instant::now();
    let response = next.run(req).await;
    let metrics = app.metrics();
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route: route.clone(),
            method,
            status: response.status().as_u16().to_string(),
        })
        .inc();
    metrics
        .http_duration
        .get_or_create(&RouteLabels { route })
        .observe(began.elapsed().as_secs_f64());
    response
}

/// The Prometheus text format (0.0.4) of an OpenMetrics exposition: counter families are
/// named with their `_total` suffix, `# UNIT` and `# EOF` lines are dropped. Scrapers that
/// ask for OpenMetrics get it as the library writes it.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("# TYPE ")?.split(' ');
            let name = parts.next()?;
            (parts.next()? == "counter").then_some(name)
        })
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# EOF") || line.starts_with("# UNIT ") {
            continue;
        }
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find(|p| line.starts_with(p));
        match header {
            Some(prefix) => {
                let rest = &line[prefix.len()..];
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `GET /metrics`: OpenMetrics when the scraper asks for it (`Accept`), else the
/// Prometheus text format.
pub async fn handler(State(app): State<App>, headers: axum::http::HeaderMap) -> Response {
    let text = match app.metrics().encode() {
        Ok(text) => text,
        Err(e) => {
            return super::error::ApiError::internal(format!("encoding metrics: {e}"))
                .into_response()
        }
    };
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            )],
            text,
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            to_prometheus_text(&text),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica whose lease is fixed: what the collector reads at a scrape.
    struct Replica(crate::reconcile::ReplicaBrief);

    impl crate::reconcile::Leadership for Replica {
        fn is_leader(&self) -> bool {
            self.0.leading
        }

        fn brief(&self) -> Option<crate::reconcile::ReplicaBrief> {
            Some(self.0.clone())
        }
    }

    #[test]
    fn a_cluster_replica_shows_its_part_and_a_single_process_shows_none() {
        let status = Arc::new(Status::default());
        let single = Metrics::new(status.clone()).encode().expect("encodes");
        assert!(!single.contains("patchkeeper_cluster_"), "{single}");
        status.set_leadership(Arc::new(Replica(crate::reconcile::ReplicaBrief {
            replica: "r1-42-abc".into(),
            leading: true,
            term: Some(crate::report::LeaderTerm {
                epoch: 1_764_000_000,
                revision: 17,
            }),
            changes: 1,
            renewal_failures: 2,
        })));
        let text = to_prometheus_text(&Metrics::new(status).encode().expect("encodes"));
        for line in [
            "patchkeeper_cluster_leader{replica=\"r1-42-abc\"} 1\n",
            "patchkeeper_cluster_leader_term{replica=\"r1-42-abc\"} 17\n",
            "patchkeeper_cluster_leadership_changes_total{replica=\"r1-42-abc\"} 1\n",
            "patchkeeper_cluster_lease_renewal_failures_total{replica=\"r1-42-abc\"} 2\n",
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
    }

    #[test]
    fn counters_carry_their_total_suffix_in_the_text_format() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 2\n# HELP b Things.\n# TYPE b gauge\n# UNIT b seconds\nb 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 2\n# HELP b Things.\n# TYPE b gauge\nb 1\n"
        );
    }
}
