//! duplex: two-way change-data-capture between PostgreSQL and MySQL/MariaDB.
//!
//! The modules follow the data flow: a [`source`] reads a database's change
//! stream into the [`canonical`] record, and a [`sink`] applies it to the peer.
//! [`control`] holds the SQL control schema the whole process is configured
//! from; [`pipeline`] wires one direction of a link together. See
//! `docs/architecture.md`.

pub mod canonical;
pub mod localdb;
pub mod marker;
pub mod pg;
