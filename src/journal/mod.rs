//! The journal: what a direction records in the control database beside the
//! data it applies, for a DBA to see and settle: conflicts
//! ([`conflicts`]) and changes the target refused ([`quarantine`]).
//!
//! Both kinds of record are written before the target commits and confirmed
//! after it, and records a crash left unconfirmed are settled against the
//! target's resume point when the direction starts again.

pub mod conflicts;
pub(crate) mod images;
pub(crate) mod protocol;
pub mod quarantine;
