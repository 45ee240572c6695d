//! The journal: what a direction records in the control database beside the
//! data it applies, for a DBA to see and settle: conflicts
//! ([`conflicts`]) and changes the target refused ([`quarantine`]).
//!
//! Both kinds of record are written in the target transaction that made
//! them, into the target's outbox, and shipped to the control schema after
//! it commits or once the control database can be reached ([`outbox`]).

pub mod conflicts;
pub(crate) mod images;
pub mod outbox;
pub(crate) mod protocol;

pub use protocol::JournalSpec;
pub mod quarantine;
pub mod schema_holds;

/// The journal's one error type: the control database could not be reached
/// (the direction retries, the target transaction rolled back), or it
/// refused a record.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot reach the control database to record {what}: {source}")]
    Connect {
        /// What was to be recorded ("a conflict", "a quarantined change").
        what: &'static str,
        source: Box<crate::control::ControlError>,
    },
    #[error("cannot record in the control schema's journal: {0}")]
    Db(Box<crate::control::ControlError>),
    #[error("the control database did not answer within {after:?} to {what}")]
    Timeout {
        what: &'static str,
        after: std::time::Duration,
    },
}

impl From<crate::control::ControlError> for JournalError {
    fn from(e: crate::control::ControlError) -> JournalError {
        JournalError::Db(Box::new(e))
    }
}
