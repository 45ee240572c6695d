//! MySQL/MariaDB knowledge shared by the binlog source and the MySQL sink.

pub mod connect;
pub mod types;

pub use connect::{quote_ident, MysqlConnectError, MysqlEndpoint};
