//! Initial sync: when a table joins a link, each direction copies the rows
//! its source site already holds before it streams.
//!
//! Why this is exact without a snapshot tied to a log position: the direction
//! streams from the position it was at before the copy (its resume point,
//! fixed when the link was set up: the slot's start, or the binlog position
//! recorded then), so every change made during or after the copy is applied
//! after it, in order. A row copied in a later state than a change the stream
//! then replays is set back by that change and forward again by the next
//! one: the last state wins, as in the source. For that, a copied row's
//! version must never beat a streamed change of the same row: its own dot
//! carries the resume counter, below every streamed change's.
//!
//! Copied rows go through the normal apply path (conflict detection under
//! the table's policy, the marker column, duplex's origin or marker-table tag
//! so they are not echoed): a row present on both sites with different
//! content is a conflict settled by the policy and recorded. Pages are one
//! target transaction each; `duplex.snapshot_progress` keeps the last key
//! copied, so an interrupted copy goes on from its last page (a page applied
//! twice is harmless: the second copy carries the same version).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;

use crate::canonical::{ChangeOrigin, SourceForm};
use crate::canonical::{Op, RowChange, SourcePosition, TableName, TableSchema, Value};
use crate::control::{ControlDb, ControlEndpoint, Site, SiteEngine, Sql, P};
use crate::marker::{Dot, Marker};
use crate::sink::{Applier, Target};
use crate::stats::DirectionStats;
use crate::table_reader::SideReader;

/// One table a direction may have to copy.
#[derive(Debug, Clone)]
pub struct SnapshotTable {
    /// As configured (the PostgreSQL schema; MySQL sites use their database).
    pub table: TableName,
    /// `link_tables.initial_sync`.
    pub initial_sync: bool,
    /// Held while paused: copied once resumed.
    pub paused: bool,
    pub field_merge: bool,
    /// The columns the mapping never sends (see `source::Stamping`).
    pub unsynced_columns: std::collections::HashSet<String>,
}

/// What a direction needs to copy its source's existing rows.
#[derive(Debug, Clone)]
pub struct SnapshotSpec {
    pub link_id: u32,
    pub source: Site,
    pub target_site: u32,
    pub tables: Vec<SnapshotTable>,
    pub marker_column: String,
    pub stamp_column: String,
    /// The source's replication slot for this link (PostgreSQL sources).
    pub slot_name: String,
    pub control: ControlEndpoint,
    /// 0: no limit.
    pub rows_per_second: u32,
    /// The most rows a page holds (one target transaction each); pages of
    /// wide rows hold fewer (`next_page_rows`).
    pub page_rows: usize,
}

struct Progress {
    state: String,
    snapshot_id: i64,
    last_key: Option<Vec<Value>>,
    rows_done: i64,
}

fn control_err(e: crate::control::ControlError) -> crate::Error {
    crate::Error::Control(e)
}

/// Copy every table of this direction whose copy is not done, before the
/// direction streams. Returns where a MySQL source must start streaming when
/// it has no resume point yet (the position before the copy).
pub(crate) async fn run_pending<T: Target>(
    spec: &SnapshotSpec,
    sink: &mut Applier<T>,
    mapping: &mut crate::mapping::DirectionMapping,
    resume: Option<SourcePosition>,
    stats: &Arc<DirectionStats>,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<SourcePosition>, crate::Error> {
    let mut control = spec.control.connect("duplex initial sync").await?;
    // A table that left the link (removed or disabled) is copied again when
    // it comes back: changes made meanwhile were not streamed.
    let current: Vec<String> = spec.tables.iter().map(|t| t.table.to_string()).collect();
    control
        .exec(Sql::new(
            "forget the copies of tables that left the link",
            "DELETE FROM duplex.snapshot_progress
              WHERE link_id = $1 AND source_site = $2 AND NOT (table_name = ANY($3))",
            "DELETE FROM duplex.snapshot_progress
              WHERE link_id = ? AND source_site = ? AND NOT JSON_CONTAINS(?, JSON_QUOTE(table_name))",
            &[
                P::I32(spec.link_id as i32),
                P::I32(spec.source.site_id as i32),
                P::TextList(&current),
            ],
        ))
        .await
        .map_err(control_err)?;
    let mut pending = Vec::new();
    for t in &spec.tables {
        if mapping.skips(&t.table.name) {
            continue;
        }
        let progress = read_progress(&mut control, spec, &t.table).await?;
        match progress {
            Some(p) if p.state != "copying" => continue,
            // Held while paused: copied once resumed.
            _ if t.paused => continue,
            // Held for its shape: copied once the target's table fits (the
            // direction starts again then).
            _ if sink.spec.schema_holds.contains(&t.table.name) => continue,
            // A copy under way goes on (`duplex resync` asks for one this
            // way, whatever `initial_sync` says).
            Some(p) => pending.push((t.clone(), Some(p))),
            None if !t.initial_sync => {
                write_state(&mut control, spec, &t.table, "skipped", 0).await?;
                continue;
            }
            None => pending.push((t.clone(), None)),
        }
    }
    if pending.is_empty() {
        return Ok(None);
    }
    check_resumable(spec, resume).await?;
    // Parents first, where the target cannot turn its foreign keys off.
    let order = parents_first(
        &spec.source,
        pending.iter().map(|(t, _)| t.table.clone()).collect(),
    )
    .await?;
    pending.sort_by_key(|(t, _)| {
        order
            .iter()
            .position(|n| *n == t.table)
            .unwrap_or(usize::MAX)
    });
    // A MySQL source without a resume point would start at the server's
    // position when it connects, after the copy: start where we are now.
    let start = match (resume, spec.source.engine) {
        (None, SiteEngine::Mysql) => {
            let ep = crate::mysql::MysqlEndpoint::from_site(&spec.source)?;
            let mut conn = ep.connect().await?;
            Some(
                crate::source::mysql::current_position(&mut conn)
                    .await
                    .map_err(|e| crate::Error::source_error(&spec.source.name, e))?,
            )
        }
        _ => None,
    };
    // Where the stream resumes after the copy: recorded with each page where
    // the target keeps positions with its transactions.
    let resume_at = match (resume, spec.source.engine) {
        (Some(p), _) => Some(p),
        (None, SiteEngine::Postgres) => slot_position(spec).await?,
        (None, SiteEngine::Mysql) => start,
    };
    stats.set_state("initial sync");
    for (t, progress) in pending {
        if *shutdown.borrow() {
            break;
        }
        let span = tracing::info_span!("initial sync", table = %t.table);
        copy_table(
            spec,
            &mut control,
            sink,
            mapping,
            &t,
            progress,
            resume_at,
            stats,
            shutdown,
        )
        .instrument(span)
        .await?;
    }
    Ok(start)
}

/// A page of the source table and the key of its last row (where the next
/// page starts, and the copy's progress once it is applied).
type Page = (Vec<crate::table_reader::VersionedRow>, Vec<Value>);

/// About how many bytes of row data a page holds at most: a page is held in
/// memory whole, and twice over with the read-ahead.
const PAGE_BYTES: usize = 8 << 20;
/// The rows of a table's first page, before its rows' size is known.
const FIRST_PAGE_ROWS: usize = 100;

/// The rows the next page asks for: as many as make about [`PAGE_BYTES`] at
/// the size of the `rows` rows just read (`bytes` in all), at least one, at
/// most `max_rows`. Large pages make the copy fast (each page is a target
/// transaction and a progress write); the byte budget keeps wide rows from
/// filling the memory.
fn next_page_rows(max_rows: usize, rows: usize, bytes: usize) -> usize {
    let max_rows = max_rows.max(1);
    if rows == 0 {
        return FIRST_PAGE_ROWS.min(max_rows);
    }
    let per_row = (bytes / rows).max(1);
    (PAGE_BYTES / per_row).clamp(1, max_rows)
}

/// The source table's pages, read ahead of the applier: the next page is
/// read on the source while the current one is written on the target (they
/// had taken turns). At most two pages wait: one in the channel, one being
/// sent.
struct ReadAhead {
    /// `None` once the table is read to its end.
    pages: tokio::sync::mpsc::Receiver<Result<Option<Page>, crate::Error>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadAhead {
    fn start(
        mut reader: SideReader,
        schema: &TableSchema,
        mut after: Option<Vec<Value>>,
        spec: &SnapshotSpec,
    ) -> ReadAhead {
        let (tx, pages) = tokio::sync::mpsc::channel(1);
        let key = schema.key.clone();
        // A throttled copy takes at most a second's rows at a time.
        let max_rows = match spec.rows_per_second {
            0 => spec.page_rows,
            rate => spec.page_rows.min(rate as usize),
        };
        let (marker, stamp) = (spec.marker_column.clone(), spec.stamp_column.clone());
        let task = tokio::spawn(
            async move {
                let mut rows = next_page_rows(max_rows, 0, 0);
                loop {
                    let page = reader
                        .page_versions(after.as_deref(), rows, &marker, &stamp)
                        .await
                        .map_err(crate::Error::from)
                        .map(|page| {
                            let last = page.last().map(|last| {
                                key.iter()
                                    .map(|&i| {
                                        last.row.0.get(i).cloned().flatten().unwrap_or(Value::Null)
                                    })
                                    .collect::<Vec<Value>>()
                            })?;
                            Some((page, last))
                        });
                    let next = match &page {
                        Ok(Some((rows_read, last))) => {
                            let bytes = rows_read.iter().map(|v| v.row.approx_bytes()).sum();
                            rows = next_page_rows(max_rows, rows_read.len(), bytes);
                            Some(last.clone())
                        }
                        _ => None,
                    };
                    // The end of the table or an error is the last message.
                    if tx.send(page).await.is_err() || next.is_none() {
                        return;
                    }
                    after = next;
                }
            }
            .in_current_span(),
        );
        ReadAhead { pages, task }
    }

    /// The next page, `None` at the end of the table.
    async fn next(&mut self) -> Result<Option<Page>, crate::Error> {
        match self.pages.recv().await {
            Some(page) => page,
            None => Err(crate::Error::Internal(
                "the initial sync's page reader ended without its last page".into(),
            )),
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[allow(clippy::too_many_arguments)]
async fn copy_table<T: Target>(
    spec: &SnapshotSpec,
    control: &mut ControlDb,
    sink: &mut Applier<T>,
    mapping: &mut crate::mapping::DirectionMapping,
    t: &SnapshotTable,
    progress: Option<Progress>,
    resume_at: Option<SourcePosition>,
    stats: &Arc<DirectionStats>,
    shutdown: &watch::Receiver<bool>,
) -> Result<(), crate::Error> {
    let me = spec.source.site_id;
    let skip = vec![spec.marker_column.clone(), spec.stamp_column.clone()];
    let mut reader = SideReader::open(&spec.source, &t.table, &skip).await?;
    // The table as the source's stream names it.
    let stream_name = match spec.source.engine {
        SiteEngine::Postgres => t.table.clone(),
        SiteEngine::Mysql => TableName::new(
            crate::mysql::MysqlEndpoint::from_site(&spec.source)?.database(),
            t.table.name.clone(),
        ),
    };
    let schema: Arc<TableSchema> = Arc::new(reader.table_schema(stream_name));
    let estimated = reader.estimated_rows().await as i64;
    let (snapshot_id, after, mut rows_done) = match progress {
        Some(p) if p.last_key.is_some() || p.rows_done > 0 => {
            (p.snapshot_id, p.last_key, p.rows_done)
        }
        // Not begun (`duplex resync` asked for it, or no page was applied).
        _ => {
            let id = start_progress(control, spec, &t.table, estimated).await?;
            (id, None, 0)
        }
    };
    let table_name = t.table.to_string();
    let progress_of = |rows_done: i64, done: bool| crate::stats::CopyProgress {
        rows_done,
        rows_estimated: estimated,
        done,
    };
    stats.set_copy_progress(&table_name, progress_of(rows_done, false));
    tracing::info!(
        snapshot_id,
        rows_done,
        resumed = after.is_some(),
        "copying existing rows"
    );
    let started = Instant::now();
    let mut copied_now: u64 = 0;
    let kind = resume_kind(spec);
    let mut pages = ReadAhead::start(reader, &schema, after, spec);
    loop {
        if *shutdown.borrow() {
            tracing::info!(
                rows_done,
                "initial sync interrupted; it goes on from here at the next start"
            );
            return Ok(());
        }
        let Some((page, last_key)) = pages.next().await? else {
            break;
        };
        let mut changes = Vec::with_capacity(page.len());
        for (n, v) in page.into_iter().enumerate() {
            let crc = crate::canonical::encode::row_checksum(&schema, &v.row).unwrap_or(0);
            let marker = if v.synced {
                match Marker::parse(v.marker.as_deref()).ok().flatten() {
                    Some(m) => m,
                    None => user_marker(&schema, &v, me, crc, t),
                }
            } else {
                user_marker(&schema, &v, me, crc, t)
            };
            let change = RowChange {
                table: schema.clone(),
                op: Op::Insert,
                before: None,
                after: Some(v.row),
                marker,
            };
            let Some((change, source)) = mapping.map_keeping_source(change) else {
                continue;
            };
            // Records of this copy are numbered apart from the stream's:
            // small counters are never a stream position.
            let origin = ChangeOrigin {
                position: SourcePosition::from_counter(kind, snapshot_id as u64),
                index: u32::try_from(rows_done as u64 + n as u64 + 1).unwrap_or(u32::MAX),
                source: SourceForm::from_mapping(source),
            };
            changes.push((change, origin));
        }
        let n = changes.len() as i64;
        sink.apply_snapshot_rows(changes, resume_at)
            .await
            .map_err(|e| crate::Error::sink_error(sink.site_name(), e))?;
        rows_done += n;
        copied_now += n as u64;
        stats.applied_rows.fetch_add(n as u64, Ordering::Relaxed);
        stats.inserted.fetch_add(n as u64, Ordering::Relaxed);
        save_progress(control, spec, &t.table, &last_key, rows_done).await?;
        stats.set_copy_progress(&table_name, progress_of(rows_done, false));
        if spec.rows_per_second > 0 {
            // Throttle: no faster on average than the configured rate.
            let due = Duration::from_secs_f64(copied_now as f64 / f64::from(spec.rows_per_second));
            let elapsed = started.elapsed();
            if due > elapsed {
                let mut sd = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(due - elapsed) => {}
                    _ = sd.changed() => {}
                }
            }
        }
    }
    write_state(control, spec, &t.table, "done", rows_done).await?;
    stats.set_copy_progress(&table_name, progress_of(rows_done, true));
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        rows = rows_done,
        seconds = secs,
        rows_per_second = if secs > 0.0 {
            copied_now as f64 / secs
        } else {
            0.0
        },
        "initial sync of the table done"
    );
    Ok(())
}

/// The position a PostgreSQL source's slot streams from (its confirmed flush
/// position): the stream's start when the target has applied nothing yet.
/// A copy is exact only when the source streams from its resume point on
/// (see the module's comment). A PostgreSQL slot that is gone or
/// invalidated, or a binlog file purged, cannot: a copy made then (by a
/// direction that waits for `duplex resync`) would be marked done and
/// skipped after the resync, losing what changed in between.
async fn check_resumable(
    spec: &SnapshotSpec,
    resume: Option<SourcePosition>,
) -> Result<(), crate::Error> {
    let not_resumable = |why: String| {
        crate::Error::source_error(
            &spec.source.name,
            crate::source::SourceError::NotResumable { why },
        )
    };
    match spec.source.engine {
        SiteEngine::Postgres => {
            let slot = &spec.slot_name;
            let row = read_slot(
                spec,
                "SELECT wal_status = 'lost' OR (to_jsonb(s) ->> 'invalidation_reason') IS NOT NULL
                   FROM pg_replication_slots s WHERE slot_name = $1",
            )
            .await?;
            match row.map(|r| r.get::<_, Option<bool>>(0)) {
                None => Err(not_resumable(format!(
                    "replication slot {slot} is not there"
                ))),
                Some(Some(true)) => Err(not_resumable(format!(
                    "replication slot {slot} was invalidated"
                ))),
                Some(_) => Ok(()),
            }
        }
        SiteEngine::Mysql => {
            let Some(SourcePosition::Binlog { file_seq, .. }) = resume else {
                return Ok(());
            };
            use mysql_async::prelude::Queryable;
            let ep = crate::mysql::MysqlEndpoint::from_site(&spec.source)?;
            let mut conn = ep.connect().await?;
            let logs: Vec<String> = conn
                .query_map("SHOW BINARY LOGS", |row: mysql_async::Row| {
                    row.get::<String, _>(0).unwrap_or_default()
                })
                .await
                .map_err(|e| crate::Error::source_error(&spec.source.name, e.into()))?;
            let present = logs
                .iter()
                .any(|name| crate::source::mysql::binlog_file_seq(name) == Some(file_seq));
            if present {
                Ok(())
            } else {
                Err(crate::Error::source_error(
                    &spec.source.name,
                    crate::source::SourceError::Purged {
                        position: resume.unwrap_or(SourcePosition::Binlog { file_seq, pos: 0 }),
                    },
                ))
            }
        }
    }
}

async fn slot_position(spec: &SnapshotSpec) -> Result<Option<SourcePosition>, crate::Error> {
    let row = read_slot(
        spec,
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
    )
    .await?;
    Ok(row
        .and_then(|r| r.get::<_, Option<String>>(0))
        .and_then(|t| crate::sink::pg::parse_lsn(&t))
        .map(SourcePosition::PgLsn))
}

/// `select`'s row about the direction's slot (`$1`), on the PostgreSQL source.
async fn read_slot(
    spec: &SnapshotSpec,
    select: &str,
) -> Result<Option<tokio_postgres::Row>, crate::Error> {
    let client = crate::pg::PgEndpoint::from_site(&spec.source)?
        .connect("duplex initial sync")
        .await?;
    let slot = &spec.slot_name;
    client.query_opt(select, &[slot]).await.map_err(|e| {
        crate::Error::Internal(format!("site {}: read slot {slot}: {e}", spec.source.name))
    })
}

/// `tables` ordered so that a table comes after the tables its foreign keys
/// reference (on the source site); cycles keep their given order.
async fn parents_first(
    site: &Site,
    tables: Vec<TableName>,
) -> Result<Vec<TableName>, crate::Error> {
    // (child, parent) by bare name: the copy is within one schema or database.
    let edges: Vec<(String, String)> = match site.engine {
        SiteEngine::Postgres => {
            let client = crate::pg::PgEndpoint::from_site(site)?
                .connect("duplex initial sync")
                .await?;
            client
                .query(
                    "SELECT c.relname::text, p.relname::text
                       FROM pg_constraint k
                       JOIN pg_class c ON c.oid = k.conrelid
                       JOIN pg_class p ON p.oid = k.confrelid
                      WHERE k.contype = 'f' AND k.conrelid <> k.confrelid",
                    &[],
                )
                .await
                .map_err(|e| {
                    crate::Error::Internal(format!("site {}: read foreign keys: {e}", site.name))
                })?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        }
        SiteEngine::Mysql => {
            use mysql_async::prelude::Queryable;
            let ep = crate::mysql::MysqlEndpoint::from_site(site)?;
            let mut conn = ep.connect().await?;
            conn.exec(
                "SELECT TABLE_NAME, REFERENCED_TABLE_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS
                  WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME <> REFERENCED_TABLE_NAME",
                (ep.database(),),
            )
            .await
            .map_err(|e| crate::Error::Internal(format!("site {}: read foreign keys: {e}", site.name)))?
        }
    };
    let mut placed: Vec<TableName> = Vec::new();
    let mut left = tables;
    while !left.is_empty() {
        let ready = left.iter().position(|t| {
            edges.iter().all(|(child, parent)| {
                child != &t.name
                    || placed.iter().any(|p| &p.name == parent)
                    || !left.iter().any(|l| &l.name == parent)
            })
        });
        // A cycle: take the next one as it comes.
        let i = ready.unwrap_or(0);
        placed.push(left.remove(i));
    }
    Ok(placed)
}

fn resume_kind(spec: &SnapshotSpec) -> crate::canonical::SourceKind {
    match spec.source.engine {
        SiteEngine::Postgres => crate::canonical::SourceKind::PgWal,
        SiteEngine::Mysql => crate::canonical::SourceKind::Binlog,
    }
}

/// The version a row a user wrote carries: as for a streamed write (the
/// row's vector with this site's entry set), with the copy counter: the
/// entry is ordered by the row's version time against the versions the
/// stream then replays (`conflict::knows`).
fn user_marker(
    schema: &TableSchema,
    v: &crate::table_reader::VersionedRow,
    me: u32,
    crc: u32,
    t: &SnapshotTable,
) -> Marker {
    let prior = Marker::parse_lenient(v.marker.as_deref(), &schema.table);
    // Named on this site by the row as its applier reads it back: the synced
    // columns (see `source::Stamping`).
    let own_crc = crate::source::stamp::version_crc(crc, schema, &v.row, Some(&t.unsynced_columns));
    let dot = Dot::at(crate::conflict::COPY_COUNTER, v.version_us.unwrap_or(0)).with_crc(own_crc);
    let mut marker = Marker::for_user_write(v.marker.as_deref(), None, me, dot, crc, &schema.table);
    if t.field_merge {
        marker.cols = crate::conflict::column_tags(schema, &v.row, prior.as_ref(), me, dot);
    }
    marker
}

async fn read_progress(
    control: &mut ControlDb,
    spec: &SnapshotSpec,
    table: &TableName,
) -> Result<Option<Progress>, crate::Error> {
    let name = table.to_string();
    let row = control
        .row(Sql::new(
            "read duplex.snapshot_progress",
            "SELECT state, snapshot_id, last_key, rows_done FROM duplex.snapshot_progress
              WHERE link_id = $1 AND source_site = $2 AND table_name = $3",
            "SELECT state, snapshot_id, last_key, rows_done FROM duplex.snapshot_progress
              WHERE link_id = ? AND source_site = ? AND table_name = ?",
            &[
                P::I32(spec.link_id as i32),
                P::I32(spec.source.site_id as i32),
                P::Text(Some(&name)),
            ],
        ))
        .await
        .map_err(control_err)?;
    let Some(r) = row else { return Ok(None) };
    let last_key = match r.opt("last_key").map_err(control_err)? {
        None => None,
        Some(text) => Some(serde_json::from_str::<Vec<Value>>(&text).map_err(|e| {
            crate::Error::Internal(format!(
                "duplex.snapshot_progress.last_key of {table} cannot be read ({e}); delete the row to copy the table again"
            ))
        })?),
    };
    Ok(Some(Progress {
        state: r.text("state").map_err(control_err)?,
        snapshot_id: r.parse("snapshot_id").map_err(control_err)?,
        last_key,
        rows_done: r.parse("rows_done").map_err(control_err)?,
    }))
}

/// Start a copy: its progress row, with a new snapshot id.
async fn start_progress(
    control: &mut ControlDb,
    spec: &SnapshotSpec,
    table: &TableName,
    rows_total: i64,
) -> Result<i64, crate::Error> {
    let id: i64 = control
        .row(Sql::new(
            "number a new initial sync",
            "SELECT coalesce(max(snapshot_id), 0) + 1 AS id FROM duplex.snapshot_progress",
            "SELECT COALESCE(MAX(snapshot_id), 0) + 1 AS id FROM duplex.snapshot_progress",
            &[],
        ))
        .await
        .map_err(control_err)?
        .map(|r| r.parse("id"))
        .transpose()
        .map_err(control_err)?
        .unwrap_or(1);
    let name = table.to_string();
    control
        .exec(Sql::new(
            "start duplex.snapshot_progress",
            "INSERT INTO duplex.snapshot_progress (link_id, source_site, target_site, table_name, state, snapshot_id, rows_total)
             VALUES ($1, $2, $3, $4, 'copying', $5, $6)
             ON CONFLICT (link_id, source_site, table_name) DO UPDATE SET
                 state = 'copying', snapshot_id = EXCLUDED.snapshot_id, rows_total = EXCLUDED.rows_total,
                 rows_done = 0, last_key = NULL, started_at = now(), finished_at = NULL, updated_at = now()",
            "INSERT INTO duplex.snapshot_progress (link_id, source_site, target_site, table_name, state, snapshot_id, rows_total)
             VALUES (?, ?, ?, ?, 'copying', ?, ?)
             ON DUPLICATE KEY UPDATE state = 'copying', snapshot_id = VALUES(snapshot_id), rows_total = VALUES(rows_total),
                 rows_done = 0, last_key = NULL, started_at = UTC_TIMESTAMP(6), finished_at = NULL,
                 updated_at = UTC_TIMESTAMP(6)",
            &[
                P::I32(spec.link_id as i32),
                P::I32(spec.source.site_id as i32),
                P::I32(spec.target_site as i32),
                P::Text(Some(&name)),
                P::I64(id),
                P::I64(rows_total),
            ],
        ))
        .await
        .map_err(control_err)?;
    Ok(id)
}

async fn save_progress(
    control: &mut ControlDb,
    spec: &SnapshotSpec,
    table: &TableName,
    last_key: &[Value],
    rows_done: i64,
) -> Result<(), crate::Error> {
    let name = table.to_string();
    let key = serde_json::to_string(last_key)
        .map_err(|e| crate::Error::Internal(format!("encode the last key copied: {e}")))?;
    control
        .exec(Sql::new(
            "write duplex.snapshot_progress",
            "UPDATE duplex.snapshot_progress SET last_key = $4, rows_done = $5, updated_at = now()
              WHERE link_id = $1 AND source_site = $2 AND table_name = $3",
            "UPDATE duplex.snapshot_progress SET last_key = ?, rows_done = ?, updated_at = UTC_TIMESTAMP(6)
              WHERE link_id = ? AND source_site = ? AND table_name = ?",
            &[
                P::I32(spec.link_id as i32),
                P::I32(spec.source.site_id as i32),
                P::Text(Some(&name)),
                P::Text(Some(&key)),
                P::I64(rows_done),
            ],
        )
        .mysql_order(&[3, 4, 0, 1, 2]))
        .await
        .map_err(control_err)?;
    Ok(())
}

/// Record a finished (`done`) or `skipped` copy.
async fn write_state(
    control: &mut ControlDb,
    spec: &SnapshotSpec,
    table: &TableName,
    state: &str,
    rows_done: i64,
) -> Result<(), crate::Error> {
    let name = table.to_string();
    control
        .exec(Sql::new(
            "write duplex.snapshot_progress",
            "INSERT INTO duplex.snapshot_progress (link_id, source_site, target_site, table_name, state, rows_done, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, now())
             ON CONFLICT (link_id, source_site, table_name) DO UPDATE SET
                 state = EXCLUDED.state, rows_done = EXCLUDED.rows_done, finished_at = now(), updated_at = now()",
            "INSERT INTO duplex.snapshot_progress (link_id, source_site, target_site, table_name, state, rows_done, finished_at)
             VALUES (?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6))
             ON DUPLICATE KEY UPDATE state = VALUES(state), rows_done = VALUES(rows_done),
                 finished_at = UTC_TIMESTAMP(6), updated_at = UTC_TIMESTAMP(6)",
            &[
                P::I32(spec.link_id as i32),
                P::I32(spec.source.site_id as i32),
                P::I32(spec.target_site as i32),
                P::Text(Some(&name)),
                P::Text(Some(state)),
                P::I64(rows_done),
            ],
        ))
        .await
        .map_err(control_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_fill_a_byte_budget_within_their_row_limit() {
        // The first page, before any row's size is known.
        assert_eq!(next_page_rows(5000, 0, 0), FIRST_PAGE_ROWS);
        assert_eq!(next_page_rows(20, 0, 0), 20);
        // Narrow rows: the row limit.
        assert_eq!(next_page_rows(5000, 100, 100 * 200), 5000);
        // Rows of 1 MiB: eight to a page.
        assert_eq!(next_page_rows(5000, 100, 100 << 20), 8);
        // Rows larger than the budget: one at a time, never none.
        assert_eq!(next_page_rows(5000, 2, 64 << 20), 1);
        assert_eq!(next_page_rows(0, 10, 10), 1);
    }
}
