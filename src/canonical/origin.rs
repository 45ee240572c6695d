//! Where a change sits in its source's stream, and its form there: the
//! identity under which the journal records it, and what a retry maps again.

use std::sync::Arc;

use super::{RowChange, SourcePosition};

/// Where a change sits in the source's stream, and what it was there.
#[derive(Debug, Clone)]
pub struct ChangeOrigin {
    pub position: SourcePosition,
    /// Index of the change inside its source transaction (from 1).
    pub index: u32,
    /// The change as the source sent it, before the link's column mappings:
    /// what a quarantine record keeps, so that a retry maps it with the
    /// configuration in force then.
    pub source: SourceForm,
}

impl ChangeOrigin {
    /// A change at `position`, `index`, that no mapping changed.
    pub fn at(position: SourcePosition, index: u32) -> ChangeOrigin {
        ChangeOrigin {
            position,
            index,
            source: SourceForm::Unchanged,
        }
    }

    /// The origin of a change written outside the source stream (a DBA's
    /// settlement): nothing keys it.
    pub fn outside_stream() -> ChangeOrigin {
        ChangeOrigin::at(SourcePosition::PgLsn(0), 0)
    }
}

/// A change's form at its source, next to the form the target sees.
#[derive(Debug, Clone)]
pub enum SourceForm {
    /// The same: the link maps nothing of this table in this direction.
    Unchanged,
    /// The mapping renamed, dropped, transformed or filled columns: the
    /// change before it.
    Mapped(Arc<RowChange>),
    /// Not known: a change kept by an older duplex, in mapped form only.
    Unknown,
}

impl SourceForm {
    pub fn from_mapping(source: Option<Arc<RowChange>>) -> SourceForm {
        source.map_or(SourceForm::Unchanged, SourceForm::Mapped)
    }
}
