//! The metrics endpoint (`duplex run --metrics-listen ADDR`): Prometheus text
//! at `/metrics`, read from the directions' counters at each scrape, named
//! and labelled as DBAs know them from postgres_exporter and mysqld_exporter
//! (`duplex_` prefix, `_total` counters, `_seconds` and `_bytes` units,
//! labels `link`, `source`, `target`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use tokio::sync::watch;

use super::registry::{DirectionHandle, Registry};
use crate::stats::DirectionStats;

type Labels = Vec<(&'static str, String)>;

/// Reads every direction's counters at each scrape.
#[derive(Debug)]
struct Directions(Arc<Registry>);

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// One metric family: its descriptor and one value per label set.
fn family<V: FamilyValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: Vec<(Labels, V)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, V::TYPE)?;
    for (labels, value) in rows {
        value.encode(&mut metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A gauge or a counter value.
trait FamilyValue {
    const TYPE: MetricType;
    fn encode(
        &self,
        m: &mut prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error>;
}

/// A gauge.
struct G(f64);

impl FamilyValue for G {
    const TYPE: MetricType = MetricType::Gauge;
    fn encode(
        &self,
        m: &mut prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        m.encode_gauge(&self.0)
    }
}

/// A counter (rendered `<name>_total`).
struct C(u64);

impl FamilyValue for C {
    const TYPE: MetricType = MetricType::Counter;
    fn encode(
        &self,
        m: &mut prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        m.encode_counter::<NoLabelSet, _, u64>(&self.0, None)
    }
}

/// A label value as the text format needs it: prometheus-client writes
/// values as they are, and a table named `a"b` or `a\b` would make the
/// whole scrape unreadable.
fn escaped(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn direction_labels(d: &DirectionHandle) -> Labels {
    vec![
        ("link", escaped(&d.link_name)),
        ("source", escaped(&d.source_name)),
        ("target", escaped(&d.target_name)),
    ]
}

fn with(mut labels: Labels, key: &'static str, value: impl AsRef<str>) -> Labels {
    labels.push((key, escaped(value.as_ref())));
    labels
}

impl Collector for Directions {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = crate::marker::now_micros();
        let dirs = self.0.list();
        let per =
            |f: &dyn Fn(&DirectionHandle, &DirectionStats) -> Option<f64>| -> Vec<(Labels, G)> {
                dirs.iter()
                    .filter_map(|d| f(d, &d.stats).map(|v| (direction_labels(d), G(v))))
                    .collect()
            };
        let count = |f: &dyn Fn(&DirectionStats) -> u64| -> Vec<(Labels, C)> {
            dirs.iter()
                .map(|d| (direction_labels(d), C(f(&d.stats))))
                .collect()
        };
        let get = DirectionStats::get;
        family(
            &mut e,
            "duplex_direction_state",
            "1 for the direction's current state (streaming, initial sync, retrying, needs_operator, ...)",
            dirs.iter()
                .map(|d| (with(direction_labels(d), "state", d.stats.state()), G(1.0)))
                .collect(),
        )?;
        family(
            &mut e,
            "duplex_direction_up",
            "1 while the direction works (not retrying after an error, not waiting for an operator)",
            per(&|_, s| {
                Some(match s.state().as_str() {
                    "retrying" | "error" | "needs_operator" => 0.0,
                    _ => 1.0,
                })
            }),
        )?;
        family(
            &mut e,
            "duplex_direction_lag_seconds",
            "age of the oldest source transaction read and not yet applied (0 when caught up)",
            per(&|_, s| s.lag(now).0),
        )?;
        family(
            &mut e,
            "duplex_direction_lag_bytes",
            "source log between the read and the applied position",
            per(&|_, s| s.lag(now).1.map(|b| b as f64)),
        )?;
        family(
            &mut e,
            "duplex_direction_queued_events",
            "events read from the source and waiting to be applied",
            per(&|_, s| Some(get(&s.queued_events) as f64)),
        )?;
        family(
            &mut e,
            "duplex_direction_last_applied_commit_timestamp_seconds",
            "source commit time of the newest transaction applied",
            per(&|_, s| {
                let us = s.applied_commit_us.load(Ordering::Relaxed);
                (us > 0).then(|| us as f64 / 1e6)
            }),
        )?;
        family(
            &mut e,
            "duplex_direction_applied_transactions",
            "source transactions applied and committed on the target",
            count(&|s| get(&s.applied_txns)),
        )?;
        family(
            &mut e,
            "duplex_direction_conflicts",
            "conflicts detected and settled (recorded in duplex.conflicts)",
            count(&|s| get(&s.conflicts)),
        )?;
        family(
            &mut e,
            "duplex_direction_quarantined",
            "changes the target refused, kept in duplex.quarantine",
            count(&|s| get(&s.quarantined)),
        )?;
        family(
            &mut e,
            "duplex_direction_echo_transactions_skipped",
            "source transactions dropped as duplex's own writes",
            count(&|s| get(&s.echo_txns_skipped)),
        )?;
        let mut errors = Vec::new();
        let mut rows = Vec::new();
        let mut tables = Vec::new();
        for d in &dirs {
            let s = &d.stats;
            for (class, n) in [
                ("transient", get(&s.errors_transient)),
                ("operator", get(&s.errors_operator)),
            ] {
                errors.push((with(direction_labels(d), "class", class), C(n)));
            }
            for (op, n) in [
                ("insert", get(&s.inserted)),
                ("update", get(&s.updated)),
                ("delete", get(&s.deleted)),
            ] {
                rows.push((with(direction_labels(d), "op", op), C(n)));
            }
            for (table, counts) in s.table_counts() {
                for (op, n) in ["insert", "update", "delete"].into_iter().zip(counts) {
                    let labels = with(with(direction_labels(d), "table", table.clone()), "op", op);
                    tables.push((labels, C(n)));
                }
            }
        }
        family(
            &mut e,
            "duplex_direction_errors",
            "errors that stopped the direction, by class: transient (retried with a backoff) or operator (waits for a person)",
            errors,
        )?;
        family(
            &mut e,
            "duplex_direction_applied_rows",
            "row changes applied and committed on the target, by operation",
            rows,
        )?;
        family(
            &mut e,
            "duplex_table_applied_rows",
            "row changes applied and committed on the target, by source table and operation",
            tables,
        )?;
        let mut conflicts = Vec::new();
        let mut copied = Vec::new();
        let mut estimated = Vec::new();
        let mut copy_done = Vec::new();
        let mut held_for_shape = Vec::new();
        for d in &dirs {
            let held = d.stats.schema_held();
            let mut tables: std::collections::BTreeSet<String> =
                d.stats.table_counts().into_iter().map(|(t, _)| t).collect();
            tables.extend(held.iter().cloned());
            for table in tables {
                let on = held.contains(&table);
                held_for_shape.push((
                    with(direction_labels(d), "table", table),
                    G(f64::from(u8::from(on))),
                ));
            }
            for ((table, kind, outcome), n) in d.stats.conflict_counts() {
                let labels = with(
                    with(with(direction_labels(d), "table", table), "kind", kind),
                    "outcome",
                    outcome,
                );
                conflicts.push((labels, C(n)));
            }
            for (table, p) in d.stats.copy_progress() {
                let labels = with(direction_labels(d), "table", table);
                copied.push((labels.clone(), G(p.rows_done as f64)));
                estimated.push((labels.clone(), G(p.rows_estimated as f64)));
                copy_done.push((labels, G(f64::from(u8::from(p.done)))));
            }
        }
        family(
            &mut e,
            "duplex_table_conflicts",
            "conflicts this process recorded, by table, kind (update_update, update_delete, ...) and outcome (applied, kept, parked, ...)",
            conflicts,
        )?;
        family(
            &mut e,
            "duplex_table_held_for_shape",
            "1 while the table's changes are held because its shape differs on the target (see duplex.table_overview.shape_difference for what differs and the fix)",
            held_for_shape,
        )?;
        family(
            &mut e,
            "duplex_initial_sync_rows_copied",
            "rows the table's initial sync (or resync) has copied so far",
            copied,
        )?;
        family(
            &mut e,
            "duplex_initial_sync_rows_estimated",
            "the source's estimate of the table's rows when its copy started",
            estimated,
        )?;
        family(
            &mut e,
            "duplex_initial_sync_done",
            "1 once the table's copy is done, 0 while it runs",
            copy_done,
        )?;
        let parity = self.0.parity.lock().map(|p| p.clone()).unwrap_or_default();
        let parity_labels = |p: &super::registry::ParityResult| -> Labels {
            vec![("link", escaped(&p.link)), ("table", escaped(&p.table))]
        };
        family(
            &mut e,
            "duplex_parity_differences",
            "rows missing, extra or differing at the table's latest parity check (duplex check, or a scheduled one)",
            parity
                .iter()
                .map(|p| (parity_labels(p), G(p.differences as f64)))
                .collect(),
        )?;
        family(
            &mut e,
            "duplex_parity_last_check_timestamp_seconds",
            "when the table's latest parity check finished",
            parity
                .iter()
                .map(|p| (parity_labels(p), G(p.finished_s)))
                .collect(),
        )?;
        // What each source keeps that its direction has not applied (see
        // `retention_watch`).
        let kept: Vec<(&DirectionHandle, crate::stats::SourceRetention)> = dirs
            .iter()
            .filter_map(|d| d.stats.retention().map(|h| (d, h)))
            .collect();
        let each = |f: &dyn Fn(&crate::stats::SourceRetention) -> Option<f64>| -> Vec<(Labels, G)> {
            kept.iter()
                .filter_map(|(d, h)| f(h).map(|v| (direction_labels(d), G(v))))
                .collect()
        };
        family(
            &mut e,
            "duplex_source_retained_bytes",
            "what the source keeps that the direction has not applied: a PostgreSQL slot's WAL, or the binlog from the applied position on",
            each(&|h| h.retained_bytes.map(|b| b as f64)),
        )?;
        family(
            &mut e,
            "duplex_slot_safe_wal_bytes",
            "WAL a PostgreSQL source may still write before it invalidates the slot (absent where nothing bounds it)",
            each(&|h| h.safe_bytes.map(|b| b as f64)),
        )?;
        family(
            &mut e,
            "duplex_slot_wal_status",
            "1 for the slot's wal_status (reserved, extended, unreserved, lost)",
            kept.iter()
                .filter_map(|(d, h)| {
                    h.wal_status
                        .clone()
                        .map(|st| (with(direction_labels(d), "wal_status", st), G(1.0)))
                })
                .collect(),
        )?;
        family(
            &mut e,
            "duplex_binlog_headroom_files",
            "binlog files a MySQL/MariaDB source keeps older than the one the direction applies from (0: the next purge removes what it still needs)",
            each(&|h| h.headroom_files.map(|n| n as f64)),
        )?;
        family(
            &mut e,
            "duplex_retention_at_risk",
            "1 while what the direction has not applied is at risk on its source (link_overview.retention_warning says what to do)",
            each(&|h| Some(f64::from(u8::from(h.warning.is_some())))),
        )?;
        Ok(())
    }
}

/// The metrics of `registry`'s directions, in Prometheus text.
pub(super) fn render(registry: &Arc<Registry>) -> String {
    let mut metrics = prometheus_client::registry::Registry::default();
    metrics.register_collector(Box::new(Directions(registry.clone())));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &metrics) {
        tracing::warn!(error = %e, "cannot render the metrics");
    }
    out
}

/// Serve `/metrics` on `listener` until `shutdown` turns true.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: cannot accept a connection");
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(respond(&req, &registry)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(error = %e, "metrics endpoint: connection ended with an error");
            }
        });
    }
}

fn respond<B>(req: &Request<B>, registry: &Arc<Registry>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(registry),
        ),
        (&hyper::Method::GET, "/") => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "duplex: metrics at /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: metrics are at /metrics\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

/// Bind `addr` for the metrics endpoint; the bound address (a port 0 asks
/// for a free one).
pub(super) async fn bind(
    addr: SocketAddr,
) -> Result<(tokio::net::TcpListener, SocketAddr), std::io::Error> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use super::escaped;

    #[test]
    fn label_values_are_escaped_for_the_text_format() {
        assert_eq!(escaped("public.item"), "public.item");
        assert_eq!(escaped(r#"public.we"ird ü\x"#), r#"public.we\"ird ü\\x"#);
        assert_eq!(escaped("a\nb"), "a\\nb");
    }
}
