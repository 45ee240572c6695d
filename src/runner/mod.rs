//! Runs every enabled link of the control schema: prepares the sites, starts
//! both directions of each link, and writes their status back to the control
//! schema every second. This file is the runner's public face ([`start`],
//! [`RunHandle`]); each job lives in its own file:
//!
//! - `registry`: the directions the process knows of, with their counters;
//! - `plan`: which tables of a link run (patterns expanded, each table checked);
//! - `prepare`: site work (slots, publications, binlog positions, capture starts)
//!   and the link's two direction specs;
//! - `link_run`: one link's two directions, started and stopped together;
//! - `live_config`: the links of the process, started from the configuration
//!   and kept to it as it changes;
//! - `lease`: `duplex run --ha` (several processes, one applying each link);
//! - `parity_schedule`: the scheduled parity checks;
//! - `resync`: `duplex resync` (a lost source position reset, tables copied again);
//! - `status`: the status writer (`duplex.link_status`);
//! - `config_check`: `duplex config check`, a read-only dry run.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::control::{self, ControlEndpoint};
use crate::error_chain::error_chain;
use crate::pipeline::PipelineTuning;
use crate::stats::DirectionStats;

mod config_check;
mod ddl;
mod ddl_requests;
mod ddl_statement;
mod key_generators;
mod lease;
mod link_run;
mod live_config;
mod metrics;
mod parity_schedule;
mod plan;
mod prepare;
mod registry;
mod resync;
mod retention_watch;
mod site_conn;
mod status;

pub use config_check::{check_config, LinkCheck};
pub use ddl::{coordinated_ddl, DdlReport, DdlRequest};
pub use key_generators::{interleave as interleave_keys, InterleaveStep};
pub use lease::HaOptions;
use live_config::{config_watcher, LinkSet};
use parity_schedule::parity_scheduler;
pub use plan::expand_patterns;
pub use plan::{resolve_tables, Resolved, TableVerdict};
pub use registry::DirectionHandle;
use registry::Registry;
pub use resync::{resync_link, ResyncReport};
use status::status_writer;

/// The running process: every direction of every enabled link, and the task
/// that applies configuration changes.
pub struct RunHandle {
    registry: Arc<Registry>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunHandle {
    /// Every direction of every configured link (paused ones too).
    pub fn directions(&self) -> Vec<DirectionHandle> {
        self.registry.list()
    }

    /// Stats of the direction reading `source_site` on `link_id`.
    pub fn stats(&self, link_id: u32, source_site: u32) -> Option<Arc<DirectionStats>> {
        self.registry
            .list()
            .into_iter()
            .find(|d| d.link_id == link_id && d.source_site == source_site)
            .map(|d| d.stats)
    }

    /// Stop every direction, committing whole transactions already applied.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Wait until every task ended (they end only on shutdown).
    pub async fn wait(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// A sender that stops everything when `true` is sent.
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// Serve the directions' metrics in Prometheus text at
    /// `http://ADDR/metrics` until shutdown. Returns the address it listens
    /// on (port 0 takes a free port).
    pub async fn serve_metrics(
        &mut self,
        addr: std::net::SocketAddr,
    ) -> Result<std::net::SocketAddr, std::io::Error> {
        let (listener, local) = metrics::bind(addr).await?;
        self.tasks.spawn(metrics::serve(
            listener,
            self.registry.clone(),
            self.shutdown.subscribe(),
        ));
        tracing::info!(address = %local, "serving metrics at /metrics");
        Ok(local)
    }

    /// The metrics as `/metrics` serves them now.
    pub fn metrics_text(&self) -> String {
        metrics::render(&self.registry)
    }
}

/// Read the configuration from the control database and start every enabled
/// link; then apply changes to the configuration as they are made.
pub async fn start(control_url: &str, tuning: PipelineTuning) -> Result<RunHandle, crate::Error> {
    start_with(control_url, tuning, None).await
}

/// [`start`], and with `ha` as one of several processes sharing the
/// control schema: only the links whose lease this process holds run here
/// (see `lease`).
pub async fn start_with(
    control_url: &str,
    tuning: PipelineTuning,
    ha: Option<HaOptions>,
) -> Result<RunHandle, crate::Error> {
    crate::install_crypto_provider();
    let control_ep = ControlEndpoint::from_url(control_url)?;
    let mut control_client = control_ep.connect("duplex control").await?;
    // Not `control::load`: a link whose configuration is invalid is refused
    // alone (below), the others run.
    let config = control::load_unchecked(&mut control_client).await?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let registry = Arc::new(Registry::default());
    match control::load_status_totals(&mut control_client).await {
        Ok(totals) => *registry.totals.lock().unwrap_or_else(|e| e.into_inner()) = totals,
        // Not fatal: the counters then start from zero, as before.
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "cannot read the counters of earlier runs; they start from zero")
        }
    }
    let leases = ha.as_ref().map(lease::Leases::new);
    let mut tasks = JoinSet::new();
    if let Some(leases) = &leases {
        tracing::info!(holder = %leases.holder(), "high availability: links run here while this process holds their lease (duplex.lease_overview)");
        tasks.spawn(lease::renew_leases(leases.clone(), control_ep.clone()));
    }
    // With --ha, a table's scheduled checks and a DBA's requested schema
    // changes (duplex.request_ddl) run in the process applying its link.
    let held_by_others: Arc<dyn Fn(u32) -> bool + Send + Sync> = match leases.clone() {
        Some(l) => Arc::new(move |link_id| !l.holds(link_id)),
        None => Arc::new(|_| false),
    };
    let links = LinkSet::start(
        tuning,
        control_ep.clone(),
        registry.clone(),
        &config,
        &mut control_client,
        leases,
    )
    .await?;
    tasks.spawn(config_watcher(links, shutdown_rx.clone()));
    tasks.spawn(parity_scheduler(
        control_ep.clone(),
        registry.clone(),
        held_by_others.clone(),
        shutdown_rx.clone(),
    ));
    tasks.spawn(ddl_requests::ddl_request_runner(
        control_ep.clone(),
        held_by_others,
        shutdown_rx.clone(),
    ));
    tasks.spawn(status_writer(control_ep, registry.clone(), shutdown_rx));
    Ok(RunHandle {
        registry,
        shutdown,
        tasks,
    })
}
