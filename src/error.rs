//! The crate's top-level error: which stage failed, with the stage's own typed
//! error inside. Binaries add context with `anyhow` at the edge.

use crate::connect::ConnectError;
use crate::control::ControlError;
use crate::setup::SetupError;
use crate::sink::SinkError;
use crate::source::SourceError;

/// Stage errors are boxed: they carry table, key and column names, and a
/// `Result` should stay small on the hot path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
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
    /// Boxed: a setup refusal carries its whole fix, and every `Result` of
    /// the crate would be as large.
    #[error(transparent)]
    Setup(Box<SetupError>),
    #[error(transparent)]
    Parity(#[from] crate::table_reader::ReadError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<SetupError> for Error {
    fn from(e: SetupError) -> Error {
        Error::Setup(Box::new(e))
    }
}

impl Error {
    pub fn source_error(site: &str, e: SourceError) -> Error {
        Error::Source {
            site: site.to_string(),
            source: Box::new(e),
        }
    }

    pub fn sink_error(site: &str, e: SinkError) -> Error {
        // A connection error names its site already.
        if let SinkError::Connect(c) = e {
            return Error::Connect(c);
        }
        Error::Sink {
            site: site.to_string(),
            source: Box::new(e),
        }
    }
}

pub use crate::error_chain::error_chain;
