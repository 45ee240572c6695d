//! Live configuration: starts the links of the configuration, then watches
//! the control tables and applies each change to the running links,
//! recording what is in force and what was refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;

use std::collections::BTreeMap;

use super::lease::Leases;
use super::link_run::{start_link, LinkRun};
use super::plan::{expand_patterns, resolve_tables, tables_held_for_shape, Resolved, TableVerdict};
use super::registry::Registry;
use crate::control::{self, ControlConfig, ControlDb, ControlEndpoint, LinkConfig, Sql, P};
use crate::error_chain::error_chain;
use crate::error_class;
use crate::pipeline::PipelineTuning;

/// A link's configuration in force: as configured, and as it runs.
#[derive(Debug, Clone)]
struct InForce {
    /// The configuration read from the control tables (patterns expanded).
    wanted: LinkConfig,
    /// What runs of it, table by table.
    resolved: Resolved,
}

/// The links of the process and the configuration each runs on.
pub(super) struct LinkSet {
    tuning: PipelineTuning,
    control: ControlEndpoint,
    registry: Arc<Registry>,
    running: BTreeMap<u32, LinkRun>,
    /// The configuration in force per link (enabled or paused).
    in_force: BTreeMap<u32, InForce>,
    /// The last configuration refused per link, so that it is reported once,
    /// not at every re-read.
    rejected: BTreeMap<u32, Result<LinkConfig, String>>,
    /// Enabled links with nothing running because their sites refused to
    /// start them: the configuration to retry, when, and the current backoff.
    failed: BTreeMap<u32, (LinkConfig, Instant, Duration)>,
    /// For a configuration refused for the sites' state, or a link running
    /// with tables refused: when to check it against the sites again, and
    /// the current backoff.
    recheck: BTreeMap<u32, (Instant, Duration)>,
    /// The last re-read failed: rewrite every link's status on the next one.
    read_failed: bool,
    /// `duplex run --ha`: only links whose lease this process holds run.
    leases: Option<Arc<Leases>>,
}

impl LinkSet {
    /// The links of `config`, each started, or recorded to be retried
    /// (sites refused) or to wait for a change (configuration invalid).
    pub(super) async fn start(
        tuning: PipelineTuning,
        control_ep: ControlEndpoint,
        registry: Arc<Registry>,
        config: &ControlConfig,
        control_client: &mut ControlDb,
        leases: Option<Arc<Leases>>,
    ) -> Result<LinkSet, crate::Error> {
        let mut links = LinkSet {
            tuning,
            control: control_ep.clone(),
            registry: registry.clone(),
            running: BTreeMap::new(),
            in_force: BTreeMap::new(),
            rejected: BTreeMap::new(),
            failed: BTreeMap::new(),
            recheck: BTreeMap::new(),
            read_failed: false,
            leases,
        };
        links.lease_round(control_client, config).await;
        // A link that cannot start does not keep the others from running: it is
        // retried in the background. Only when no link can start at all does
        // `start` fail, with the first reason (nothing would run). A table that
        // cannot be synced never keeps its link from starting: it is refused
        // alone (see `resolve_tables`).
        let mut first_error = None;
        for link in &config.links {
            let id = link.link_id;
            if link.enabled && !links.may_run(id) {
                // Another process's (`duplex run --ha`).
                continue;
            }
            let held = tables_held_for_shape(control_client, id).await;
            let started = async {
                let held = held.map_err(|e| (None, crate::Error::from(e)))?;
                let mut lc = match config.link_config(id) {
                    Some(Ok(lc)) => lc,
                    Some(Err(e)) => return Err((None, crate::Error::from(e))),
                    None => return Ok(None),
                };
                if !lc.link.enabled {
                    return Ok(Some((lc.clone(), Resolved::unchecked(&lc), None)));
                }
                if let Err(e) = expand_patterns(&mut lc).await {
                    return Err((Some(lc), e));
                }
                let resolved = match resolve_tables(&lc, None, &held).await {
                    Ok(r) => r,
                    Err(e) => return Err((Some(lc), e)),
                };
                match start_link(
                    &resolved,
                    &links.tuning,
                    &control_ep,
                    &registry,
                    links.lease_term(id),
                )
                .await
                {
                    Ok(run) => Ok(Some((lc, resolved, Some(run)))),
                    Err(e) => Err((Some(lc), e)),
                }
            }
            .await;
            match started {
                Ok(None) => {}
                Ok(Some((lc, resolved, run))) => {
                    if let Some(run) = run {
                        links.keep_running(id, run).await;
                        warn_key_collisions(&resolved);
                    }
                    write_config_status(control_client, &resolved).await;
                    if !resolved.refusals().is_empty() {
                        links.schedule_recheck(id);
                    }
                    links.in_force.insert(
                        id,
                        InForce {
                            wanted: lc,
                            resolved,
                        },
                    );
                }
                Err((lc, e)) => {
                    let why = error_class::explained(
                        &e,
                        &lc.as_ref().map(|l| l.link.name.clone()).unwrap_or_default(),
                    );
                    tracing::error!(link = id, error = %why, "the link cannot start; retrying in the background");
                    match lc {
                        // Valid, but its sites refused: retried with backoff.
                        Some(lc) => {
                            write_config_rejection(control_client, id, "error", &why).await;
                            links
                                .failed
                                .insert(id, (lc, Instant::now() + CONFIG_POLL, CONFIG_POLL));
                        }
                        // Invalid: waits for a change of its configuration.
                        None => {
                            write_config_rejection(control_client, id, "rejected", &why).await;
                            links.rejected.insert(id, Err(why));
                        }
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        if links.running.is_empty() {
            // Without --ha, a process none of whose links can start says
            // so and exits; with it, the process stands by (another may
            // hold the links, and this one retries them in the background).
            if let Some(e) = first_error.filter(|_| links.leases.is_none()) {
                links.stop_all().await;
                return Err(e);
            }
            if links.leases.is_some() && config.links.iter().any(|l| l.enabled) {
                tracing::info!("standing by: every enabled link is applied by another process (duplex.lease_overview); this one takes links over when their holder stops or dies");
            } else {
                tracing::warn!("no enabled link in the control schema: waiting for one (add rows to duplex.links and duplex.link_tables)");
            }
        }
        Ok(links)
    }

    async fn stop_all(&mut self) {
        for (_, run) in std::mem::take(&mut self.running) {
            run.stop().await;
        }
    }

    /// With `--ha`, the term of this process's lease of link `id`.
    fn lease_term(&self, id: u32) -> Option<i64> {
        self.leases.as_ref().and_then(|l| l.term(id))
    }

    /// Whether this process may run link `id`: always, or with `--ha`
    /// while it holds the link's lease.
    fn may_run(&self, id: u32) -> bool {
        self.leases.as_ref().is_none_or(|l| l.holds(id))
    }

    /// Link `id` started: it runs here, its stop known to the leases; unless
    /// its lease was lost while it started (`--ha`): then it stops again.
    async fn keep_running(&mut self, id: u32, run: LinkRun) {
        if let Some(leases) = &self.leases {
            leases.watch_link(id, run.stopper());
            if !leases.holds(id) {
                leases.unwatch_link(id);
                run.stop().await;
                self.registry.remove_link(id);
                return;
            }
        }
        self.running.insert(id, run);
    }

    /// Stop link `id` here and forget it: another process applies it now,
    /// or it was deleted.
    async fn forget_link(&mut self, id: u32) {
        if let Some(leases) = &self.leases {
            leases.unwatch_link(id);
        }
        if let Some(run) = self.running.remove(&id) {
            run.stop().await;
        }
        self.registry.remove_link(id);
        self.in_force.remove(&id);
        self.failed.remove(&id);
        self.recheck.remove(&id);
        self.rejected.remove(&id);
    }

    /// `--ha`: stop the links whose lease was lost (no database needed).
    async fn stop_lost(&mut self) {
        let Some(leases) = self.leases.clone() else {
            return;
        };
        for id in leases.take_lost() {
            self.forget_link(id).await;
        }
    }

    /// `--ha`, each round: stop lost links; give back links no longer
    /// enabled, or one link while this process holds more than its share;
    /// take free leases up to its share (the links start in `reload`).
    async fn lease_round(&mut self, client: &mut ControlDb, config: &ControlConfig) {
        let Some(leases) = self.leases.clone() else {
            return;
        };
        self.stop_lost().await;
        let enabled: Vec<u32> = config
            .links
            .iter()
            .filter(|l| l.enabled)
            .map(|l| l.link_id)
            .collect();
        let not_enabled: Vec<u32> = self
            .in_force
            .keys()
            .chain(self.running.keys())
            .copied()
            .filter(|id| leases.holds(*id) && !enabled.contains(id))
            .collect();
        for id in not_enabled {
            // Stopped before it is given back.
            self.forget_link(id).await;
            leases.release(client, id).await;
        }
        let live = match leases.live_processes(client).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %error_chain(&e), "cannot count the live processes");
                return;
            }
        };
        let share = enabled.len().div_ceil(live);
        if leases.held_count() > share && live > 1 {
            if let Some(id) = leases.last_held() {
                tracing::info!(
                    link = id,
                    live_processes = live,
                    "giving a link back so that links spread across the processes"
                );
                self.forget_link(id).await;
                leases.release(client, id).await;
            }
            return;
        }
        for id in enabled {
            if leases.held_count() >= share {
                break;
            }
            if leases.holds(id) {
                continue;
            }
            match leases.try_acquire(client, id).await {
                Ok(true) => self.carry_on_counters(client, id).await,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(link = id, error = %error_chain(&e), "cannot take the link's lease")
                }
            }
        }
    }

    /// A link taken over from another process: its counters carry on from
    /// what that process last wrote (the ones read at this process's start
    /// are older, and the status would go backwards).
    async fn carry_on_counters(&self, client: &mut ControlDb, id: u32) {
        match crate::control::load_status_totals(client).await {
            Ok(totals) => {
                let mut earlier = self
                    .registry
                    .totals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                earlier.retain(|(link, _), _| *link != id);
                earlier.extend(totals.into_iter().filter(|((link, _), _)| *link == id));
            }
            Err(e) => {
                tracing::warn!(link = id, error = %error_chain(&e), "cannot read the link's counters; they carry on from this process's start")
            }
        }
    }

    /// `--ha`, on shutdown: every lease given back, free for another
    /// process at once (the links are stopped).
    async fn leave(&mut self) {
        let Some(leases) = self.leases.clone() else {
            return;
        };
        // Bounded: a control database that does not answer lets the
        // leases expire by themselves.
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            let mut db = self.control.connect("duplex leases").await.ok()?;
            while let Some(id) = leases.last_held() {
                leases.release(&mut db, id).await;
            }
            leases.leave(&mut db).await;
            Some(())
        })
        .await;
        leases.stop_renewing();
    }

    fn recheck_due(&self, id: u32) -> bool {
        self.recheck
            .get(&id)
            .is_some_and(|(at, _)| Instant::now() >= *at)
    }

    /// Apply what changed in the control tables, link by link. A link whose
    /// new configuration is invalid keeps running on the one in force.
    async fn reload(&mut self, client: &mut ControlDb) {
        let config = match control::load_unchecked(client).await {
            Ok(c) => c,
            Err(e) => {
                let why = format!("the configuration could not be read: {}", error_chain(&e));
                tracing::warn!(error = %why, "configuration change rejected");
                for f in self.in_force.values() {
                    write_config_rejection(client, f.wanted.link.link_id, "rejected", &why).await;
                }
                self.read_failed = true;
                return;
            }
        };
        self.lease_round(client, &config).await;
        // Once readable again, every link's status is written afresh.
        let rewrite_all = std::mem::take(&mut self.read_failed);
        let ids: std::collections::BTreeSet<u32> = self
            .in_force
            .keys()
            .chain(self.failed.keys())
            .chain(self.rejected.keys())
            .copied()
            .chain(config.links.iter().map(|l| l.link_id))
            .collect();
        for id in ids {
            match config.link_config(id) {
                None => {
                    // The link was deleted.
                    self.forget_link(id).await;
                    tracing::info!(link = id, "link removed from the configuration: stopped");
                    if let Err(e) = client
                        .exec(Sql::new(
                            "remove the link's config_status",
                            "DELETE FROM duplex.config_status WHERE link_id = $1",
                            "DELETE FROM duplex.config_status WHERE link_id = ?",
                            &[P::I32(id as i32)],
                        ))
                        .await
                    {
                        tracing::warn!(error = %e, "cannot write duplex.config_status");
                    }
                }
                Some(Err(e)) => {
                    let why = e.to_string();
                    if self.rejected.get(&id) != Some(&Err(why.clone())) {
                        tracing::warn!(link = id, error = %why, "configuration change rejected; the link keeps its configuration in force");
                        write_config_rejection(client, id, "rejected", &why).await;
                        self.rejected.insert(id, Err(why));
                    }
                }
                Some(Ok(mut lc)) => {
                    if lc.link.enabled {
                        // Bounded: an unreachable site must not hold up the
                        // other links' changes.
                        let expanded =
                            tokio::time::timeout(Duration::from_secs(15), expand_patterns(&mut lc))
                                .await;
                        let failure = match expanded {
                            Ok(Ok(())) => None,
                            Ok(Err(e)) => Some(error_chain(&e)),
                            Err(_) => Some("a site did not answer within 15 s".to_string()),
                        };
                        if let Some(e) = failure {
                            if self.failed.contains_key(&id) {
                                // Already reported as not running; the next
                                // re-read tries again.
                                continue;
                            }
                            let why = format!("table patterns: {e}");
                            if self.rejected.get(&id) != Some(&Err(why.clone())) {
                                tracing::warn!(link = id, error = %why, "configuration change rejected; the link keeps its configuration in force");
                                write_config_rejection(client, id, "rejected", &why).await;
                                self.rejected.insert(id, Err(why));
                            }
                            continue;
                        }
                    }
                    if let Some((retry, at, _)) = self.failed.get(&id) {
                        if *retry == lc && Instant::now() < *at {
                            continue;
                        }
                        // Time to retry, or a new configuration to try.
                        self.apply(client, lc).await;
                        continue;
                    }
                    if self.in_force.get(&id).is_some_and(|f| f.wanted == lc) {
                        // The configuration in force: checked against the
                        // sites again now and then while tables are refused
                        // (they may have been fixed there), or while a
                        // direction fails (a table's shape may have changed
                        // on a site: it is then refused alone).
                        let refusals = self
                            .in_force
                            .get(&id)
                            .is_some_and(|f| !f.resolved.refusals().is_empty());
                        let failing =
                            self.running.contains_key(&id) && self.registry.link_failing(id);
                        if (refusals || failing) && lc.link.enabled {
                            if !self.recheck.contains_key(&id) {
                                self.schedule_recheck(id);
                            }
                            if self.recheck_due(id) {
                                self.apply(client, lc).await;
                                continue;
                            }
                        } else if !self.rejected.contains_key(&id) {
                            self.recheck.remove(&id);
                        }
                        if self.rejected.remove(&id).is_some() || rewrite_all {
                            // Back to the configuration in force: nothing to do
                            // but say so.
                            if let Some(f) = self.in_force.get(&id) {
                                write_config_status(client, &f.resolved).await;
                            }
                        }
                        continue;
                    }
                    if self.rejected.get(&id) == Some(&Ok(lc.clone())) && !self.recheck_due(id) {
                        // Refused because of the sites' state (a site down):
                        // checked again later.
                        continue;
                    }
                    self.apply(client, lc).await;
                }
            }
        }
    }

    async fn apply(&mut self, client: &mut ControlDb, lc: LinkConfig) {
        let span = tracing::info_span!("link", name = %lc.link.name);
        self.apply_in_span(client, lc).instrument(span).await
    }

    async fn apply_in_span(&mut self, client: &mut ControlDb, lc: LinkConfig) {
        let id = lc.link.link_id;
        if !lc.link.enabled {
            if let Some(run) = self.running.remove(&id) {
                run.stop().await;
            }
            self.registry.set_link_state(id, "paused");
            tracing::info!("link paused");
            let resolved = Resolved::unchecked(&lc);
            write_config_status(client, &resolved).await;
            self.rejected.remove(&id);
            self.failed.remove(&id);
            self.recheck.remove(&id);
            self.in_force.insert(
                id,
                InForce {
                    wanted: lc,
                    resolved,
                },
            );
            return;
        }
        if !self.may_run(id) {
            // Another process's (`duplex run --ha`).
            self.forget_link(id).await;
            return;
        }
        let known = self.in_force.get(&id).is_some_and(|f| f.wanted == lc)
            || self.rejected.get(&id) == Some(&Ok(lc.clone()));
        if !known {
            // A new configuration: checked again soon if it needs to be.
            self.recheck.remove(&id);
        }
        let previous = self
            .in_force
            .get(&id)
            .filter(|p| p.wanted.link.enabled)
            .map(|p| p.resolved.clone());
        // Without it, a held table could be refused (and leave the link).
        let held = match tables_held_for_shape(client, id).await {
            Ok(held) => held,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the tables held for their shape now");
                self.schedule_recheck(id);
                return;
            }
        };
        let resolved = match resolve_tables(&lc, previous.as_ref().map(|p| &p.effective), &held)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let why = error_class::explained(&e, &lc.link.name);
                if !self.running.contains_key(&id) {
                    // Nothing runs for this link: a site down or not ready yet is
                    // worth retrying, not only a change of the configuration.
                    self.fail(client, id, lc, &why).await;
                    return;
                }
                if self.in_force.get(&id).is_some_and(|f| f.wanted == lc) {
                    // A check of the configuration in force (refused tables,
                    // a failing direction) that could not reach a site: the
                    // directions report that themselves; checked again later.
                    tracing::debug!(error = %why, "cannot check the link's tables now");
                    self.schedule_recheck(id);
                    return;
                }
                tracing::warn!(error = %why, "configuration change rejected; the link keeps its configuration in force");
                write_config_rejection(client, id, "rejected", &why).await;
                self.rejected.insert(id, Ok(lc));
                self.schedule_recheck(id);
                return;
            }
        };
        let refused = !resolved.refusals().is_empty();
        let same_run = previous.as_ref().is_some_and(|p| {
            p.effective == resolved.effective && p.replica_role == resolved.replica_role
        });
        if self.running.contains_key(&id) && same_run {
            // Nothing that runs changes: no restart.
            self.settled(client, id, lc, resolved, refused).await;
            return;
        }
        if let Some(run) = self.running.remove(&id) {
            run.stop().await;
        }
        match start_link(
            &resolved,
            &self.tuning,
            &self.control,
            &self.registry,
            self.lease_term(id),
        )
        .await
        {
            Ok(run) => {
                tracing::info!("configuration applied; the link runs");
                self.keep_running(id, run).await;
                warn_key_collisions(&resolved);
                self.settled(client, id, lc, resolved, refused).await;
            }
            Err(e) => {
                let why = error_class::explained(&e, &lc.link.name);
                // The last good configuration goes back in force, if there is
                // one that is not this one.
                match previous.filter(|p| p.effective != resolved.effective) {
                    Some(prev) => {
                        tracing::warn!(error = %why, "configuration change could not be applied; restoring the configuration in force");
                        match start_link(
                            &prev,
                            &self.tuning,
                            &self.control,
                            &self.registry,
                            self.lease_term(id),
                        )
                        .await
                        {
                            Ok(run) => {
                                self.keep_running(id, run).await;
                                write_config_rejection(client, id, "rejected", &why).await;
                                self.rejected.insert(id, Ok(lc));
                                self.schedule_recheck(id);
                            }
                            Err(e) => {
                                // Neither runs: keep trying the wanted one.
                                let why = error_class::explained(&e, &lc.link.name);
                                self.rejected.remove(&id);
                                self.fail(client, id, lc, &why).await;
                            }
                        }
                    }
                    None => self.fail(client, id, lc, &why).await,
                }
            }
        }
    }

    /// `lc` is in force, running as `resolved`.
    async fn settled(
        &mut self,
        client: &mut ControlDb,
        id: u32,
        lc: LinkConfig,
        resolved: Resolved,
        refused: bool,
    ) {
        let changed = self
            .in_force
            .get(&id)
            .is_none_or(|f| f.resolved != resolved);
        if changed || self.rejected.contains_key(&id) || self.failed.contains_key(&id) {
            write_config_status(client, &resolved).await;
        }
        self.rejected.remove(&id);
        self.failed.remove(&id);
        if refused || self.registry.link_failing(id) {
            // Checked again later, backing off: a refused table may be
            // fixed on the sites meanwhile.
            self.schedule_recheck(id);
        } else {
            self.recheck.remove(&id);
        }
        self.in_force.insert(
            id,
            InForce {
                wanted: lc,
                resolved,
            },
        );
    }

    /// A configuration refused for the sites' state is checked again later,
    /// backing off to a minute.
    fn schedule_recheck(&mut self, id: u32) {
        let backoff = self
            .recheck
            .get(&id)
            .map(|(_, b)| (*b * 2).min(Duration::from_secs(60)))
            .unwrap_or(CONFIG_POLL);
        self.recheck.insert(id, (Instant::now() + backoff, backoff));
    }

    /// Nothing runs for link `id`: retry `lc` later, backing off to a minute.
    async fn fail(&mut self, client: &mut ControlDb, id: u32, lc: LinkConfig, why: &str) {
        let backoff = self
            .failed
            .remove(&id)
            .map(|(_, _, b)| (b * 2).min(Duration::from_secs(60)))
            .unwrap_or(CONFIG_POLL);
        tracing::error!(error = %why, retry_in_s = backoff.as_secs(), "the link cannot start; retrying");
        write_config_rejection(client, id, "error", why).await;
        self.registry.set_link_state(id, "error");
        self.failed
            .insert(id, (lc, Instant::now() + backoff, backoff));
    }
}

/// How often the configuration is re-read when no notification came (a
/// notification can be missed while the control connection is down).
pub(super) const CONFIG_POLL: Duration = Duration::from_secs(5);

/// How often a MySQL/MariaDB control database's `duplex.config_version` is
/// polled (MySQL has no LISTEN/NOTIFY).
const VERSION_POLL: Duration = Duration::from_secs(1);

/// A live connection that tells when the configuration changed.
enum ConfigFeed {
    /// PostgreSQL: the control tables' trigger sends NOTIFY duplex_config.
    Notified(ControlDb, tokio::sync::mpsc::UnboundedReceiver<String>),
    /// MySQL/MariaDB: triggers bump `duplex.config_version`; the last seen value.
    Polled(ControlDb, Option<i64>),
}

impl ConfigFeed {
    async fn open(control: &ControlEndpoint) -> Result<ConfigFeed, crate::Error> {
        match control {
            ControlEndpoint::Pg(ep) => {
                let (client, rx) = ep
                    .connect_listening("duplex config", "duplex_config")
                    .await?;
                Ok(ConfigFeed::Notified(ControlDb::Pg(client), rx))
            }
            ControlEndpoint::Mysql(_) => {
                let mut db = control.connect("duplex config").await?;
                let seen = config_version(&mut db).await?;
                Ok(ConfigFeed::Polled(db, Some(seen)))
            }
        }
    }

    /// Wait until the configuration changed (`Ok(true)`), or fail when the
    /// connection is gone. Never returns `Ok(false)`: the caller's poll
    /// interval bounds the wait.
    async fn changed(&mut self) -> Result<bool, crate::Error> {
        match self {
            ConfigFeed::Notified(_, rx) => match rx.recv().await {
                Some(_) => {
                    // One statement notifies once per table: take the burst as one change.
                    while rx.try_recv().is_ok() {}
                    Ok(true)
                }
                None => Err(crate::Error::Internal(
                    "the control connection listening for changes closed".into(),
                )),
            },
            ConfigFeed::Polled(db, seen) => loop {
                tokio::time::sleep(VERSION_POLL).await;
                let now = config_version(db).await?;
                if *seen != Some(now) {
                    *seen = Some(now);
                    return Ok(true);
                }
            },
        }
    }

    fn db(&mut self) -> &mut ControlDb {
        match self {
            ConfigFeed::Notified(db, _) | ConfigFeed::Polled(db, _) => db,
        }
    }
}

async fn config_version(db: &mut ControlDb) -> Result<i64, crate::Error> {
    Ok(db
        .row(Sql::new(
            "read duplex.config_version",
            "SELECT 0::bigint AS version",
            "SELECT version FROM duplex.config_version WHERE id = 1",
            &[],
        ))
        .await?
        .map(|r| r.parse("version"))
        .transpose()?
        .unwrap_or(0))
}

/// Applies configuration changes: woken by the control database (see
/// [`ConfigFeed`]) or by the poll interval.
pub(super) async fn config_watcher(mut links: LinkSet, mut shutdown: watch::Receiver<bool>) {
    let mut feed: Option<ConfigFeed> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if feed.is_none() {
            match ConfigFeed::open(&links.control).await {
                Ok(f) => feed = Some(f),
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "cannot reach the control database to watch the configuration")
                }
            }
        }
        let changed = async {
            match feed.as_mut() {
                Some(f) => f.changed().await,
                None => std::future::pending().await,
            }
        };
        // With leases, a round each quarter lease: free leases are taken
        // soon after they expire.
        let poll = links.leases.as_ref().map_or(CONFIG_POLL, |l| l.round());
        let lease_lost = async {
            match links.leases.clone() {
                Some(l) => l.lost().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.changed() => continue,
            result = changed => {
                if let Err(e) = result {
                    tracing::warn!(error = %error_chain(&e), "lost the control connection watching the configuration; reconnecting");
                    feed = None;
                    links.stop_lost().await;
                    continue;
                }
            }
            _ = lease_lost => {
                // Stopped at once, control database or not.
                links.stop_lost().await;
            }
            _ = tokio::time::sleep(poll) => {}
        }
        links.stop_lost().await;
        let Some(f) = feed.as_mut() else {
            continue;
        };
        links.reload(f.db()).await;
    }
    links.stop_all().await;
    links.leave().await;
}

/// A link started: say, in the background, which of its synced tables have
/// keys both sites generate from overlapping values (see `key_generators`;
/// `duplex config check` says it too).
fn warn_key_collisions(resolved: &Resolved) {
    let lc = resolved.effective.clone();
    tokio::spawn(async move {
        for (table, why) in super::key_generators::collisions(&lc).await {
            tracing::warn!(link = %lc.link.name, %table, "{why}");
        }
    });
}

/// Record `resolved` as the configuration in force: state running (every
/// table synced as configured), rejected (some table refused, or kept on its
/// configuration in force: the message says which and why) or paused; and
/// each table's state in `duplex.table_config_status`.
async fn write_config_status(client: &mut ControlDb, resolved: &Resolved) {
    let lc = &resolved.effective;
    let refusals = resolved.refusals();
    let state = if !lc.link.enabled {
        "paused"
    } else if refusals.is_empty() {
        "running"
    } else {
        "rejected"
    };
    let message = (!refusals.is_empty()).then(|| {
        format!(
            "{} table(s) not synced as configured, the others run: {}",
            refusals.len(),
            refusals.join("; ")
        )
    });
    // The tables first: whoever sees the link's state finds its tables'.
    if lc.link.enabled {
        if let Err(e) = write_table_states(client, lc.link.link_id, &resolved.tables).await {
            tracing::warn!(error = %e, "cannot write duplex.table_config_status");
        }
    }
    let lines = lc.describe();
    if let Err(e) = client
        .exec(Sql::new(
            "write duplex.config_status",
            "INSERT INTO duplex.config_status (link_id, state, applied_config, applied_at, message, rejected_at, updated_at)
             VALUES ($1, $2, $3, now(), $4::text, CASE WHEN $4::text IS NULL THEN NULL ELSE now() END, now())
             ON CONFLICT (link_id) DO UPDATE SET state = EXCLUDED.state, applied_config = EXCLUDED.applied_config,
                 applied_at = now(), message = EXCLUDED.message, rejected_at = EXCLUDED.rejected_at, updated_at = now()",
            "INSERT INTO duplex.config_status (link_id, state, applied_config, applied_at, message, rejected_at, updated_at)
             VALUES (?, ?, ?, UTC_TIMESTAMP(6), ?, IF(? IS NULL, NULL, UTC_TIMESTAMP(6)), UTC_TIMESTAMP(6))
             ON DUPLICATE KEY UPDATE state = VALUES(state), applied_config = VALUES(applied_config),
                 applied_at = UTC_TIMESTAMP(6), message = VALUES(message), rejected_at = VALUES(rejected_at),
                 updated_at = UTC_TIMESTAMP(6)",
            &[
                P::I32(lc.link.link_id as i32),
                P::Text(Some(state)),
                P::TextList(&lines),
                P::Text(message.as_deref()),
            ],
        )
        .mysql_order(&[0, 1, 2, 3, 3]))
        .await
    {
        tracing::warn!(error = %e, "cannot write duplex.config_status");
    }
}

/// Each table's state (`duplex.table_config_status`): rows of tables the
/// link no longer has are removed; `since` moves only when the state does.
async fn write_table_states(
    client: &mut ControlDb,
    link_id: u32,
    tables: &[TableVerdict],
) -> Result<(), control::ControlError> {
    let link = link_id as i32;
    let present = client
        .rows(Sql::new(
            "read duplex.table_config_status",
            "SELECT schema_name, table_name FROM duplex.table_config_status WHERE link_id = $1",
            "SELECT schema_name, table_name FROM duplex.table_config_status WHERE link_id = ?",
            &[P::I32(link)],
        ))
        .await?;
    for r in present {
        let (schema, name) = (r.text("schema_name")?, r.text("table_name")?);
        if tables
            .iter()
            .any(|t| t.table.schema == schema && t.table.name == name)
        {
            continue;
        }
        client
            .exec(Sql::new(
                "remove a table from duplex.table_config_status",
                "DELETE FROM duplex.table_config_status WHERE link_id = $1 AND schema_name = $2 AND table_name = $3",
                "DELETE FROM duplex.table_config_status WHERE link_id = ? AND schema_name = ? AND table_name = ?",
                &[P::I32(link), P::Text(Some(&schema)), P::Text(Some(&name))],
            ))
            .await?;
    }
    for t in tables {
        client
            .exec(
                Sql::new(
                    "write duplex.table_config_status",
                    "INSERT INTO duplex.table_config_status AS s (link_id, schema_name, table_name, state, reason)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (link_id, schema_name, table_name) DO UPDATE SET
                         since = CASE WHEN s.state = EXCLUDED.state THEN s.since ELSE now() END,
                         state = EXCLUDED.state, reason = EXCLUDED.reason, updated_at = now()",
                    "INSERT INTO duplex.table_config_status (link_id, schema_name, table_name, state, reason)
                     VALUES (?, ?, ?, ?, ?)
                     ON DUPLICATE KEY UPDATE
                         since = IF(state = VALUES(state), since, UTC_TIMESTAMP(6)),
                         state = VALUES(state), reason = VALUES(reason), updated_at = UTC_TIMESTAMP(6)",
                    &[
                        P::I32(link),
                        P::Text(Some(&t.table.schema)),
                        P::Text(Some(&t.table.name)),
                        P::Text(Some(t.state)),
                        P::Text(t.reason.as_deref()),
                    ],
                ),
            )
            .await?;
    }
    Ok(())
}

/// Record why a change of link `link_id` was refused (`state` rejected) or
/// why the link cannot run (`state` error); the configuration in force stays.
async fn write_config_rejection(client: &mut ControlDb, link_id: u32, state: &str, why: &str) {
    if let Err(e) = client
        .exec(Sql::new(
            "write duplex.config_status",
            "INSERT INTO duplex.config_status (link_id, state, message, rejected_at, updated_at)
             VALUES ($1, $2, $3, now(), now())
             ON CONFLICT (link_id) DO UPDATE SET state = EXCLUDED.state, message = EXCLUDED.message,
                 rejected_at = now(), updated_at = now()",
            "INSERT INTO duplex.config_status (link_id, state, message, rejected_at, updated_at)
             VALUES (?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))
             ON DUPLICATE KEY UPDATE state = VALUES(state), message = VALUES(message),
                 rejected_at = UTC_TIMESTAMP(6), updated_at = UTC_TIMESTAMP(6)",
            &[
                P::I32(link_id as i32),
                P::Text(Some(state)),
                P::Text(Some(why)),
            ],
        ))
        .await
    {
        tracing::warn!(error = %e, "cannot write duplex.config_status");
    }
}
