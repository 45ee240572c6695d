//! The applier's one error type, whatever the target's engine: what went
//! wrong, on which table and key, and how to fix it. [`SinkError::is_data_error`]
//! tells a refused row (quarantined, the stream goes on) from everything else
//! (the direction stops and is retried).

use crate::canonical::TableName;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    /// A PostgreSQL target's error, with what duplex was doing.
    #[error("{context}: {source}")]
    Pg {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A MySQL/MariaDB target's error, with what duplex was doing.
    #[error("{context}: {source}")]
    Mysql {
        context: String,
        #[source]
        source: mysql_async::Error,
    },
    #[error("table {table} does not exist on the target; create it there (the same name, and on PostgreSQL the same schema) or remove it from duplex.link_tables")]
    MissingTable { table: TableName },
    #[error(
        "table {table}: column {column} does not exist on the target; add it there or exclude it"
    )]
    MissingColumn { table: TableName, column: String },
    #[error("table {table}: has no primary key on the target")]
    NoPrimaryKey { table: TableName },
    #[error("table {table}: primary key differs between the sites (source: {source_key}; target: {target_key}); both sides need the same key")]
    KeyMismatch {
        table: TableName,
        source_key: String,
        target_key: String,
    },
    #[error("table {table} key {key} column {column}: {reason}")]
    Value {
        table: TableName,
        key: String,
        column: String,
        reason: String,
    },
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error("table {table}: cannot read the target row's column {column}: {reason}")]
    LocalValue {
        table: TableName,
        column: String,
        reason: String,
    },
    /// A `COPY` the target refused before its first row: never a refused
    /// row (see `sink::pg`), the connection is not used again.
    #[error("table {table}: the target refused the COPY of its inserts before their first row: {source}")]
    CopyStart {
        table: TableName,
        #[source]
        source: tokio_postgres::Error,
    },
    /// An apply worker waiting for its turn to commit holds a lock that a
    /// worker before it waits for (a wait no database can see as a
    /// deadlock: the turn is duplex's). Both roll back with the direction.
    #[error("apply workers waited for each other: a later source transaction holds a lock an earlier one needs (rows tied by something beyond their keys). The direction restarts and applies with one worker past this point")]
    WorkersDeadlocked,
    /// An apply worker ended without saying why (it panicked).
    #[error("apply worker {worker} ended unexpectedly")]
    WorkerGone { worker: usize },
    /// `duplex run --ha`: another session keeps a MySQL apply worker's lock.
    #[error("another session holds the apply worker's lock '{lock}' (another duplex process applies this link); retrying")]
    SessionBusy { lock: String },
    /// `duplex run --ha`: another process took the link's lease over, under
    /// a later term, and fenced this one out of the target.
    #[error("the target's marker rows carry a later lease term than this process's ({term}): another duplex process took this link over (see duplex.lease_overview); this one stops applying it")]
    Fenced { term: i64 },
    #[error("replication origin {origin} is in use by another session: another duplex process applies this link, or one that froze or lost its network still has its session open (the server keeps it until TCP gives up); if no other duplex runs this link, end that session (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'duplex applier {origin}'), or run duplex with --ha, which does it for the lease's holder: {source}")]
    OriginBusy {
        origin: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// MySQL/MariaDB server errors that mean "this row's data".
const MYSQL_DATA_ERRORS: &[u16] = &[
    1048, // column cannot be null
    1062, // duplicate entry
    1216, 1217, 1451, 1452, // foreign key
    1264, // out of range
    1265, // data truncated
    1292, // incorrect value
    1366, // incorrect string value
    1406, // data too long
    3819, // check constraint (MySQL)
    4025, // check constraint (MariaDB)
];

impl SinkError {
    /// The target refused this row's data (PostgreSQL: SQLSTATE class 22,
    /// data exception, or 23, integrity constraint violation; MySQL: the
    /// server errors of [`MYSQL_DATA_ERRORS`]), or duplex refused a value it
    /// cannot express for the target: the row is quarantined, the stream
    /// goes on. Anything else (connection, locks, configuration) stops and
    /// retries.
    pub fn is_data_error(&self) -> bool {
        match self {
            SinkError::Value { .. } => true,
            SinkError::Pg { source, .. } => source
                .code()
                .map(|c| c.code().starts_with("22") || c.code().starts_with("23"))
                .unwrap_or(false),
            SinkError::Mysql {
                source: mysql_async::Error::Server(e),
                ..
            } => MYSQL_DATA_ERRORS.contains(&e.code),
            _ => false,
        }
    }
}

impl SinkError {
    /// The target gave up waiting for a lock, or found a deadlock
    /// (PostgreSQL 40P01, 55P03; MySQL 1205, 1213): with several apply
    /// workers, possibly one waiting for a later one.
    pub fn is_lock_wait(&self) -> bool {
        match self {
            SinkError::WorkersDeadlocked => true,
            SinkError::Pg { source, .. } => source
                .code()
                .is_some_and(|c| matches!(c.code(), "40P01" | "55P03")),
            SinkError::Mysql {
                source: mysql_async::Error::Server(e),
                ..
            } => matches!(e.code, 1205 | 1213),
            _ => false,
        }
    }
}

/// A PostgreSQL error with what duplex was doing.
pub(crate) fn pg(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> SinkError {
    let context = context.into();
    move |source| SinkError::Pg { context, source }
}

/// A MySQL/MariaDB error with what duplex was doing.
pub(crate) fn mysql(context: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> SinkError {
    let context = context.into();
    move |source| SinkError::Mysql { context, source }
}
