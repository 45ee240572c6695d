//! The directions the process knows of, with their counters: what
//! `RunHandle::directions` lists and the status writer reports.

use std::sync::Arc;

use std::collections::HashMap;

use crate::control::{self};
use crate::pipeline::DirectionSpec;
use crate::stats::DirectionStats;

/// One running direction of a link.
#[derive(Debug, Clone)]
pub struct DirectionHandle {
    pub link_id: u32,
    pub source_site: u32,
    pub target_site: u32,
    /// `link:source->target`.
    pub name: String,
    /// The link's and the sites' names (the metrics' labels).
    pub link_name: String,
    pub source_name: String,
    pub target_name: String,
    pub stats: Arc<DirectionStats>,
}

/// The directions the process knows of. A direction's stats live as long as
/// its link is configured: a link restarted by a configuration change keeps
/// counting where it was.
#[derive(Default)]
pub(super) struct Registry {
    directions: std::sync::Mutex<Vec<DirectionHandle>>,
    /// The counters earlier runs wrote, by (link, source site): a direction
    /// this process starts carries on from them.
    pub(super) totals: std::sync::Mutex<HashMap<(u32, u32), control::StatusTotals>>,
    /// The latest parity check of each table (`duplex.parity_overview`), as
    /// the parity scheduler last read it.
    pub(super) parity: std::sync::Mutex<Vec<ParityResult>>,
}

/// The latest parity check of one table, for the metrics.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ParityResult {
    pub link: String,
    pub table: String,
    /// Missing, extra and differing rows.
    pub differences: i64,
    /// When it finished, in seconds since the epoch.
    pub finished_s: f64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<DirectionHandle>> {
        // A panic while holding the lock cannot leave the list half-written.
        self.directions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn list(&self) -> Vec<DirectionHandle> {
        self.lock().clone()
    }

    pub(super) fn stats_for(
        &self,
        link_id: u32,
        spec: &DirectionSpec,
        target_site: u32,
    ) -> Arc<DirectionStats> {
        let mut directions = self.lock();
        let source_site = spec.source.site_id();
        if let Some(d) = directions
            .iter_mut()
            .find(|d| d.link_id == link_id && d.source_site == source_site)
        {
            d.name = spec.name.clone();
            d.link_name = spec.link_name.clone();
            d.source_name = spec.source_name.clone();
            d.target_name = spec.target_name.clone();
            d.target_site = target_site;
            return d.stats.clone();
        }
        let stats = Arc::new(DirectionStats::new(spec.source.kind()));
        let earlier = self
            .totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(link_id, source_site));
        if let Some(totals) = earlier {
            stats.seed(&totals);
        }
        directions.push(DirectionHandle {
            link_id,
            source_site,
            target_site,
            name: spec.name.clone(),
            link_name: spec.link_name.clone(),
            source_name: spec.source_name.clone(),
            target_name: spec.target_name.clone(),
            stats: stats.clone(),
        });
        stats
    }

    pub(super) fn set_link_state(&self, link_id: u32, state: &str) {
        for d in self.lock().iter().filter(|d| d.link_id == link_id) {
            d.stats.set_state(state);
        }
    }

    /// A direction of the link is failing (retrying after an error, or
    /// waiting for an operator).
    pub(super) fn link_failing(&self, link_id: u32) -> bool {
        self.lock().iter().any(|d| {
            d.link_id == link_id
                && matches!(
                    d.stats.state().as_str(),
                    "retrying" | "error" | "needs_operator"
                )
        })
    }

    pub(super) fn remove_link(&self, link_id: u32) {
        self.lock().retain(|d| d.link_id != link_id);
    }

    /// Forget directions of `link_id` that no longer exist (its sites changed).
    pub(super) fn keep_only(&self, link_id: u32, sources: &[u32]) {
        self.lock()
            .retain(|d| d.link_id != link_id || sources.contains(&d.source_site));
    }
}
