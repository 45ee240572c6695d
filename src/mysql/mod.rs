//! MySQL/MariaDB knowledge shared by the binlog source and the MySQL sink: the
//! connection, and the value codec split by job: a column's description
//! ([`column`](mod@column)), the rows-event reader ([`rows_event`]), binlog and query values to
//! canonical values ([`decode`]), canonical values to statement parameters
//! ([`param`]), with character sets, date/time arithmetic and the codec's errors
//! beside them. It mirrors `pg`: anything that cannot be read or written exactly is
//! an error naming the column, never a guess.

pub mod charset;
pub mod codec_error;
pub mod column;
pub mod connect;
pub mod decode;
pub mod param;
pub mod rows_event;
#[cfg(test)]
mod test_util;
pub mod time;

pub use connect::{quote_ident, MysqlEndpoint};
