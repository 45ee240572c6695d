//! PostgreSQL knowledge shared by the source and the sink.

pub mod connect;
pub mod types;

pub use connect::{quote_ident, quote_table, ConnectError, PgEndpoint};
