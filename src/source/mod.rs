//! Sources: read a database's committed changes into the canonical event stream.

pub mod pg;
