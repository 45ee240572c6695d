//! PostgreSQL knowledge shared by the source and the sink.

pub mod types;
