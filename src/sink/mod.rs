//! Sinks: apply the canonical event stream to a peer database, in source
//! commit order, recording the applied source position atomically with the
//! data.
//!
//! One applier loop ([`Applier`], `applier.rs`, and its own transactions in
//! `own.rs`) for every engine; an engine supplies only its steps
//! ([`Target`]: `pg.rs`, `mysql.rs`). Deciding a batch against the target's
//! rows is `resolve.rs` over the pure `conflict` kernel; conflicts and
//! refused rows go to the `journal`.

pub(crate) mod applier;
pub mod error;
mod group;
pub mod mysql;
mod outbox;
mod own;
pub mod pg;
mod plan;
pub(crate) mod resolve;
mod rows;
mod schema_hold;
pub mod source_catalog;
pub(crate) mod target;

use std::collections::HashSet;

pub(crate) use applier::Applier;
pub use error::SinkError;
pub(crate) use group::TxnGroup;
pub(crate) use rows::{describe_key, identifying_key, same_key, seeded, shape_of, store_values};
pub(crate) use target::Target;

use crate::journal::JournalSpec;

/// Most apply workers one direction may run (`links.apply_workers`).
pub const MAX_APPLY_WORKERS: u32 = 16;

/// How to apply one direction of a link to its target site.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    pub applier: ApplierSpec,
    pub target: TargetSpec,
}

impl SinkSpec {
    pub fn site_name(&self) -> &str {
        match &self.target {
            TargetSpec::Pg(s) => &s.endpoint.site_name,
            TargetSpec::Mysql(s) => &s.endpoint.site_name,
        }
    }
}

/// What the applier needs, whatever the target's engine.
#[derive(Debug, Clone)]
pub struct ApplierSpec {
    /// The target site's id (its entry in version vectors).
    pub site_id: u32,
    /// Most rows decided together, and in one multi-row statement.
    pub max_batch_rows: usize,
    /// Where conflicts and changes the target refuses are recorded.
    pub journal: JournalSpec,
    /// Paused tables (bare names): their changes are held, not applied.
    pub held_tables: HashSet<String>,
    /// Tables held because their shape differs on the target, shared by
    /// the direction's apply workers (see `sink::schema_hold`).
    pub schema_holds: crate::journal::schema_holds::SchemaHolds,
    /// The link's and the source site's names, for messages.
    pub link_name: String,
    pub source_name: String,
    /// Where the source's catalog is read (see `sink::source_catalog`).
    pub source_catalog: source_catalog::SourceCatalogSpec,
}

/// The target engine's own part.
// Built once per direction start; the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum TargetSpec {
    Pg(pg::PgTargetSpec),
    Mysql(mysql::MysqlTargetSpec),
}
