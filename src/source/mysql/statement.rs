//! What a statement in the binlog may change.
//!
//! In ROW format the binlog carries statements only for transaction control
//! and DDL; a write logged as a statement (a session with `binlog_format =
//! STATEMENT` or `MIXED`, or `LOAD DATA` in such a session) carries no rows,
//! so duplex cannot replicate it. The reader must never mistake such a write
//! for harmless DDL: this module classifies a statement conservatively, from
//! its text and the session's default database, after stripping comments
//! (the code inside `/*! ... */` and `/*M! ... */` counts: the server runs
//! it), and through `SET STATEMENT ... FOR`, `USE` and several statements in
//! one event. What it cannot tell is [`Classified::unknown`]; the reader then
//! stops every table of the direction rather than guess.

/// A table or routine named in a statement, its database resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QualifiedName {
    /// Empty when the statement names no database and the session had none.
    pub db: String,
    pub name: String,
}

impl QualifiedName {
    fn new(db: &str, name: &str) -> QualifiedName {
        QualifiedName {
            db: db.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.db.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}.{}", self.db, self.name)
        }
    }
}

/// Transaction boundaries and TRUNCATE, which the reader handles itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Begin,
    Commit,
    Rollback,
    Truncate(QualifiedName),
}

/// What one binlog statement event may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classified {
    pub control: Option<Control>,
    /// DDL: table definitions may have changed.
    pub ddl: bool,
    /// Tables whose rows it may change directly (every table an UPDATE or a
    /// DELETE names, joined or not; the target of an INSERT, REPLACE, LOAD
    /// DATA or CREATE TABLE ... SELECT).
    pub writes: Vec<QualifiedName>,
    /// Tables it creates and fills (CREATE TABLE ... SELECT): new, so no
    /// trigger of theirs can have run.
    pub created: Vec<QualifiedName>,
    /// Names called like functions: a stored function among them may write
    /// anything, and its writes are not logged on their own.
    pub calls: Vec<QualifiedName>,
    /// It may change rows, and which ones cannot be told: why.
    pub unknown: Option<String>,
    /// Tables it renames away or drops (RENAME TABLE, ALTER TABLE ...
    /// RENAME, DROP TABLE): their later rows are logged under another name,
    /// or not at all.
    pub gone: Vec<QualifiedName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An unquoted word (keyword or identifier), as written.
    Word(String),
    /// A quoted identifier (backticks, or double quotes under ANSI_QUOTES).
    Quoted(String),
    /// A string literal (or a double-quoted one: see `Quoted`).
    Str,
    Punct(char),
}

impl Tok {
    fn is_word(&self, w: &str) -> bool {
        matches!(self, Tok::Word(x) if x.eq_ignore_ascii_case(w))
    }

    fn ident(&self) -> Option<&str> {
        match self {
            Tok::Word(w) | Tok::Quoted(w) => Some(w),
            _ => None,
        }
    }
}

/// Split a statement into tokens; comments are dropped, executable comments
/// kept as code. Never fails: text it does not understand becomes
/// punctuation, which at worst makes a statement look less harmless.
fn tokenize(sql: &str) -> Vec<Tok> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // Inside `/*! ... */`: its closing `*/` is not code.
    let mut executable_comment = false;
    let quoted = |i: &mut usize, close: char, backslash: bool| -> String {
        let mut s = String::new();
        *i += 1;
        while *i < chars.len() {
            let c = chars[*i];
            if backslash && c == '\\' && *i + 1 < chars.len() {
                s.push(chars[*i + 1]);
                *i += 2;
                continue;
            }
            if c == close {
                if chars.get(*i + 1) == Some(&close) {
                    s.push(close);
                    *i += 2;
                    continue;
                }
                *i += 1;
                return s;
            }
            s.push(c);
            *i += 1;
        }
        s
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '#'
            || (c == '-'
                && next == Some('-')
                && chars
                    .get(i + 2)
                    .is_none_or(|c| c.is_whitespace() || c.is_control()))
        {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let exec = match chars.get(i + 2) {
                Some('!') => Some(i + 3),
                Some('M') if chars.get(i + 3) == Some(&'!') => Some(i + 4),
                _ => None,
            };
            match exec {
                Some(mut j) => {
                    // An optional version number, then code.
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                    executable_comment = true;
                    i = j;
                }
                None => {
                    i += 2;
                    while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                        i += 1;
                    }
                    i += 2;
                }
            }
        } else if c == '*' && next == Some('/') && executable_comment {
            executable_comment = false;
            i += 2;
        } else if c == '`' {
            out.push(Tok::Quoted(quoted(&mut i, '`', false)));
        } else if c == '"' {
            // A string, or an identifier under ANSI_QUOTES: as an identifier
            // it can only make a statement look less harmless.
            out.push(Tok::Quoted(quoted(&mut i, '"', true)));
        } else if c == '\'' {
            quoted(&mut i, '\'', true);
            out.push(Tok::Str);
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

/// Statements of one event, split at top-level semicolons.
fn split(tokens: Vec<Tok>) -> Vec<Vec<Tok>> {
    let mut out = vec![Vec::new()];
    let mut depth = 0i32;
    for t in tokens {
        match t {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => depth -= 1,
            Tok::Punct(';') if depth <= 0 => {
                out.push(Vec::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = out.last_mut() {
            last.push(t);
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The dotted name starting at `i`: its parts, and the index after it.
fn path(tokens: &[Tok], mut i: usize) -> Option<(Vec<String>, usize)> {
    let mut parts = vec![tokens.get(i)?.ident()?.to_string()];
    i += 1;
    while tokens.get(i) == Some(&Tok::Punct('.')) {
        match tokens.get(i + 1).and_then(Tok::ident) {
            Some(p) => {
                parts.push(p.to_string());
                i += 2;
            }
            None => break,
        }
    }
    Some((parts, i))
}

/// A table named by `parts` (`t`, `db.t`), in `default_db` when unqualified.
fn table_of(parts: &[String], default_db: &str) -> Option<QualifiedName> {
    match parts {
        [t] => Some(QualifiedName::new(default_db, t)),
        [db, t, ..] => Some(QualifiedName::new(db, t)),
        [] => None,
    }
}

/// Words that appear where table names do in UPDATE and DELETE, and are not
/// tables (unless quoted).
const REFERENCE_KEYWORDS: &[&str] = &[
    "AS",
    "CROSS",
    "DELAYED",
    "FORCE",
    "FOR",
    "FROM",
    "FULL",
    "HIGH_PRIORITY",
    "IGNORE",
    "IN",
    "INDEX",
    "INNER",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "LATERAL",
    "LEFT",
    "LOW_PRIORITY",
    "NATURAL",
    "NOT",
    "NULL",
    "ON",
    "OR",
    "AND",
    "OUTER",
    "PARTITION",
    "QUICK",
    "RIGHT",
    "SELECT",
    "STRAIGHT_JOIN",
    "USE",
    "USING",
    "WHERE",
    "EXISTS",
    "LIKE",
    "BETWEEN",
    "DISTINCT",
    "ALL",
];

/// Every table a reference list (`t1 JOIN db.t2 AS x ON ...`) may name. A
/// two-part name is a table of a database or a column of a table (in an ON
/// condition): both are taken, which can only stop more, never less.
fn references(tokens: &[Tok], default_db: &str, out: &mut Vec<QualifiedName>) {
    let mut i = 0;
    while i < tokens.len() {
        let keyword = matches!(&tokens[i], Tok::Word(w) if REFERENCE_KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k)));
        if keyword {
            i += 1;
            continue;
        }
        match path(tokens, i) {
            Some((parts, next)) => {
                match parts.as_slice() {
                    [t] => out.push(QualifiedName::new(default_db, t)),
                    [a, b] => {
                        out.push(QualifiedName::new(a, b));
                        out.push(QualifiedName::new(default_db, a));
                    }
                    [a, b, ..] => out.push(QualifiedName::new(a, b)),
                    [] => {}
                }
                i = next;
            }
            None => i += 1,
        }
    }
}

/// Names called like functions (`name(` or `db.name(`), keywords aside.
fn calls(tokens: &[Tok], default_db: &str) -> Vec<QualifiedName> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match path(tokens, i) {
            Some((parts, next)) => {
                if tokens.get(next) == Some(&Tok::Punct('(')) {
                    if let Some(q) = table_of(&parts, default_db) {
                        out.push(q);
                    }
                }
                i = next;
            }
            None => i += 1,
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Index of the first top-level word among `words` at or after `from`.
fn find_top(tokens: &[Tok], from: usize, words: &[&str]) -> Option<usize> {
    let mut depth = 0i32;
    for (i, t) in tokens.iter().enumerate().skip(from) {
        match t {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => depth -= 1,
            _ if depth == 0 && words.iter().any(|w| t.is_word(w)) => return Some(i),
            _ => {}
        }
    }
    None
}

/// Skip the words in `skip` from `i`.
fn skip_words(tokens: &[Tok], mut i: usize, skip: &[&str]) -> usize {
    while tokens
        .get(i)
        .is_some_and(|t| skip.iter().any(|w| t.is_word(w)))
    {
        i += 1;
    }
    i
}

/// The tables a RENAME TABLE, ALTER TABLE ... RENAME or DROP TABLE takes
/// away from their names (a temporary table is no synced table).
fn tables_gone(tokens: &[Tok], verb: &str, db: &str) -> Vec<QualifiedName> {
    let mut gone = Vec::new();
    let table_at = |i: usize| path(tokens, i).and_then(|(p, next)| Some((table_of(&p, db)?, next)));
    match verb {
        // RENAME TABLE a TO b [, c TO d ...]
        "RENAME"
            if tokens
                .get(1)
                .is_some_and(|t| t.is_word("TABLE") || t.is_word("TABLES")) =>
        {
            let mut i = 2;
            while let Some((from, next)) = table_at(i) {
                gone.push(from);
                i = next;
                // TO new_name, then a comma and the next pair.
                let mut depth = 0;
                while let Some(t) = tokens.get(i) {
                    match t {
                        Tok::Punct('(') => depth += 1,
                        Tok::Punct(')') => depth -= 1,
                        Tok::Punct(',') if depth == 0 => break,
                        _ => {}
                    }
                    i += 1;
                }
                if tokens.get(i) != Some(&Tok::Punct(',')) {
                    break;
                }
                i += 1;
            }
        }
        // ALTER [ONLINE] [IGNORE] TABLE a ... RENAME [TO|AS] b
        "ALTER" => {
            let Some(at) = tokens.iter().take(4).position(|t| t.is_word("TABLE")) else {
                return gone;
            };
            let i = skip_words(tokens, at + 1, &["IF", "EXISTS"]);
            let Some((t, next)) = table_at(i) else {
                return gone;
            };
            // RENAME as an action: first, or after a comma; not RENAME
            // COLUMN, INDEX or KEY.
            let renames = (next..tokens.len()).any(|k| {
                tokens[k].is_word("RENAME")
                    && !tokens.get(k + 1).is_some_and(|n| {
                        n.is_word("COLUMN") || n.is_word("INDEX") || n.is_word("KEY")
                    })
                    && (k == next || tokens.get(k - 1) == Some(&Tok::Punct(',')))
            });
            if renames {
                gone.push(t);
            }
        }
        // DROP [TEMPORARY] TABLE [IF EXISTS] a [, b ...]
        "DROP"
            if tokens
                .get(1)
                .is_some_and(|t| t.is_word("TABLE") || t.is_word("TABLES")) =>
        {
            let mut i = skip_words(tokens, 2, &["IF", "EXISTS"]);
            while let Some((t, next)) = table_at(i) {
                gone.push(t);
                if tokens.get(next) != Some(&Tok::Punct(',')) {
                    break;
                }
                i = next + 1;
            }
        }
        _ => {}
    }
    gone
}

/// Objects CREATE, ALTER and DROP name; the first of them after the verb
/// (and its modifiers: OR REPLACE, DEFINER = ..., ALGORITHM = ..., ...) is
/// what the statement is about.
const OBJECTS: &[&str] = &[
    "TABLE",
    "TABLES",
    "VIEW",
    "PROCEDURE",
    "FUNCTION",
    "TRIGGER",
    "EVENT",
    "INDEX",
    "DATABASE",
    "SCHEMA",
    "USER",
    "ROLE",
    "SERVER",
    "SEQUENCE",
    "PACKAGE",
    "TABLESPACE",
    "LOGFILE",
    "SYNONYM",
];

/// Classify one statement (no top-level `;`) into `out`; `default_db` is
/// updated by USE.
fn statement(tokens: &[Tok], default_db: &mut String, out: &mut Classified, alone: bool) {
    let Some(Tok::Word(verb)) = tokens.first() else {
        out.unknown = Some("a statement that does not start with a keyword".into());
        return;
    };
    let verb = verb.to_ascii_uppercase();
    let db = default_db.clone();
    let control = |out: &mut Classified, c: Control| {
        if alone {
            out.control = Some(c);
        } else {
            out.unknown = Some("transaction control among several statements in one event".into());
        }
    };
    match verb.as_str() {
        "BEGIN" if tokens.len() == 1 || (tokens.len() == 2 && tokens[1].is_word("WORK")) => {
            control(out, Control::Begin)
        }
        "START" if tokens.get(1).is_some_and(|t| t.is_word("TRANSACTION")) => {
            control(out, Control::Begin)
        }
        "COMMIT" => control(out, Control::Commit),
        "ROLLBACK"
            if tokens.get(1).is_some_and(|t| t.is_word("TO"))
                || tokens.get(2).is_some_and(|t| t.is_word("TO")) => {}
        "ROLLBACK" => control(out, Control::Rollback),
        "SAVEPOINT" | "RELEASE" => {}
        "USE" => match tokens.get(1).and_then(Tok::ident) {
            Some(d) => *default_db = d.to_string(),
            None => out.unknown = Some("USE without a database".into()),
        },
        "TRUNCATE" => {
            let i = skip_words(tokens, 1, &["TABLE"]);
            match path(tokens, i).and_then(|(p, _)| table_of(&p, &db)) {
                Some(t) if alone => out.control = Some(Control::Truncate(t)),
                Some(t) => {
                    // Among other statements: stop the table instead.
                    out.writes.push(t);
                    out.ddl = true;
                }
                None => out.unknown = Some("TRUNCATE of a table duplex cannot read".into()),
            }
        }
        "CREATE" | "ALTER" | "DROP" | "RENAME" => {
            out.ddl = true;
            out.gone.extend(tables_gone(tokens, &verb, &db));
            let object = tokens
                .iter()
                .take(16)
                .position(|t| OBJECTS.iter().any(|o| t.is_word(o)));
            let temporary = tokens.iter().take(4).any(|t| t.is_word("TEMPORARY"));
            if verb == "CREATE" && !temporary {
                if let Some(at) = object.filter(|&o| tokens[o].is_word("TABLE")) {
                    let i = skip_words(tokens, at + 1, &["IF", "NOT", "EXISTS"]);
                    // CREATE TABLE ... SELECT fills the table: logged as a
                    // statement, its rows are not in the binlog.
                    let fills = tokens.iter().skip(i).any(|t| t.is_word("SELECT"));
                    if fills {
                        match path(tokens, i).and_then(|(p, _)| table_of(&p, &db)) {
                            Some(t) => out.created.push(t),
                            None => {
                                out.unknown = Some(
                                    "CREATE TABLE ... SELECT of a table duplex cannot read".into(),
                                )
                            }
                        }
                        out.calls.extend(calls(&tokens[i..], &db));
                    }
                }
            }
        }
        "ANALYZE" | "OPTIMIZE" | "REPAIR" | "CHECK" | "CHECKSUM" | "GRANT" | "REVOKE" | "FLUSH"
        | "INSTALL" | "UNINSTALL" => {}
        "SET" => {
            if tokens.get(1).is_some_and(|t| t.is_word("STATEMENT")) {
                // SET STATEMENT var = value [, ...] FOR <statement>
                match find_top(tokens, 2, &["FOR"]) {
                    Some(f) => statement(&tokens[f + 1..], default_db, out, alone),
                    None => out.unknown = Some("SET STATEMENT without FOR".into()),
                }
            } else if !tokens
                .get(1)
                .is_some_and(|t| t.is_word("PASSWORD") || t.is_word("DEFAULT") || t.is_word("ROLE"))
            {
                out.unknown = Some(format!(
                    "a statement {} duplex does not know",
                    abbreviate_tokens(tokens)
                ));
            }
        }
        "INSERT" | "REPLACE" => {
            let i = skip_words(
                tokens,
                1,
                &["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO"],
            );
            match path(tokens, i).and_then(|(p, _)| table_of(&p, &db)) {
                Some(t) => out.writes.push(t),
                None => out.unknown = Some(format!("{verb} into a table duplex cannot read")),
            }
            out.calls.extend(calls(&tokens[i..], &db));
        }
        "LOAD" if tokens.get(1).is_some_and(|t| t.is_word("INDEX")) => {}
        "LOAD" => {
            let target = (1..tokens.len())
                .find(|&i| {
                    tokens[i].is_word("INTO")
                        && tokens.get(i + 1).is_some_and(|t| t.is_word("TABLE"))
                })
                .and_then(|i| path(tokens, i + 2))
                .and_then(|(p, _)| table_of(&p, &db));
            match target {
                Some(t) => out.writes.push(t),
                None => out.unknown = Some("LOAD into a table duplex cannot read".into()),
            }
            out.calls.extend(calls(tokens, &db));
        }
        "UPDATE" => {
            let start = skip_words(tokens, 1, &["LOW_PRIORITY", "IGNORE"]);
            match find_top(tokens, start, &["SET"]) {
                Some(set) => references(&tokens[start..set], &db, &mut out.writes),
                None => out.unknown = Some("UPDATE without SET".into()),
            }
            out.calls.extend(calls(tokens, &db));
        }
        "DELETE" => {
            let start = skip_words(tokens, 1, &["LOW_PRIORITY", "QUICK", "IGNORE"]);
            let end = find_top(tokens, start, &["WHERE", "ORDER", "LIMIT", "RETURNING"])
                .unwrap_or(tokens.len());
            references(&tokens[start..end], &db, &mut out.writes);
            out.calls.extend(calls(tokens, &db));
        }
        // CALL, SELECT (MariaDB logs `SELECT f()` for a stored function with
        // side effects), DO, XA, WITH, compound statements, anything newer:
        // what they change cannot be read from the text.
        "XA" => out.unknown = Some("an XA transaction (not supported by duplex)".into()),
        _ => {
            out.unknown = Some(format!(
                "a {verb} statement, whose changes duplex cannot tell from its text"
            ))
        }
    }
}

fn abbreviate_tokens(tokens: &[Tok]) -> String {
    tokens
        .iter()
        .take(3)
        .map(|t| match t {
            Tok::Word(w) => w.clone(),
            Tok::Quoted(q) => format!("`{q}`"),
            Tok::Str => "'...'".into(),
            Tok::Punct(c) => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Classify the statement text of one binlog Query (or Execute_load_query)
/// event run with default database `default_db` (empty: none).
pub fn classify(query: &str, default_db: &str) -> Classified {
    let tokens = tokenize(query);
    let mut out = Classified::default();
    // A routine's, trigger's or event's body holds semicolons and runs later,
    // not now: the whole event is DDL.
    let routine = matches!(tokens.first(), Some(t) if t.is_word("CREATE") || t.is_word("ALTER"))
        && tokens.iter().take(16).any(|t| {
            ["PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "PACKAGE"]
                .iter()
                .any(|o| t.is_word(o))
        });
    if routine {
        out.ddl = true;
        return out;
    }
    let statements = split(tokens);
    let alone = statements.len() == 1;
    let mut db = default_db.to_string();
    for s in &statements {
        statement(s, &mut db, &mut out, alone);
    }
    if statements.is_empty() {
        // Nothing but comments: nothing happens.
        return out;
    }
    out.writes.sort();
    out.writes.dedup();
    out.calls.sort();
    out.calls.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(db: &str, name: &str) -> QualifiedName {
        QualifiedName::new(db, name)
    }

    fn writes(sql: &str, db: &str) -> Vec<QualifiedName> {
        let c = classify(sql, db);
        assert_eq!(c.unknown, None, "{sql}");
        c.writes
    }

    #[test]
    fn transaction_control() {
        assert_eq!(classify("BEGIN", "app").control, Some(Control::Begin));
        assert_eq!(classify(" begin ", "").control, Some(Control::Begin));
        assert_eq!(classify("COMMIT", "app").control, Some(Control::Commit));
        assert_eq!(
            classify("COMMIT /* implicit */", "app").control,
            Some(Control::Commit)
        );
        assert_eq!(classify("ROLLBACK", "app").control, Some(Control::Rollback));
        assert_eq!(
            classify("ROLLBACK TO SAVEPOINT s", "app"),
            Classified::default()
        );
        assert_eq!(classify("SAVEPOINT `s`", "app"), Classified::default());
        assert!(
            classify("BEGIN NOT ATOMIC INSERT INTO t VALUES (1); END", "app")
                .unknown
                .is_some()
        );
        assert!(classify("XA START X'78',X'',1", "app").unknown.is_some());
    }

    #[test]
    fn writes_in_every_disguise() {
        let t = vec![q("app", "t")];
        // The two: another default database, a comment first.
        assert_eq!(writes("INSERT INTO app.t VALUES (1)", "other"), t);
        assert_eq!(writes("/* app */ INSERT INTO t VALUES (2, 2)", "app"), t);
        assert_eq!(writes("INSERT INTO t VALUES (3)", "app"), t);
        assert_eq!(
            writes(
                "-- x\n# y\n  insert low_priority ignore into `app`.`t` set id = 1",
                ""
            ),
            t
        );
        assert_eq!(writes("/*!40000 INSERT INTO t VALUES (1) */", "app"), t);
        assert_eq!(writes("/*M!100100 REPLACE INTO t VALUES (1) */", "app"), t);
        assert_eq!(writes("INSERT INTO t SELECT * FROM app.u", "app"), t);
        assert_eq!(writes("USE app; INSERT INTO t VALUES (1)", "other"), t);
        assert_eq!(writes("USE other; INSERT INTO app.t VALUES (1)", "app"), t);
        assert_eq!(
            writes(
                "SET STATEMENT max_statement_time=10 FOR INSERT INTO t VALUES (7,7)",
                "app"
            ),
            t
        );
        assert_eq!(
            writes(
                "LOAD DATA INFILE '/tmp/x' REPLACE INTO TABLE t FIELDS TERMINATED BY ','",
                "app"
            ),
            t
        );
        assert_eq!(
            writes("INSERT INTO `a``b` VALUES (1)", "app"),
            vec![q("app", "a`b")]
        );
        assert_eq!(
            writes("INSERT INTO other.t VALUES ('app.t')", "app"),
            vec![q("other", "t")]
        );
        // Strings and comments do not hide or invent anything.
        assert_eq!(
            writes(
                "INSERT INTO t VALUES ('it''s; DELETE FROM u', \"x\\\"y\") /* ; DELETE FROM u */",
                "app"
            ),
            t
        );
    }

    #[test]
    fn updates_and_deletes_name_every_table_they_join() {
        let w = writes("UPDATE t JOIN u ON t.id = u.id SET t.v = 0", "app");
        assert!(
            w.contains(&q("app", "t")) && w.contains(&q("app", "u")),
            "{w:?}"
        );
        let w = writes(
            "UPDATE LOW_PRIORITY other.x AS a, app.t SET a.v = 1 WHERE a.id = 2",
            "other",
        );
        assert!(
            w.contains(&q("other", "x")) && w.contains(&q("app", "t")),
            "{w:?}"
        );
        assert_eq!(
            writes("DELETE FROM t WHERE id IN (SELECT id FROM u)", "app"),
            vec![q("app", "t")]
        );
        let w = writes(
            "DELETE t FROM t JOIN u ON t.id = u.id WHERE u.id = 8",
            "app",
        );
        assert!(
            w.contains(&q("app", "t")) && w.contains(&q("app", "u")),
            "{w:?}"
        );
        let w = writes("DELETE FROM a.t1, t2 USING a.t1 INNER JOIN t2", "b");
        assert!(
            w.contains(&q("a", "t1")) && w.contains(&q("b", "t2")),
            "{w:?}"
        );
    }

    #[test]
    fn calls_are_collected() {
        let c = classify("INSERT INTO other.log VALUES (app.f(1), g())", "x");
        assert!(
            c.calls.contains(&q("app", "f")) && c.calls.contains(&q("x", "g")),
            "{c:?}"
        );
    }

    #[test]
    fn tables_renamed_away_or_dropped_are_named() {
        let gone = |sql: &str| -> Vec<String> {
            classify(sql, "app")
                .gone
                .iter()
                .map(|q| q.to_string())
                .collect()
        };
        assert_eq!(gone("RENAME TABLE t TO t2"), ["app.t"]);
        assert_eq!(
            gone("RENAME TABLE t TO tmp, u TO t, other.x TO other.y"),
            ["app.t", "app.u", "other.x"]
        );
        assert_eq!(gone("ALTER TABLE `t` RENAME TO t_old"), ["app.t"]);
        assert_eq!(gone("ALTER TABLE app.t RENAME TO app.t2"), ["app.t"]);
        assert_eq!(
            gone("ALTER TABLE t ADD COLUMN c INT, RENAME AS t2"),
            ["app.t"]
        );
        assert_eq!(
            gone("DROP TABLE IF EXISTS `t`, u /* generated by server */"),
            ["app.t", "app.u"]
        );
        for kept in [
            "ALTER TABLE t RENAME COLUMN a TO b",
            "ALTER TABLE t RENAME INDEX i TO j",
            "ALTER TABLE t ADD COLUMN c INT",
            "DROP TEMPORARY TABLE IF EXISTS t",
            "DROP INDEX i ON t",
            "CREATE TABLE t2 (id INT PRIMARY KEY)",
        ] {
            assert!(gone(kept).is_empty(), "{kept}");
        }
    }

    #[test]
    fn ddl_and_harmless_statements() {
        for sql in [
            "CREATE TABLE x (id INT PRIMARY KEY)",
            "ALTER TABLE t ADD COLUMN c INT",
            "DROP TABLE IF EXISTS `t` /* generated by server */",
            "RENAME TABLE a TO b",
            "CREATE TEMPORARY TABLE tmp SELECT * FROM t",
            "CREATE DEFINER=`root`@`localhost` PROCEDURE `p`() BEGIN INSERT INTO t VALUES (8); DELETE FROM u; END",
            "CREATE DEFINER=`root`@`%` TRIGGER tr AFTER INSERT ON u FOR EACH ROW INSERT INTO t VALUES (NEW.id)",
            "CREATE OR REPLACE ALGORITHM=UNDEFINED DEFINER=`a`@`b` SQL SECURITY DEFINER VIEW v AS SELECT * FROM t",
            "CREATE INDEX i ON t (v)",
            "CREATE DATABASE other",
        ] {
            let c = classify(sql, "app");
            assert!(c.ddl && c.unknown.is_none() && c.writes.is_empty() && c.created.is_empty(), "{sql}: {c:?}");
        }
        for sql in [
            "OPTIMIZE TABLE u",
            "ANALYZE TABLE u",
            "FLUSH PRIVILEGES",
            "GRANT SELECT ON app.* TO 'x'@'%' IDENTIFIED BY 'y'",
            "SET PASSWORD FOR 'x'@'%' = PASSWORD('y')",
            "/* nothing */",
            "",
        ] {
            assert_eq!(classify(sql, "app"), Classified::default(), "{sql}");
        }
        let c = classify("CREATE TABLE IF NOT EXISTS y SELECT * FROM t", "app");
        assert_eq!((c.ddl, c.created), (true, vec![q("app", "y")]));
        assert_eq!(
            classify("TRUNCATE /* c */ TABLE other.t", "app").control,
            Some(Control::Truncate(q("other", "t")))
        );
        assert_eq!(
            classify("truncate t", "app").control,
            Some(Control::Truncate(q("app", "t")))
        );
    }

    #[test]
    fn what_cannot_be_told_is_unknown() {
        for sql in [
            "CALL p()",
            "SELECT `app`.`f`()",
            "DO f()",
            "WITH x AS (SELECT 1) UPDATE t SET v = 1",
            "SET @x = 1",
            "(SELECT 1)",
            "INSERT INTO t VALUES (1); COMMIT",
            "HANDLER t READ FIRST",
        ] {
            assert!(classify(sql, "app").unknown.is_some(), "{sql}");
        }
    }
}
