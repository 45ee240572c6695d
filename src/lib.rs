//! duplex: two-way change-data-capture between PostgreSQL and MySQL/MariaDB.
//!
//! The modules follow the data flow: a [`source`] reads a database's change
//! stream into the [`canonical`] record, and a [`sink`] applies it to the peer.
//! [`control`] holds the SQL control schema the whole process is configured
//! from; [`setup`] prepares sites for a link; [`pipeline`] wires one direction
//! of a link together and [`runner`] runs every link. The initial sync
//! ([`snapshot`]) and the parity check ([`parity`]) read tables through
//! [`table_reader`]. The `duplex` commands live on the binary's side
//! (`src/cli/`); the throwaway servers of the demo and the tests behind the
//! `localdb` feature. See `docs/architecture.md`.

pub mod canonical;
pub mod conflict;
pub mod connect;
pub mod control;
pub mod error;
pub mod error_chain;
pub mod error_class;
pub mod journal;
/// Throwaway local servers: for `duplex demo`/`bench` and the tests, not
/// the replicator (the `localdb` feature, on by default).
#[cfg(feature = "localdb")]
pub mod localdb;
pub mod mapping;
pub mod marker;
pub mod mysql;
pub mod parity;
pub mod pg;
pub mod pipeline;
pub mod runner;
pub mod setup;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod stats;
pub mod table_reader;

pub use error::Error;

/// Make `ring` the process-wide rustls crypto provider. Dependencies pull in
/// both of rustls's providers, and with two compiled in rustls refuses to pick
/// one for connections that do not name theirs (mysql_async's TLS). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
