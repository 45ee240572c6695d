//! The canonical record: engine-independent transactions, changes and values.

pub mod encode;
pub mod origin;
pub mod record;
pub mod value;

pub use origin::{ChangeOrigin, SourceForm};
pub use record::{
    ChangeEvent, ColumnSchema, Op, Row, RowChange, SourceKind, SourcePosition, TableName,
    TableSchema, TxnMeta, Unreplicable,
};
pub use value::{Date, Decimal, Interval, Timestamp, Value};
