//! The PostgreSQL target: the applier's steps on a PostgreSQL site.
//!
//! The applier's session runs under a replication origin. Each target
//! transaction ends with `pg_replication_origin_xact_setup(end_lsn, commit_time)`,
//! so the source position it applied commits atomically with the data (exactly
//! once), and the target's own change stream tags the transaction with duplex's
//! origin (no echo). Row changes are batched per table into multi-row statements
//! with text parameters cast to each target column's type.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};

use crate::canonical::{Op, Row, RowChange, SourcePosition, TableName, TableSchema, Value};
use crate::conflict::{LocalRow, Stamp, TablePolicy, Tombstone};
use crate::marker::Marker;
use crate::pg::copy_text::CopyText;
use crate::pg::text_decode::decode_text;
use crate::pg::text_encode::encode_text;
use crate::pg::type_class::PgTypeClass;
use crate::pg::{quote_ident, quote_table, PgEndpoint};
use crate::sink::error::pg as db;
use crate::sink::plan::WriteRules;
use crate::sink::resolve::{KeyRef, Resolved};
use crate::sink::target::{Batch, DescribedTables, OutboxScope, Target, Unapplied};
use crate::sink::{describe_key, identifying_key, same_key, store_values, SinkError};
use crate::stats::DirectionStats;

/// What the PostgreSQL target must know to apply one direction of a link.
#[derive(Debug, Clone)]
pub struct PgTargetSpec {
    pub endpoint: PgEndpoint,
    /// Replication origin the applier's session runs under.
    pub origin: String,
    pub marker_column: String,
    /// The link's tables as configured for this PostgreSQL site: a change from
    /// a MySQL source names its database as the schema, and is applied to the
    /// configured table of the same name.
    pub tables: Vec<TableName>,
    /// Conflict policy per configured table (absent: last-writer-wins).
    pub policies: HashMap<TableName, TablePolicy>,
    /// Per configured table: when this site's changes to it began to be
    /// captured for the link (this site's clock, µs since the epoch), where
    /// known (`duplex.capture_starts`).
    pub capture_starts: HashMap<TableName, i64>,
    /// Apply in the replica role (`session_replication_role = replica`), as
    /// PostgreSQL's own logical replication does: the target's ordinary
    /// triggers and rules do not fire for applied rows (nor foreign-key
    /// checks). Set where duplex's role may (see `setup::SiteFacts`); where
    /// it may not, tables with triggers are refused at setup instead.
    pub replica_role: bool,
    /// Tables (bare names) whose triggers fire for applied rows
    /// (`link_tables.fire_triggers`): applied in the origin role.
    pub fire_triggers: HashSet<String>,
    /// `duplex run --ha`, holding the link's lease: a session of an earlier
    /// holder that still holds this worker's replication origin (a process
    /// paused, a host cut off) is ended, as the lease says it must not
    /// apply any more.
    pub take_over: bool,
    /// Which of the direction's apply workers this target is (see
    /// `pipeline::dispatch`): worker 0 runs under `origin`, worker k under
    /// [`worker_origin`]`(origin, k)`.
    pub worker: u32,
    /// What the direction's workers know of the tables' tombstones.
    pub tombstone_tables: crate::sink::target::TombstoneTables,
    /// The tables as the direction's workers described them (made anew for
    /// each run of the direction).
    pub(crate) described: DescribedTables<TargetTable>,
}

/// The replication origin apply worker `worker` of a direction whose
/// origin is `origin` runs under. Worker 0 keeps the direction's own name,
/// so a link applied by one worker keeps the origin it always had.
pub fn worker_origin(origin: &str, worker: u32) -> String {
    if worker == 0 {
        origin.to_string()
    } else {
        format!("{origin}_w{worker}")
    }
}

/// Every origin the workers of a direction whose origin is `origin` may
/// have written under (any earlier run's worker count included).
pub fn worker_origins(origin: &str) -> Vec<String> {
    (0..crate::sink::MAX_APPLY_WORKERS)
        .map(|w| worker_origin(origin, w))
        .collect()
}

/// A synced table as it is on the target.
pub(crate) struct TargetTable {
    quoted: String,
    /// Column name -> type to cast text parameters to: the quoted catalog type
    /// name, which carries no typmod, so the column's own typmod applies on
    /// assignment (an error instead of the silent truncation of an explicit cast).
    column_types: FxHashMap<String, String>,
    key: Vec<String>,
    /// The table has a unique index besides the primary key, or an exclusion
    /// constraint. A multi-row UPDATE applies its rows in the planner's order,
    /// not the source's, which could then break a constraint the source kept:
    /// such tables get their updates one row per statement.
    other_unique: bool,
    /// A foreign key refers to the table or from it.
    foreign_keys: bool,
    /// A write to one row may wait for, or be refused because of, another
    /// row's uncommitted write: a unique index besides the key, triggers
    /// that fire for applied rows, or foreign keys checked. Apply workers
    /// never write such tables side by side (see `pipeline::dispatch`).
    spans_rows: bool,
    /// Columns whose values can go as one array per column (`unnest`): their
    /// type has an array type and is no array itself (a domain made before
    /// PostgreSQL 11 has none; unnest would flatten an array column).
    arrayable: FxHashSet<String>,
    /// Column name -> how to decode its text (to read the target's rows back).
    classes: FxHashMap<String, PgTypeClass>,
    /// Column name -> its type modifier (`atttypmod`, -1: none): the scale
    /// and precision values are rounded to on assignment.
    typmods: FxHashMap<String, i32>,
    /// Inserts may go by `COPY`: a plain or partitioned table where a COPY
    /// behaves as the INSERT would and can only fail at a row (no `INSERT`
    /// rule, statement-level `INSERT` trigger, row-level security or
    /// foreign-table partition; see `target_table`).
    copyable: bool,
}

/// A batch's statement, ready to run.
struct Built {
    statement: Statement,
    input: Input,
    rows: usize,
    op: Op,
    table: TableName,
}

/// What a statement is run with.
enum Input {
    Params(Params),
    /// The rows of a `COPY ... FROM STDIN`, in text format.
    Copy(bytes::Bytes),
}

/// An insert of at least this many rows goes by `COPY` (where the table
/// allows, see `TargetTable::copyable`): the server writes its rows in
/// bulk, with no array to parse and no executor run per row, for about
/// half the server time of the `INSERT`. Below it, the round trip `COPY`
/// adds before its data (the server must answer it first) costs more.
const COPY_MIN_ROWS: usize = 32;

/// A statement's parameters: one text per value (a VALUES list), or one
/// text array per column (`unnest`).
enum Params {
    Rows(Vec<Option<String>>),
    Columns(Vec<Vec<Option<String>>>),
}

impl Params {
    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        match self {
            Params::Rows(p) => p.iter().map(|v| v as &(dyn ToSql + Sync)).collect(),
            Params::Columns(c) => c.iter().map(|v| v as &(dyn ToSql + Sync)).collect(),
        }
    }
}

/// Row-major values (`stride` per row) as one vector per column.
fn columns_of(values: Vec<Option<String>>, stride: usize) -> Vec<Vec<Option<String>>> {
    let stride = stride.max(1);
    let rows = values.len() / stride;
    let mut columns: Vec<Vec<Option<String>>> =
        (0..stride).map(|_| Vec::with_capacity(rows)).collect();
    for (i, v) in values.into_iter().enumerate() {
        columns[i % stride].push(v);
    }
    columns
}

impl Built {
    fn error(&self, source: tokio_postgres::Error) -> SinkError {
        // tokio-postgres sends a COPY's start with a `Sync` of its own,
        // which the server skips once it reads the rows. A COPY refused
        // before its first row (a trigger at statement start, a lock or
        // permission error) has that `Sync` answered too, and the end of its
        // data answered again: the connection's later answers are off by
        // one. Such an error is never taken for a refused row (that would
        // roll back to the round's savepoint on the same connection); the
        // direction restarts on a new connection.
        if matches!(self.input, Input::Copy(_))
            && !copy_refused_a_row(source.as_db_error().and_then(|e| e.where_()))
        {
            return SinkError::CopyStart {
                table: self.table.clone(),
                source,
            };
        }
        SinkError::Pg {
            context: format!("apply {} {} row(s) to {}", self.rows, self.op, self.table),
            source,
        }
    }
}

/// Whether a COPY's error came from one of its rows: the server's context
/// then names the row (`COPY t, line 3: ...`).
fn copy_refused_a_row(context: Option<&str>) -> bool {
    context.is_some_and(|c| {
        c.lines().any(|l| {
            l.starts_with("COPY ")
                && l.split_once(", line ").is_some_and(|(_, rest)| {
                    rest.trim_start()
                        .starts_with(|ch: char| ch.is_ascii_digit())
                })
        })
    })
}

pub struct PgTarget {
    spec: PgTargetSpec,
    client: Client,
    /// Most rows in one multi-row statement.
    max_batch_rows: usize,
    stats: Arc<DirectionStats>,
    statements: FxHashMap<String, Statement>,
    /// Replication origins (roident) under which duplex's appliers write here.
    duplex_origins: HashSet<u32>,
    type_cache: HashMap<u32, PgTypeClass>,
    /// Per configured table: whether it may have tombstones on this site.
    tombstones_exist: crate::sink::target::TombstoneTables,
    /// The open transaction runs in the origin role (`SET LOCAL`), for a
    /// table whose triggers fire (only when the session's role is replica).
    origin_role: bool,
    /// A transaction is begun but its `BEGIN` not yet sent: it goes out in
    /// the pipeline of the transaction's first statements (`ensure_begun`
    /// sends it alone where a step has none).
    begin_pending: bool,
    /// The session's backend process id.
    session_id: u64,
}

/// Statements kept prepared per target; beyond this the cache is cleared.
const STATEMENT_CACHE_LIMIT: usize = 256;
/// PostgreSQL's limit on bind parameters in one statement is 65535.
const MAX_PARAMS: usize = 60_000;

/// Under a lease (`duplex run --ha`): end the sessions an earlier holder of
/// the link left applying under the same origin (same role: no privilege
/// beyond duplex's own is needed). Best effort: if the origin stays busy,
/// setting it up says so.
async fn end_earlier_holder(client: &Client, application_name: &str) {
    match client
        .query(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = $1 AND pid <> pg_backend_pid() AND usename = current_user",
            &[&application_name],
        )
        .await
    {
        Ok(rows) => {
            for r in rows {
                let pid: i32 = r.get(0);
                tracing::warn!(
                    pid,
                    session = application_name,
                    "ended the session an earlier holder of the link's lease still applied with"
                );
            }
        }
        Err(e) => {
            tracing::warn!(session = application_name, error = %e, "cannot end the session an earlier holder left")
        }
    }
}

impl PgTarget {
    pub async fn connect(
        spec: PgTargetSpec,
        max_batch_rows: usize,
        stats: Arc<DirectionStats>,
    ) -> Result<PgTarget, SinkError> {
        let origin = worker_origin(&spec.origin, spec.worker);
        // Named after its origin, so that a new holder of the link's lease
        // knows which session an earlier holder left (see `take_over`).
        let application_name = format!("duplex applier {origin}");
        let client = spec.endpoint.connect(&application_name).await?;
        client
            // synchronous_commit=on: a position is confirmed to the source right
            // after COMMIT returns, so the commit must be on disk by then, whatever
            // the target database's or role's default is.
            // Every statement the applier runs joins at most a batch of keys
            // (a VALUES list) to a table by its primary key: a nested loop of
            // index lookups is always the plan. Without these settings the
            // planner may hash the batch and scan the whole table (or its
            // whole index) instead, for instance while a big transaction fills
            // a table whose statistics still say it is empty: quadratic time.
            .batch_execute("SET synchronous_commit = on; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'iso_8601'; SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off")
            .await
            .map_err(db("configure the applier session"))?;
        if spec.replica_role {
            client
                .batch_execute("SET session_replication_role = replica")
                .await
                .map_err(db("apply in the replica role (the role was allowed to when the link started; if the right was revoked, touch the link's configuration so that its tables are checked again)"))?;
        }
        {
            // Worker 0's origin is made at setup, the others when first used;
            // and again when a resync reset them while a direction waited.
            client
                .execute(
                    "SELECT pg_replication_origin_create($1)
                      WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)",
                    &[&origin],
                )
                .await
                .map_err(db(format!(
                    "create the replication origin {origin} of an apply worker"
                )))?;
        }
        // A session of this direction's previous run (a restart, a clean
        // stop followed by a start) may still hold the origin for a moment
        // while its backend exits: waited for briefly before it counts as
        // another process at work.
        let mut attempts = 0;
        let mut ended_earlier = false;
        let set_up = loop {
            let r = client
                .execute("SELECT pg_replication_origin_session_setup($1)", &[&origin])
                .await;
            match r {
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
                        && attempts < ORIGIN_RELEASE_ATTEMPTS =>
                {
                    attempts += 1;
                    if spec.take_over && !ended_earlier {
                        ended_earlier = true;
                        end_earlier_holder(&client, &application_name).await;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                r => break r,
            }
        };
        set_up
            .map_err(|source| {
                // PostgreSQL before 18 keeps origins in `max_replication_slots`
                // entries: out of them is no other process at work.
                if source.code() == Some(&tokio_postgres::error::SqlState::CONFIGURATION_LIMIT_EXCEEDED) {
                    SinkError::Pg {
                        context: format!("set up the replication origin {origin}: no free replication state entry on the target (raise max_replication_slots there, or lower links.apply_workers)"),
                        source,
                    }
                } else if source.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) {
                    SinkError::OriginBusy {
                        origin: origin.clone(),
                        source,
                    }
                } else {
                    SinkError::Pg {
                        context: format!("set up the replication origin {origin}"),
                        source,
                    }
                }
            })?;
        let session_id: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(db("read the applier session's process id"))?
            .get(0);
        let tombstones_exist = spec.tombstone_tables.clone();
        let mut target = PgTarget {
            spec,
            client,
            max_batch_rows,
            stats,
            statements: FxHashMap::default(),
            duplex_origins: HashSet::new(),
            type_cache: HashMap::new(),
            tombstones_exist,
            origin_role: false,
            begin_pending: false,
            session_id: u64::try_from(session_id).unwrap_or_default(),
        };
        target.load_duplex_origins().await?;
        Ok(target)
    }

    /// The source position the target has durably applied, as its counter
    /// (see [`SourcePosition::counter`]): where to resume.
    ///
    /// Each apply worker keeps its own origin, and workers commit in source
    /// order: the highest progress among them is where every earlier source
    /// transaction is committed too.
    async fn resume_position(&self) -> Result<Option<u64>, SinkError> {
        let rows = self
            .client
            .query(
                "SELECT pg_replication_origin_progress(roname, true)::text
                   FROM pg_replication_origin WHERE roname = ANY($1)",
                &[&worker_origins(&self.spec.origin)],
            )
            .await
            .map_err(db("read replication origin progress"))?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(0))
            .filter_map(|t| parse_lsn(&t))
            .max()
            .filter(|&c| c > 0))
    }

    /// Does this session hold a lock that one of `sessions` waits for,
    /// directly or through other sessions' waits?
    async fn blocks_sessions(&mut self, sessions: &[u64]) -> Result<bool, SinkError> {
        let pids: Vec<i32> = sessions
            .iter()
            .filter_map(|&s| i32::try_from(s).ok())
            .collect();
        let row = self
            .client
            .query_one(
                "WITH RECURSIVE blockers(pid) AS (
                     SELECT unnest(pg_blocking_pids(w)) FROM unnest($1::int[]) AS w
                     UNION SELECT unnest(pg_blocking_pids(b.pid)) FROM blockers b)
                 SELECT EXISTS (SELECT 1 FROM blockers WHERE pid = pg_backend_pid())",
                &[&pids],
            )
            .await
            .map_err(db("look for apply workers waiting for this worker's locks"))?;
        Ok(row.get(0))
    }

    /// The replication origins duplex's appliers (of every link) write under
    /// here: a row whose xmin committed under one of them was written by
    /// duplex, not by a user.
    async fn load_duplex_origins(&mut self) -> Result<(), SinkError> {
        let rows = self
            .client
            .query(
                "SELECT roident::text::bigint FROM pg_replication_origin WHERE roname LIKE 'duplex\\_%'",
                &[],
            )
            .await
            .map_err(db("read replication origins"))?;
        self.duplex_origins = rows
            .iter()
            .filter_map(|r| u32::try_from(r.get::<_, i64>(0)).ok())
            .collect();
        Ok(())
    }

    /// Send the begun transaction's `BEGIN` if it has not gone out yet.
    async fn ensure_begun(&mut self) -> Result<(), SinkError> {
        if std::mem::take(&mut self.begin_pending) {
            self.client
                .batch_execute("BEGIN")
                .await
                .map_err(db("begin target transaction"))?;
        }
        Ok(())
    }

    fn policy_of(&self, table: &TableName) -> TablePolicy {
        let configured = self.configured(table);
        self.spec
            .policies
            .get(&configured)
            .cloned()
            .unwrap_or_default()
    }

    /// Does a session wait for a lock this applier's session holds? Read in
    /// `pg_locks` (open to every role) with `pg_blocking_pids`, only for the
    /// few lock requests not granted.
    async fn sessions_waiting(&mut self) -> Result<bool, SinkError> {
        let row = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks
                                 WHERE NOT granted AND pid IS NOT NULL AND pid <> pg_backend_pid()
                                   AND pg_backend_pid() = ANY (pg_blocking_pids(pid)))",
                &[],
            )
            .await
            .map_err(db("look for sessions waiting for the applier's locks"))?;
        Ok(row.get(0))
    }

    /// Remove this link's tombstones older than `retention` (at most a few
    /// thousand per call, so a backlog never holds locks for long). The applier
    /// calls it between source transactions only. Returns how many were
    /// removed.
    async fn purge_tombstones(&mut self, retention: Duration) -> Result<u64, SinkError> {
        let names: Vec<String> = self.spec.tables.iter().map(|t| t.to_string()).collect();
        let removed = self
            .client
            .execute(
                "DELETE FROM duplex.site_tombstones
                  WHERE (table_name, row_key) IN (
                        SELECT table_name, row_key FROM duplex.site_tombstones
                         WHERE table_name = ANY($1)
                           AND deleted_at < now() - make_interval(secs => $2)
                         LIMIT 5000)",
                &[&names, &retention.as_secs_f64()],
            )
            .await
            .map_err(db("remove expired tombstones"))?;
        if removed > 0 {
            // Some table may have none left: ask again on the next lookup.
            self.tombstones_exist.clear();
        }
        Ok(removed)
    }

    /// The target's rows of `keys` of each table (with how each was last
    /// written), read locked. Every table's statements go out in one
    /// pipeline; with `begin`, behind the `BEGIN` of the transaction they
    /// open (one round trip in all).
    async fn read_locals(
        &mut self,
        requests: &[(Arc<TableSchema>, Vec<KeyRef>)],
    ) -> Result<Vec<Vec<LocalRow>>, SinkError> {
        let mut reads = Vec::new();
        for (t, (schema, keys)) in requests.iter().enumerate() {
            let target = self.target_table(&schema.table).await?;
            for chunk in keys.chunks(self.max_rows(schema, 0).max(1)) {
                let (statement, params) = self.read_statement(schema, &target, chunk).await?;
                reads.push((t, target.clone(), statement, params));
            }
        }
        let begin = std::mem::take(&mut self.begin_pending);
        let client = &self.client;
        let refs: Vec<Vec<&(dyn ToSql + Sync)>> = reads
            .iter()
            .map(|(_, _, _, p)| p.iter().map(|v| v as &(dyn ToSql + Sync)).collect())
            .collect();
        let begun = async {
            if begin {
                client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(db("begin target transaction"))
            } else {
                Ok(())
            }
        };
        let queries = futures_util::future::join_all(
            reads
                .iter()
                .zip(&refs)
                .map(|((_, _, statement, _), r)| client.query(statement, r)),
        );
        // Polled together, the requests go out in this order without waiting
        // for each other's answers.
        let (begun, results) = futures_util::future::join(begun, queries).await;
        begun?;
        let mut out: Vec<Vec<LocalRow>> = requests.iter().map(|_| Vec::new()).collect();
        for ((t, target, _, _), rows) in reads.iter().zip(results) {
            let schema = &requests[*t].0;
            let rows = rows.map_err(db(format!("read the target rows of {}", schema.table)))?;
            for r in rows {
                let lr = self.local_row(schema, target, &r).await?;
                out[*t].push(lr);
            }
        }
        Ok(out)
    }

    /// The statement reading the rows of `keys` back, locked, and its
    /// parameters (one text array per key column).
    async fn read_statement(
        &mut self,
        schema: &TableSchema,
        target: &TargetTable,
        keys: &[KeyRef],
    ) -> Result<(Statement, Vec<Vec<Option<String>>>), SinkError> {
        let ncols = schema.columns.len();
        let mut select = Vec::with_capacity(ncols + 3);
        for c in &schema.columns {
            if !target.column_types.contains_key(&c.name) {
                return Err(SinkError::MissingColumn {
                    table: schema.table.clone(),
                    column: c.name.clone(),
                });
            }
            select.push(format!("t.{}::text", quote_ident(&c.name)));
        }
        select.push(format!("t.{}::text", quote_ident(&self.spec.marker_column)));
        // In the target list, not in a LATERAL join: when a concurrent
        // writer updated the row, FOR UPDATE returns its newest version,
        // and only expressions over `t` are recomputed for it (a joined
        // function's row would be the one of the version first seen).
        select.push(
            "(extract(epoch FROM (pg_xact_commit_timestamp_origin(t.xmin)).timestamp) * 1000000)::bigint"
                .into(),
        );
        select.push("(pg_xact_commit_timestamp_origin(t.xmin)).roident::text::bigint".into());
        // Written by the transaction that last changed the table's
        // definition: a rewrite (ALTER COLUMN ... TYPE, a column added with
        // a volatile default) gives every row that transaction's xmin and
        // commit time, though no user changed it (and no change of it was
        // logged for the peer). The subquery is evaluated once.
        select.push(format!(
            "t.xmin = (SELECT c.xmin FROM pg_catalog.pg_class c WHERE c.oid = '{}'::regclass)",
            target.quoted.replace('\'', "''")
        ));
        // One text array per key column: a fixed, small statement whatever
        // the batch size, and index lookups whatever the statistics say.
        let mut key_cols = Vec::new();
        let mut arrays = Vec::new();
        for (j, &i) in schema.key.iter().enumerate() {
            let name = &schema.columns[i].name;
            let ty = target.column_types.get(name).cloned().unwrap_or_default();
            key_cols.push(format!("t.{}", quote_ident(name)));
            arrays.push(format!("${}::text[]::{ty}[]", j + 1));
        }
        let mut params: Vec<Vec<Option<String>>> =
            vec![Vec::with_capacity(keys.len()); schema.key.len()];
        for k in keys {
            for (j, v) in k.values.iter().enumerate() {
                let class = target.classes.get(&schema.columns[schema.key[j]].name);
                let text = encode_for(v, class).map_err(|e| SinkError::Value {
                    table: schema.table.clone(),
                    key: String::new(),
                    column: schema.columns[schema.key[j]].name.clone(),
                    reason: e.to_string(),
                })?;
                params[j].push(Some(text));
            }
        }
        let condition = if key_cols.len() == 1 {
            format!("{} = ANY({})", key_cols[0], arrays[0])
        } else {
            format!(
                "({}) IN (SELECT * FROM unnest({}))",
                key_cols.join(", "),
                arrays.join(", ")
            )
        };
        let sql = format!(
            "SELECT {} FROM {} AS t WHERE {condition} FOR UPDATE OF t",
            select.join(", "),
            target.quoted,
        );
        let statement = self
            .statement_typed(&sql, &vec![Type::TEXT_ARRAY; params.len()])
            .await?;
        Ok((statement, params))
    }

    /// A row read back by [`read_statement`]'s statement.
    async fn local_row(
        &mut self,
        schema: &TableSchema,
        target: &TargetTable,
        r: &tokio_postgres::Row,
    ) -> Result<LocalRow, SinkError> {
        let ncols = schema.columns.len();
        let mut values = Vec::with_capacity(ncols);
        for (i, c) in schema.columns.iter().enumerate() {
            let text: Option<&str> = r.get(i);
            let v = match text {
                None => Value::Null,
                Some(t) => {
                    let class = target.classes.get(&c.name).unwrap_or(&PgTypeClass::Other);
                    decode_text(class, t).map_err(|e| SinkError::LocalValue {
                        table: schema.table.clone(),
                        column: c.name.clone(),
                        reason: e.to_string(),
                    })?
                }
            };
            values.push(Some(v));
        }
        let row = Row(values);
        let marker_text: Option<&str> = r.get(ncols);
        let marker = Marker::parse_lenient(marker_text, &schema.table);
        let commit_us: Option<i64> = r.get(ncols + 1);
        let roident: Option<i64> = r.get(ncols + 2);
        let rewritten: Option<bool> = r.get(ncols + 3);
        let mut stamp = self
            .stamp(schema, &row, marker.as_ref(), commit_us, roident)
            .await?;
        // A row the table's rewrite wrote anew, still holding what duplex
        // last wrote, is that version (no user changed it).
        if rewritten == Some(true)
            && marker
                .as_ref()
                .is_some_and(|m| m.crc != 0 && crate::conflict::marker_describes(schema, &row, m))
        {
            stamp = Stamp::Synced;
        }
        Ok(LocalRow { row, marker, stamp })
    }

    /// How a target row was last written, from its xmin's commit timestamp and
    /// replication origin.
    async fn stamp(
        &mut self,
        schema: &TableSchema,
        row: &Row,
        marker: Option<&Marker>,
        commit_us: Option<i64>,
        roident: Option<i64>,
    ) -> Result<Stamp, SinkError> {
        let origin = roident.and_then(|r| u32::try_from(r).ok()).unwrap_or(0);
        if commit_us.is_some() && origin != 0 {
            if !self.duplex_origins.contains(&origin) {
                // An origin created since connecting (another link's applier).
                self.load_duplex_origins().await?;
            }
            if self.duplex_origins.contains(&origin) {
                return Ok(Stamp::Synced);
            }
        }
        if let Some(t) = commit_us {
            return Ok(Stamp::User { t: Some(t) });
        }
        // No commit timestamp: written in this very transaction (by the
        // applier), or before commit timestamps were on. The checksum decides.
        let matches =
            marker.is_some_and(|m| m.crc != 0 && crate::conflict::marker_describes(schema, row, m));
        Ok(if matches {
            Stamp::Synced
        } else {
            Stamp::User { t: None }
        })
    }

    fn tombstone_table_name(&self, table: &TableName) -> String {
        self.configured(table).to_string()
    }

    async fn find_tombstones(
        &mut self,
        schema: &TableSchema,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Tombstone>, SinkError> {
        self.ensure_begun().await?;
        let mut out = HashMap::new();
        if keys.is_empty() {
            return Ok(out);
        }
        // Most tables have no tombstones at all: ask once, then know (the
        // direction's workers share what they know: `TombstoneTables`).
        let name = self.tombstone_table_name(&schema.table);
        let possible = match self.tombstones_exist.get(&name) {
            Some(p) => p,
            None => {
                let p: bool = self
                    .client
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM duplex.site_tombstones WHERE table_name = $1)",
                        &[&name],
                    )
                    .await
                    .map_err(db("look for tombstones"))?
                    .get(0);
                self.tombstones_exist.insert(name.clone(), p);
                p
            }
        };
        if !possible {
            return Ok(out);
        }
        let rows = self
            .client
            .query(
                "SELECT row_key, vv::text, site, ts FROM duplex.site_tombstones
                  WHERE table_name = $1 AND row_key = ANY($2)",
                &[&self.tombstone_table_name(&schema.table), &keys],
            )
            .await
            .map_err(db("read tombstones"))?;
        for r in rows {
            let vv_text: String = r.get(1);
            let Ok(vv) = serde_json::from_str(&vv_text) else {
                continue;
            };
            out.insert(
                r.get::<_, Vec<u8>>(0),
                Tombstone {
                    vv,
                    site: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
                    ts: r.get(3),
                },
            );
        }
        Ok(out)
    }

    async fn write_tombstones(
        &mut self,
        tombstones: &[(Arc<TableSchema>, Vec<u8>, Tombstone)],
        revived: &[(Arc<TableSchema>, Vec<u8>)],
    ) -> Result<(), SinkError> {
        self.ensure_begun().await?;
        for (schema, key, t) in tombstones {
            self.tombstones_exist
                .insert(self.tombstone_table_name(&schema.table), true);
            let vv = serde_json::to_string(&t.vv).unwrap_or_default();
            self.client
                .execute(
                    "INSERT INTO duplex.site_tombstones (table_name, row_key, vv, site, ts)
                     VALUES ($1, $2, $3::text::jsonb, $4, $5)
                     ON CONFLICT (table_name, row_key) DO UPDATE
                        SET vv = EXCLUDED.vv, site = EXCLUDED.site, ts = EXCLUDED.ts, deleted_at = now()",
                    &[
                        &self.tombstone_table_name(&schema.table),
                        key,
                        &vv,
                        &(t.site as i32),
                        &t.ts,
                    ],
                )
                .await
                .map_err(db("record a tombstone"))?;
        }
        for (schema, key) in revived {
            self.client
                .execute(
                    "DELETE FROM duplex.site_tombstones WHERE table_name = $1 AND row_key = $2",
                    &[&self.tombstone_table_name(&schema.table), key],
                )
                .await
                .map_err(db("remove a tombstone"))?;
        }
        Ok(())
    }

    fn max_rows(&self, table: &TableSchema, shape_len: usize) -> usize {
        let per_row = shape_len + table.key.len() + 1;
        (MAX_PARAMS / per_row.max(1)).clamp(1, self.max_batch_rows.max(1))
    }

    async fn target_table(&mut self, table: &TableName) -> Result<Arc<TargetTable>, SinkError> {
        // Known by the configured table, whatever the source calls it
        // (looked up without a copy: this runs for every statement).
        if let Some(t) = self.spec.described.get(self.configured_ref(table)) {
            return Ok(t);
        }
        let configured = self.configured(table);
        let described = self.spec.described.clone();
        described
            .get_or_describe(&configured, self.describe_table(table))
            .await
    }

    /// Read the table's facts from the target's catalog.
    async fn describe_table(&mut self, table: &TableName) -> Result<TargetTable, SinkError> {
        let configured = self.configured(table);
        let quoted = quote_table(&configured);
        let oid: Option<u32> = self
            .client
            .query_one("SELECT to_regclass($1)::oid", &[&quoted])
            .await
            .map_err(db(format!("look up table {table} on the target")))?
            .get(0);
        let oid = oid.ok_or_else(|| SinkError::MissingTable {
            table: table.clone(),
        })?;
        let column_rows = self
            .client
            .query(
                // The catalog name of the type, quoted: `"pg_catalog"."bpchar"`
                // has no typmod, whereas format_type's `character` means
                // char(1) and an explicit cast to it would silently truncate.
                "SELECT a.attname::text, format('%I.%I', n.nspname, t.typname), a.atttypid, a.atttypmod,
                        t.typarray <> 0 AND t.typcategory <> 'A'
                   FROM pg_attribute a
                   JOIN pg_type t ON t.oid = a.atttypid
                   JOIN pg_namespace n ON n.oid = t.typnamespace
                  WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped",
                &[&oid],
            )
            .await
            .map_err(db(format!("read the columns of {table} on the target")))?;
        let mut column_types = FxHashMap::default();
        let mut classes = FxHashMap::default();
        let mut typmods = FxHashMap::default();
        let mut arrayable = FxHashSet::default();
        for r in &column_rows {
            let name: String = r.get(0);
            typmods.insert(name.clone(), r.get::<_, i32>(3));
            if r.get::<_, bool>(4) {
                arrayable.insert(name.clone());
            }
            let type_oid: u32 = r.get(2);
            let class = crate::pg::catalog::resolve_type_class(
                &self.client,
                type_oid,
                &mut self.type_cache,
            )
            .await
            .map_err(db(format!(
                "read the column types of {table} on the target"
            )))?;
            classes.insert(name.clone(), class);
            column_types.insert(name, r.get::<_, String>(1));
        }
        let key = crate::pg::primary_key_columns(&self.client, oid)
            .await
            .map_err(db(format!("read the primary key of {table} on the target")))?;
        if key.is_empty() {
            return Err(SinkError::NoPrimaryKey {
                table: table.clone(),
            });
        }
        let facts = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = $1 AND indisunique AND NOT indisprimary)
                     OR EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = $1 AND contype = 'x'),
                        EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'f' AND (conrelid = $1 OR confrelid = $1)),
                        EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal AND tgenabled IN ('O', 'A')),
                        EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal AND tgenabled IN ('R', 'A'))",
                &[&oid],
            )
            .await
            .map_err(db(format!("read the constraints and triggers of {table} on the target")))?;
        let (other_unique, foreign_keys): (bool, bool) = (facts.get(0), facts.get(1));
        // Which triggers fire for applied rows depends on the role the
        // table's statements run in (see `trigger_role`); in the origin
        // role foreign keys are checked too.
        let origin_role = !self.spec.replica_role || self.spec.fire_triggers.contains(&table.name);
        let fires = if origin_role {
            facts.get::<_, bool>(2)
        } else {
            facts.get::<_, bool>(3)
        };
        let spans_rows = other_unique || fires || (origin_role && foreign_keys);
        let copyable: bool = self
            .client
            .query_one(
                // Kept to tables where a COPY can only fail at a row (see
                // `Built::error`), and behaves as the INSERT would: no INSERT
                // rule (COPY applies none), no statement-level INSERT
                // trigger (it runs before the first row), no row-level
                // security (COPY refuses it), no foreign-table partition.
                "WITH RECURSIVE tree(oid) AS (
                     SELECT $1::oid
                     UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid)
                 SELECT c.relkind IN ('r', 'p') AND NOT c.relrowsecurity
                        AND NOT EXISTS (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.ev_type = '3')
                        AND NOT EXISTS (SELECT 1 FROM pg_trigger g
                                         WHERE g.tgrelid = c.oid AND g.tgenabled <> 'D'
                                           AND g.tgtype & 1 = 0 AND g.tgtype & 4 <> 0)
                        AND NOT EXISTS (SELECT 1 FROM tree JOIN pg_class p ON p.oid = tree.oid WHERE p.relkind = 'f')
                   FROM pg_class c WHERE c.oid = $1",
                &[&oid],
            )
            .await
            .map_err(db(format!("read the kind and rules of {table} on the target")))?
            .get(0);
        Ok(TargetTable {
            quoted,
            copyable,
            column_types,
            key,
            other_unique,
            foreign_keys,
            spans_rows,
            arrayable,
            classes,
            typmods,
        })
    }

    /// The table as configured for this site: a change from a MySQL source
    /// names its database as the schema, and goes to the configured table of
    /// the same name.
    fn configured(&self, table: &TableName) -> TableName {
        self.configured_ref(table).clone()
    }

    fn configured_ref<'a>(&'a self, table: &'a TableName) -> &'a TableName {
        self.spec
            .tables
            .iter()
            .find(|t| t.name == table.name && t.schema == table.schema)
            .or_else(|| self.spec.tables.iter().find(|t| t.name == table.name))
            .unwrap_or(table)
    }

    /// In a replica-role session, the statements of a table whose triggers
    /// are to fire run in the origin role, the others in the replica role.
    /// `SET LOCAL`: the transaction's end restores the session's role.
    async fn trigger_role(&mut self, table: &str) -> Result<(), SinkError> {
        // (A switch that fails aborts the transaction, which is rolled back
        // and begun again with the session's role.)
        if let Some(sql) = self.role_switch(table) {
            self.client.batch_execute(sql).await.map_err(db(
                "switch session_replication_role for a table whose triggers fire",
            ))?;
        }
        Ok(())
    }

    /// Execute one batch under a savepoint, so that a statement the target
    /// refuses leaves the transaction usable (the rows are then retried one
    /// by one). The trigger role is set outside the savepoint: rolled back
    /// with it, it would no longer be what `origin_role` says.
    async fn execute_guarded(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.ensure_begun().await?;
        self.trigger_role(&batch.table.table.name).await?;
        self.client
            .batch_execute("SAVEPOINT duplex_batch")
            .await
            .map_err(db("set a savepoint"))?;
        match self.execute_batch(batch).await {
            Ok(()) => {
                self.client
                    .batch_execute("RELEASE SAVEPOINT duplex_batch")
                    .await
                    .map_err(db("release a savepoint"))?;
                Ok(())
            }
            Err(e) => {
                if e.is_data_error() {
                    self.client
                        .batch_execute(
                            "ROLLBACK TO SAVEPOINT duplex_batch; RELEASE SAVEPOINT duplex_batch",
                        )
                        .await
                        .map_err(db("roll back to a savepoint"))?;
                }
                Err(e)
            }
        }
    }

    async fn execute_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let built = self.build(batch).await?;
        let affected = run_built(&self.client, &built)
            .await
            .map_err(|e| built.error(e))?;
        self.count_missing(&built, affected);
        Ok(())
    }

    /// A batch's statement (prepared) and its parameters.
    async fn build(&mut self, batch: &Batch) -> Result<Built, SinkError> {
        let schema = batch.table.clone();
        let target = self.target_table(&schema.table).await?;
        let cast = |name: &str| -> Result<&str, SinkError> {
            target
                .column_types
                .get(name)
                .map(String::as_str)
                .ok_or_else(|| SinkError::MissingColumn {
                    table: schema.table.clone(),
                    column: name.to_string(),
                })
        };
        let marker_type = cast(&self.spec.marker_column)?.to_string();
        same_key(&schema, &target.key)?;
        let key_cols: Vec<usize> = schema.key.clone();
        let n = batch.rows.len();
        if batch.op == Op::Insert && target.copyable && n >= COPY_MIN_ROWS {
            // A missing column is refused here, as the INSERT's casts do,
            // not by the server at the COPY's start (see `Built::error`).
            for &i in &batch.shape {
                cast(&schema.columns[i].name)?;
            }
            return self.build_copy(batch, &target).await;
        }
        // One array per column (`unnest`): the statement's text is the same
        // whatever the number of rows, so it is prepared once and planned
        // as a generic plan, where a VALUES list is parsed and planned again
        // for every number of rows (with one parameter per value). Columns
        // that cannot go so (see `TargetTable::arrayable`) keep the list.
        let arrays = key_cols
            .iter()
            .chain(batch.shape.iter())
            .all(|&i| target.arrayable.contains(&schema.columns[i].name))
            && target.arrayable.contains(&self.spec.marker_column);
        let mut params: Vec<Option<String>> = Vec::new();
        let stride: usize;
        let sql = match batch.op {
            Op::Insert => {
                let cols = self.insert_columns(&schema, &batch.shape);
                let mut types = Vec::new();
                for &i in &batch.shape {
                    types.push(cast(&schema.columns[i].name)?.to_string());
                }
                types.push(marker_type.clone());
                for change in &batch.rows {
                    self.push_image_params(&schema, &target, change, &batch.shape, &mut params)?;
                    params.push(Some(change.marker.to_json()));
                }
                stride = types.len();
                // OVERRIDING SYSTEM VALUE: the source's value of a GENERATED ALWAYS
                // identity column is the row's identity on both sides.
                if arrays {
                    format!(
                        "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT * FROM unnest({})",
                        target.quoted,
                        cols.join(", "),
                        array_list(&types)
                    )
                } else {
                    format!(
                        "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE VALUES {}",
                        target.quoted,
                        cols.join(", "),
                        values_list(n, &types)
                    )
                }
            }
            Op::Update => {
                let mut types = Vec::new();
                let mut aliases = Vec::new();
                for (j, &i) in key_cols.iter().enumerate() {
                    types.push(cast(&schema.columns[i].name)?.to_string());
                    aliases.push(format!("k{j}"));
                }
                let mut sets = Vec::new();
                for (j, &i) in batch.shape.iter().enumerate() {
                    types.push(cast(&schema.columns[i].name)?.to_string());
                    aliases.push(format!("c{j}"));
                    // An unchanged key is not SET: a GENERATED ALWAYS identity
                    // column can only be "updated" to DEFAULT.
                    if batch.key_changed || !key_cols.contains(&i) {
                        sets.push(format!("{} = v.c{j}", quote_ident(&schema.columns[i].name)));
                    }
                }
                types.push(marker_type.clone());
                aliases.push("m".into());
                sets.push(format!("{} = v.m", quote_ident(&self.spec.marker_column)));
                for change in &batch.rows {
                    self.push_key_params(&schema, &target, change, &mut params)?;
                    self.push_image_params(&schema, &target, change, &batch.shape, &mut params)?;
                    params.push(Some(change.marker.to_json()));
                }
                let on: Vec<String> = key_cols
                    .iter()
                    .enumerate()
                    .map(|(j, &i)| format!("t.{} = v.k{j}", quote_ident(&schema.columns[i].name)))
                    .collect();
                stride = types.len();
                format!(
                    "UPDATE {} AS t SET {} FROM {} AS v({}) WHERE {}",
                    target.quoted,
                    sets.join(", "),
                    rows_source(arrays, n, &types),
                    aliases.join(", "),
                    on.join(" AND ")
                )
            }
            Op::Delete => {
                let mut types = Vec::new();
                let mut aliases = Vec::new();
                for (j, &i) in key_cols.iter().enumerate() {
                    types.push(cast(&schema.columns[i].name)?.to_string());
                    aliases.push(format!("k{j}"));
                }
                for change in &batch.rows {
                    self.push_key_params(&schema, &target, change, &mut params)?;
                }
                let on: Vec<String> = key_cols
                    .iter()
                    .enumerate()
                    .map(|(j, &i)| format!("t.{} = v.k{j}", quote_ident(&schema.columns[i].name)))
                    .collect();
                stride = types.len();
                format!(
                    "DELETE FROM {} AS t USING {} AS v({}) WHERE {}",
                    target.quoted,
                    rows_source(arrays, n, &types),
                    aliases.join(", "),
                    on.join(" AND ")
                )
            }
        };
        let params = if arrays {
            Params::Columns(columns_of(params, stride))
        } else {
            Params::Rows(params)
        };
        let statement = self.statement(&sql, &params).await?;
        Ok(Built {
            statement,
            input: Input::Params(params),
            rows: n,
            op: batch.op,
            table: schema.table.clone(),
        })
    }

    /// The quoted columns an insert writes: the shape's, then the marker.
    fn insert_columns(&self, schema: &TableSchema, shape: &[usize]) -> Vec<String> {
        let mut cols: Vec<String> = shape
            .iter()
            .map(|&i| quote_ident(&schema.columns[i].name))
            .collect();
        cols.push(quote_ident(&self.spec.marker_column));
        cols
    }

    /// An insert batch as a `COPY ... FROM STDIN` and its rows: the same
    /// columns and input texts as the `INSERT` (a source's value of a
    /// `GENERATED ALWAYS` identity column is written as given, as with
    /// `OVERRIDING SYSTEM VALUE`). Its columns are known to exist (`build`).
    async fn build_copy(
        &mut self,
        batch: &Batch,
        target: &TargetTable,
    ) -> Result<Built, SinkError> {
        let schema = &batch.table;
        let cols = self.insert_columns(schema, &batch.shape);
        let sql = format!("COPY {} ({}) FROM STDIN", target.quoted, cols.join(", "));
        let mut rows = CopyText::with_capacity(batch.rows.len() * 64 * cols.len());
        let mut texts = Vec::with_capacity(batch.shape.len());
        for change in &batch.rows {
            texts.clear();
            self.push_image_params(schema, target, change, &batch.shape, &mut texts)?;
            for t in &texts {
                rows.field(t.as_deref());
            }
            rows.field(Some(&change.marker.to_json()));
            rows.end_row();
        }
        let statement = self.statement_typed(&sql, &[]).await?;
        Ok(Built {
            statement,
            input: Input::Copy(rows.finish()),
            rows: batch.rows.len(),
            op: batch.op,
            table: schema.table.clone(),
        })
    }

    /// Rows an update or delete did not find (`affected` of the statement's
    /// rows were changed): counted, and said.
    fn count_missing(&self, built: &Built, affected: u64) {
        if built.op != Op::Insert && (affected as usize) < built.rows {
            let missing = built.rows - affected as usize;
            self.stats
                .missing_rows
                .fetch_add(missing as u64, Ordering::Relaxed);
            tracing::warn!(table = %built.table, op = %built.op, missing, "rows to change were not on the target");
        }
    }

    /// The role statement a batch of `table` needs first, if the session's
    /// role is not the one its triggers need (see `trigger_role`); notes the
    /// new role.
    fn role_switch(&mut self, table: &str) -> Option<&'static str> {
        if !self.spec.replica_role {
            return None;
        }
        let origin = self.spec.fire_triggers.contains(table);
        if origin == self.origin_role {
            return None;
        }
        self.origin_role = origin;
        Some(if origin {
            "SET LOCAL session_replication_role = origin"
        } else {
            "SET LOCAL session_replication_role = replica"
        })
    }

    /// A round's statements in one pipeline: a savepoint, every statement
    /// (with the role switches their tables need), its release; one round
    /// trip whatever the number of statements. When the target refuses a
    /// statement, the ones after it fail too (the transaction is aborted
    /// until the savepoint is rolled back to): the round is rolled back
    /// whole, and none of its statements counts as applied.
    async fn execute_round(&mut self, batches: &[Batch]) -> Result<(), Unapplied> {
        let unapplied = |error| Unapplied { executed: 0, error };
        self.ensure_begun().await.map_err(unapplied)?;
        // Every statement is built first: a value the target cannot take is
        // refused before anything is sent.
        let mut built = Vec::with_capacity(batches.len());
        for batch in batches {
            built.push(self.build(batch).await.map_err(unapplied)?);
        }
        let role_before = self.origin_role;
        let roles: Vec<Option<&'static str>> = batches
            .iter()
            .map(|b| self.role_switch(&b.table.table.name))
            .collect();
        let client = &self.client;
        type Step<'a> = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>,
        >;
        // Pipelines of steps, run one after another. A `COPY` goes out only
        // once everything before it has succeeded, alone: sent into a
        // transaction already aborted, its refused start would be followed
        // by the end of its data stream (`CopyFail`, `Sync`), which the
        // server answers a second time, and the connection's answers would
        // no longer match its requests.
        let mut pipelines: Vec<Vec<(Option<usize>, Step<'_>)>> = Vec::new();
        let mut steps: Vec<(Option<usize>, Step<'_>)> = Vec::with_capacity(batches.len() + 2);
        steps.push((
            None,
            Box::pin(async move {
                client
                    .batch_execute("SAVEPOINT duplex_round")
                    .await
                    .map(|_| 0)
            }),
        ));
        for (i, b) in built.iter().enumerate() {
            if let Some(sql) = roles[i] {
                steps.push((
                    None,
                    Box::pin(async move { client.batch_execute(sql).await.map(|_| 0) }),
                ));
            }
            if matches!(b.input, Input::Copy(_)) {
                pipelines.push(std::mem::take(&mut steps));
                pipelines.push(vec![(Some(i), Box::pin(run_built(client, b)))]);
            } else {
                steps.push((Some(i), Box::pin(run_built(client, b))));
            }
        }
        steps.push((
            None,
            Box::pin(async move {
                client
                    .batch_execute("RELEASE SAVEPOINT duplex_round")
                    .await
                    .map(|_| 0)
            }),
        ));
        pipelines.push(steps);
        let mut first_error: Option<SinkError> = None;
        let mut affected = Vec::with_capacity(built.len());
        for pipeline in pipelines {
            if first_error.is_some() {
                break;
            }
            let (which, futures): (Vec<Option<usize>>, Vec<Step<'_>>) =
                pipeline.into_iter().unzip();
            // Polled together, the requests go out in this order on the one
            // connection without waiting for each other's answers.
            let results = futures_util::future::join_all(futures).await;
            for (which, result) in which.into_iter().zip(results) {
                match (which, result) {
                    (Some(i), Ok(n)) => affected.push((i, n)),
                    (_, Ok(_)) => {}
                    (Some(i), Err(e)) => {
                        first_error.get_or_insert_with(|| built[i].error(e));
                    }
                    (None, Err(e)) => {
                        first_error.get_or_insert(SinkError::Pg {
                            context: "run a round of statements under a savepoint".into(),
                            source: e,
                        });
                    }
                }
            }
        }
        let Some(error) = first_error else {
            for (i, n) in affected {
                self.count_missing(&built[i], n);
            }
            return Ok(());
        };
        if error.is_data_error() {
            // The role switches of the round are undone with it.
            self.origin_role = role_before;
            self.client
                .batch_execute("ROLLBACK TO SAVEPOINT duplex_round; RELEASE SAVEPOINT duplex_round")
                .await
                .map_err(db("roll back to a savepoint"))
                .map_err(unapplied)?;
        }
        Err(unapplied(error))
    }

    async fn statement(&mut self, sql: &str, params: &Params) -> Result<Statement, SinkError> {
        let types = match params {
            Params::Rows(p) => vec![Type::TEXT; p.len()],
            Params::Columns(c) => vec![Type::TEXT_ARRAY; c.len()],
        };
        self.statement_typed(sql, &types).await
    }

    /// `sql` prepared with parameters of `types`, from the cache.
    ///
    /// Only a prepared statement may go into a pipeline behind another: a
    /// statement given as text is prepared first, and what follows it in
    /// the pipeline reaches the server before it does.
    async fn statement_typed(&mut self, sql: &str, types: &[Type]) -> Result<Statement, SinkError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        if self.statements.len() >= STATEMENT_CACHE_LIMIT {
            self.statements.clear();
        }
        let s = self
            .client
            .prepare_typed(sql, types)
            .await
            .map_err(db(format!("prepare: {}", abbreviate(sql))))?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn push_image_params(
        &self,
        schema: &TableSchema,
        target: &TargetTable,
        change: &RowChange,
        shape: &[usize],
        params: &mut Vec<Option<String>>,
    ) -> Result<(), SinkError> {
        let after = change.after.as_ref();
        for &i in shape {
            let v = after
                .and_then(|a| a.0.get(i))
                .and_then(|v| v.as_ref())
                .unwrap_or(&Value::Null);
            params.push(self.text_param(schema, target, change, i, v)?);
        }
        Ok(())
    }

    fn push_key_params(
        &self,
        schema: &TableSchema,
        target: &TargetTable,
        change: &RowChange,
        params: &mut Vec<Option<String>>,
    ) -> Result<(), SinkError> {
        for (i, v) in identifying_key(change)? {
            params.push(self.text_param(schema, target, change, i, v)?);
        }
        Ok(())
    }

    fn text_param(
        &self,
        schema: &TableSchema,
        target: &TargetTable,
        change: &RowChange,
        column: usize,
        v: &Value,
    ) -> Result<Option<String>, SinkError> {
        if v.is_null() {
            return Ok(None);
        }
        // PostgreSQL would take the text and silently drop part of the value
        // (a timestamp into a date) or round it to the column's scale or
        // precision: refused instead, as MySQL's encoder refuses it.
        let name = &schema.columns[column].name;
        let class = target.classes.get(name);
        let typmod = target.typmods.get(name).copied().unwrap_or(-1);
        let refusal = class.and_then(|c| {
            crate::pg::stored::lossy_into(c, v)
                .map(str::to_string)
                .or_else(|| crate::pg::stored::rounded_by(c, typmod, v))
        });
        if let Some(reason) = refusal {
            return Err(SinkError::Value {
                table: schema.table.clone(),
                key: describe_key(change),
                column: name.clone(),
                reason: format!(
                    "{}: {reason}",
                    encode_text(v).unwrap_or_else(|_| v.kind_name().to_string())
                ),
            });
        }
        let text = encode_for(v, class).map_err(|e| SinkError::Value {
            table: schema.table.clone(),
            key: describe_key(change),
            column: schema.columns[column].name.clone(),
            reason: e.to_string(),
        })?;
        if text.contains('\0') {
            return Err(SinkError::Value {
                table: schema.table.clone(),
                key: describe_key(change),
                column: schema.columns[column].name.clone(),
                reason: "PostgreSQL text cannot hold a NUL character (a bytea column can: change the column's type, then retry the change)".into(),
            });
        }
        Ok(Some(text))
    }
}

/// Run a built statement: its requests go out when the future is first
/// polled (so several can share a pipeline, in the order they are polled);
/// returns the rows it wrote.
async fn run_built(client: &Client, built: &Built) -> Result<u64, tokio_postgres::Error> {
    match &built.input {
        Input::Params(params) => client.execute(&built.statement, &params.refs()).await,
        Input::Copy(rows) => {
            use futures_util::SinkExt;
            // The data goes out once the server has answered the COPY (after
            // the statements ahead of it in the pipeline); the requests
            // behind it wait for its end.
            let sink = client.copy_in::<_, bytes::Bytes>(&built.statement).await?;
            futures_util::pin_mut!(sink);
            sink.send(rows.clone()).await?;
            sink.finish().await
        }
    }
}

/// A value as the text parameter for a column of `class`. Text bound for a
/// `bytea` column is written as its UTF-8 bytes, exactly: how a DBA keeps
/// text that PostgreSQL's text types cannot hold (a NUL character).
fn encode_for(
    v: &Value,
    class: Option<&PgTypeClass>,
) -> Result<String, crate::pg::text_encode::PgEncodeError> {
    match (v, class) {
        (Value::Text(s) | Value::Json(s) | Value::Enum(s), Some(PgTypeClass::Bytea)) => {
            use std::fmt::Write;
            let mut out = String::with_capacity(2 + 2 * s.len());
            out.push_str("\\x");
            for b in s.as_bytes() {
                let _ = write!(out, "{b:02x}");
            }
            Ok(out)
        }
        _ => encode_text(v),
    }
}

/// `$1::text[]::t1[], $2::text[]::t2[]`: one text array per column.
fn array_list(types: &[String]) -> String {
    types
        .iter()
        .enumerate()
        .map(|(j, t)| format!("${}::text[]::{t}[]", j + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows a statement joins: `unnest(<arrays>)` or `(VALUES ...)`.
fn rows_source(arrays: bool, rows: usize, types: &[String]) -> String {
    if arrays {
        format!("unnest({})", array_list(types))
    } else {
        format!("(VALUES {})", values_list(rows, types))
    }
}

/// `($1::text::t1, $2::text::t2), ($3::text::t1, ...)`.
fn values_list(rows: usize, types: &[String]) -> String {
    let mut out = String::with_capacity(rows * types.len() * 16);
    let mut p = 0;
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for (j, t) in types.iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            p += 1;
            out.push_str(&format!("${p}::text::{t}"));
        }
        out.push(')');
    }
    out
}

fn abbreviate(sql: &str) -> String {
    if sql.len() > 200 {
        let mut end = 200;
        while !sql.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &sql[..end])
    } else {
        sql.to_string()
    }
}

/// How many times (100 ms apart) an applier asks again for an origin a
/// session of its previous run may still hold.
const ORIGIN_RELEASE_ATTEMPTS: u32 = 30;

/// A position counter as PostgreSQL LSN text: the replication origin stores any
/// source's position this way (a binlog position is file << 32 | offset).
pub fn lsn_text(counter: u64) -> String {
    format!("{:X}/{:X}", counter >> 32, counter & 0xffff_ffff)
}

/// Parse PostgreSQL's `XXXXXXXX/XXXXXXXX` LSN text.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

impl Target for PgTarget {
    fn site_name(&self) -> &str {
        &self.spec.endpoint.site_name
    }

    fn table_names(&self) -> Vec<String> {
        self.spec.tables.iter().map(|t| t.name.clone()).collect()
    }

    fn policy_for(&self, table: &TableName) -> TablePolicy {
        self.policy_of(table)
    }

    fn forget_tables(&mut self) {
        self.spec.described.forget();
    }

    async fn missing_columns(
        &mut self,
        table: &TableName,
        columns: &[&str],
        fresh: bool,
    ) -> Result<Vec<String>, SinkError> {
        if fresh {
            let configured = self.configured(table);
            self.spec.described.forget_table(&configured);
        }
        let t = self.target_table(table).await?;
        Ok(columns
            .iter()
            .chain(self.own_columns().iter())
            .filter(|c| !t.column_types.contains_key(**c))
            .map(|c| c.to_string())
            .collect())
    }

    fn own_columns(&self) -> Vec<&str> {
        vec![self.spec.marker_column.as_str()]
    }

    async fn resume_position(&mut self) -> Result<Option<u64>, SinkError> {
        PgTarget::resume_position(self).await
    }

    // The session runs under the link's replication origin: every transaction
    // it commits is duplex's own.
    async fn begin(&mut self) -> Result<(), SinkError> {
        self.origin_role = false;
        // Sent with the transaction's first reads (`read_locals`).
        self.begin_pending = true;
        Ok(())
    }

    async fn commit(&mut self, applied: Option<(SourcePosition, i64)>) -> Result<(), SinkError> {
        if let Some((end, commit_time_us)) = applied {
            let ts = encode_text(&Value::TimestampTz(crate::canonical::Timestamp::Micros(
                commit_time_us,
            )))
            .map_err(|e| SinkError::Value {
                table: TableName::new("", ""),
                key: String::new(),
                column: "commit time".into(),
                reason: e.to_string(),
            })?;
            self.ensure_begun().await?;
            let lsn = lsn_text(end.counter());
            // Prepared beforehand: executing SQL text prepares it first (a
            // round trip of its own), and the COMMIT behind it in the
            // pipeline would reach the server before the position did.
            let setup = self
                .statement_typed(
                    "SELECT pg_replication_origin_xact_setup($1::text::pg_lsn, $2::text::timestamptz)",
                    &[Type::TEXT, Type::TEXT],
                )
                .await?;
            // One round trip: the position and the commit in one pipeline.
            let (setup, commit) = futures_util::future::join(
                self.client.execute(&setup, &[&lsn, &ts]),
                self.client.batch_execute("COMMIT"),
            )
            .await;
            setup.map_err(db("record the applied source position"))?;
            return commit.map_err(db("commit target transaction"));
        }
        if std::mem::take(&mut self.begin_pending) {
            // Nothing was sent: nothing to commit.
            return Ok(());
        }
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(db("commit target transaction"))
    }

    async fn rollback(&mut self) -> Result<(), SinkError> {
        if std::mem::take(&mut self.begin_pending) {
            return Ok(());
        }
        self.client
            .batch_execute("ROLLBACK")
            .await
            .map_err(db("roll back a target transaction"))
    }

    async fn truncate(&mut self, tables: &[Arc<TableSchema>]) -> Result<(), SinkError> {
        self.ensure_begun().await?;
        let mut names: Vec<String> = Vec::new();
        for t in tables {
            let quoted = quote_table(&self.configured(&t.table));
            // ONLY the table itself: an inheritance parent's children
            // are not synced. A partitioned table is truncated whole
            // (ONLY is refused there), as its source was.
            let partitioned: bool = self
                .client
                .query_one(
                    "SELECT coalesce((SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass($1)), false)",
                    &[&quoted],
                )
                .await
                .map_err(db("look up a truncated table"))?
                .get(0);
            names.push(if partitioned {
                quoted
            } else {
                format!("ONLY {quoted}")
            });
        }
        if !names.is_empty() {
            self.client
                .batch_execute(&format!("TRUNCATE {}", names.join(", ")))
                .await
                .map_err(db("truncate"))?;
        }
        Ok(())
    }

    async fn write_rules(
        &mut self,
        change: &RowChange,
        shape_len: usize,
    ) -> Result<WriteRules, SinkError> {
        let target = self.target_table(&change.table.table).await?;
        // Updates of a table with other unique constraints go one per statement.
        let max_rows = if change.op == Op::Update && target.other_unique {
            1
        } else {
            self.max_rows(&change.table, shape_len)
        };
        // Writes of different rows commute unless a constraint or trigger
        // spans rows: another unique index (a value one row gives up and
        // another takes), a foreign key the session checks (the replica role
        // checks none, the origin role of a table whose triggers fire does),
        // or triggers that fire.
        let fires = self.spec.fire_triggers.contains(&change.table.table.name);
        let checked_keys = target.foreign_keys && !self.spec.replica_role;
        let keep_order = target.other_unique || fires || checked_keys;
        Ok(WriteRules {
            max_rows,
            keep_order,
            // Its triggers (or foreign-key actions) may touch other tables.
            barrier: fires || checked_keys,
        })
    }

    async fn execute(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.execute_guarded(batch).await
    }

    async fn execute_all(&mut self, batches: &[Batch]) -> Result<(), Unapplied> {
        self.execute_round(batches).await
    }

    async fn purge_tombstones(&mut self, retention: Duration) -> Result<u64, SinkError> {
        PgTarget::purge_tombstones(self, retention).await
    }

    async fn sessions_waiting(&mut self) -> Result<bool, SinkError> {
        PgTarget::sessions_waiting(self).await
    }

    fn session_id(&self) -> u64 {
        self.session_id
    }

    async fn blocks_sessions(&mut self, sessions: &[u64]) -> Result<bool, SinkError> {
        PgTarget::blocks_sessions(self, sessions).await
    }

    async fn spans_rows(&mut self, table: &TableName) -> Result<bool, SinkError> {
        Ok(self.target_table(table).await?.spans_rows)
    }

    fn worker(&self) -> u32 {
        self.spec.worker
    }

    async fn write_outbox(
        &mut self,
        scope: OutboxScope,
        entries: &[String],
    ) -> Result<(), SinkError> {
        self.ensure_begun().await?;
        let (link, source, worker) = (
            scope.link_id as i32,
            scope.source_site as i32,
            scope.worker as i32,
        );
        self.client
            .execute(
                "INSERT INTO duplex.site_journal (link_id, source_site, worker, entry)
                 SELECT $1, $2, $3, e FROM unnest($4::text[]) WITH ORDINALITY AS u(e, n) ORDER BY n",
                &[&link, &source, &worker, &entries],
            )
            .await
            .map_err(db("write conflict and quarantine records to duplex.site_journal"))?;
        Ok(())
    }

    async fn read_outbox(
        &mut self,
        scope: OutboxScope,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, SinkError> {
        let (link, source) = (scope.link_id as i32, scope.source_site as i32);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                "SELECT entry_id, entry FROM duplex.site_journal
                  WHERE link_id = $1 AND source_site = $2 AND entry_id > $3
                  ORDER BY entry_id LIMIT $4",
                &[&link, &source, &after, &limit],
            )
            .await
            .map_err(db("read duplex.site_journal"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn remove_outbox(&mut self, ids: &[i64]) -> Result<(), SinkError> {
        self.client
            .execute(
                "DELETE FROM duplex.site_journal WHERE entry_id = ANY($1)",
                &[&ids],
            )
            .await
            .map_err(db("remove shipped records from duplex.site_journal"))?;
        Ok(())
    }

    async fn describe_tables(&mut self) {
        for table in self.spec.tables.clone() {
            if let Err(e) = self.target_table(&table).await {
                tracing::debug!(%table, error = %e, "table not described before the stream");
            }
        }
    }

    async fn mark_applied(&mut self, position: SourcePosition) -> Result<(), SinkError> {
        self.ensure_begun().await?;
        // The origin's progress moves with this transaction's commit, so the
        // site's slot-continuity check knows changes were applied here.
        let SourcePosition::PgLsn(lsn) = position else {
            return Ok(());
        };
        let text = SourcePosition::PgLsn(lsn).to_string();
        self.client
            .execute(
                "SELECT pg_replication_origin_xact_setup($1::text::pg_lsn, now())",
                &[&text],
            )
            .await
            .map_err(db("record the copy's position"))?;
        Ok(())
    }

    async fn foreign_key_checks(&mut self, on: bool) -> Result<(), SinkError> {
        if on {
            // SET LOCAL ends with the transaction.
            return Ok(());
        }
        self.ensure_begun().await?;
        // As PostgreSQL's own logical replication applies: in the replica
        // role, foreign keys (and ordinary triggers) are not enforced. Only a
        // superuser, or a role granted SET on the parameter (PostgreSQL 15+),
        // may; otherwise the copy relies on the parents-first table order.
        let relaxed = self
            .client
            .batch_execute(
                "SAVEPOINT duplex_fk; SET LOCAL session_replication_role = replica; RELEASE SAVEPOINT duplex_fk",
            )
            .await;
        if relaxed.is_err() {
            self.client
                .batch_execute("ROLLBACK TO SAVEPOINT duplex_fk; RELEASE SAVEPOINT duplex_fk")
                .await
                .map_err(db("leave foreign-key checks on"))?;
        }
        Ok(())
    }

    async fn normalize(&mut self, change: &mut RowChange) -> Result<(), SinkError> {
        let target = self.target_table(&change.table.table).await?;
        let classes: Vec<Option<(&PgTypeClass, i32)>> = change
            .table
            .columns
            .iter()
            .map(|c| {
                let typmod = target.typmods.get(&c.name).copied().unwrap_or(-1);
                target.classes.get(&c.name).map(|class| (class, typmod))
            })
            .collect();
        store_values(change, |i, v| {
            let (class, typmod) = classes.get(i).copied().flatten()?;
            crate::pg::stored::stored_form(class, typmod, v)
                .ok()
                .flatten()
        });
        Ok(())
    }

    async fn read_rows(
        &mut self,
        requests: &[(Arc<TableSchema>, Vec<KeyRef>)],
    ) -> Result<Vec<Vec<LocalRow>>, SinkError> {
        self.read_locals(requests).await
    }

    fn capture_start(&self, table: &TableName) -> Option<i64> {
        self.spec
            .capture_starts
            .get(&self.configured(table))
            .copied()
    }

    async fn read_tombstones(
        &mut self,
        schema: &TableSchema,
        keys: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, Tombstone>, SinkError> {
        self.find_tombstones(schema, keys).await
    }

    async fn store_tombstones(&mut self, resolved: &Resolved) -> Result<(), SinkError> {
        self.write_tombstones(&resolved.tombstones, &resolved.revived)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text() {
        assert_eq!(parse_lsn("0/16B3F28"), Some(0x16B_3F28));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(SourcePosition::PgLsn(0x1_0000_00FF).to_string(), "1/FF");
        assert_eq!(parse_lsn("garbage"), None);
    }

    #[test]
    fn a_copy_error_is_a_refused_row_only_where_the_server_names_the_row() {
        assert!(copy_refused_a_row(Some("COPY t, line 2: \"2\tbad\"")));
        assert!(copy_refused_a_row(Some("COPY t, line 77")));
        assert!(copy_refused_a_row(Some(
            "PL/pgSQL function f() line 3 at RAISE\nCOPY t, line 5: \"5\tx\""
        )));
        assert!(!copy_refused_a_row(None));
        assert!(!copy_refused_a_row(Some("COPY t")));
        assert!(!copy_refused_a_row(Some(
            "PL/pgSQL function audit() line 3 at RAISE"
        )));
    }

    #[test]
    fn values_list_numbers_parameters_in_order() {
        let types = vec!["integer".to_string(), "text".to_string()];
        assert_eq!(
            values_list(2, &types),
            "($1::text::integer, $2::text::text), ($3::text::integer, $4::text::text)"
        );
    }
}
