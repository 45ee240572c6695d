//! The crate's top-level error: which stage failed, with the stage's own typed
//! error inside. Binaries add context with `anyhow` at the edge.

use crate::control::ControlError;
use crate::pg::ConnectError;
use crate::setup::SetupError;
use crate::sink::pg::SinkError;
use crate::source::pg::SourceError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("source {site}: {source}")]
    Source {
        site: String,
        #[source]
        source: SourceError,
    },
    #[error("sink {site}: {source}")]
    Sink {
        site: String,
        #[source]
        source: SinkError,
    },
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Setup(#[from] SetupError),
}
