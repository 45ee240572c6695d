//! Counters of one direction of a link, shared by its source, sink and the
//! status writer. Plain atomics: read often, written on the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::canonical::{SourceKind, SourcePosition};

#[derive(Debug, Default)]
pub struct DirectionStats {
    /// Source transactions applied and committed on the target.
    pub applied_txns: AtomicU64,
    /// Row changes applied and committed on the target.
    pub applied_rows: AtomicU64,
    pub inserted: AtomicU64,
    pub updated: AtomicU64,
    pub deleted: AtomicU64,
    /// Target transactions committed (several source transactions may share one).
    pub target_commits: AtomicU64,
    /// Source transactions dropped because duplex itself wrote them (no echo).
    pub echo_txns_skipped: AtomicU64,
    /// Updates or deletes whose row the target did not have.
    pub missing_rows: AtomicU64,
    /// Changes the target could not take, kept in duplex.quarantine.
    pub quarantined: AtomicU64,
    /// Conflicts detected (recorded in duplex.conflicts).
    pub conflicts: AtomicU64,
    /// Incoming changes older than the target's row (already seen there).
    pub stale: AtomicU64,
    /// The kind of stream the positions below belong to.
    pub kind: SourceKind,
    source_position: AtomicU64,
    applied_position: AtomicU64,
    state: Mutex<String>,
    last_error: Mutex<Option<String>>,
}

impl DirectionStats {
    pub fn new(kind: SourceKind) -> DirectionStats {
        DirectionStats {
            kind,
            ..DirectionStats::default()
        }
    }

    pub fn set_source_position(&self, p: SourcePosition) {
        self.source_position
            .fetch_max(p.counter(), Ordering::Relaxed);
    }

    pub fn set_applied_position(&self, p: SourcePosition) {
        self.applied_position
            .fetch_max(p.counter(), Ordering::Relaxed);
    }

    pub fn source_position(&self) -> Option<SourcePosition> {
        match self.source_position.load(Ordering::Relaxed) {
            0 => None,
            v => Some(SourcePosition::from_counter(self.kind, v)),
        }
    }

    pub fn applied_position(&self) -> Option<SourcePosition> {
        match self.applied_position.load(Ordering::Relaxed) {
            0 => None,
            v => Some(SourcePosition::from_counter(self.kind, v)),
        }
    }

    pub fn set_state(&self, state: &str) {
        if let Ok(mut s) = self.state.lock() {
            state.clone_into(&mut s);
        }
    }

    pub fn state(&self) -> String {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn set_error(&self, error: Option<String>) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = error;
        }
    }

    /// The last error, cleared by reading it (the status table keeps it).
    pub fn take_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|mut e| e.take())
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
