//! The canonical record: committed source transactions as a stream of events.
//!
//! A source does not hand over whole transactions: a million-row transaction would
//! have to sit in memory. It hands over `Begin`, the changes in order, and `Commit`,
//! through a bounded channel, and the sink applies them inside one open target
//! transaction. Memory is bounded by the channel and the sink's batch, not by the
//! transaction's size (design invariant 7).

use std::fmt;
use std::sync::Arc;

use super::value::Value;
use crate::marker::Marker;

/// A table's qualified name as configured (schema + table).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// One synced column as the source sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    /// The source engine's type name (`integer`, `varchar(20)`, ...), for messages.
    pub type_name: String,
}

/// The shape of a synced table at the source: its synced columns (the marker
/// column is not among them) and which of them form the primary key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TableSchema {
    pub table: TableName,
    pub columns: Vec<ColumnSchema>,
    /// Indexes into `columns` of the primary-key columns, in key order.
    pub key: Vec<usize>,
}

impl TableSchema {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// A row image aligned with [`TableSchema::columns`]. `None` marks a column whose
/// value the source did not send (PostgreSQL's unchanged TOAST value): the sink
/// must leave that column as it is, never write a placeholder.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Row(pub Vec<Option<Value>>);

impl Row {
    /// About how many bytes the row's values hold in memory
    /// ([`Value::approx_bytes`]).
    pub fn approx_bytes(&self) -> usize {
        self.0
            .iter()
            .map(|v| v.as_ref().map_or(8, Value::approx_bytes))
            .sum()
    }

    /// The primary-key values of this image, or `None` if a key column is missing.
    pub fn key(&self, schema: &TableSchema) -> Option<Vec<Value>> {
        schema
            .key
            .iter()
            .map(|&i| self.0.get(i).cloned().flatten())
            .collect()
    }

    /// The canonical encoding of [`Row::key`] (the row's identity), made
    /// without copying the key's values; `None` as for `key`.
    pub fn encoded_key(&self, schema: &TableSchema) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(9 * schema.key.len());
        self.encode_key_into(schema, &mut out)?;
        Some(out)
    }

    /// [`Row::encoded_key`] appended to `out` (a buffer the caller reuses);
    /// `None` as for `key` (then `out` holds part of it).
    pub fn encode_key_into(&self, schema: &TableSchema, out: &mut Vec<u8>) -> Option<()> {
        for &i in &schema.key {
            crate::canonical::encode::encode_value(self.0.get(i)?.as_ref()?, out);
        }
        Some(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        })
    }
}

/// One row change inside a source transaction.
#[derive(Debug, Clone)]
pub struct RowChange {
    pub table: Arc<TableSchema>,
    pub op: Op,
    /// Old image (update, delete). Full with replica identity FULL; key-only otherwise.
    pub before: Option<Row>,
    /// New image (insert, update).
    pub after: Option<Row>,
    /// The version metadata this change carries to the peer (see [`crate::marker`]).
    pub marker: Marker,
}

/// Which kind of change stream a position belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SourceKind {
    #[default]
    PgWal,
    Binlog,
}

/// An ordered position in a source's change stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourcePosition {
    /// PostgreSQL WAL position.
    PgLsn(u64),
    /// MySQL/MariaDB binlog: the file's sequence number (`mysql-bin.000042` is
    /// 42) and the byte offset in it. Binlog files are at most 1 GiB.
    Binlog { file_seq: u32, pos: u32 },
}

impl SourcePosition {
    /// A strictly increasing counter: the source's version-vector entry, and
    /// the form in which sinks store the applied position (a PostgreSQL sink
    /// as its replication origin's pg_lsn, a MySQL sink in its marker table).
    pub fn counter(&self) -> u64 {
        match self {
            SourcePosition::PgLsn(lsn) => *lsn,
            SourcePosition::Binlog { file_seq, pos } => {
                (u64::from(*file_seq) << 32) | u64::from(*pos)
            }
        }
    }

    /// The inverse of [`SourcePosition::counter`] for a stream of `kind`.
    pub fn from_counter(kind: SourceKind, counter: u64) -> SourcePosition {
        match kind {
            SourceKind::PgWal => SourcePosition::PgLsn(counter),
            SourceKind::Binlog => SourcePosition::Binlog {
                file_seq: (counter >> 32) as u32,
                pos: (counter & 0xffff_ffff) as u32,
            },
        }
    }

    pub fn kind(&self) -> SourceKind {
        match self {
            SourcePosition::PgLsn(_) => SourceKind::PgWal,
            SourcePosition::Binlog { .. } => SourceKind::Binlog,
        }
    }
}

impl fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourcePosition::PgLsn(lsn) => write!(f, "{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff),
            SourcePosition::Binlog { file_seq, pos } => write!(f, "binlog {file_seq:06}:{pos}"),
        }
    }
}

/// What a committed source transaction is.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnMeta {
    /// Position of the commit (PG: the commit record's LSN).
    pub commit_position: SourcePosition,
    /// Commit time, microseconds since the Unix epoch (UTC).
    pub commit_time_us: i64,
    /// The source's transaction id, for messages only.
    pub xid: u64,
}

/// The stream a source hands to a sink.
#[derive(Debug, Clone)]
pub enum ChangeEvent {
    Begin(TxnMeta),
    Change(RowChange),
    /// Tables emptied by TRUNCATE inside the current transaction.
    Truncate(Vec<Arc<TableSchema>>),
    /// End of the current transaction. `end_position` is where the stream resumes
    /// after this transaction; the sink records it atomically with the data.
    Commit {
        end_position: SourcePosition,
    },
    /// Everything up to `position` needs nothing applied (idle stream, or a
    /// transaction dropped because duplex itself wrote it). Lets the source's
    /// retained log be released once earlier work has committed.
    Progress {
        position: SourcePosition,
    },
    /// Inside the current transaction, a change the source cannot replicate
    /// (a write the binlog logged as a statement, without its rows): the
    /// tables it may have changed stop in this direction, their later
    /// changes held, until a DBA has resynced them.
    Unreplicable(Unreplicable),
}

/// See [`ChangeEvent::Unreplicable`].
#[derive(Debug, Clone, PartialEq)]
pub struct Unreplicable {
    /// Synced tables it may have changed (source names).
    pub tables: Vec<TableName>,
    /// The statement (abridged), for the record.
    pub statement: String,
    /// Where it is in the source's log.
    pub position: SourcePosition,
    /// What happened, why it cannot be replicated, and the fix.
    pub reason: String,
}
