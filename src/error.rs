//! The crate's top-level error: which stage failed, with the stage's own typed
//! error inside. Binaries add context with `anyhow` at the edge.

use crate::control::ControlError;
use crate::pg::ConnectError;
use crate::setup::SetupError;
use crate::sink::SinkError;
use crate::source::pg::SourceError;

/// Stage errors are boxed: they carry table, key and column names, and a
/// `Result` should stay small on the hot path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    MysqlConnect(#[from] crate::mysql::MysqlConnectError),
    #[error("source {site}: {source}")]
    Source {
        site: String,
        #[source]
        source: Box<SourceError>,
    },
    #[error("sink {site}: {source}")]
    Sink {
        site: String,
        #[source]
        source: Box<SinkError>,
    },
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("source {site}: {source}")]
    MysqlSource {
        site: String,
        #[source]
        source: Box<crate::source::mysql::MysqlSourceError>,
    },
    #[error(transparent)]
    Parity(#[from] crate::table_reader::ReadError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn source_error(site: &str, e: SourceError) -> Error {
        Error::Source {
            site: site.to_string(),
            source: Box::new(e),
        }
    }

    pub fn mysql_source_error(site: &str, e: crate::source::mysql::MysqlSourceError) -> Error {
        Error::MysqlSource {
            site: site.to_string(),
            source: Box::new(e),
        }
    }

    pub fn sink_error(site: &str, e: SinkError) -> Error {
        Error::Sink {
            site: site.to_string(),
            source: Box::new(e),
        }
    }
}

pub use crate::error_chain::error_chain;
