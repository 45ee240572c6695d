//! How a PostgreSQL type's values map into the canonical record ([`PgTypeClass`]),
//! and the classes of the built-in types by OID.

/// How a PostgreSQL type's values map into the canonical record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgTypeClass {
    Bool,
    Int2,
    Int4,
    Int8,
    /// Unsigned 32-bit `oid`, carried as [`Value::Int`](crate::canonical::Value::Int).
    Oid,
    Numeric,
    Float4,
    Float8,
    /// text, varchar, name, "char", citext, xml, and any type carried as text.
    Text,
    /// `character(n)`: text whose trailing spaces are padding, not content
    /// (PostgreSQL ignores them in comparisons and drops them on a cast to
    /// text; MySQL's CHAR strips them). Decoded without them, so a padded
    /// value from pgoutput and the same value read back through `::text` or
    /// from MySQL are one canonical value.
    Bpchar,
    Bytea,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Interval,
    Uuid,
    Json,
    Jsonb,
    Enum,
    Array(Box<PgTypeClass>),
    /// A type duplex has no typed mapping for (inet, money, timetz, ranges, geometric ...):
    /// carried as its PostgreSQL text, which PG->PG round-trips exactly.
    Other,
}

impl PgTypeClass {
    /// The PostgreSQL name of the class, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            PgTypeClass::Bool => "boolean",
            PgTypeClass::Int2 => "smallint",
            PgTypeClass::Int4 => "integer",
            PgTypeClass::Int8 => "bigint",
            PgTypeClass::Oid => "oid",
            PgTypeClass::Numeric => "numeric",
            PgTypeClass::Float4 => "real",
            PgTypeClass::Float8 => "double precision",
            PgTypeClass::Text => "text",
            PgTypeClass::Bpchar => "character",
            PgTypeClass::Bytea => "bytea",
            PgTypeClass::Date => "date",
            PgTypeClass::Time => "time",
            PgTypeClass::Timestamp => "timestamp",
            PgTypeClass::Timestamptz => "timestamptz",
            PgTypeClass::Interval => "interval",
            PgTypeClass::Uuid => "uuid",
            PgTypeClass::Json => "json",
            PgTypeClass::Jsonb => "jsonb",
            PgTypeClass::Enum => "enum",
            PgTypeClass::Array(_) => "array",
            PgTypeClass::Other => "text-carried type",
        }
    }
}

/// Classify a builtin type by OID (as in `pg_type.dat`, checked against a PostgreSQL 15
/// catalog). Returns `None` for anything else, in particular user-defined types
/// (enums, domains, extension types such as citext): the caller looks those up in
/// `pg_type`.
pub fn classify_builtin(type_oid: u32) -> Option<PgTypeClass> {
    use crate::pg::type_class::PgTypeClass as C;

    let arr = |c: PgTypeClass| Some(C::Array(Box::new(c)));
    match type_oid {
        16 => Some(C::Bool),
        17 => Some(C::Bytea),
        18 | 19 | 25 | 142 | 1043 => Some(C::Text), // char, name, text, xml, varchar
        1042 => Some(C::Bpchar),
        20 => Some(C::Int8),
        21 => Some(C::Int2),
        23 => Some(C::Int4),
        26 => Some(C::Oid),
        114 => Some(C::Json),
        700 => Some(C::Float4),
        701 => Some(C::Float8),
        1082 => Some(C::Date),
        1083 => Some(C::Time),
        1114 => Some(C::Timestamp),
        1184 => Some(C::Timestamptz),
        1186 => Some(C::Interval),
        1700 => Some(C::Numeric),
        2950 => Some(C::Uuid),
        3802 => Some(C::Jsonb),

        1000 => arr(C::Bool),
        1001 => arr(C::Bytea),
        // _char _name _text _xml _varchar
        1002 | 1003 | 1009 | 143 | 1015 => arr(C::Text),
        1014 => arr(C::Bpchar),
        1005 => arr(C::Int2),
        1007 => arr(C::Int4),
        1016 => arr(C::Int8),
        1028 => arr(C::Oid),
        1021 => arr(C::Float4),
        1022 => arr(C::Float8),
        1182 => arr(C::Date),
        1183 => arr(C::Time),
        1115 => arr(C::Timestamp),
        1185 => arr(C::Timestamptz),
        1187 => arr(C::Interval),
        1231 => arr(C::Numeric),
        2951 => arr(C::Uuid),
        199 => arr(C::Json),
        3807 => arr(C::Jsonb),

        // Builtins without a typed mapping, carried as text. box (603) uses ';' as its
        // array delimiter, so its array (1020) is carried whole as text too.
        22 | 24 | 27 | 28 | 29 | 30 | 600 | 601 | 602 | 603 | 604 | 628 | 650 | 718 | 774 | 790
        | 829 | 869 | 1020 | 1033 | 1266 | 1560 | 1562 | 1790 | 2202 | 2203 | 2204 | 2205
        | 2206 | 2970 | 3220 | 3614 | 3615 | 3642 | 3734 | 3769 | 3904 | 3906 | 3908 | 3910
        | 3912 | 3926 | 4072 | 4089 | 4096 | 4191 | 4451 | 4532 | 4533 | 4534 | 4535 | 4536
        | 5038 | 5069 => Some(C::Other),
        // Their arrays (all with ',' as delimiter).
        271 | 629 | 651 | 719 | 775 | 791 | 1006 | 1008 | 1010 | 1011 | 1012 | 1013 | 1017
        | 1018 | 1019 | 1027 | 1034 | 1040 | 1041 | 1270 | 1561 | 1563 | 2201 | 2207 | 2208
        | 2209 | 2210 | 2211 | 2949 | 3221 | 3643 | 3644 | 3645 | 3735 | 3770 | 3905 | 3907
        | 3909 | 3911 | 3913 | 3927 | 4073 | 4090 | 4097 | 4192 | 5039 | 6150 | 6151 | 6152
        | 6153 | 6155 | 6157 => arr(C::Other),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::test_util::*;

    use crate::pg::type_class::PgTypeClass as C;

    #[test]
    fn classify() {
        assert_eq!(classify_builtin(16), Some(C::Bool));
        assert_eq!(classify_builtin(26), Some(C::Oid));
        assert_eq!(classify_builtin(142), Some(C::Text));
        assert_eq!(classify_builtin(1043), Some(C::Text));
        assert_eq!(classify_builtin(1184), Some(C::Timestamptz));
        assert_eq!(classify_builtin(3802), Some(C::Jsonb));
        assert_eq!(classify_builtin(1000), Some(arr(C::Bool)));
        assert_eq!(classify_builtin(199), Some(arr(C::Json)));
        assert_eq!(classify_builtin(1028), Some(arr(C::Oid)));
        assert_eq!(classify_builtin(143), Some(arr(C::Text)));
        assert_eq!(classify_builtin(869), Some(C::Other));
        assert_eq!(classify_builtin(1041), Some(arr(C::Other)));
        // box uses ';' between array elements: its array is carried whole.
        assert_eq!(classify_builtin(1020), Some(C::Other));
        assert_eq!(classify_builtin(16_385), None);
        assert_eq!(classify_builtin(0), None);
    }
}
