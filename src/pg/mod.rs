//! PostgreSQL knowledge shared by the source and the sink: the connection, and the
//! text codec split by job: type classes ([`type_class`]), the catalog queries
//! ([`catalog`], the only part that talks to a server), text output to canonical
//! values ([`text_decode`]), canonical values to input text ([`text_encode`]), array
//! syntax ([`text_array`]), `COPY` input ([`copy_text`]), what a column stores of a
//! value ([`stored`]) and the date/time ranges ([`limits`]).

pub mod catalog;
pub mod connect;
pub mod copy_text;
pub mod limits;
pub mod stored;
#[cfg(test)]
mod test_util;
pub mod text_array;
pub mod text_decode;
pub mod text_encode;
mod tls_bridge;
pub mod type_class;

pub use catalog::primary_key_columns;
pub use connect::{quote_ident, quote_table, PgEndpoint};
