//! The sources' one error type: why reading a site's changes stopped, one variant
//! per cause, carrying the engine's own error where there is one. Both engines'
//! readers return it; the crate-level error adds the site's name.

use crate::canonical::{SourcePosition, TableName};
use crate::source::pg::pgoutput::PgOutputError;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// PostgreSQL's replication connection failed or ended with an error.
    #[error("replication stream: {0}")]
    PgStream(#[from] pgwire_replication::PgWireError),
    /// A pgoutput message did not decode.
    #[error(transparent)]
    Protocol(#[from] PgOutputError),
    /// A PostgreSQL catalog query the reader depends on failed.
    #[error("catalog lookup ({what}): {source}")]
    Catalog {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("change for relation oid {0} arrived before its Relation message")]
    UnknownRelation(u32),
    /// The binlog connection, or a query of the MySQL reader, failed.
    #[error("binlog stream: {0}")]
    Binlog(#[from] mysql_async::Error),
    /// A binlog event could not be read, or came where none can.
    #[error("binlog event at {position}: {source}")]
    Event {
        position: SourcePosition,
        #[source]
        source: std::io::Error,
    },
    #[error("binlog file for position {position} is gone from the server (purged?): run `duplex resync --link` with the link's name")]
    Purged { position: SourcePosition },
    /// An initial sync would copy from a source that cannot stream from the
    /// copy's resume point: rows changed after the copy would be lost.
    #[error("the tables' copies wait: {why}")]
    NotResumable { why: String },
    /// The MySQL server's settings do not give the reader what it needs.
    #[error(
        "the server is not set up for duplex's binlog reader:\n{problems}\nfix these lines in the [mysqld] section of my.cnf and restart the server"
    )]
    Settings { problems: String },
    /// A value of a row change did not decode.
    #[error("table {table} column {column} at {position}: {reason}")]
    BadValue {
        table: TableName,
        column: String,
        position: SourcePosition,
        reason: String,
    },
    /// A table the reader cannot sync as it is.
    #[error("table {table}: {reason}")]
    Table { table: TableName, reason: String },
}
