//! Sinks: apply the canonical event stream to a peer database, in source commit
//! order, recording the applied source position atomically with the data.
//!
//! [`Sink`] is the engine-independent face the pipeline drives.

pub(crate) mod applier;
mod group;
pub mod mysql;
pub(crate) mod own;
pub mod pg;
pub(crate) mod resolve;
mod rows;

pub(crate) use group::TxnGroup;
pub(crate) use rows::{describe_key, encoded_key, seeded, shape_of};

use std::sync::Arc;

use crate::canonical::{ChangeEvent, RowChange, SourcePosition};
use crate::stats::DirectionStats;

/// How to apply one direction of a link to its target site.
// Built once per direction start; the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SinkSpec {
    Pg(pg::PgSinkSpec),
    Mysql(mysql::MysqlSinkSpec),
}

impl SinkSpec {
    pub fn site_name(&self) -> &str {
        match self {
            SinkSpec::Pg(s) => &s.endpoint.site_name,
            SinkSpec::Mysql(s) => &s.endpoint.site_name,
        }
    }
}

/// A connected sink.
pub enum Sink {
    Pg(Box<pg::PgSink>),
    Mysql(Box<mysql::MysqlSink>),
}

impl Sink {
    pub async fn connect(spec: SinkSpec, stats: Arc<DirectionStats>) -> Result<Sink, crate::Error> {
        match spec {
            SinkSpec::Pg(s) => Ok(Sink::Pg(Box::new(pg::PgSink::connect(s, stats).await?))),
            SinkSpec::Mysql(s) => Ok(Sink::Mysql(Box::new(
                mysql::MysqlSink::connect(s, stats).await?,
            ))),
        }
    }

    fn site(&self) -> String {
        match self {
            Sink::Pg(s) => s.site_name().to_string(),
            Sink::Mysql(s) => s.site_name().to_string(),
        }
    }

    /// The applied source position's counter: where the source resumes.
    pub async fn resume_position(&mut self) -> Result<Option<u64>, crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => s
                .resume_position()
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .resume_position()
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Settle quarantine records a previous run left unconfirmed.
    pub async fn reconcile_quarantine(
        &mut self,
        resume_counter: Option<u64>,
    ) -> Result<(), crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => s
                .reconcile_quarantine(resume_counter)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .reconcile_quarantine(resume_counter)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Apply one event; returns a position that may be confirmed now.
    pub async fn apply(
        &mut self,
        event: ChangeEvent,
    ) -> Result<Option<SourcePosition>, crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => s
                .apply(event)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .apply(event)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Apply one mapped row change of the current source transaction;
    /// `source`: the change before the mapping, when it changed it.
    pub async fn apply_change(
        &mut self,
        change: RowChange,
        source: Option<Arc<RowChange>>,
    ) -> Result<(), crate::Error> {
        let site = self.site();
        let source = crate::canonical::SourceForm::from_mapping(source);
        match self {
            Sink::Pg(s) => s
                .apply_change(change, source)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .apply_change(change, source)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Apply conflicts a DBA settled since the last call (between source
    /// transactions only).
    pub async fn apply_resolutions(&mut self) -> Result<(), crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => own::apply_resolutions(&mut **s)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => own::apply_resolutions(&mut **s)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Apply quarantined changes a DBA asked to retry (between source
    /// transactions only).
    pub async fn apply_quarantine_retries(
        &mut self,
        mapping: &mut crate::mapping::DirectionMapping,
    ) -> Result<(), crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => own::apply_quarantine_retries(&mut **s, mapping)
                .await
                .map(drop)
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => own::apply_quarantine_retries(&mut **s, mapping)
                .await
                .map(drop)
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Resume the stopped tables a DBA has resumed since the last call
    /// (between source transactions only).
    pub async fn resume_stopped(
        &mut self,
        mapping: &mut crate::mapping::DirectionMapping,
    ) -> Result<(), crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => own::resume_stopped(&mut **s, mapping)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => own::resume_stopped(&mut **s, mapping)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Apply rows copied by the initial sync (one target transaction).
    pub async fn apply_snapshot_rows(
        &mut self,
        changes: Vec<(RowChange, crate::canonical::ChangeOrigin)>,
        at: Option<crate::canonical::SourcePosition>,
    ) -> Result<(), crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => own::apply_snapshot_rows(&mut **s, changes, at)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => own::apply_snapshot_rows(&mut **s, changes, at)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Apply, in order, the changes held for tables resumed since (before the
    /// stream goes on).
    pub async fn release_held(
        &mut self,
        mapping: &mut crate::mapping::DirectionMapping,
    ) -> Result<(), crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => own::release_held(&mut **s, mapping)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => own::release_held(&mut **s, mapping)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Remove tombstones older than `retention` (between source transactions).
    pub async fn purge_tombstones(
        &mut self,
        retention: std::time::Duration,
    ) -> Result<u64, crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => s
                .purge_tombstones(retention)
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .purge_tombstones(retention)
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Commit the open target transaction; returns the position to confirm.
    pub async fn commit(&mut self) -> Result<Option<SourcePosition>, crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => s
                .commit()
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .commit()
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// A target transaction holding only whole source transactions is open.
    pub fn has_uncommitted(&self) -> bool {
        match self {
            Sink::Pg(s) => s.has_uncommitted(),
            Sink::Mysql(s) => s.has_uncommitted(),
        }
    }

    pub fn group_rows(&self) -> u64 {
        match self {
            Sink::Pg(s) => s.group_rows(),
            Sink::Mysql(s) => s.group_rows(),
        }
    }

    /// How long the open target transaction has been open, if one is.
    pub fn group_age(&self) -> Option<std::time::Duration> {
        let since = match self {
            Sink::Pg(s) => s.opened_at(),
            Sink::Mysql(s) => s.opened_at(),
        };
        since.map(|t| t.elapsed())
    }

    /// Decide and write the changes taken so far (they are otherwise
    /// gathered into larger batches), so the open target transaction holds
    /// the locks of all its rows.
    pub async fn write_pending(&mut self) -> Result<(), crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => s
                .write_pending()
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .write_pending()
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    /// Does a session on the target wait for a lock the applier holds?
    pub async fn sessions_waiting(&mut self) -> Result<bool, crate::Error> {
        let site = self.site();
        match self {
            Sink::Pg(s) => s
                .sessions_waiting()
                .await
                .map_err(|e| crate::Error::sink_error(&site, e)),
            Sink::Mysql(s) => s
                .sessions_waiting()
                .await
                .map_err(|e| crate::Error::mysql_sink_error(&site, e)),
        }
    }

    pub fn group_txns(&self) -> u64 {
        match self {
            Sink::Pg(s) => s.group_txns(),
            Sink::Mysql(s) => s.group_txns(),
        }
    }
}
