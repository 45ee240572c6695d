//! PostgreSQL source: reads a logical replication slot (pgoutput) and turns it
//! into the canonical event stream.
//!
//! Loop prevention happens here: a transaction that carries one of duplex's
//! replication origins (pgoutput's Origin message) was written by duplex's own
//! applier and is dropped whole; only its end position is passed on, so the slot
//! can still advance past it.
//!
//! Three layers: the wire format ([`pgoutput`]); the typed events its messages
//! become (`events`, with the relations they describe in `relations`); the
//! replication session that reads the slot and confirms positions (`session`).
//! This file holds what they share: the spec and the reader's state.

mod events;
pub mod pgoutput;
mod relations;
mod session;

use self::relations::RelationInfo;
use crate::canonical::{SourcePosition, TableName, TxnMeta};
use crate::pg::type_class::PgTypeClass;
use crate::pg::PgEndpoint;
use crate::source::ready::Ready;
use crate::source::ConfirmedPosition;
use crate::stats::DirectionStats;
use pgwire_replication::ReplicationClient;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::Client;

/// What the source must know to read one site's slot for one link.
#[derive(Debug, Clone)]
pub struct PgSourceSpec {
    /// `duplex run --ha`, holding the link's lease: a session of an earlier
    /// holder still streaming from the slot (a process paused, a host cut
    /// off: the server keeps its connection until TCP gives up) is ended,
    /// as the lease says it must not apply any more.
    pub take_over: bool,
    /// This site's id: its entry in every version vector it advances.
    pub site_id: u32,
    pub endpoint: PgEndpoint,
    pub slot: String,
    pub publication: String,
    pub marker_column: String,
    /// Where to start: the position the peer has durably applied (its
    /// replication origin progress), or `None` for the slot's own position.
    pub start: Option<SourcePosition>,
    /// Events buffered between the network reader and the decoder.
    pub buffer_events: usize,
    /// How the versions of each table are stamped (field merge, unsynced
    /// columns).
    pub stamping: crate::source::Stamping,
    /// The link's tables that are synced. The publication holds exactly
    /// these; a change of any other relation the stream carries all the same
    /// (published before the table was refused or left the link, or a table
    /// a publication duplex may not change holds) is skipped.
    pub tables: std::collections::HashSet<TableName>,
}

struct OpenTxn {
    meta: TxnMeta,
    /// Written by duplex's applier: drop it.
    echo: bool,
    /// `Begin` was handed on (the transaction has at least one change for us).
    begun: bool,
}

/// Reads a PostgreSQL slot and yields [`ChangeEvent`](crate::canonical::ChangeEvent)s.
pub struct PgSource {
    spec: PgSourceSpec,
    client: ReplicationClient,
    catalog: Client,
    relations: HashMap<u32, RelationInfo>,
    /// The synced tables' oids when the direction started, and their
    /// configured names (a table renamed since is still known by its oid).
    synced_oids: HashMap<u32, TableName>,
    /// Relations the stream described that the link does not sync.
    skipped: std::collections::HashSet<u32>,
    types: HashMap<u32, PgTypeClass>,
    txn: Option<OpenTxn>,
    ready: Ready,
    stats: Arc<DirectionStats>,
    confirmed: Arc<ConfirmedPosition>,
}
