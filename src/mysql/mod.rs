//! MySQL/MariaDB knowledge shared by the binlog source and the MySQL sink.

pub mod types;
