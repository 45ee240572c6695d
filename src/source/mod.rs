//! Sources: read a database's committed changes into the canonical event stream.
//!
//! [`Source`] is the engine-independent face the pipeline drives; each engine's
//! module does the reading.

mod error;
pub mod mysql;
pub mod pg;
mod ready;
pub(crate) mod stamp;

pub use error::SourceError;
pub use stamp::Stamping;

use std::sync::Arc;

use crate::canonical::{ChangeEvent, SourceKind, SourcePosition};
use crate::stats::DirectionStats;

/// Positions the applier has committed on the peer, handed back to the reader,
/// which confirms them to the source (PostgreSQL: the slot may then release WAL)
/// while it waits for the next message.
#[derive(Debug, Default)]
pub struct ConfirmedPosition {
    counter: std::sync::atomic::AtomicU64,
    pub(crate) changed: tokio::sync::Notify,
}

impl ConfirmedPosition {
    pub fn advance(&self, position: SourcePosition) {
        self.counter
            .fetch_max(position.counter(), std::sync::atomic::Ordering::AcqRel);
        self.changed.notify_one();
    }

    /// The confirmed position's counter; 0 when nothing was confirmed yet.
    pub fn get(&self) -> u64 {
        self.counter.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// How to read one site's changes for one link.
// Built once per direction start; the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SourceSpec {
    Pg(pg::PgSourceSpec),
    Mysql(mysql::MysqlSourceSpec),
}

impl SourceSpec {
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceSpec::Pg(_) => SourceKind::PgWal,
            SourceSpec::Mysql(_) => SourceKind::Binlog,
        }
    }

    pub fn site_id(&self) -> u32 {
        match self {
            SourceSpec::Pg(s) => s.site_id,
            SourceSpec::Mysql(s) => s.site_id,
        }
    }

    pub fn site_name(&self) -> &str {
        match self {
            SourceSpec::Pg(s) => &s.endpoint.site_name,
            SourceSpec::Mysql(s) => &s.endpoint.site_name,
        }
    }

    /// Start from `start` (the position the peer applied) instead of the
    /// source's own idea of where it stopped.
    pub fn set_start(&mut self, start: Option<SourcePosition>) {
        match self {
            SourceSpec::Pg(s) => s.start = start,
            SourceSpec::Mysql(s) => s.start = start,
        }
    }
}

/// A connected source.
pub enum Source {
    Pg(Box<pg::PgSource>),
    Mysql(Box<mysql::MysqlSource>),
}

impl Source {
    pub async fn connect(
        spec: SourceSpec,
        stats: Arc<DirectionStats>,
        confirmed: Arc<ConfirmedPosition>,
    ) -> Result<Source, crate::Error> {
        match spec {
            SourceSpec::Pg(s) => Ok(Source::Pg(Box::new(
                pg::PgSource::connect(s, stats, confirmed).await?,
            ))),
            // A binlog reader confirms nothing to the server: the peer's stored
            // position alone says where to resume.
            SourceSpec::Mysql(s) => Ok(Source::Mysql(Box::new(
                mysql::MysqlSource::connect(s, stats).await?,
            ))),
        }
    }

    /// The next event, or `None` when the stream ended normally. Not
    /// cancel-safe: await it to completion.
    pub async fn next_event(&mut self) -> Result<Option<ChangeEvent>, crate::Error> {
        let next = match self {
            Source::Pg(s) => s.next_event().await,
            Source::Mysql(s) => s.next_event().await,
        };
        next.map_err(|e| crate::Error::source_error(self.site_name(), e))
    }

    fn site_name(&self) -> &str {
        match self {
            Source::Pg(s) => s.site_name(),
            Source::Mysql(s) => s.site_name(),
        }
    }
}
