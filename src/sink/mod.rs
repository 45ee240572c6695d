//! Sinks: apply the canonical event stream to a peer database, in source commit
//! order, recording the applied source position atomically with the data.
//!
//! [`Sink`] is the engine-independent face the pipeline drives.

pub mod mysql;
pub mod pg;

use std::sync::Arc;

use crate::canonical::{ChangeEvent, SourcePosition};
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

    pub fn group_txns(&self) -> u64 {
        match self {
            Sink::Pg(s) => s.group_txns(),
            Sink::Mysql(s) => s.group_txns(),
        }
    }
}
