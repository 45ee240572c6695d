//! A connection to the control database, on either engine.
//!
//! The DBA keeps duplex's control schema on PostgreSQL or on MySQL/MariaDB
//! (chosen by the control URL's scheme). Every control query goes through
//! [`ControlDb`]: a statement is written once per flavour, side by side, with
//! engine-neutral parameters ([`P`]), and rows come back as text
//! ([`TextRow`]), so the code around it (quarantine, conflicts, status,
//! configuration) is the same for both.

use mysql_async::prelude::Queryable;

use super::ControlError;
use crate::mysql::MysqlEndpoint;
use crate::pg::PgEndpoint;

/// Where the control schema lives.
#[derive(Debug, Clone)]
// Built once per process and cloned per direction: the size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ControlEndpoint {
    Pg(PgEndpoint),
    Mysql(MysqlEndpoint),
}

impl ControlEndpoint {
    /// `mysql://` or `mariadb://` URLs name a MySQL/MariaDB control database;
    /// anything else is a libpq connection string or URL.
    pub fn from_url(url: &str) -> Result<ControlEndpoint, crate::Error> {
        let trimmed = url.trim_start();
        if let Some(rest) = trimmed.strip_prefix("mariadb://") {
            return Ok(ControlEndpoint::Mysql(MysqlEndpoint::from_url(
                "control",
                &format!("mysql://{rest}"),
            )?));
        }
        if trimmed.starts_with("mysql://") {
            return Ok(ControlEndpoint::Mysql(MysqlEndpoint::from_url(
                "control", trimmed,
            )?));
        }
        Ok(ControlEndpoint::Pg(PgEndpoint::from_url("control", url)?))
    }

    pub async fn connect(&self, application_name: &str) -> Result<ControlDb, ControlError> {
        match self {
            ControlEndpoint::Pg(ep) => Ok(ControlDb::Pg(ep.connect(application_name).await?)),
            ControlEndpoint::Mysql(ep) => {
                let mut conn = ep.connect().await?;
                // Control times are UTC on MySQL (DATETIME has no zone).
                conn.query_drop(
                    "SET time_zone = '+00:00', sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_ALL_TABLES')",
                )
                    .await
                    .map_err(|source| ControlError::Mysql {
                        context: "set up the control session".into(),
                        source,
                    })?;
                Ok(ControlDb::Mysql(Box::new(conn)))
            }
        }
    }
}

/// An open control connection.
pub enum ControlDb {
    Pg(tokio_postgres::Client),
    Mysql(Box<mysql_async::Conn>),
}

impl From<tokio_postgres::Client> for ControlDb {
    fn from(c: tokio_postgres::Client) -> ControlDb {
        ControlDb::Pg(c)
    }
}

/// An engine-neutral statement parameter.
#[derive(Debug, Clone)]
pub enum P<'a> {
    I32(i32),
    I64(i64),
    OptI64(Option<i64>),
    F64(Option<f64>),
    Bool(bool),
    Text(Option<&'a str>),
    /// A list of strings: a text[] on PostgreSQL (`= ANY($n)`), a JSON array
    /// on MySQL (`JSON_CONTAINS(?, JSON_QUOTE(x))`).
    TextList(&'a [String]),
}

impl P<'_> {
    fn to_mysql(&self) -> mysql_async::Value {
        use mysql_async::Value;
        match self {
            P::I32(v) => Value::Int(i64::from(*v)),
            P::I64(v) | P::OptI64(Some(v)) => Value::Int(*v),
            P::F64(Some(v)) => Value::Double(*v),
            P::Bool(b) => Value::Int(i64::from(*b)),
            P::Text(Some(s)) => Value::Bytes(s.as_bytes().to_vec()),
            P::TextList(items) => Value::Bytes(
                serde_json::Value::from(items.to_vec())
                    .to_string()
                    .into_bytes(),
            ),
            P::F64(None) | P::OptI64(None) | P::Text(None) => Value::NULL,
        }
    }
}

/// One statement in both flavours: PostgreSQL with `$n` placeholders, MySQL
/// with `?` placeholders in parameter order (a parameter used twice is passed
/// twice; see `mysql_params`).
pub struct Sql<'a> {
    pub pg: &'a str,
    pub mysql: &'a str,
    pub params: &'a [P<'a>],
    /// For MySQL: which of `params` fill the `?`s, in order (`None`: all, once each).
    pub mysql_params: Option<&'a [usize]>,
    /// What the statement does, for error messages.
    pub what: &'a str,
}

impl<'a> Sql<'a> {
    pub fn new(what: &'a str, pg: &'a str, mysql: &'a str, params: &'a [P<'a>]) -> Sql<'a> {
        Sql {
            pg,
            mysql,
            params,
            mysql_params: None,
            what,
        }
    }

    /// The MySQL text uses the parameters in this order (indexes into `params`).
    pub fn mysql_order(mut self, order: &'a [usize]) -> Sql<'a> {
        self.mysql_params = Some(order);
        self
    }

    fn pg_err(&self) -> impl FnOnce(tokio_postgres::Error) -> ControlError + '_ {
        move |source| ControlError::Db {
            context: self.what.to_string(),
            source,
        }
    }

    fn mysql_err(&self) -> impl FnOnce(mysql_async::Error) -> ControlError + '_ {
        move |source| ControlError::Mysql {
            context: self.what.to_string(),
            source,
        }
    }

    fn mysql_values(&self) -> Vec<mysql_async::Value> {
        match self.mysql_params {
            Some(order) => order
                .iter()
                .filter_map(|&i| self.params.get(i))
                .map(P::to_mysql)
                .collect(),
            None => self.params.iter().map(P::to_mysql).collect(),
        }
    }
}

/// A result row as text, with its column names.
#[derive(Debug, Clone)]
pub struct TextRow {
    pub names: std::sync::Arc<Vec<String>>,
    pub values: Vec<Option<String>>,
}

impl TextRow {
    fn index(&self, name: &str) -> Result<usize, ControlError> {
        self.names.iter().position(|n| n == name).ok_or_else(|| {
            ControlError::Invalid(format!("control query returned no column {name}"))
        })
    }

    /// Column `name`, NULL as `None`.
    pub fn opt(&self, name: &str) -> Result<Option<String>, ControlError> {
        Ok(self.values.get(self.index(name)?).cloned().flatten())
    }

    /// Column `name`, which must not be NULL.
    pub fn text(&self, name: &str) -> Result<String, ControlError> {
        self.opt(name)?
            .ok_or_else(|| ControlError::Invalid(format!("{name} is NULL")))
    }

    pub fn parse<T: std::str::FromStr>(&self, name: &str) -> Result<T, ControlError>
    where
        T::Err: std::fmt::Display,
    {
        let text = self.text(name)?;
        text.parse()
            .map_err(|e| ControlError::Invalid(format!("{name} = '{text}': {e}")))
    }

    pub fn opt_parse<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ControlError>
    where
        T::Err: std::fmt::Display,
    {
        match self.opt(name)? {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|e| ControlError::Invalid(format!("{name} = '{text}': {e}"))),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool, ControlError> {
        match self.text(name)?.as_str() {
            "1" | "t" | "true" => Ok(true),
            "0" | "f" | "false" => Ok(false),
            other => Err(ControlError::Invalid(format!(
                "{name} = '{other}' is not a boolean"
            ))),
        }
    }

    /// Column at position `i` (for the DBA listings), NULL as "".
    pub fn at(&self, i: usize) -> String {
        self.values.get(i).cloned().flatten().unwrap_or_default()
    }
}

fn pg_text_row(
    row: &tokio_postgres::Row,
    names: &std::sync::Arc<Vec<String>>,
) -> Result<TextRow, ControlError> {
    use tokio_postgres::types::Type;
    let mut values = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let bad = |e: tokio_postgres::Error| ControlError::Db {
            context: format!("read column {}", col.name()),
            source: e,
        };
        let t = col.type_();
        let v = if *t == Type::VOID {
            None
        } else if *t == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)
                .map_err(bad)?
                .map(|b| if b { "1" } else { "0" }.to_string())
        } else if *t == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)
                .map_err(bad)?
                .map(|v| v.to_string())
        } else if *t == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)
                .map_err(bad)?
                .map(|v| v.to_string())
        } else if *t == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)
                .map_err(bad)?
                .map(|v| v.to_string())
        } else if *t == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(i)
                .map_err(bad)?
                .map(|v| v.to_string())
        } else if *t == Type::FLOAT4 {
            row.try_get::<_, Option<f32>>(i)
                .map_err(bad)?
                .map(|v| v.to_string())
        } else if *t == Type::TEXT_ARRAY {
            row.try_get::<_, Option<Vec<String>>>(i)
                .map_err(bad)?
                .map(|v| serde_json::Value::from(v).to_string())
        } else {
            // text, varchar, name; anything else is cast to text in the query.
            row.try_get::<_, Option<String>>(i).map_err(bad)?
        };
        values.push(v);
    }
    Ok(TextRow {
        names: names.clone(),
        values,
    })
}

fn mysql_text(v: mysql_async::Value) -> Option<String> {
    use mysql_async::Value;
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(f) => Some(f.to_string()),
        Value::Date(y, mo, d, h, mi, s, us) => Some(format!(
            "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"
        )),
        Value::Time(neg, days, h, mi, s, us) => Some(format!(
            "{}{}:{mi:02}:{s:02}.{us:06}",
            if neg { "-" } else { "" },
            u64::from(days) * 24 + u64::from(h)
        )),
    }
}

impl ControlDb {
    /// Run a statement; the number of rows it affected.
    pub async fn exec(&mut self, q: Sql<'_>) -> Result<u64, ControlError> {
        match self {
            ControlDb::Pg(c) => {
                let params = pg_params(q.params);
                c.execute(q.pg, &pg_refs(&params)).await.map_err(q.pg_err())
            }
            ControlDb::Mysql(c) => {
                mysql_exec(c, &q).await?;
                Ok(c.affected_rows())
            }
        }
    }

    /// Run a query; its rows as text.
    pub async fn rows(&mut self, q: Sql<'_>) -> Result<Vec<TextRow>, ControlError> {
        match self {
            ControlDb::Pg(c) => {
                let rows = pg_query(c, &q).await?;
                let names = std::sync::Arc::new(
                    rows.first()
                        .map(|r| r.columns().iter().map(|c| c.name().to_string()).collect())
                        .unwrap_or_default(),
                );
                rows.iter().map(|r| pg_text_row(r, &names)).collect()
            }
            ControlDb::Mysql(c) => {
                let rows: Vec<mysql_async::Row> = c
                    .exec(q.mysql, mysql_async::Params::Positional(q.mysql_values()))
                    .await
                    .map_err(q.mysql_err())?;
                let names = std::sync::Arc::new(
                    rows.first()
                        .map(|r| {
                            r.columns_ref()
                                .iter()
                                .map(|c| c.name_str().into_owned())
                                .collect::<Vec<String>>()
                        })
                        .unwrap_or_default(),
                );
                Ok(rows
                    .into_iter()
                    .map(|r| TextRow {
                        names: names.clone(),
                        values: r.unwrap().into_iter().map(mysql_text).collect(),
                    })
                    .collect())
            }
        }
    }

    /// Insert a record keyed by a unique constraint, or update the one already
    /// there (a replay after a crash): its id, and whether it is new. The
    /// PostgreSQL text must end `RETURNING id, (xmax = 0)`; the MySQL text must
    /// be `INSERT ... ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id), ...`
    /// (then the id is LAST_INSERT_ID() either way, and one affected row means
    /// inserted, two or none updated).
    pub async fn upsert_returning_id(&mut self, q: Sql<'_>) -> Result<(i64, bool), ControlError> {
        match self {
            ControlDb::Pg(c) => {
                let params = pg_params(q.params);
                let row = c
                    .query_one(q.pg, &pg_refs(&params))
                    .await
                    .map_err(q.pg_err())?;
                Ok((row.get(0), row.get(1)))
            }
            ControlDb::Mysql(c) => {
                mysql_exec(c, &q).await?;
                let id = c.last_insert_id().unwrap_or(0);
                Ok((
                    i64::try_from(id).unwrap_or(i64::MAX),
                    c.affected_rows() == 1,
                ))
            }
        }
    }

    /// Run a query that returns at most one row.
    pub async fn row(&mut self, q: Sql<'_>) -> Result<Option<TextRow>, ControlError> {
        Ok(self.rows(q).await?.into_iter().next())
    }
}

type PgParam = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

fn pg_refs(params: &[PgParam]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as _).collect()
}

async fn pg_query(
    c: &tokio_postgres::Client,
    q: &Sql<'_>,
) -> Result<Vec<tokio_postgres::Row>, ControlError> {
    let params = pg_params(q.params);
    c.query(q.pg, &pg_refs(&params)).await.map_err(q.pg_err())
}

async fn mysql_exec(c: &mut mysql_async::Conn, q: &Sql<'_>) -> Result<(), ControlError> {
    c.exec_drop(q.mysql, mysql_async::Params::Positional(q.mysql_values()))
        .await
        .map_err(q.mysql_err())
}

fn pg_params(params: &[P<'_>]) -> Vec<PgParam> {
    params
        .iter()
        .map(|p| -> PgParam {
            match p {
                P::I32(v) => Box::new(*v),
                P::I64(v) => Box::new(*v),
                P::OptI64(v) => Box::new(*v),
                P::F64(v) => Box::new(*v),
                P::Bool(v) => Box::new(*v),
                P::Text(v) => Box::new(v.map(str::to_string)),
                P::TextList(v) => Box::new(v.to_vec()),
            }
        })
        .collect()
}

/// The server's own message for a control-database error (a procedure's
/// refusal, a constraint), else the whole error.
/// Did the control database refuse this value or row itself (a data or
/// constraint error, a packet too large), rather than fail for a while (a
/// deadlock, a lock timeout, a lost connection)? Only such a refusal makes a
/// journal record fall back to what identifies it.
pub fn refused_the_data(e: &ControlError) -> bool {
    match e {
        ControlError::Db { source, .. } => source
            .as_db_error()
            .is_some_and(|d| matches!(&d.code().code()[..2], "22" | "23" | "54")),
        ControlError::Mysql {
            source: mysql_async::Error::Server(s),
            ..
        } => matches!(
            s.code,
            1048 | 1062 | 1153 | 1264 | 1265 | 1292 | 1366 | 1406 | 3140 | 3819 | 4025 | 4038
        ),
        _ => false,
    }
}

pub fn server_message(e: &ControlError) -> String {
    match e {
        ControlError::Db { source, .. } => source
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| source.to_string()),
        ControlError::Mysql {
            source: mysql_async::Error::Server(s),
            ..
        } => s.message.clone(),
        other => other.to_string(),
    }
}

/// Split a MySQL script into statements. `DELIMITER x` lines change the
/// statement terminator (as in the mysql client), so the same file runs in
/// the mysql client and here; `--` comment lines are dropped.
pub fn split_mysql_script(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut delimiter = ";".to_string();
    let mut current = String::new();
    for line in script.lines() {
        let trimmed = line.trim();
        if let Some(d) = trimmed
            .strip_prefix("DELIMITER ")
            .or_else(|| trimmed.strip_prefix("delimiter "))
        {
            delimiter = d.trim().to_string();
            continue;
        }
        if current.trim().is_empty() && (trimmed.starts_with("--") || trimmed.is_empty()) {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(delimiter.as_str()) {
            let statement = current.trim_end();
            let statement = statement
                .strip_suffix(delimiter.as_str())
                .unwrap_or(statement)
                .trim()
                .to_string();
            if !statement.is_empty() {
                out.push(statement);
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_and_procedures() {
        let script = "-- header\nCREATE TABLE a (x int);\n\nDELIMITER $$\nCREATE PROCEDURE p() BEGIN\n  SELECT 1;\n  SELECT 2;\nEND $$\nDELIMITER ;\nCREATE VIEW v AS SELECT 1;\n";
        let s = split_mysql_script(script);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[0], "CREATE TABLE a (x int)");
        assert!(s[1].starts_with("CREATE PROCEDURE p() BEGIN"));
        assert!(s[1].contains("SELECT 2;"));
        assert!(s[1].ends_with("END"));
        assert_eq!(s[2], "CREATE VIEW v AS SELECT 1");
    }
}
