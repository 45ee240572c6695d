//! One column of a MySQL/MariaDB table as the codec sees it ([`MysqlColumn`]):
//! what the binlog table map and information_schema.COLUMNS say about it, and the
//! limits (length, precision, enum members) derived from its COLUMN_TYPE.

use mysql_async::prelude::Queryable;

/// What duplex knows about one column of a MySQL table: from the binlog table map
/// (with FULL optional metadata) and from information_schema.COLUMNS.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MysqlColumn {
    pub name: String,
    /// information_schema DATA_TYPE, lower case: "tinyint", "bigint", "decimal",
    /// "varchar", "json", "uuid", "enum", "set", "time", "datetime", "timestamp",
    /// "blob", "binary", ... MariaDB reports JSON columns as "longtext";
    /// [`MysqlColumn::load_table`] turns those into "json".
    pub data_type: String,
    /// information_schema COLUMN_TYPE: "tinyint(1)", "bigint(20) unsigned",
    /// "decimal(65,30)", "varchar(20)", "enum('a','b')", "time(3)", "binary(16)" ...
    pub column_type: String,
    pub unsigned: bool,
    /// CHARACTER_MAXIMUM_LENGTH (characters; bytes for binary strings and for the
    /// TEXT types, whose limit is in bytes).
    pub char_max_len: Option<u64>,
    /// CHARACTER_SET_NAME: "utf8mb4", "utf8mb3", "latin1", ...; "binary" for the
    /// binary string types (for which information_schema says NULL).
    pub charset: Option<String>,
    pub numeric_precision: Option<u64>,
    pub numeric_scale: Option<u64>,
    pub datetime_precision: Option<u64>,
    /// For enum and set, in definition order.
    pub enum_values: Vec<String>,
}

/// The column list of a table. A column is JSON when its DATA_TYPE says so (MySQL 8)
/// or when it is a text column with a `json_valid(col)` CHECK constraint (MariaDB's
/// JSON alias). `/*M! ... */` is run by MariaDB only: MySQL 8's CHECK_CONSTRAINTS has
/// no TABLE_NAME column, but there constraint names are unique per schema.
const LOAD_TABLE_SQL: &str = "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, \
    c.CHARACTER_MAXIMUM_LENGTH, c.CHARACTER_SET_NAME, c.NUMERIC_PRECISION, c.NUMERIC_SCALE, \
    c.DATETIME_PRECISION, \
    EXISTS (SELECT 1 FROM information_schema.TABLE_CONSTRAINTS tc \
        JOIN information_schema.CHECK_CONSTRAINTS cc \
          ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA \
         AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME /*M! AND cc.TABLE_NAME = tc.TABLE_NAME */ \
        WHERE tc.TABLE_SCHEMA = c.TABLE_SCHEMA AND tc.TABLE_NAME = c.TABLE_NAME \
          AND tc.CONSTRAINT_TYPE = 'CHECK' \
          AND cc.CHECK_CLAUSE = CONCAT('json_valid(`', REPLACE(c.COLUMN_NAME, '`', '``'), '`)')) \
    FROM information_schema.COLUMNS c \
    WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? \
    ORDER BY c.ORDINAL_POSITION";

type ColumnRow = (
    String,
    String,
    String,
    Option<u64>,
    Option<String>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    i64,
);

impl MysqlColumn {
    /// Build the column list of a table from information_schema (one query; order by
    /// ORDINAL_POSITION). An unknown table gives an empty list.
    pub async fn load_table(
        conn: &mut mysql_async::Conn,
        schema: &str,
        table: &str,
    ) -> Result<Vec<MysqlColumn>, mysql_async::Error> {
        let rows: Vec<mysql_async::Row> = conn.exec(LOAD_TABLE_SQL, (schema, table)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (name, data_type, column_type, char_max_len, charset, prec, scale, dt_prec, json): ColumnRow =
                mysql_async::from_row_opt(row)
                    .map_err(|e| mysql_async::Error::Other(Box::new(e)))?;
            out.push(MysqlColumn::from_catalog(
                name,
                &data_type,
                column_type,
                char_max_len,
                charset,
                prec,
                scale,
                dt_prec,
                json != 0,
            ));
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn from_catalog(
        name: String,
        data_type: &str,
        column_type: String,
        char_max_len: Option<u64>,
        charset: Option<String>,
        numeric_precision: Option<u64>,
        numeric_scale: Option<u64>,
        datetime_precision: Option<u64>,
        json_check: bool,
    ) -> MysqlColumn {
        let mut data_type = data_type.to_ascii_lowercase();
        if json_check && TEXT_TYPES.contains(&data_type.as_str()) {
            data_type = "json".to_string();
        }
        let lower = column_type.to_ascii_lowercase();
        let unsigned = lower.contains(" unsigned");
        let enum_values = if data_type == "enum" || data_type == "set" {
            parse_enum_values(&column_type)
        } else {
            Vec::new()
        };
        let charset = match charset {
            Some(c) => Some(c.to_ascii_lowercase()),
            None if BINARY_TYPES.contains(&data_type.as_str()) => Some("binary".to_string()),
            None => None,
        };
        MysqlColumn {
            name,
            data_type,
            column_type,
            unsigned,
            char_max_len,
            charset,
            numeric_precision,
            numeric_scale,
            datetime_precision,
            enum_values,
        }
    }

    /// Fractional-second digits of a temporal column (0..=6).
    pub(super) fn fsp(&self) -> u32 {
        self.datetime_precision.map_or(0, |p| p.min(6) as u32)
    }

    /// Width in bits of an integer column.
    pub(super) fn int_bits(&self) -> Option<u32> {
        Some(match self.data_type.as_str() {
            "tinyint" => 8,
            "smallint" => 16,
            "mediumint" => 24,
            "int" | "integer" => 32,
            "bigint" => 64,
            _ => return None,
        })
    }

    /// Number of bits of a BIT(n) column.
    pub(super) fn bit_width(&self) -> u32 {
        self.numeric_precision
            .map(|p| p as u32)
            .or_else(|| paren_numbers(&self.column_type).first().map(|&n| n as u32))
            .unwrap_or(1)
    }

    pub(super) fn charset_name(&self) -> &str {
        self.charset.as_deref().unwrap_or("")
    }
}

pub(super) const TEXT_TYPES: [&str; 6] = [
    "char",
    "varchar",
    "tinytext",
    "text",
    "mediumtext",
    "longtext",
];
pub(super) const BINARY_TYPES: [&str; 6] = [
    "binary",
    "varbinary",
    "tinyblob",
    "blob",
    "mediumblob",
    "longblob",
];

/// Byte limit of the TEXT and BLOB types.
pub(super) fn lob_byte_limit(data_type: &str) -> Option<u64> {
    Some(match data_type {
        "tinytext" | "tinyblob" => 255,
        "text" | "blob" => 65_535,
        "mediumtext" | "mediumblob" => 16_777_215,
        "longtext" | "longblob" | "json" => 4_294_967_295,
        _ => return None,
    })
}

/// The values of `enum('a','it''s')` / `set(...)` as COLUMN_TYPE prints them: single
/// quoted, `''` for a quote, and backslash escapes (`\\`, `\0`, `\n`, `\r`, `\Z`).
fn parse_enum_values(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut chars = column_type[open + 1..].chars().peekable();
    loop {
        match chars.next() {
            Some('\'') => {}
            Some(',') | Some(' ') => continue,
            _ => break,
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    value.push('\'');
                }
                '\'' => break,
                '\\' => match chars.next() {
                    Some('0') => value.push('\0'),
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some('Z') => value.push('\u{1a}'),
                    Some(other) => value.push(other),
                    None => break,
                },
                _ => value.push(c),
            }
        }
        out.push(value);
    }
    out
}

/// The numbers inside the first parentheses of a COLUMN_TYPE: `decimal(10,2)` -> [10, 2].
pub(super) fn paren_numbers(column_type: &str) -> Vec<u64> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let rest = &column_type[open + 1..];
    let inner = rest.split(')').next().unwrap_or("");
    inner
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_from_column_type() {
        assert_eq!(parse_enum_values("enum('a','b')"), vec!["a", "b"]);
        assert_eq!(
            parse_enum_values(r"enum('it''s','a\\b','x,y','','Ü')"),
            vec!["it's", r"a\b", "x,y", "", "Ü"]
        );
        assert_eq!(parse_enum_values("set('p','q')"), vec!["p", "q"]);
        assert_eq!(paren_numbers("decimal(65,30) unsigned"), vec![65, 30]);
    }
}
