//! Sinks: apply the canonical event stream to a peer database, in source commit
//! order, recording the applied source position atomically with the data.

pub mod pg;
