//! duplex: two-way change-data-capture between PostgreSQL and MySQL/MariaDB.
//!
//! The modules follow the data flow: a [`source`] reads a database's change
//! stream into the [`canonical`] record, and a [`sink`] applies it to the peer.
//! [`control`] holds the SQL control schema the whole process is configured
//! from; [`setup`] prepares sites for a link; [`pipeline`] wires one direction
//! of a link together and [`runner`] runs every link. See `docs/architecture.md`.

pub mod bench;
pub mod canonical;
pub mod conflict;
pub mod connect;
pub mod control;
pub mod dba;
pub mod error;
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

pub use error::Error;

/// Make `ring` the process-wide rustls crypto provider. Dependencies pull in
/// both of rustls's providers, and with two compiled in rustls refuses to pick
/// one for connections that do not name theirs (mysql_async's TLS). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
pub mod demo;
