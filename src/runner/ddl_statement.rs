//! The statement `duplex ddl` runs on both sites: which synced table an
//! `ALTER TABLE` changes, and the statement in each engine's dialect.
//!
//! Between two sites of one engine the statement runs as given. Between
//! PostgreSQL and MySQL/MariaDB, the common forms are translated: adding a
//! column (`ADD [COLUMN] name type [NULL | NOT NULL] [DEFAULT literal]`) and
//! dropping one (`DROP [COLUMN] [IF EXISTS] name`), several of them
//! separated by commas, with the usual types. Anything else is refused with
//! the reason: the DBA gives each engine's statement (`--postgresql`,
//! `--mysql`) instead.

use crate::control::SiteEngine;

/// A statement to run on both sites.
#[derive(Debug, Clone, PartialEq)]
pub struct DdlStatement {
    /// The table it alters: its name, and the schema or database it names
    /// (`None`: unqualified).
    pub schema: Option<String>,
    pub table: String,
    /// The statement as given.
    pub text: String,
    /// The actions after the table name, parsed when they are of the forms
    /// that translate (`None` otherwise).
    actions: Option<Vec<Action>>,
    /// The engine whose dialect the statement is written in: PostgreSQL
    /// when it quotes with double quotes, MySQL with backquotes, else either.
    dialect: Option<SiteEngine>,
}

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Add {
        column: String,
        ty: String,
        /// `NULL`, `NOT NULL`, `DEFAULT literal`, as written.
        rest: Vec<String>,
    },
    Drop {
        column: String,
        if_exists: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    /// An identifier in double quotes or backquotes.
    Quoted(String, char),
    /// A string literal, as written (quotes included).
    Literal(String),
    Punct(char),
}

fn tokenize(text: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '`' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("an unterminated {c}-quoted name")),
                    Some(&q) if q == c && chars.get(i + 1) == Some(&c) => {
                        s.push(c);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&o) => {
                        s.push(o);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Quoted(s, c));
        } else if c == '\'' {
            let mut s = String::from('\'');
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("an unterminated string".into()),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push_str("''");
                        i += 2;
                    }
                    Some('\'') => {
                        s.push('\'');
                        i += 1;
                        break;
                    }
                    Some(&o) => {
                        s.push(o);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Literal(s));
        } else if c.is_alphanumeric()
            || c == '_'
            || c == '$'
            || c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())
        {
            let mut s = String::from(c);
            i += 1;
            while let Some(&d) = chars.get(i) {
                if d.is_alphanumeric()
                    || d == '_'
                    || d == '$'
                    || d == '.' && s.chars().all(|x| x.is_ascii_digit() || x == '-')
                {
                    s.push(d);
                    i += 1;
                } else {
                    break;
                }
            }
            out.push(Tok::Word(s));
        } else if c == ';' && chars[i + 1..].iter().all(|c| c.is_whitespace()) {
            i = chars.len();
        } else if c == '-' && chars.get(i + 1) == Some(&'-')
            || c == '/' && chars.get(i + 1) == Some(&'*')
            || c == '#'
        {
            return Err("comments in the statement".into());
        } else if c == ';' {
            return Err("more than one statement".into());
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    Ok(out)
}

impl Tok {
    fn is(&self, word: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(word))
    }

    fn ident(&self) -> Option<&str> {
        match self {
            Tok::Word(w) => Some(w),
            Tok::Quoted(q, _) => Some(q),
            _ => None,
        }
    }
}

impl DdlStatement {
    /// Parse `text`: an `ALTER TABLE` of one table; anything else is refused
    /// with why.
    pub fn parse(text: &str) -> Result<DdlStatement, String> {
        let tokens = tokenize(text)?;
        if !(tokens.first().is_some_and(|t| t.is("ALTER"))
            && tokens.get(1).is_some_and(|t| t.is("TABLE")))
        {
            return Err("duplex ddl runs an ALTER TABLE of a synced table (create a table on both sites and add it to duplex.link_tables; to drop one, remove it from duplex.link_tables first)".into());
        }
        let mut i = 2;
        while tokens
            .get(i)
            .is_some_and(|t| t.is("ONLY") || t.is("IF") || t.is("EXISTS"))
        {
            i += 1;
        }
        let first = tokens
            .get(i)
            .and_then(Tok::ident)
            .ok_or("no table name after ALTER TABLE")?;
        let (schema, table) = if tokens.get(i + 1) == Some(&Tok::Punct('.')) {
            let name = tokens
                .get(i + 2)
                .and_then(Tok::ident)
                .ok_or("no table name after the schema")?;
            i += 3;
            (Some(first.to_string()), name.to_string())
        } else {
            i += 1;
            (None, first.to_string())
        };
        let rest = &tokens[i..];
        if rest.iter().any(|t| t.is("RENAME")) && rest.iter().any(|t| t.is("COLUMN")) {
            return Err(format!("renaming a column of {table}: the changes held meanwhile would carry the old name, which neither site has then; instead add the new column, copy the values (UPDATE), and drop the old one, each with duplex ddl, or map the names (duplex.column_mappings.peer_column)"));
        }
        if rest.iter().any(|t| t.is("RENAME")) {
            return Err(format!("renaming table {table} changes the link's configuration: stop the application's writes to it, wait until duplex status shows no lag, then rename it on both sites and in its duplex.link_tables row"));
        }
        let quotes: Vec<char> = tokens
            .iter()
            .filter_map(|t| match t {
                Tok::Quoted(_, q) => Some(*q),
                _ => None,
            })
            .collect();
        let dialect = if quotes.contains(&'`') {
            Some(SiteEngine::Mysql)
        } else if quotes.contains(&'"') {
            Some(SiteEngine::Postgres)
        } else {
            None
        };
        Ok(DdlStatement {
            schema,
            table,
            text: text.trim().trim_end_matches(';').trim().to_string(),
            actions: actions(rest),
            dialect,
        })
    }

    /// The statement for a site of `engine`, whose table is `table` (the
    /// site's name for it, quoted: a MySQL site's database is its schema).
    /// `cross_engine`: the link's other site is of the other engine, so
    /// the statement must be one that translates (what runs on one site
    /// must mean the same on the other).
    pub fn for_engine(
        &self,
        engine: SiteEngine,
        table: &str,
        cross_engine: bool,
    ) -> Result<String, String> {
        if !cross_engine {
            return Ok(self.text.clone());
        }
        let actions = self.actions.as_ref().ok_or_else(|| {
            "only ADD COLUMN and DROP COLUMN are translated between PostgreSQL and MySQL/MariaDB: give each engine's statement (--postgresql '...' --mysql '...')".to_string()
        })?;
        let mut parts = Vec::new();
        for a in actions {
            parts.push(match a {
                Action::Add { column, ty, rest } => {
                    let ty = translate_type(ty, engine).ok_or_else(|| {
                        format!("type {ty} has no translation here: give each engine's statement (--postgresql '...' --mysql '...')")
                    })?;
                    let mut s = format!("ADD COLUMN {} {ty}", quote(column, engine));
                    for r in rest {
                        s.push(' ');
                        s.push_str(r);
                    }
                    s
                }
                Action::Drop { column, if_exists } => format!(
                    "DROP COLUMN {}{}",
                    if *if_exists { "IF EXISTS " } else { "" },
                    quote(column, engine)
                ),
            });
        }
        Ok(format!("ALTER TABLE {table} {}", parts.join(", ")))
    }
}

fn quote(name: &str, engine: SiteEngine) -> String {
    match engine {
        SiteEngine::Postgres => crate::pg::quote_ident(name),
        SiteEngine::Mysql => crate::mysql::quote_ident(name),
    }
}

/// The actions of an ALTER TABLE, when every one is a column added or
/// dropped in the forms that translate.
fn actions(tokens: &[Tok]) -> Option<Vec<Action>> {
    let mut out = Vec::new();
    for part in tokens.split(|t| *t == Tok::Punct(',')) {
        let (verb, mut i) = (part.first()?, 1);
        if part.get(i).is_some_and(|t| t.is("COLUMN")) {
            i += 1;
        }
        if verb.is("DROP") {
            let if_exists = part.get(i).is_some_and(|t| t.is("IF"))
                && part.get(i + 1).is_some_and(|t| t.is("EXISTS"));
            if if_exists {
                i += 2;
            }
            let column = part.get(i)?.ident()?.to_string();
            if part.len() != i + 1 {
                return None;
            }
            out.push(Action::Drop { column, if_exists });
            continue;
        }
        if !verb.is("ADD") {
            return None;
        }
        let column = part.get(i)?.ident()?.to_string();
        i += 1;
        // The type: words, and a parenthesised modifier.
        let mut ty = String::new();
        while let Some(t) = part.get(i) {
            match t {
                Tok::Word(w)
                    if !["NULL", "NOT", "DEFAULT"]
                        .iter()
                        .any(|k| w.eq_ignore_ascii_case(k)) =>
                {
                    if !ty.is_empty() {
                        ty.push(' ');
                    }
                    ty.push_str(&w.to_ascii_lowercase());
                    i += 1;
                }
                Tok::Punct('(') => {
                    let close = part[i..].iter().position(|t| *t == Tok::Punct(')'))? + i;
                    let inner: Vec<String> = part[i + 1..close]
                        .iter()
                        .map(|t| match t {
                            Tok::Word(w) => Some(w.clone()),
                            Tok::Punct(',') => Some(",".into()),
                            _ => None,
                        })
                        .collect::<Option<_>>()?;
                    ty.push('(');
                    ty.push_str(&inner.join(""));
                    ty.push(')');
                    i = close + 1;
                }
                _ => break,
            }
        }
        if ty.is_empty() {
            return None;
        }
        // NULL, NOT NULL, DEFAULT <number | string | NULL | TRUE | FALSE>.
        let mut rest = Vec::new();
        while let Some(t) = part.get(i) {
            if t.is("NULL") {
                rest.push("NULL".into());
                i += 1;
            } else if t.is("NOT") && part.get(i + 1).is_some_and(|t| t.is("NULL")) {
                rest.push("NOT NULL".into());
                i += 2;
            } else if t.is("DEFAULT") {
                let value = match part.get(i + 1)? {
                    Tok::Literal(l) => l.clone(),
                    Tok::Word(w)
                        if w.parse::<f64>().is_ok()
                            || ["NULL", "TRUE", "FALSE"]
                                .iter()
                                .any(|k| w.eq_ignore_ascii_case(k)) =>
                    {
                        w.to_ascii_uppercase()
                    }
                    _ => return None,
                };
                rest.push(format!("DEFAULT {value}"));
                i += 2;
            } else {
                return None;
            }
        }
        out.push(Action::Add { column, ty, rest });
    }
    (!out.is_empty()).then_some(out)
}

/// A column type in `engine`'s spelling; `None` when not one of the types
/// translated here.
fn translate_type(ty: &str, engine: SiteEngine) -> Option<String> {
    let (base, modifier) = match ty.find('(') {
        Some(p) => (ty[..p].trim(), &ty[p..]),
        None => (ty, ""),
    };
    let pg = engine == SiteEngine::Postgres;
    let t = match base {
        "int" | "integer" | "int4" => if pg { "integer" } else { "INT" }.to_string(),
        "bigint" | "int8" => if pg { "bigint" } else { "BIGINT" }.to_string(),
        "smallint" | "int2" => if pg { "smallint" } else { "SMALLINT" }.to_string(),
        "text" | "longtext" | "mediumtext" => if pg { "text" } else { "TEXT" }.to_string(),
        "varchar" | "character varying" => {
            if modifier.is_empty() {
                return pg.then(|| "text".to_string());
            }
            return Some(format!(
                "{}{modifier}",
                if pg { "varchar" } else { "VARCHAR" }
            ));
        }
        "boolean" | "bool" => if pg { "boolean" } else { "BOOLEAN" }.to_string(),
        "numeric" | "decimal" => {
            return Some(format!(
                "{}{modifier}",
                if pg { "numeric" } else { "DECIMAL" }
            ))
        }
        "double precision" | "float8" | "double" => {
            if pg { "double precision" } else { "DOUBLE" }.to_string()
        }
        "real" | "float4" | "float" => if pg { "real" } else { "FLOAT" }.to_string(),
        "date" => if pg { "date" } else { "DATE" }.to_string(),
        "timestamp" | "datetime" | "timestamp without time zone" => {
            if pg { "timestamp" } else { "DATETIME(6)" }.to_string()
        }
        "timestamptz" | "timestamp with time zone" => if pg {
            "timestamptz"
        } else {
            "TIMESTAMP(6) NULL"
        }
        .to_string(),
        "json" | "jsonb" => if pg { "jsonb" } else { "JSON" }.to_string(),
        "uuid" => if pg { "uuid" } else { "CHAR(36)" }.to_string(),
        "bytea" | "blob" | "longblob" => if pg { "bytea" } else { "LONGBLOB" }.to_string(),
        _ => return None,
    };
    if !modifier.is_empty() && !matches!(base, "timestamp" | "datetime" | "timestamptz") {
        return None;
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_and_the_statement_per_engine() {
        let s = DdlStatement::parse(
            "ALTER TABLE public.t ADD COLUMN extra integer DEFAULT 0 NOT NULL;",
        )
        .expect("parse");
        assert_eq!(
            (s.schema.as_deref(), s.table.as_str()),
            (Some("public"), "t")
        );
        assert_eq!(
            s.for_engine(SiteEngine::Postgres, "t", false).unwrap(),
            "ALTER TABLE public.t ADD COLUMN extra integer DEFAULT 0 NOT NULL",
            "one engine: as given"
        );
        assert_eq!(
            s.for_engine(SiteEngine::Postgres, "public.t", true)
                .unwrap(),
            "ALTER TABLE public.t ADD COLUMN \"extra\" integer DEFAULT 0 NOT NULL"
        );
        assert_eq!(
            s.for_engine(SiteEngine::Mysql, "`t`", true).unwrap(),
            "ALTER TABLE `t` ADD COLUMN `extra` INT DEFAULT 0 NOT NULL"
        );
        let s = DdlStatement::parse("alter table `t` add column `n` varchar(20) null, drop `old`")
            .expect("parse");
        assert_eq!(
            s.for_engine(SiteEngine::Postgres, "\"t\"", true).unwrap(),
            "ALTER TABLE \"t\" ADD COLUMN \"n\" varchar(20) NULL, DROP COLUMN \"old\""
        );
        assert_eq!(
            DdlStatement::parse("ALTER TABLE \"T\" ADD COLUMN c timestamptz")
                .unwrap()
                .for_engine(SiteEngine::Mysql, "`T`", true)
                .unwrap(),
            "ALTER TABLE `T` ADD COLUMN `c` TIMESTAMP(6) NULL"
        );
        // Unquoted MySQL spelling, between the engines: translated too.
        assert_eq!(
            DdlStatement::parse("ALTER TABLE t ADD COLUMN c datetime")
                .unwrap()
                .for_engine(SiteEngine::Postgres, "t", true)
                .unwrap(),
            "ALTER TABLE t ADD COLUMN \"c\" timestamp"
        );
    }

    #[test]
    fn what_cannot_be_run_or_translated_is_refused_with_why() {
        for (sql, why) in [
            ("DROP TABLE t", "ALTER TABLE of a synced table"),
            ("ALTER TABLE t RENAME TO u", "stop the application"),
            (
                "ALTER TABLE t ADD c int; DROP TABLE u",
                "more than one statement",
            ),
        ] {
            let e = DdlStatement::parse(sql).expect_err(sql);
            assert!(e.contains(why), "{sql}: {e}");
        }
        let s = DdlStatement::parse("ALTER TABLE \"t\" ALTER COLUMN c TYPE bigint").unwrap();
        assert!(s.for_engine(SiteEngine::Postgres, "t", false).is_ok());
        assert!(s
            .for_engine(SiteEngine::Postgres, "t", true)
            .unwrap_err()
            .contains("--mysql"));
        let s = DdlStatement::parse("ALTER TABLE \"t\" ADD COLUMN c inet").unwrap();
        assert!(s
            .for_engine(SiteEngine::Mysql, "t", true)
            .unwrap_err()
            .contains("type inet"));
        let e = DdlStatement::parse("ALTER TABLE t RENAME COLUMN a TO b").unwrap_err();
        assert!(e.contains("add the new column"), "{e}");
    }
}
