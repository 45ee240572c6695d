//! Conflict detection and resolution: the stage between the canonical record
//! and the sink.
//!
//! For every incoming change the applier reads the target's current row (or
//! the tombstone of a row duplex deleted there), compares version vectors, and
//! [`decide`]s what to write. The decision is a pure function of the two
//! versions and the table's policy, so both sites of a link, each looking at
//! the same pair from its own side, reach the same result without talking to
//! each other. docs/architecture.md ("Conflicts") gives the protocol and why
//! both sides agree.

pub mod policy;

use std::collections::BTreeMap;

use crate::canonical::encode::{content_matches, encode_value, row_checksum, shape_checksum};
use crate::canonical::{Op, Row, RowChange, TableSchema, Value};
use crate::marker::{ColumnTag, Dot, Marker, Resolution, VersionVector, MARKER_FORMAT_VERSION};

pub use policy::{Policy, TablePolicy, Tie};

/// How the target's row was last written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// By duplex's applier: the marker describes the row's version.
    Synced,
    /// By a user, after the marker was written. `t` is the version time the
    /// site's own change stream reports for that write (PostgreSQL: the commit
    /// timestamp of the row's xmin; MySQL: the stamp column), `None` when it
    /// cannot be known (commit timestamps were off when the row was written).
    User { t: Option<i64> },
    /// By a user before this site's changes to the table began to be
    /// captured for the link, and never by duplex here (no marker): a
    /// version no change stream carries, the state both sites started from
    /// when they were seeded alike. `t` as for `User`.
    Seed { t: Option<i64> },
}

/// The target's current row, aligned with the incoming change's columns.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalRow {
    /// Every column present (`Some`).
    pub row: Row,
    pub marker: Option<Marker>,
    pub stamp: Stamp,
}

/// What a delete applied here left behind: the deleted version's vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub vv: VersionVector,
    pub site: u32,
    pub ts: i64,
}

/// The target's state for one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Local {
    Present(LocalRow),
    Absent(Option<Tombstone>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConflictKind {
    /// The same key was created on both sides.
    InsertInsert,
    /// Both sides changed the row.
    UpdateUpdate,
    /// An update arrived for a row deleted here (the target holds its
    /// tombstone, or the update has seen a version of this site's row).
    UpdateDelete,
    /// A delete arrived for a row changed here.
    DeleteUpdate,
    /// Both sides deleted the row.
    DeleteDelete,
    /// An update arrived for a row this side does not have and shows no sign
    /// of ever having had: deleted here by a user before any version of this
    /// site reached the peer, or never arrived.
    UpdateMissing,
    /// The row was changed here without that change reaching duplex's change
    /// stream (its content no longer matches the marker's checksum).
    UnsyncedLocalEdit,
}

impl ConflictKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ConflictKind::InsertInsert => "insert_insert",
            ConflictKind::UpdateUpdate => "update_update",
            ConflictKind::UpdateDelete => "update_delete",
            ConflictKind::DeleteUpdate => "delete_update",
            ConflictKind::DeleteDelete => "delete_delete",
            ConflictKind::UpdateMissing => "update_missing",
            ConflictKind::UnsyncedLocalEdit => "unsynced_local_edit",
        }
    }

    pub const ALL: [ConflictKind; 7] = [
        ConflictKind::InsertInsert,
        ConflictKind::UpdateUpdate,
        ConflictKind::UpdateDelete,
        ConflictKind::DeleteUpdate,
        ConflictKind::DeleteDelete,
        ConflictKind::UpdateMissing,
        ConflictKind::UnsyncedLocalEdit,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The incoming version replaced the local one.
    IncomingApplied,
    /// The local version stays; the incoming one is recorded here.
    LocalKept,
    /// Column by column: both sides' changes kept.
    Merged,
    /// Manual policy: the incoming version waits for a DBA.
    Parked,
    /// A row deleted here came back with the incoming update (a write beats a
    /// concurrent delete).
    Recreated,
    /// Nothing to do: the row was already gone.
    AlreadyDeleted,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::IncomingApplied => "incoming_applied",
            Outcome::LocalKept => "local_kept",
            Outcome::Merged => "merged",
            Outcome::Parked => "parked",
            Outcome::Recreated => "recreated",
            Outcome::AlreadyDeleted => "already_deleted",
        }
    }
}

/// One side of a conflict, for the record.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    /// The row (`None`: deleted).
    pub row: Option<Row>,
    pub vv: VersionVector,
    pub site: u32,
    pub ts: i64,
}

/// A detected conflict and how it was settled.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub kind: ConflictKind,
    pub policy: &'static str,
    pub outcome: Outcome,
    pub local: VersionInfo,
    pub incoming: VersionInfo,
}

/// What the applier does for one incoming change.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The change to apply (its op is what to do on the target: an incoming
    /// insert of a row that exists becomes an update, an update of a row that
    /// is gone becomes an insert); `None` to write nothing.
    pub write: Option<RowChange>,
    pub conflicts: Vec<Conflict>,
    /// The incoming change was older than what the target has (no conflict).
    pub stale: bool,
    /// The target's state for the key after `write`.
    pub next: Local,
    /// For a delete: the tombstone to record (for an insert or update the
    /// key's tombstone, if any, is removed).
    pub tombstone: Option<Tombstone>,
}

impl Decision {
    /// Write nothing and leave the key's state as it is (`stale`: the
    /// incoming change was older than the target's row).
    fn nothing(local: &Local, conflicts: Vec<Conflict>, stale: bool) -> Decision {
        Decision {
            write: None,
            conflicts,
            stale,
            next: local.clone(),
            tombstone: None,
        }
    }
}

/// The local version's vector, site and time. `known` is false when the row
/// was written by a user at a time that cannot be read back.
struct LocalVersion {
    vv: VersionVector,
    site: u32,
    ts: i64,
    known: bool,
}

/// The local version's time alone (`local_version(..).ts`, without the
/// row's checksum).
fn local_ts(local: &LocalRow) -> i64 {
    match (local.stamp, &local.marker) {
        (Stamp::Synced, Some(m)) => m.ts,
        (Stamp::Synced, None) => 0,
        (Stamp::User { t } | Stamp::Seed { t }, _) => t.unwrap_or(0),
    }
}

/// `incoming`: the change at hand, whose version's entry for this site
/// may name the local user write by time and content (see `Dot`).
fn local_version(
    me: u32,
    schema: &TableSchema,
    local: &LocalRow,
    incoming: Option<&RowChange>,
) -> LocalVersion {
    let marker_vv = local
        .marker
        .as_ref()
        .map(|m| m.vv.clone())
        .unwrap_or_default();
    match local.stamp {
        Stamp::Synced => match &local.marker {
            Some(m) => LocalVersion {
                vv: m.vv.clone(),
                site: m.site,
                ts: local_ts(local),
                known: true,
            },
            None => LocalVersion {
                vv: VersionVector::default(),
                site: me,
                ts: local_ts(local),
                known: true,
            },
        },
        Stamp::User { t } | Stamp::Seed { t } => {
            let mut vv = marker_vv;
            // Known by its time and its content (two user writes can share
            // a time: see `Dot`).
            let t_known = t.unwrap_or(i64::MIN);
            let mut crc = checksum(schema, &local.row);
            // The peer's entry names this write by its time and the content
            // it had then. Since then the table's columns may have changed
            // on both sites (a NULL column added, a column with a default
            // added or dropped): the same time, and either the content
            // without the added NULL columns or the very row the peer's
            // change started from (its complete old image), is this write.
            if let Some(change) = incoming {
                if let Some(seen) = change.marker.vv.get(me) {
                    let started_here = || {
                        change
                            .before
                            .as_ref()
                            .is_some_and(|b| complete(b) && rows_equal(schema, b, &local.row))
                    };
                    if seen.t == t_known
                        && seen.crc != 0
                        && seen.crc != crc
                        && (content_matches(schema, &local.row, seen.crc) || started_here())
                    {
                        crc = seen.crc;
                    }
                }
            }
            vv.set(me, Dot::at(0, t_known).with_crc(crc));
            LocalVersion {
                vv,
                site: me,
                ts: local_ts(local),
                known: t.is_some(),
            }
        }
    }
}

/// Has a version with vector `incoming` seen this site's own version `own`?
/// A site's counters for its own rows are not known locally; its versions are
/// recognised by their time (and content), which the peer carries in its
/// vector. Where both entries carry a counter (a log position), the counters
/// decide: two versions can share a time (see `Dot`).
fn own_seen(incoming: Option<Dot>, own: Dot, known: bool) -> bool {
    if !known {
        // The local write's time is unknown: only a counter proves anything,
        // and a user write newer than the marker has none here.
        return false;
    }
    if own.c == 0 && own.t == 0 {
        return true;
    }
    match incoming {
        Some(x) if own.c > 0 && x.c > 0 => x.c >= own.c,
        Some(x) => x.same_version_time(own),
        None => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// The incoming version has seen the local one (and more).
    IncomingNewer,
    /// The local version has seen the incoming one (or they are the same).
    LocalNewer,
    Concurrent,
}

/// Does a vector whose entry for a site is `have` know that site's version
/// `want`? For versions from the site's change stream, a later counter does;
/// an entry without a counter does when it names the same version by time
/// and content. A version copied by the
/// initial sync carries [`COPY_COUNTER`], not a log position: it is ordered
/// by its version time against any other version of the site, so the
/// stream's replay of an older version (a lower time) is known to a row
/// copied in a newer state, and a newer one is not.
fn knows(have: Option<Dot>, want: Dot) -> bool {
    match have {
        // No entry: only the empty version is known. An entry with a time
        // but no counter is a version its site settled over its own write
        // and named by time (the initial sync copies such rows with their
        // markers): not known.
        None => want.c == 0 && want.t == 0,
        Some(h) if h.c == COPY_COUNTER || want.c == COPY_COUNTER => {
            h.t > want.t || h.same_version_time(want)
        }
        // Two log positions: the counters decide (one time can name two
        // versions, see `Dot`). An entry without a counter (a version the
        // site settled over its own, unread write) is known by its time.
        Some(h) => h.c >= want.c || (h.c == 0 && want.t != 0 && h.same_version_time(want)),
    }
}

/// The counter of a version copied by the initial sync (see [`knows`]); no
/// log position is ever 1.
pub const COPY_COUNTER: u64 = 1;

fn compare(me: u32, incoming: &VersionVector, local: &VersionVector, known: bool) -> Order {
    let incoming_covers = local.0.iter().all(|(&site, &dot)| {
        if site == me {
            own_seen(incoming.get(me), dot, known)
        } else {
            knows(incoming.get(site), dot)
        }
    });
    // The local side has seen every version of its own that a peer can know of.
    let local_covers = incoming
        .0
        .iter()
        .all(|(&site, &dot)| site == me || knows(local.get(site), dot));
    match (incoming_covers, local_covers) {
        // The same vector: a later change of the same source transaction (all
        // its changes carry the transaction's dot), or a replay of one. In
        // stream order it comes after what the row holds: apply it.
        (true, true) if incoming == local => Order::IncomingNewer,
        (_, true) => Order::LocalNewer,
        (true, false) => Order::IncomingNewer,
        (false, false) => Order::Concurrent,
    }
}

/// The vector of a version that has seen both: pointwise maximum, except that
/// this site's own entry stays the local one (its time identifies the local
/// version; a peer's entry for this site can only be older).
fn merged_vv(me: u32, incoming: &VersionVector, local: &VersionVector) -> VersionVector {
    let mut out = incoming.merge(local);
    if let Some(own) = local.get(me) {
        out.set(me, own);
    }
    out
}

/// Was the target's state for the key written by an earlier change of the
/// incoming change's own source transaction? Every change of a source
/// transaction carries the transaction's commit position as its site's
/// counter, and an applied version (row or tombstone) keeps the writer's site
/// and that counter. A version this side kept against the transaction (a
/// conflict it won) carries this site as its writer instead, so the
/// transaction's later changes stay ordered by their vectors: they are older.
fn written_by_same_transaction(inc: &Marker, local: &Local) -> bool {
    let Some(dot) = inc.vv.get(inc.site) else {
        return false;
    };
    if dot.c == 0 || dot.c == COPY_COUNTER {
        return false;
    }
    let same = |site: u32, vv: &VersionVector| {
        site == inc.site && vv.get(inc.site).is_some_and(|d| d.c == dot.c)
    };
    match local {
        Local::Present(lr) => {
            lr.stamp == Stamp::Synced && lr.marker.as_ref().is_some_and(|m| same(m.site, &m.vv))
        }
        Local::Absent(Some(t)) => same(t.site, &t.vv),
        Local::Absent(None) => false,
    }
}

/// The vector of a successor change (see [`written_by_same_transaction`]):
/// what the state it follows had seen, with the source's entry the
/// successor's own (its version time is the one the source's row now has).
fn successor_vv(me: u32, inc: &Marker, local: &VersionVector) -> VersionVector {
    let mut vv = merged_vv(me, &inc.vv, local);
    if let Some(dot) = inc.vv.get(inc.site) {
        vv.set(inc.site, dot);
    }
    vv
}

/// Who wrote a version or set a column, as last-writer-wins orders them: the
/// version time, the site and that site's counter in the version's vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Writer {
    ts: i64,
    site: u32,
    c: u64,
}

impl Writer {
    fn of(ts: i64, site: u32, vv: &VersionVector) -> Writer {
        Writer {
            ts,
            site,
            c: vv.counter(site),
        }
    }

    fn of_setter((site, dot): Setter) -> Writer {
        Writer {
            ts: dot.t,
            site,
            c: dot.c,
        }
    }
}

/// Last-writer-wins on site `me`: the later time wins, a tie goes to the
/// higher site id. Two versions of one site are ordered by that site's log
/// instead, whatever their times say: a MariaDB site's version time is its
/// statement's start time, which repeats and steps back (see `Dot`). Where
/// that site is `me`, the local version is the newest of this site's own.
/// Identical writers are the same version.
fn incoming_wins_lww(me: u32, incoming: Writer, local: Writer) -> bool {
    let logged = |w: Writer| w.c != 0 && w.c != COPY_COUNTER;
    if incoming.site == local.site {
        if incoming.site == me {
            return false;
        }
        if logged(incoming) && logged(local) {
            return incoming.c > local.c;
        }
    }
    match (incoming.ts, incoming.site).cmp(&(local.ts, local.site)) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => incoming.c > local.c,
    }
}

fn incoming_wins_tie(me: u32, tie: Tie, incoming: Writer, local: Writer) -> bool {
    match tie {
        Tie::LastWriterWins => incoming_wins_lww(me, incoming, local),
        Tie::SitePriority(p) => {
            if incoming.site == p && local.site != p {
                true
            } else if local.site == p && incoming.site != p {
                false
            } else {
                incoming_wins_lww(me, incoming, local)
            }
        }
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    encode_value(a, &mut x);
    encode_value(b, &mut y);
    x == y
}

/// `after` with the columns it does not carry (PostgreSQL's unchanged TOAST
/// values) taken from `fallback`.
pub(crate) fn filled(after: &Row, fallback: Option<&Row>) -> Row {
    Row(after
        .0
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.clone()
                .or_else(|| fallback.and_then(|f| f.0.get(i).cloned().flatten()))
        })
        .collect())
}

fn complete(row: &Row) -> bool {
    row.0.iter().all(Option::is_some)
}

/// Does a synced row still hold the content its marker recorded? Yes
/// also when the row has gained NULL columns since (a nullable column
/// added), and when the columns the checksum covered are not the table's
/// any more (a column dropped, or added with a default, on both sites): the
/// content can no longer be checked, and a schema change is no edit behind
/// duplex's back.
pub fn marker_describes(schema: &TableSchema, row: &Row, marker: &Marker) -> bool {
    content_matches(schema, row, marker.crc)
        || (marker.shape != 0 && marker.shape != shape_checksum(schema))
}

fn checksum(schema: &TableSchema, row: &Row) -> u32 {
    row_checksum(schema, row).unwrap_or(0)
}

/// Is `change` an update or delete of exactly the local row, where that row
/// is a seeded version ([`Stamp::Seed`])? Such a row is in no change stream,
/// so no concurrent version of it travels to the peer; the incoming change
/// started from the same content (its complete old image), so it has seen
/// the local version and follows it. Not a conflict, whatever the vectors
/// say (they cannot know a version that was never captured).
/// docs/architecture.md, "Seeded rows".
fn changes_the_seed(change: &RowChange, lr: &LocalRow) -> bool {
    matches!(lr.stamp, Stamp::Seed { .. })
        && lr.marker.is_none()
        && matches!(change.op, Op::Update | Op::Delete)
        && change
            .before
            .as_ref()
            .is_some_and(|b| complete(b) && rows_equal(&change.table, b, &lr.row))
}

/// Decide what to do with `change` given the target's state for its key.
/// `me` is the target site; `now_us` is used only for versions this side
/// creates (a kept owned column that must flow back).
pub fn decide(
    me: u32,
    policy: &TablePolicy,
    change: &RowChange,
    local: &Local,
    now_us: i64,
) -> Decision {
    let schema = &change.table;
    let inc = &change.marker;
    let incoming_info = || VersionInfo {
        row: change.after.clone(),
        vv: inc.vv.clone(),
        site: inc.site,
        ts: inc.ts,
    };
    let policy_name = policy.policy.name();
    let mut conflicts = Vec::new();

    // A delete whose old image holds only the key (replica identity 'key')
    // does not carry the deleted version's vector: it cannot be compared, and
    // applies as it came.
    if change.op == Op::Delete && !change.before.as_ref().is_some_and(complete) {
        return match local {
            Local::Present(lr) => {
                let mut write = change.clone();
                write.before = Some(lr.row.clone());
                Decision {
                    write: Some(write),
                    conflicts,
                    stale: false,
                    next: Local::Absent(None),
                    tombstone: None,
                }
            }
            Local::Absent(_) => Decision::nothing(local, conflicts, false),
        };
    }

    // A later change of a key that an earlier change of the same source
    // transaction already wrote here: the source made it on top of that
    // state, so it follows it, whatever the vectors say (a delete's tombstone
    // holds this site's entry too, and on MySQL each statement has its own
    // version time).
    let successor = written_by_same_transaction(inc, local);

    match local {
        Local::Present(lr) => {
            let lv = local_version(me, schema, lr, Some(change));
            let local_info = || VersionInfo {
                row: Some(lr.row.clone()),
                vv: lv.vv.clone(),
                site: lv.site,
                ts: lv.ts,
            };
            // Content changed behind duplex's back (outside the change stream).
            if lr.stamp == Stamp::Synced && !successor {
                if let Some(m) = &lr.marker {
                    if m.crc != 0 && !marker_describes(schema, &lr.row, m) {
                        conflicts.push(Conflict {
                            kind: ConflictKind::UnsyncedLocalEdit,
                            policy: policy_name,
                            outcome: Outcome::IncomingApplied,
                            local: local_info(),
                            incoming: incoming_info(),
                        });
                    }
                }
            }
            // A seed is a state every version has seen, as the empty vector
            // says: it takes no entry (one with its time would be a version
            // the peer can never know, and its next change would look
            // concurrent with it).
            let (order, vv) = if successor {
                (Order::IncomingNewer, successor_vv(me, inc, &lv.vv))
            } else if changes_the_seed(change, lr) {
                (Order::IncomingNewer, inc.vv.clone())
            } else {
                (
                    compare(me, &inc.vv, &lv.vv, lv.known),
                    merged_vv(me, &inc.vv, &lv.vv),
                )
            };
            match (change.op, order) {
                (_, Order::LocalNewer) => {
                    for c in &mut conflicts {
                        c.outcome = Outcome::LocalKept;
                    }
                    Decision::nothing(local, conflicts, true)
                }
                (Op::Delete, Order::IncomingNewer) => {
                    delete_decision(me, change, lr, vv, inc, conflicts)
                }
                (Op::Delete, Order::Concurrent) => {
                    // A write beats a concurrent delete: the deleting side
                    // receives this row as an update for a row it no longer
                    // has and recreates it, so both keep the row. Manual
                    // parks the delete for a DBA instead.
                    let outcome = if policy.policy == Policy::Manual {
                        Outcome::Parked
                    } else {
                        Outcome::LocalKept
                    };
                    conflicts.push(Conflict {
                        kind: ConflictKind::DeleteUpdate,
                        policy: policy_name,
                        outcome,
                        local: local_info(),
                        incoming: VersionInfo {
                            row: None,
                            ..incoming_info()
                        },
                    });
                    if outcome == Outcome::Parked {
                        return Decision::nothing(local, conflicts, false);
                    }
                    // The kept row becomes a new version that has seen the
                    // delete, forwarded to the deleting side: that side may
                    // already have recreated the row from an older update of
                    // ours (it no longer knows what it had deleted), and must
                    // end with exactly this content.
                    let ts = now_us
                        .max(lv.ts.saturating_add(1))
                        .max(inc.ts.saturating_add(1));
                    let crc = checksum(schema, &lr.row);
                    let mut vv = vv;
                    vv.set(me, Dot::at(0, ts).with_crc(crc));
                    let marker = Marker {
                        format: MARKER_FORMAT_VERSION,
                        vv,
                        site: me,
                        ts,
                        crc,
                        shape: shape_checksum(schema),
                        resolution: Resolution::Forward,
                        cols: BTreeMap::new(),
                    };
                    keep_local(me, policy, change, lr, marker, conflicts)
                }
                (_, Order::IncomingNewer) => {
                    let Some(after) = change.after.as_ref() else {
                        return pass_through(change, local, conflicts);
                    };
                    let row = filled(after, Some(&lr.row));
                    let marker = Marker {
                        format: MARKER_FORMAT_VERSION,
                        vv,
                        site: inc.site,
                        ts: inc.ts,
                        crc: 0,
                        shape: 0,
                        resolution: Resolution::None,
                        cols: BTreeMap::new(),
                    };
                    let tags = incoming_tags(change);
                    write_row(
                        me,
                        policy,
                        change,
                        Some(lr),
                        row,
                        marker,
                        tags,
                        false,
                        conflicts,
                        now_us,
                    )
                }
                (op, Order::Concurrent) => {
                    let Some(after) = change.after.as_ref() else {
                        return pass_through(change, local, conflicts);
                    };
                    let incoming_row = filled(after, Some(&lr.row));
                    let kind = if op == Op::Insert {
                        ConflictKind::InsertInsert
                    } else {
                        ConflictKind::UpdateUpdate
                    };
                    let inc_pair = (inc.ts, inc.site);
                    let loc_pair = (lv.ts, lv.site);
                    let inc_writer = Writer::of(inc.ts, inc.site, &inc.vv);
                    let loc_writer = Writer::of(lv.ts, lv.site, &lv.vv);
                    let mut record = Conflict {
                        kind,
                        policy: policy_name,
                        outcome: Outcome::LocalKept,
                        local: local_info(),
                        incoming: VersionInfo {
                            row: Some(incoming_row.clone()),
                            ..incoming_info()
                        },
                    };
                    // Both versions hold the same content (rows created
                    // alike on both sites, found by an initial sync; the same
                    // edit made on both): no update is lost whichever wins,
                    // so nothing is recorded and nothing waits for a DBA. The
                    // versions still merge, as the policy orders them.
                    let same_content = rows_equal(schema, &incoming_row, &lr.row);
                    let merged_tags: Option<Vec<Setter>>;
                    let (row, site, ts, outcome) = match policy.policy {
                        Policy::Manual if !same_content => {
                            record.outcome = Outcome::Parked;
                            conflicts.push(record);
                            return Decision::nothing(local, conflicts, false);
                        }
                        Policy::LastWriterWins | Policy::SitePriority(_) | Policy::Manual => {
                            let tie = match policy.policy {
                                Policy::SitePriority(p) => Tie::SitePriority(p),
                                _ => Tie::LastWriterWins,
                            };
                            if incoming_wins_tie(me, tie, inc_writer, loc_writer) {
                                merged_tags = Some(incoming_tags(change));
                                (incoming_row, inc.site, inc.ts, Outcome::IncomingApplied)
                            } else {
                                merged_tags = Some(local_tags(me, schema, lr));
                                (lr.row.clone(), lv.site, lv.ts, Outcome::LocalKept)
                            }
                        }
                        Policy::FieldMerge { tie } => {
                            // Per column, the value whose tag (the version that
                            // set it) wins the tie rule: a last-writer-wins (or
                            // site-priority) register per column, which gives the
                            // same result in any order of delivery.
                            let lt = local_tags(me, schema, lr);
                            let it = incoming_tags(change);
                            let mut merged = Row(Vec::with_capacity(lt.len()));
                            let mut tags = Vec::with_capacity(lt.len());
                            for i in 0..lt.len() {
                                // Causality first: a column set by a version the
                                // other side has seen is superseded by it; only
                                // concurrent setters go to the tie rule.
                                let inc_saw = has_seen(me, &inc.vv, false, lt[i]);
                                let loc_saw = has_seen(me, &lv.vv, true, it[i]);
                                // A setter is identified by its site and time
                                // (a site's own counters are not known locally).
                                // Two log positions: the counters tell.
                                let (l, n) = (lt[i].1, it[i].1);
                                let same_setter = lt[i].0 == it[i].0
                                    && if l.c > 0 && n.c > 0 {
                                        l.c == n.c
                                    } else {
                                        l.same_version_time(n)
                                    };
                                let take_incoming = if same_setter {
                                    false
                                } else if inc_saw != loc_saw {
                                    inc_saw
                                } else if inc_saw {
                                    // Each has seen the other's setter, yet they
                                    // hold different values: one of them set the
                                    // column back to an older value after seeing
                                    // the newer one (A -> B -> A), which its tags
                                    // cannot show. The older setter's value is
                                    // that later choice. A function of the pair
                                    // alone, so both sides pick alike.
                                    (it[i].1.t, it[i].0, it[i].1.c)
                                        < (lt[i].1.t, lt[i].0, lt[i].1.c)
                                } else {
                                    incoming_wins_tie(
                                        me,
                                        tie,
                                        Writer::of_setter(it[i]),
                                        Writer::of_setter(lt[i]),
                                    )
                                };
                                if take_incoming {
                                    merged.0.push(incoming_row.0[i].clone());
                                    tags.push(it[i]);
                                } else {
                                    merged.0.push(lr.row.0[i].clone());
                                    tags.push(lt[i]);
                                }
                            }
                            merged_tags = Some(tags);
                            // The merged version's time and site: the later of the
                            // two, identical on both sides.
                            let (ts, site) = inc_pair.max(loc_pair);
                            let outcome = if rows_equal(schema, &merged, &incoming_row) {
                                Outcome::IncomingApplied
                            } else if rows_equal(schema, &merged, &lr.row) {
                                Outcome::LocalKept
                            } else {
                                Outcome::Merged
                            };
                            (merged, site, ts, outcome)
                        }
                    };
                    record.outcome = outcome;
                    if !same_content {
                        conflicts.push(record);
                    }
                    let tags = field_merge_tags(policy, || {
                        merged_tags.unwrap_or_else(|| local_tags(me, schema, lr))
                    });
                    let marker = Marker {
                        format: MARKER_FORMAT_VERSION,
                        vv,
                        site,
                        ts,
                        crc: 0,
                        shape: 0,
                        resolution: Resolution::None,
                        cols: BTreeMap::new(),
                    };
                    write_row(
                        me,
                        policy,
                        change,
                        Some(lr),
                        row,
                        marker,
                        tags,
                        false,
                        conflicts,
                        now_us,
                    )
                }
            }
        }
        Local::Absent(tombstone) => {
            // A version this site wrote itself (only its own writes make it a
            // version's writer), which it no longer holds and has no
            // tombstone of: a user deleted the row here after that version
            // (users' deletes leave no tombstone). The delete is the newer.
            // The initial sync meets this: the peer copies back a row it
            // copied from here, which a user here has deleted meanwhile; it
            // must not come back to life.
            if tombstone.is_none() && inc.site == me && inc.vv.get(me).is_some() {
                return Decision::nothing(local, conflicts, true);
            }
            let order = tombstone.as_ref().map(|t| {
                if successor {
                    Order::IncomingNewer
                } else {
                    compare(me, &inc.vv, &t.vv, true)
                }
            });
            if order == Some(Order::LocalNewer) {
                // The delete applied here had seen this change.
                return Decision::nothing(local, conflicts, true);
            }
            let local_info = || VersionInfo {
                row: None,
                vv: tombstone.as_ref().map(|t| t.vv.clone()).unwrap_or_default(),
                site: tombstone.as_ref().map(|t| t.site).unwrap_or(me),
                ts: tombstone.as_ref().map(|t| t.ts).unwrap_or(0),
            };
            let vv = match tombstone {
                Some(t) if successor => successor_vv(me, inc, &t.vv),
                Some(t) => merged_vv(me, &inc.vv, &t.vv),
                None => inc.vv.clone(),
            };
            match change.op {
                Op::Delete => {
                    if order != Some(Order::IncomingNewer) {
                        conflicts.push(Conflict {
                            kind: ConflictKind::DeleteDelete,
                            policy: policy_name,
                            outcome: Outcome::AlreadyDeleted,
                            local: local_info(),
                            incoming: VersionInfo {
                                row: None,
                                ..incoming_info()
                            },
                        });
                    }
                    Decision {
                        write: None,
                        conflicts,
                        stale: false,
                        next: Local::Absent(Some(Tombstone {
                            vv: vv.clone(),
                            site: inc.site,
                            ts: inc.ts,
                        })),
                        tombstone: Some(Tombstone {
                            vv,
                            site: inc.site,
                            ts: inc.ts,
                        }),
                    }
                }
                Op::Insert | Op::Update => {
                    let Some(after) = change.after.as_ref() else {
                        return pass_through(change, local, conflicts);
                    };
                    let row = filled(after, change.before.as_ref());
                    if change.op == Op::Update {
                        // The row was here once if duplex deleted it here
                        // (tombstone) or if the incoming version has seen a
                        // version of this site (only this site's writes put
                        // its entry in a vector): gone now, it was deleted
                        // here. Otherwise it may never have arrived.
                        let was_here = tombstone.is_some() || inc.vv.get(me).is_some();
                        let kind = if was_here {
                            ConflictKind::UpdateDelete
                        } else {
                            ConflictKind::UpdateMissing
                        };
                        let outcome = if policy.policy == Policy::Manual {
                            Outcome::Parked
                        } else {
                            Outcome::Recreated
                        };
                        if order != Some(Order::IncomingNewer) || tombstone.is_none() {
                            conflicts.push(Conflict {
                                kind,
                                policy: policy_name,
                                outcome,
                                local: local_info(),
                                incoming: VersionInfo {
                                    row: Some(row.clone()),
                                    ..incoming_info()
                                },
                            });
                            if outcome == Outcome::Parked {
                                return Decision::nothing(local, conflicts, false);
                            }
                        }
                    }
                    let marker = Marker {
                        format: MARKER_FORMAT_VERSION,
                        vv,
                        site: inc.site,
                        ts: inc.ts,
                        crc: 0,
                        shape: 0,
                        resolution: Resolution::None,
                        cols: BTreeMap::new(),
                    };
                    let tags = field_merge_tags(policy, || incoming_tags(change));
                    // Field merge needs the row's creator to hold a marker
                    // (column tags) too: an inserted row comes back to it once.
                    let forward = change.op == Op::Insert
                        && matches!(policy.policy, Policy::FieldMerge { .. });
                    write_row(
                        me, policy, change, None, row, marker, tags, forward, conflicts, now_us,
                    )
                }
            }
        }
    }
}

/// crc32 of one value's canonical encoding.
fn value_crc(v: Option<&Value>) -> u32 {
    let mut out = Vec::new();
    if let Some(v) = v {
        encode_value(v, &mut out);
    }
    crc32fast::hash(&out)
}

/// Column tags matter only under field merge: elsewhere none are computed.
fn field_merge_tags(policy: &TablePolicy, tags: impl FnOnce() -> Vec<Setter>) -> Vec<Setter> {
    if matches!(policy.policy, Policy::FieldMerge { .. }) {
        tags()
    } else {
        Vec::new()
    }
}

/// The version that set a column: its site and dot.
type Setter = (u32, Dot);

/// Column tags of a row written by a user on `site` with `dot`, given the
/// marker the row held: a column whose value still has the checksum the marker
/// recorded keeps that tag; every other column was set by a user write since,
/// and is tagged with this one. The source computes this for the version it
/// sends, and the site itself computes the same for its unsynced local row
/// (knowing only the version time), so both sides see the same tags.
pub fn column_tags(
    schema: &TableSchema,
    row: &Row,
    prior: Option<&Marker>,
    site: u32,
    dot: Dot,
) -> BTreeMap<String, ColumnTag> {
    let tags = user_tags(schema, row, prior, site, dot);
    tag_map(schema, row, &tags)
}

fn user_tags(
    schema: &TableSchema,
    row: &Row,
    prior: Option<&Marker>,
    site: u32,
    dot: Dot,
) -> Vec<Setter> {
    schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let crc = value_crc(row.0.get(i).and_then(Option::as_ref));
            match prior.and_then(|m| m.cols.get(&c.name)) {
                Some(tag) if tag.crc == crc => (tag.site, tag.dot),
                _ => (site, dot),
            }
        })
        .collect()
}

fn tag_map(schema: &TableSchema, row: &Row, tags: &[Setter]) -> BTreeMap<String, ColumnTag> {
    schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (site, dot) = tags.get(i).copied().unwrap_or_default();
            (
                c.name.clone(),
                ColumnTag {
                    crc: value_crc(row.0.get(i).and_then(Option::as_ref)),
                    site,
                    dot,
                },
            )
        })
        .collect()
}

/// The local row's column tags.
fn local_tags(me: u32, schema: &TableSchema, lr: &LocalRow) -> Vec<Setter> {
    match (lr.stamp, &lr.marker) {
        (Stamp::Synced, Some(m)) => schema
            .columns
            .iter()
            .map(|c| {
                m.cols
                    .get(&c.name)
                    .map(|t| (t.site, t.dot))
                    .unwrap_or((m.site, m.vv.get(m.site).unwrap_or_default()))
            })
            .collect(),
        (Stamp::Synced, None) => vec![(me, Dot::default()); schema.columns.len()],
        (Stamp::User { t } | Stamp::Seed { t }, m) => user_tags(
            schema,
            &lr.row,
            m.as_ref(),
            me,
            Dot::at(0, t.unwrap_or(0)).with_crc(checksum(schema, &lr.row)),
        ),
    }
}

/// The incoming version's column tags (a version from a source that did not
/// tag columns counts as having set all of them).
fn incoming_tags(change: &RowChange) -> Vec<Setter> {
    let m = &change.marker;
    let own = m.vv.get(m.site).unwrap_or(Dot::at(0, m.ts));
    change
        .table
        .columns
        .iter()
        .map(|c| {
            m.cols
                .get(&c.name)
                .map(|t| (t.site, t.dot))
                .unwrap_or((m.site, own))
        })
        .collect()
}

/// Has a version with vector `vv`, seen from site `me`, seen the version
/// `setter`? `vv_is_local` when `vv` is this site's own row.
fn has_seen(me: u32, vv: &VersionVector, vv_is_local: bool, setter: Setter) -> bool {
    let (site, dot) = setter;
    if dot.c == 0 && dot.t == 0 {
        return true;
    }
    if site == me {
        // A site has seen all its own versions; a peer's vector shows it by
        // the version time (this site's counters are not known here).
        vv_is_local || own_seen(vv.get(me), dot, true)
    } else {
        vv.counter(site) >= dot.c
    }
}

/// Every column of `schema` holds the same value in both rows (canonical
/// encoding), or is absent from both.
pub(crate) fn rows_equal(schema: &TableSchema, a: &Row, b: &Row) -> bool {
    (0..schema.columns.len()).all(|i| match (a.0.get(i), b.0.get(i)) {
        (Some(Some(x)), Some(Some(y))) => same_value(x, y),
        (Some(None), Some(None)) => true,
        _ => false,
    })
}

/// A change the decision cannot reason about (no new image): applied as it
/// came, as before conflict detection existed.
fn pass_through(change: &RowChange, local: &Local, conflicts: Vec<Conflict>) -> Decision {
    Decision {
        write: Some(change.clone()),
        conflicts,
        stale: false,
        next: local.clone(),
        tombstone: None,
    }
}

fn delete_decision(
    _me: u32,
    change: &RowChange,
    lr: &LocalRow,
    vv: VersionVector,
    inc: &Marker,
    conflicts: Vec<Conflict>,
) -> Decision {
    let tombstone = Tombstone {
        vv,
        site: inc.site,
        ts: inc.ts,
    };
    let mut write = change.clone();
    write.before = Some(lr.row.clone());
    Decision {
        write: Some(write),
        conflicts,
        stale: false,
        next: Local::Absent(Some(tombstone.clone())),
        tombstone: Some(tombstone),
    }
}

/// Keep the local content and record `marker` (the local version having seen
/// the incoming one) without changing any column but the marker.
fn keep_local(
    me: u32,
    policy: &TablePolicy,
    change: &RowChange,
    lr: &LocalRow,
    mut marker: Marker,
    conflicts: Vec<Conflict>,
) -> Decision {
    let schema = &change.table;
    if matches!(policy.policy, Policy::FieldMerge { .. }) {
        marker.cols = tag_map(schema, &lr.row, &local_tags(me, schema, lr));
    }
    // Only the key columns are carried: the sink writes the columns present in
    // the after image, and an unchanged key is never SET.
    let key_only = Row(lr
        .row
        .0
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if schema.key.contains(&i) {
                v.clone()
            } else {
                None
            }
        })
        .collect());
    let next = Local::Present(LocalRow {
        row: lr.row.clone(),
        marker: Some(marker.clone()),
        stamp: Stamp::Synced,
    });
    Decision {
        write: Some(RowChange {
            table: change.table.clone(),
            op: Op::Update,
            before: Some(lr.row.clone()),
            after: Some(key_only),
            marker,
        }),
        conflicts,
        stale: false,
        next,
        tombstone: None,
    }
}

/// Write `row` as the key's new version (with column ownership applied), as an
/// update when the target has the row and an insert when it does not.
#[allow(clippy::too_many_arguments)]
fn write_row(
    me: u32,
    policy: &TablePolicy,
    change: &RowChange,
    local: Option<&LocalRow>,
    mut row: Row,
    mut marker: Marker,
    mut tags: Vec<Setter>,
    mut forward: bool,
    conflicts: Vec<Conflict>,
    now_us: i64,
) -> Decision {
    let schema = &change.table;
    let tagged = !tags.is_empty();
    let local_tag_list = if tagged && !policy.owners.is_empty() {
        local.map(|lr| local_tags(me, schema, lr))
    } else {
        None
    };
    for (column, &owner) in &policy.owners {
        let Some(i) = schema.column_index(column) else {
            continue;
        };
        let incoming_value = change
            .after
            .as_ref()
            .and_then(|a| a.0.get(i).cloned().flatten());
        if owner == me {
            if let Some(lr) = local {
                let kept = lr.row.0[i].clone();
                if let (Some(k), Some(x)) = (&kept, &incoming_value) {
                    if !same_value(k, x) {
                        // The peer holds a value its site may not write: this
                        // version must flow back so the peer takes ours.
                        forward = true;
                    }
                }
                row.0[i] = kept;
                if let Some(lt) = &local_tag_list {
                    tags[i] = lt[i];
                }
            }
        } else if owner == change.marker.site {
            if let Some(x) = incoming_value {
                row.0[i] = Some(x);
                if tagged {
                    tags[i] = incoming_tags(change)[i];
                }
            }
        }
    }
    if !complete(&row) {
        // A column's value is unknown (an unchanged TOAST value of a row this
        // side does not have): write what is known, as the change came.
        return pass_through(
            change,
            &local
                .cloned()
                .map(Local::Present)
                .unwrap_or(Local::Absent(None)),
            conflicts,
        );
    }
    marker.crc = checksum(schema, &row);
    if forward {
        let ts = now_us.max(marker.ts.saturating_add(1)).max(
            local
                .map(|l| local_ts(l).saturating_add(1))
                .unwrap_or(i64::MIN),
        );
        marker.site = me;
        marker.ts = ts;
        marker.vv.set(me, Dot::at(0, ts).with_crc(marker.crc));
        marker.resolution = Resolution::Forward;
    }
    if tagged {
        marker.cols = tag_map(schema, &row, &tags);
    }
    let unchanged = local.is_some_and(|lr| {
        rows_equal(schema, &lr.row, &row)
            && lr.marker.as_ref() == Some(&marker)
            && lr.stamp == Stamp::Synced
    });
    let next = Local::Present(LocalRow {
        row: row.clone(),
        marker: Some(marker.clone()),
        stamp: Stamp::Synced,
    });
    if unchanged {
        return Decision {
            write: None,
            conflicts,
            stale: false,
            next,
            tombstone: None,
        };
    }
    let write = match local {
        Some(lr) => RowChange {
            table: change.table.clone(),
            op: Op::Update,
            // The target's row is found by the key it has now.
            before: Some(lr.row.clone()),
            after: Some(row),
            marker,
        },
        None => RowChange {
            table: change.table.clone(),
            op: Op::Insert,
            before: None,
            after: Some(row),
            marker,
        },
    };
    Decision {
        write: Some(write),
        conflicts,
        stale: false,
        next,
        tombstone: None,
    }
}

/// A marker that describes the local version exactly (its vector with this
/// site's own entry, site, time, checksum and, under field merge, column
/// tags): written with the row by the applier, the row is the same version
/// to every later comparison (`Stamp::Synced`). For a row the applier must
/// put back as it was before a source transaction that, in the end, did
/// not change it (sink::resolve).
pub fn version_marker(
    me: u32,
    policy: &TablePolicy,
    schema: &TableSchema,
    lr: &LocalRow,
) -> Marker {
    if lr.stamp == Stamp::Synced {
        if let Some(m) = &lr.marker {
            return m.clone();
        }
    }
    let lv = local_version(me, schema, lr, None);
    let mut marker = Marker {
        format: MARKER_FORMAT_VERSION,
        vv: lv.vv,
        site: lv.site,
        ts: lv.ts,
        crc: checksum(schema, &lr.row),
        shape: shape_checksum(schema),
        resolution: Resolution::None,
        cols: BTreeMap::new(),
    };
    if matches!(policy.policy, Policy::FieldMerge { .. }) {
        marker.cols = tag_map(schema, &lr.row, &local_tags(me, schema, lr));
    }
    marker
}

/// The current local version, for the record and for checking that a parked
/// conflict still concerns the row as it is.
pub fn local_info(me: u32, schema: &TableSchema, lr: &LocalRow) -> VersionInfo {
    let lv = local_version(me, schema, lr, None);
    VersionInfo {
        row: Some(lr.row.clone()),
        vv: lv.vv,
        site: lv.site,
        ts: lv.ts,
    }
}

/// The write that applies a DBA's choice for a parked conflict: the chosen
/// row as a new version of this site that has seen both versions, forwarded
/// so that the peer (which kept the other version) takes it too. `Err` with
/// the reason when the choice cannot be applied as the row is now.
pub fn resolution_write(
    me: u32,
    p: &PendingResolution,
    local: &Local,
    now_us: i64,
) -> Result<RowChange, String> {
    let (schema, incoming, parked_local) = (&p.schema, &p.incoming, &p.local);
    let incoming_row = p.incoming_row.as_ref();
    let take_incoming = p.take_incoming;
    let Local::Present(lr) = local else {
        return Err("the row is no longer on this site; settle it by hand".into());
    };
    let current = local_info(me, schema, lr);
    if current.vv != parked_local.vv
        || current.ts != parked_local.ts
        || current.site != parked_local.site
    {
        return Err("superseded: the row changed since the conflict was parked".into());
    }
    let row = if take_incoming {
        match incoming_row {
            Some(r) => filled(r, Some(&lr.row)),
            None => {
                return Err("choosing a delete is not supported yet; delete the row by hand".into())
            }
        }
    } else {
        lr.row.clone()
    };
    let ts = now_us
        .max(current.ts.saturating_add(1))
        .max(incoming.ts.saturating_add(1));
    let crc = checksum(schema, &row);
    let mut vv = merged_vv(me, &incoming.vv, &current.vv);
    vv.set(me, Dot::at(0, ts).with_crc(crc));
    let marker = Marker {
        format: MARKER_FORMAT_VERSION,
        vv,
        site: me,
        ts,
        crc,
        shape: shape_checksum(schema),
        resolution: Resolution::Forward,
        cols: BTreeMap::new(),
    };
    Ok(RowChange {
        table: schema.clone(),
        op: Op::Update,
        before: Some(lr.row.clone()),
        after: Some(row),
        marker,
    })
}

/// Policy summary for counters: conflicts by (table, kind).
pub type ConflictCounts = BTreeMap<(String, ConflictKind), u64>;

#[cfg(test)]
mod tests;

/// A conflict a DBA settled (`duplex.resolve_conflict`), to be applied.
#[derive(Debug, Clone)]
pub struct PendingResolution {
    pub conflict_id: i64,
    /// `incoming`: apply the parked version; `local`: keep the target's.
    pub take_incoming: bool,
    pub schema: std::sync::Arc<TableSchema>,
    /// The parked incoming row.
    pub incoming_row: Option<Row>,
    pub incoming: VersionInfo,
    /// The local version when the conflict was parked.
    pub local: VersionInfo,
}
