//! Parity check: do both sites of a link hold the same rows?
//!
//! `duplex check` reads site A's copy of each table in primary-key pages and
//! looks the same keys up on site B (missing and differing rows), then pages
//! through B's keys and looks them up on A (extra rows). Values are compared
//! in canonical form after bringing A's value into B's representation of the
//! column (`SideColumn::normalize`), so a PostgreSQL row and a MySQL row
//! compare equal exactly when B would store the same thing. Columns are
//! paired through the link's column mappings; excluded and transformed
//! columns are not compared (listed in the report).
//!
//! The link may be running: a difference can be a change in flight. Every
//! suspicious key is read again once the link has caught up (its status
//! rows show nothing read and not yet applied), up to three rounds; only
//! differences that persist are reported.

pub mod repair;

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::canonical::encode::encode_value;
use crate::canonical::{Row, TableName, Value};
use crate::control::{ControlDb, LinkConfig, LinkTable, Sql, P};
use crate::table_reader::{self, SideReader};

/// How the check runs.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Rows per page.
    pub chunk: usize,
    /// How long to wait for the link to catch up before re-reading suspicious rows.
    pub settle: Duration,
    /// Draw a progress line on a terminal.
    pub progress: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            chunk: 1000,
            settle: Duration::from_secs(30),
            progress: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffKind {
    /// On site A, not on site B.
    Missing,
    /// On site B, not on site A.
    Extra,
    /// On both, with different values in `columns`.
    Differs,
}

impl DiffKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            DiffKind::Missing => "missing",
            DiffKind::Extra => "extra",
            DiffKind::Differs => "differs",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub kind: DiffKind,
    /// `id=7` or `a=1, b=x`, in site A's names.
    pub key: String,
    /// Site A's names of the columns that differ.
    pub columns: Vec<String>,
    /// The key in site A's representation (`None`: a key site A cannot hold).
    pub a_key: Option<Vec<Value>>,
}

/// One table's result.
#[derive(Debug, Clone)]
pub struct TableReport {
    pub link_id: u32,
    pub table: TableName,
    pub site_a: String,
    pub site_b: String,
    pub rows_a: u64,
    pub rows_b: u64,
    pub differences: Vec<Difference>,
    /// Columns not compared (excluded, transformed, or on one site only).
    pub skipped_columns: Vec<String>,
    /// Keys read again because they differed on the first read.
    pub rechecked: usize,
    pub elapsed: Duration,
}

/// The two copies of one table, with their columns paired.
struct Pair {
    a: SideReader,
    b: SideReader,
    /// (column on A, the same column on B), compared.
    pairs: Vec<(usize, usize)>,
    /// For each of B's key columns (in B's key order), the A key position.
    b_key_from_a: Vec<usize>,
    /// For each of A's key columns, the B key position.
    a_key_from_b: Vec<usize>,
}

fn encoded(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_value(v, &mut out);
    out
}

fn key_bytes(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode_value(v, &mut out);
    }
    out
}

impl Pair {
    fn a_key(&self, row: &Row) -> Vec<Value> {
        self.a
            .key
            .iter()
            .map(|&i| row.0.get(i).cloned().flatten().unwrap_or(Value::Null))
            .collect()
    }

    fn b_key(&self, row: &Row) -> Vec<Value> {
        self.b
            .key
            .iter()
            .map(|&i| row.0.get(i).cloned().flatten().unwrap_or(Value::Null))
            .collect()
    }

    /// A key in A's representation, as B holds it (`None`: B cannot hold it,
    /// so B has no such row).
    fn to_b_key(&self, a_key: &[Value]) -> Option<Vec<Value>> {
        self.b_key_from_a
            .iter()
            .zip(&self.b.key)
            .map(|(&ja, &ib)| {
                a_key
                    .get(ja)
                    .and_then(|v| self.b.columns[ib].normalize(v).ok())
            })
            .collect()
    }

    fn to_a_key(&self, b_key: &[Value]) -> Option<Vec<Value>> {
        self.a_key_from_b
            .iter()
            .zip(&self.a.key)
            .map(|(&jb, &ia)| {
                b_key
                    .get(jb)
                    .and_then(|v| self.a.columns[ia].normalize(v).ok())
            })
            .collect()
    }

    fn describe_key(&self, a_key: &[Value]) -> String {
        self.a
            .key
            .iter()
            .zip(a_key)
            .map(|(&i, v)| {
                let shown = crate::pg::text_encode::encode_text(v)
                    .unwrap_or_else(|_| format!("<{}>", v.kind_name()));
                format!("{}={shown}", self.a.columns[i].name())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A's names of the compared columns whose values differ.
    fn differing(&self, ra: &Row, rb: &Row) -> Vec<String> {
        let mut out = Vec::new();
        for &(ia, ib) in &self.pairs {
            let va = ra.0.get(ia).cloned().flatten().unwrap_or(Value::Null);
            let vb = rb.0.get(ib).cloned().flatten().unwrap_or(Value::Null);
            let same = match self.b.columns[ib].normalize(&va) {
                Ok(na) => encoded(&na) == encoded(&vb),
                Err(_) => false,
            };
            if !same {
                out.push(self.a.columns[ia].name().to_string());
            }
        }
        out
    }

    /// Compare the rows of these keys (A's representation) on both sites now.
    async fn compare_keys(&mut self, keys: &[Vec<Value>]) -> Result<Vec<Difference>, crate::Error> {
        let mut out = Vec::new();
        for chunk in keys.chunks(500) {
            let rows_a = self.a.fetch(chunk, false).await.map_err(read_err)?;
            let by_key_a: HashMap<Vec<u8>, Row> = rows_a
                .into_iter()
                .map(|r| (key_bytes(&self.a_key(&r)), r))
                .collect();
            let b_keys: Vec<Vec<Value>> = chunk.iter().filter_map(|k| self.to_b_key(k)).collect();
            let rows_b = self.b.fetch(&b_keys, false).await.map_err(read_err)?;
            let by_key_b: HashMap<Vec<u8>, Row> = rows_b
                .into_iter()
                .map(|r| (key_bytes(&self.b_key(&r)), r))
                .collect();
            for k in chunk {
                let ra = by_key_a.get(&key_bytes(k));
                let rb = self
                    .to_b_key(k)
                    .and_then(|bk| by_key_b.get(&key_bytes(&bk)));
                let key = self.describe_key(k);
                match (ra, rb) {
                    (Some(_), None) => out.push(Difference {
                        kind: DiffKind::Missing,
                        key,
                        columns: Vec::new(),
                        a_key: Some(k.clone()),
                    }),
                    (None, Some(_)) => out.push(Difference {
                        kind: DiffKind::Extra,
                        key,
                        columns: Vec::new(),
                        a_key: Some(k.clone()),
                    }),
                    (Some(ra), Some(rb)) => {
                        let columns = self.differing(ra, rb);
                        if !columns.is_empty() {
                            out.push(Difference {
                                kind: DiffKind::Differs,
                                key,
                                columns,
                                a_key: Some(k.clone()),
                            });
                        }
                    }
                    (None, None) => {}
                }
            }
        }
        Ok(out)
    }
}

fn read_err(e: table_reader::ReadError) -> crate::Error {
    crate::Error::Parity(e)
}

/// Draws `label: done/total` on stderr when it is a terminal.
struct Progress {
    on: bool,
    label: String,
    last: Instant,
}

impl Progress {
    fn new(on: bool, label: String) -> Progress {
        Progress {
            on: on && std::io::stderr().is_terminal(),
            label,
            last: Instant::now(),
        }
    }

    fn show(&mut self, what: &str, done: u64, total: u64) {
        if self.on && self.last.elapsed() > Duration::from_millis(200) {
            self.last = Instant::now();
            let total = total.max(done).max(1);
            let width = 30;
            let filled = ((done as f64 / total as f64) * width as f64) as usize;
            eprint!(
                "\r{} {what} [{}{}] {done}/{total}   ",
                self.label,
                "#".repeat(filled.min(width)),
                " ".repeat(width - filled.min(width))
            );
        }
    }

    fn done(&self) {
        if self.on {
            eprint!("\r{}\r", " ".repeat(100));
        }
    }
}

/// Both copies of `table`, open, with their columns paired through the
/// link's mappings; and the columns not compared.
async fn open_pair(
    lc: &LinkConfig,
    table: &LinkTable,
) -> Result<(Pair, Vec<String>), crate::Error> {
    let link = &lc.link;
    let skip = vec![link.marker_column.clone(), link.stamp_column()];
    let a = SideReader::open(&lc.site_a, &table.table, &skip).await?;
    let b = SideReader::open(&lc.site_b, &table.table, &skip).await?;
    let mapping = table
        .mapping(link, link.site_a)
        .map_err(|e| crate::Error::Internal(format!("table {}: {e}", table.table)))?;
    let mut pairs = Vec::new();
    let mut skipped = Vec::new();
    let mut paired_b = HashSet::new();
    for (ia, col) in a.columns.iter().enumerate() {
        let ib = mapping
            .compared_column(col.name())
            .and_then(|name| b.columns.iter().position(|c| c.name() == name));
        match ib {
            Some(ib) => {
                pairs.push((ia, ib));
                paired_b.insert(ib);
            }
            None => skipped.push(format!("{} (site {})", col.name(), lc.site_a.name)),
        }
    }
    for (ib, col) in b.columns.iter().enumerate() {
        if !paired_b.contains(&ib) {
            skipped.push(format!("{} (site {})", col.name(), lc.site_b.name));
        }
    }
    let key_err = || {
        crate::Error::Internal(format!(
            "table {}: the primary keys of {} and {} do not correspond through the column mappings",
            table.table, lc.site_a.name, lc.site_b.name
        ))
    };
    let mut b_key_from_a = Vec::new();
    for &ib in &b.key {
        let ia = pairs
            .iter()
            .find(|(_, pb)| *pb == ib)
            .map(|(pa, _)| *pa)
            .ok_or_else(key_err)?;
        b_key_from_a.push(a.key.iter().position(|&k| k == ia).ok_or_else(key_err)?);
    }
    let mut a_key_from_b = Vec::new();
    for &ia in &a.key {
        let ib = pairs
            .iter()
            .find(|(pa, _)| *pa == ia)
            .map(|(_, pb)| *pb)
            .ok_or_else(key_err)?;
        a_key_from_b.push(b.key.iter().position(|&k| k == ib).ok_or_else(key_err)?);
    }
    let pair = Pair {
        a,
        b,
        pairs,
        b_key_from_a,
        a_key_from_b,
    };
    Ok((pair, skipped))
}

/// Check one table of a link. `control` (when given) is read to wait for
/// the link to catch up before suspicious rows are read again.
pub async fn check_table(
    lc: &LinkConfig,
    table: &LinkTable,
    opts: &CheckOptions,
    mut control: Option<&mut ControlDb>,
) -> Result<TableReport, crate::Error> {
    let started = Instant::now();
    let link = &lc.link;
    let (mut pair, skipped) = open_pair(lc, table).await?;
    let mut progress = Progress::new(
        opts.progress,
        format!("link {} table {}", link.name, table.table),
    );

    // Pass 1: A's rows, looked up on B.
    let total_a = pair.a.estimated_rows().await;
    let mut suspicious: Vec<Vec<Value>> = Vec::new();
    let mut rows_a = 0u64;
    let mut after: Option<Vec<Value>> = None;
    loop {
        let page = pair
            .a
            .page(after.as_deref(), opts.chunk.max(1), false)
            .await
            .map_err(read_err)?;
        let Some(last) = page.last() else { break };
        after = Some(pair.a_key(last));
        rows_a += page.len() as u64;
        let a_keys: Vec<Vec<Value>> = page.iter().map(|r| pair.a_key(r)).collect();
        let b_keys: Vec<Vec<Value>> = a_keys.iter().filter_map(|k| pair.to_b_key(k)).collect();
        let rows_b = pair.b.fetch(&b_keys, false).await.map_err(read_err)?;
        let by_key_b: HashMap<Vec<u8>, Row> = rows_b
            .into_iter()
            .map(|r| (key_bytes(&pair.b_key(&r)), r))
            .collect();
        for (ra, ka) in page.iter().zip(a_keys) {
            let rb = pair
                .to_b_key(&ka)
                .and_then(|kb| by_key_b.get(&key_bytes(&kb)));
            let differs = match rb {
                None => true,
                Some(rb) => !pair.differing(ra, rb).is_empty(),
            };
            if differs {
                suspicious.push(ka);
            }
        }
        progress.show("site A rows", rows_a, total_a);
    }

    // Pass 2: B's keys, looked up on A.
    let total_b = pair.b.estimated_rows().await;
    let mut rows_b = 0u64;
    let mut definite = Vec::new();
    let mut after: Option<Vec<Value>> = None;
    loop {
        let page = pair
            .b
            .page(after.as_deref(), opts.chunk.max(1), true)
            .await
            .map_err(read_err)?;
        let Some(last) = page.last() else { break };
        after = Some(pair.b_key(last));
        rows_b += page.len() as u64;
        let mut a_keys = Vec::new();
        for r in &page {
            match pair.to_a_key(&pair.b_key(r)) {
                Some(k) => a_keys.push(k),
                // A cannot hold this key: the row cannot be on A.
                None => definite.push(Difference {
                    kind: DiffKind::Extra,
                    key: format!("{:?}", pair.b_key(r)),
                    columns: Vec::new(),
                    a_key: None,
                }),
            }
        }
        let found: HashSet<Vec<u8>> = pair
            .a
            .fetch(&a_keys, true)
            .await
            .map_err(read_err)?
            .iter()
            .map(|r| key_bytes(&pair.a_key(r)))
            .collect();
        for k in a_keys {
            if !found.contains(&key_bytes(&k)) {
                suspicious.push(k);
            }
        }
        progress.show("site B keys", rows_b, total_b);
    }
    progress.done();

    // Re-read what differed once the link has caught up: a change in flight
    // is not a difference.
    let rechecked = suspicious.len();
    let mut differences = Vec::new();
    for round in 0..3 {
        if suspicious.is_empty() {
            break;
        }
        if let Some(c) = control.as_deref_mut() {
            wait_caught_up(c, link.link_id, opts.settle).await;
        }
        differences = pair.compare_keys(&suspicious).await?;
        tracing::debug!(round, remaining = differences.len(), "parity re-check");
        let still: HashSet<&str> = differences.iter().map(|d| d.key.as_str()).collect();
        suspicious.retain(|k| still.contains(pair.describe_key(k).as_str()));
        if control.is_none() {
            break;
        }
    }
    differences.extend(definite);
    Ok(TableReport {
        link_id: link.link_id,
        table: table.table.clone(),
        site_a: lc.site_a.name.clone(),
        site_b: lc.site_b.name.clone(),
        rows_a,
        rows_b,
        differences,
        skipped_columns: skipped,
        rechecked,
        elapsed: started.elapsed(),
    })
}

/// Wait (up to `timeout`, and at least a second and a half so that changes
/// committed before now have been read) until every running direction of
/// `link_id` reports nothing read and not yet applied. A link that is not
/// running (no fresh status) is not waited for.
async fn wait_caught_up(control: &mut ControlDb, link_id: u32, timeout: Duration) {
    let start = Instant::now();
    loop {
        let row = control
            .row(Sql::new(
                "read duplex.link_status",
                "SELECT count(*) FILTER (WHERE updated_at > now() - interval '3 seconds') AS fresh,
                        count(*) FILTER (WHERE updated_at > now() - interval '3 seconds'
                                           AND coalesce(lag_seconds, 0) = 0 AND queued_events = 0) AS idle
                   FROM duplex.link_status WHERE link_id = $1",
                "SELECT COALESCE(SUM(updated_at > UTC_TIMESTAMP(6) - INTERVAL 3 SECOND), 0) AS fresh,
                        COALESCE(SUM(updated_at > UTC_TIMESTAMP(6) - INTERVAL 3 SECOND
                                     AND COALESCE(lag_seconds, 0) = 0 AND queued_events = 0), 0) AS idle
                   FROM duplex.link_status WHERE link_id = ?",
                &[P::I32(link_id as i32)],
            ))
            .await;
        let (fresh, idle) = match row {
            Ok(Some(r)) => (
                r.parse::<i64>("fresh").unwrap_or(0),
                r.parse::<i64>("idle").unwrap_or(0),
            ),
            _ => (0, 0),
        };
        let waited = start.elapsed();
        if fresh == 0
            || (idle == fresh && waited >= Duration::from_millis(1500))
            || waited >= timeout
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Record `report` in `duplex.parity_checks` / `parity_differences`.
pub async fn record(control: &mut ControlDb, report: &TableReport) -> Result<i64, crate::Error> {
    let count = |k: DiffKind| report.differences.iter().filter(|d| d.kind == k).count() as i64;
    let table = report.table.to_string();
    let status = if report.differences.is_empty() {
        "clean"
    } else {
        "differences"
    };
    let (id, _) = control
        .upsert_returning_id(Sql::new(
            "record a parity check",
            "INSERT INTO duplex.parity_checks (link_id, table_name, started_at, finished_at, rows_a, rows_b,
                                               missing, extra, differing, status, elapsed_ms)
             VALUES ($1, $2, now() - $3::bigint * interval '1 millisecond', now(), $4, $5, $6, $7, $8, $9, $3)
             RETURNING check_id, true",
            "INSERT INTO duplex.parity_checks (link_id, table_name, started_at, finished_at, rows_a, rows_b,
                                               missing, extra, differing, status, elapsed_ms)
             VALUES (?, ?, UTC_TIMESTAMP(6) - INTERVAL ? * 1000 MICROSECOND, UTC_TIMESTAMP(6), ?, ?, ?, ?, ?, ?, ?)",
            &[
                P::I32(report.link_id as i32),
                P::Text(Some(&table)),
                P::I64(report.elapsed.as_millis() as i64),
                P::I64(report.rows_a as i64),
                P::I64(report.rows_b as i64),
                P::I64(count(DiffKind::Missing)),
                P::I64(count(DiffKind::Extra)),
                P::I64(count(DiffKind::Differs)),
                P::Text(Some(status)),
            ],
        )
        .mysql_order(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 2]))
        .await?;
    for d in report.differences.iter().take(10_000) {
        let columns = d.columns.join(", ");
        control
            .exec(Sql::new(
                "record a parity difference",
                "INSERT INTO duplex.parity_differences (check_id, kind, row_key, columns) VALUES ($1, $2, $3, $4)",
                "INSERT INTO duplex.parity_differences (check_id, kind, row_key, columns) VALUES (?, ?, ?, ?)",
                &[
                    P::I64(id),
                    P::Text(Some(d.kind.as_str())),
                    P::Text(Some(&d.key)),
                    P::Text(Some(&columns)),
                ],
            ))
            .await?;
    }
    Ok(id)
}
