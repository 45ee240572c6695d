//! Statement events to canonical events: transaction control, TRUNCATE, DDL
//! (which reloads table descriptions), and writes logged as statements, which stop
//! the tables they may have changed (an `Unreplicable` event) since their rows are
//! not in the binlog.

use super::statement::{classify, Control, QualifiedName};
use super::MysqlSource;
use crate::canonical::{ChangeEvent, TableName, TxnMeta, Unreplicable};
use crate::source::SourceError;
use mysql_async::prelude::Queryable;

fn abbreviate(s: &str) -> String {
    let mut out: String = s.chars().take(120).collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
}

impl MysqlSource {
    /// A statement event (Query, or Execute_load_query) with default
    /// database `default_db`, ending at `log_pos` (starting at `start`).
    pub(super) async fn statement(
        &mut self,
        query: &str,
        default_db: &str,
        log_pos: u32,
        start: u32,
        timestamp: u32,
    ) -> Result<Option<ChangeEvent>, SourceError> {
        let c = classify(query, default_db);
        match &c.control {
            Some(Control::Begin) => {
                self.begin(log_pos, timestamp);
                return Ok(None);
            }
            Some(Control::Commit) => return Ok(Some(self.commit(log_pos))),
            Some(Control::Rollback) => {
                // As before: the transaction's changes are not passed on.
                self.txn = None;
                return Ok(Some(ChangeEvent::Progress {
                    position: self.position(log_pos),
                }));
            }
            Some(Control::Truncate(t)) => {
                // TRUNCATE is logged as a statement even in ROW format.
                self.txn = None;
                if let Some(name) = self.synced_table(t) {
                    let info = self.table_info(&name).await?;
                    let meta = TxnMeta {
                        commit_position: self.position(log_pos),
                        commit_time_us: i64::from(timestamp) * 1_000_000,
                        xid: 0,
                    };
                    self.stats.set_source_position(self.position(log_pos));
                    self.ready.push(ChangeEvent::Begin(meta));
                    self.ready
                        .push(ChangeEvent::Truncate(vec![info.schema.clone()]));
                    self.ready.push(ChangeEvent::Commit {
                        end_position: self.position(log_pos),
                    });
                    return Ok(self.ready.pop());
                }
                return Ok(Some(ChangeEvent::Progress {
                    position: self.position(log_pos),
                }));
            }
            None => {}
        }
        // Which synced tables it may have changed: those it writes by name,
        // or every one when that cannot be told (an unknown statement, a
        // trigger or a view on a table it writes, a stored function).
        let mut named: Vec<String> = c
            .writes
            .iter()
            .chain(&c.created)
            .filter_map(|q| self.synced_table(q))
            .collect();
        named.sort();
        named.dedup();
        let mut everything = c.unknown.clone();
        // A name in a character set that did not read as UTF-8 cannot be
        // matched against the synced tables.
        if everything.is_none()
            && c.writes
                .iter()
                .chain(&c.created)
                .chain(&c.calls)
                .any(|q| q.db.contains('\u{FFFD}') || q.name.contains('\u{FFFD}'))
        {
            everything = Some("it names a table in a character set duplex cannot read".to_string());
        }
        if everything.is_none() {
            for w in &c.writes {
                if self.writes_elsewhere(w).await? {
                    everything = Some(format!(
                        "{w} has triggers or is a view, which may have changed other tables"
                    ));
                    break;
                }
            }
        }
        if everything.is_none() {
            for f in &c.calls {
                if self.is_stored_function(f).await? {
                    everything = Some(format!(
                        "it calls the stored function {f}, which may have changed any table"
                    ));
                    break;
                }
            }
        }
        if c.ddl {
            // Table shapes may have changed.
            self.tables.clear();
            self.catalog.clear();
        }
        // Does the statement end its transaction? MariaDB's GTID says (a
        // standalone one has no COMMIT or XID: DDL and the like; CREATE TABLE
        // ... SELECT in ROW format is not standalone). Without it (MySQL),
        // anything but a write commits implicitly. Outside a transaction, the
        // statement is one of its own.
        let dml = !c.writes.is_empty() || !c.created.is_empty() || c.unknown.is_some();
        let ends = match &self.txn {
            None => true,
            Some(t) if t.mariadb_gtid => t.standalone,
            Some(_) => !dml,
        };
        // A synced table renamed away or dropped: rows written under its
        // new name (or into a table created in its place) would be read as
        // another table's, or not at all. The table stops, with the way back.
        let mut gone: Vec<String> = c.gone.iter().filter_map(|q| self.synced_table(q)).collect();
        gone.sort();
        gone.dedup();
        if !gone.is_empty() {
            let site = self.spec.endpoint.site_name.clone();
            let what =
                format!(
                "table{} {} renamed or dropped on site {site} (a statement of default database {})",
                if gone.len() == 1 { "" } else { "s" },
                gone.join(", "),
                if default_db.is_empty() { "none" } else { default_db }
            );
            let fix = format!(
                "give site {site} the table under its name again (rename it back, or create it again), or rename it on every site and in duplex.link_tables"
            );
            self.unreplicable(
                Some(gone),
                &what,
                query,
                log_pos,
                start,
                timestamp,
                &fix,
                ends,
            );
            return Ok(self.ready.pop());
        }
        if everything.is_none() && named.is_empty() {
            if c.ddl {
                tracing::info!(site = %self.spec.endpoint.site_name, schema = %default_db, statement = %abbreviate(query), "DDL in the binlog: reloading table definitions");
            } else if !c.writes.is_empty() || !c.created.is_empty() {
                tracing::info!(site = %self.spec.endpoint.site_name, schema = %default_db, statement = %abbreviate(query),
                    "a write logged as a statement changed no synced table");
            }
            if ends {
                return Ok(Some(self.commit(log_pos)));
            }
            return Ok(None);
        }
        let what = format!(
            "a write logged as a statement, not as rows (default database {})",
            if default_db.is_empty() {
                "none"
            } else {
                default_db
            }
        );
        let tables = match &everything {
            Some(why) => {
                let what = match &c.unknown {
                    Some(_) => format!(
                        "a statement that may change rows, logged without them (default database {}): {why}",
                        if default_db.is_empty() { "none" } else { default_db }
                    ),
                    None => format!("{what}: {why}"),
                };
                self.unreplicable(None, &what, query, log_pos, start, timestamp, "", ends);
                return Ok(self.ready.pop());
            }
            None => named,
        };
        self.unreplicable(
            Some(tables),
            &what,
            query,
            log_pos,
            start,
            timestamp,
            "",
            ends,
        );
        Ok(self.ready.pop())
    }

    /// The synced table `q` names, if any. Names compare without case: with
    /// lower_case_table_names set, `T` is table `t`; elsewhere two tables
    /// differing only in case are rare, and then both count.
    fn synced_table(&self, q: &QualifiedName) -> Option<String> {
        let same = |a: &str, b: &str| a.to_lowercase() == b.to_lowercase();
        if !same(&q.db, self.spec.endpoint.database()) {
            return None;
        }
        self.spec.tables.iter().find(|t| same(t, &q.name)).cloned()
    }

    /// Stop `tables` (bare names; `None`: every synced table) for an event
    /// whose changes duplex cannot replicate, inside the open transaction
    /// (or one of its own). `fix`: what to set, besides the usual advice.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn unreplicable(
        &mut self,
        tables: Option<Vec<String>>,
        what: &str,
        statement: &str,
        log_pos: u32,
        start: u32,
        timestamp: u32,
        fix: &str,
        ends: bool,
    ) {
        let site_db = self.spec.endpoint.database().to_string();
        let all = tables.is_none();
        let mut names = tables.unwrap_or_else(|| self.spec.tables.iter().cloned().collect());
        names.sort();
        let position = self.position(start);
        let site = &self.spec.endpoint.site_name;
        let shown = if statement.is_empty() {
            String::new()
        } else {
            format!(": {}", abbreviate(statement))
        };
        let scope = if all {
            "Duplex cannot tell which tables it changed, so every table of this direction stops"
                .to_string()
        } else {
            format!(
                "duplex cannot replicate the rows it leaves: table{} {} stop{} in this direction",
                if names.len() == 1 { "" } else { "s" },
                names.join(", "),
                if names.len() == 1 { "s" } else { "" }
            )
        };
        let fix = if fix.is_empty() {
            "make every session log rows (SET GLOBAL binlog_format = ROW, and no SET SESSION binlog_format = STATEMENT or MIXED)".to_string()
        } else {
            fix.to_string()
        };
        let repair = match names.as_slice() {
            _ if all => format!("duplex repair --from {site}"),
            [one] => format!("duplex repair --from {site} --table {one}"),
            _ => format!("duplex repair --from {site} --table T, for each of them"),
        };
        let reason = format!(
            "{what}, at {position}{shown}. {scope} (their later changes are held, nothing is lost). Fix: {fix}; resync ({repair}); then discard these statement records (duplex quarantine list; duplex quarantine discard ID...): the held changes are then applied"
        );
        tracing::error!(site = %site, %position, statement = %abbreviate(statement), "{what}: tables stop");
        if self.txn.is_none() {
            // A transaction of its own, starting where the event starts:
            // its records' position must lie before its end (see
            // `Quarantine::reconcile`).
            self.begin(start, timestamp);
        }
        if let Some(t) = self.txn.as_mut() {
            if all && t.stopped_all && !ends {
                return;
            }
            t.stopped_all |= all;
            self.ready.begin_once(&mut t.begun, &t.meta);
        }
        self.ready.push(ChangeEvent::Unreplicable(Unreplicable {
            tables: names
                .into_iter()
                .map(|n| TableName::new(site_db.clone(), n))
                .collect(),
            statement: statement.chars().take(4000).collect(),
            position,
            reason,
        }));
        if ends {
            let commit = self.commit(log_pos);
            self.ready.push(commit);
        }
    }

    /// May a write to `t` have changed other tables: does it have triggers,
    /// or is it a view? As far as duplex's account can see (triggers need
    /// the TRIGGER privilege to be listed).
    async fn writes_elsewhere(&mut self, t: &QualifiedName) -> Result<bool, SourceError> {
        if t.db.is_empty() {
            return Ok(false);
        }
        let key = (true, t.clone());
        if let Some(&known) = self.catalog.get(&key) {
            return Ok(known);
        }
        let n: Option<i64> = self
            .meta
            .exec_first(
                "SELECT (SELECT COUNT(*) FROM information_schema.TRIGGERS
                          WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?)
                      + (SELECT COUNT(*) FROM information_schema.VIEWS
                          WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?)",
                (
                    t.db.as_str(),
                    t.name.as_str(),
                    t.db.as_str(),
                    t.name.as_str(),
                ),
            )
            .await?;
        let found = n.unwrap_or(0) > 0;
        self.catalog.insert(key, found);
        Ok(found)
    }

    /// Is `f` a stored function (as far as duplex's account can see)?
    async fn is_stored_function(&mut self, f: &QualifiedName) -> Result<bool, SourceError> {
        if f.db.is_empty() {
            return Ok(false);
        }
        let key = (false, f.clone());
        if let Some(&known) = self.catalog.get(&key) {
            return Ok(known);
        }
        let n: Option<i64> = self
            .meta
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.ROUTINES
                  WHERE ROUTINE_SCHEMA = ? AND ROUTINE_NAME = ? AND ROUTINE_TYPE = 'FUNCTION'",
                (f.db.as_str(), f.name.as_str()),
            )
            .await?;
        let found = n.unwrap_or(0) > 0;
        self.catalog.insert(key, found);
        Ok(found)
    }
}
