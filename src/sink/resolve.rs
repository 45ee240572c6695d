//! The engine-independent half of conflict handling in a sink: which keys a
//! batch of incoming changes touches, and, given the target's state for those
//! keys, what to write (`conflict::decide` per change, in order, each decision
//! seeing the state the previous ones left).

// FxHash: the maps of a round are keyed by table and encoded key, hashed
// several times per row; the default SipHash was a tenth of the applier.
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use crate::canonical::encode::{encode_value, row_checksum};
use crate::canonical::ChangeOrigin;
use crate::canonical::{Op, Row, RowChange, SourcePosition, TableName, TableSchema, Value};
use crate::conflict::{
    decide, filled, rows_equal, version_marker, Conflict, ConflictKind, Decision, Local, LocalRow,
    Stamp, TablePolicy, Tombstone,
};
use crate::marker::{Marker, Resolution};

/// A key of one table: its canonical encoding (the identity) and its values.
#[derive(Debug, Clone)]
pub(crate) struct KeyRef {
    pub encoded: Vec<u8>,
    pub values: Vec<Value>,
}

pub(crate) fn encode_key(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode_value(v, &mut out);
    }
    out
}

/// Every key the changes touch (old and new keys of key changes), per table,
/// each once, in first-seen order.
pub(crate) fn keys_by_table(
    pending: &[(RowChange, ChangeOrigin)],
) -> Vec<(Arc<TableSchema>, Vec<KeyRef>)> {
    let mut out: Vec<(Arc<TableSchema>, Vec<KeyRef>)> = Vec::new();
    // (the table's place in `out`, key)
    let mut seen: HashMap<(usize, Vec<u8>), ()> = HashMap::default();
    for (change, _) in pending {
        for image in [change.before.as_ref(), change.after.as_ref()]
            .into_iter()
            .flatten()
        {
            let Some(encoded) = image.encoded_key(&change.table) else {
                continue;
            };
            let slot = match out.iter().position(|(s, _)| s.table == change.table.table) {
                Some(slot) => slot,
                None => {
                    out.push((change.table.clone(), Vec::new()));
                    out.len() - 1
                }
            };
            if seen.insert((slot, encoded.clone()), ()).is_some() {
                continue;
            }
            let Some(values) = image.key(&change.table) else {
                continue;
            };
            out[slot].1.push(KeyRef { encoded, values });
        }
    }
    out
}

/// The outcome of resolving a batch.
#[derive(Default)]
pub(crate) struct Resolved {
    /// What to apply to the target, in order.
    pub writes: Vec<(RowChange, ChangeOrigin)>,
    /// Tombstones to record (table, key, tombstone).
    pub tombstones: Vec<(Arc<TableSchema>, Vec<u8>, Tombstone)>,
    /// Keys whose tombstone must go (the row exists again).
    pub revived: Vec<(Arc<TableSchema>, Vec<u8>)>,
    /// Detected conflicts with the change they were detected on.
    pub conflicts: Vec<(Arc<TableSchema>, Conflict, ChangeOrigin, String)>,
    /// By index into `writes`: what to quarantine if the target refuses that
    /// write, when not the write itself. A statement of a row that its
    /// transaction changes again (applied as the source made it) records
    /// the transaction's decided net change: retried alone, the statement's
    /// own row would be written over the transaction's last word (it follows
    /// a state the same transaction wrote).
    pub fallbacks: Vec<(usize, RowChange)>,
    /// Conflict records of an earlier batch of the same source transaction
    /// that a later decision of the row no longer finds (see [`Carry`]).
    pub withdrawn: Vec<(ChangeOrigin, ConflictKind)>,
    pub stale: u64,
}

impl Resolved {
    /// Record a tombstone for `key`. The sinks record the tombstones, then
    /// remove those of the revived keys: a key's last word in the batch must
    /// be the only one kept (a key revived by one transaction and deleted
    /// again by a later one of the batch, a row moved back and forth, ended
    /// without its tombstone).
    fn tombstone(&mut self, table: &Arc<TableSchema>, key: &[u8], t: Tombstone) {
        self.revived
            .retain(|(s, k)| !(s.table == table.table && k == key));
        self.tombstones.push((table.clone(), key.to_vec(), t));
    }

    /// The key's tombstone goes (the row exists again). See [`Self::tombstone`].
    fn revive(&mut self, table: &Arc<TableSchema>, key: &[u8]) {
        self.tombstones
            .retain(|(s, k, _)| !(s.table == table.table && k == key));
        self.revived.push((table.clone(), key.to_vec()));
    }
}

/// The rows of the source transaction at hand that a batch decided
/// otherwise than as they came (a conflict, a stale change, a kept owned
/// column), kept for the next batches of the same transaction: a row
/// changed again more than a batch (`max_batch_rows`) later is decided
/// again, by the transaction's net change so far against the target's
/// state before the transaction, as one row changed in one batch is.
/// Followed by its own earlier write instead (`written_by_same_transaction`),
/// a later change took the place of the conflict's outcome: a delete won
/// over a concurrent write, a site-priority or last-writer-wins choice was
/// made on part of the transaction only (on MySQL each statement has its own
/// version time), and the sites parted. Rows decided as they came need no
/// carrying: their later changes follow what the transaction wrote.
///
/// Memory: the rows of one transaction that met a conflict, at most
/// [`CARRY_LIMIT`]; beyond, a row's later changes follow its earlier write
/// (logged). Cleared when the next source transaction begins.
#[derive(Default)]
pub(crate) struct Carry {
    position: Option<SourcePosition>,
    rows: HashMap<(TableName, Vec<u8>), Carried>,
    warned: bool,
}

/// See [`Carry`].
pub(crate) const CARRY_LIMIT: usize = 10_000;

struct Carried {
    table: Arc<TableSchema>,
    /// The origin of the row's first change: its conflict records are keyed
    /// by it.
    origin: ChangeOrigin,
    /// The target's state for the key before the transaction.
    before_txn: Local,
    /// The transaction's net change of the row so far (`None`: created and
    /// removed again).
    net: Option<RowChange>,
    /// The kinds of the conflicts recorded for the row.
    kinds: Vec<ConflictKind>,
    /// What this transaction last wrote for the key here.
    current: Local,
    /// The decided version must flow back to the source (a kept row, an
    /// owned column): written unflagged while the transaction may change
    /// the row again, and flagged once it is over. The source forwards every
    /// flagged row of duplex's transactions, and two versions of one row
    /// forwarded by one transaction look alike to the peer (the same
    /// counter): the first one would stay.
    forward_owed: bool,
}

impl Carry {
    /// The changes at hand belong to the source transaction at `position`:
    /// the rows of an earlier one are over, their owed versions written.
    fn at(&mut self, position: SourcePosition, out: &mut Resolved) {
        if self.position != Some(position) {
            self.finish(out);
            self.position = Some(position);
            self.rows.clear();
        }
    }

    /// The transaction's rows are final: the versions that must flow back
    /// are written flagged (the row as it is, with its marker).
    fn finish(&mut self, out: &mut Resolved) {
        for c in self.rows.values_mut() {
            if !std::mem::take(&mut c.forward_owed) {
                continue;
            }
            let Local::Present(lr) = &mut c.current else {
                continue;
            };
            let Some(marker) = lr.marker.as_mut() else {
                continue;
            };
            marker.resolution = Resolution::Forward;
            out.writes.push((
                RowChange {
                    table: c.table.clone(),
                    op: Op::Update,
                    before: Some(lr.row.clone()),
                    after: Some(lr.row.clone()),
                    marker: marker.clone(),
                },
                c.origin.clone(),
            ));
        }
    }

    /// Forget the rows of `table` (truncated).
    pub(crate) fn forget(&mut self, table: &TableName) {
        self.rows.retain(|(t, _), _| t != table);
    }

    /// A write of the row `change` touches was refused by the target
    /// (quarantined, see `applier::Refused`): what the transaction decided
    /// for it is not there. Its later changes are decided against the
    /// target's row as it is, and nothing of it flows back (written at the
    /// transaction's end, the carried row would go over a row a user wrote).
    pub(crate) fn forget_row(&mut self, change: &RowChange) {
        for image in [change.before.as_ref(), change.after.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some(k) = image.key(&change.table) {
                self.rows
                    .remove(&(change.table.table.clone(), encode_key(&k)));
            }
        }
    }

    /// Versions wait to flow back (see [`Self::finish`]).
    pub(crate) fn owes(&self) -> bool {
        self.rows.values().any(|c| c.forward_owed)
    }

    fn keep(&mut self, table: &TableName, key: &[u8], carried: Carried) {
        if self.rows.len() >= CARRY_LIMIT {
            if !self.warned {
                self.warned = true;
                tracing::warn!(limit = CARRY_LIMIT, table = %table,
                    "a source transaction meets conflicts on more rows than duplex keeps: a later change of such a row in the same transaction, more than a batch away, follows the earlier write instead of being decided again");
            }
            return;
        }
        self.rows.insert((table.clone(), key.to_vec()), carried);
    }
}

/// Did the decision depart from the incoming change (a conflict, a stale
/// change, a version that must flow back)?
fn departed(decision: &Decision) -> bool {
    !decision.conflicts.is_empty() || decision.stale || forwards(decision)
}

/// Does the decision write a version that must flow back to the source?
fn forwards(decision: &Decision) -> bool {
    decision
        .write
        .as_ref()
        .is_some_and(|w| w.marker.resolution == Resolution::Forward)
}

/// The decision's versions, unflagged (see `Carried::forward_owed`).
fn unflag(decision: &mut Decision) {
    if let Some(w) = decision.write.as_mut() {
        w.marker.resolution = Resolution::None;
    }
    if let Local::Present(LocalRow {
        marker: Some(m), ..
    }) = &mut decision.next
    {
        m.resolution = Resolution::None;
    }
}

/// The write that takes the target's row from `current` to `next` (both
/// states of one key), if any.
fn transition(table: &Arc<TableSchema>, current: &Local, next: &Local) -> Option<RowChange> {
    match (current, next) {
        (Local::Present(c), Local::Present(n)) => {
            let same = c.stamp == n.stamp
                && c.marker == n.marker
                && encode_row(&c.row) == encode_row(&n.row);
            (!same).then(|| RowChange {
                table: table.clone(),
                op: Op::Update,
                before: Some(c.row.clone()),
                after: Some(n.row.clone()),
                marker: n.marker.clone().unwrap_or_default(),
            })
        }
        (Local::Present(c), Local::Absent(_)) => Some(RowChange {
            table: table.clone(),
            op: Op::Delete,
            before: Some(c.row.clone()),
            after: None,
            marker: Marker::default(),
        }),
        (Local::Absent(_), Local::Present(n)) => Some(RowChange {
            table: table.clone(),
            op: Op::Insert,
            before: None,
            after: Some(n.row.clone()),
            marker: n.marker.clone().unwrap_or_default(),
        }),
        (Local::Absent(_), Local::Absent(_)) => None,
    }
}

fn encode_row(row: &Row) -> Vec<Option<Vec<u8>>> {
    row.0
        .iter()
        .map(|v| {
            v.as_ref().map(|v| {
                let mut out = Vec::new();
                encode_value(v, &mut out);
                out
            })
        })
        .collect()
}

fn key_of(change: &RowChange, image: Option<&Row>) -> Option<Vec<u8>> {
    image.and_then(|r| r.encoded_key(&change.table))
}

/// The changes of one row inside one source transaction (two or more), and
/// their net effect: what the transaction did to the row, as one change.
struct Chain {
    /// Indexes into the batch, in order.
    members: Vec<usize>,
    /// `None`: the row was created and removed again (nothing to send).
    net: Option<RowChange>,
    /// The chain's first delete and its last insert (batch indexes): where
    /// the row stops existing in the transaction, and where it comes back
    /// for good.
    first_delete: Option<usize>,
    last_insert: Option<usize>,
}

/// An update that changes the primary key, as the delete of the old key and
/// the insert of the new one. Versions are kept per key, so a moved row is a
/// new row: a concurrent change of the old key on the other site then meets a
/// delete (and the write wins, on both sites alike), where an update moving
/// the row away would take that change's key with it on one site only.
fn split_key_change((change, origin): (RowChange, ChangeOrigin)) -> Vec<(RowChange, ChangeOrigin)> {
    let moved = change.op == Op::Update
        && match (&change.before, &change.after) {
            (Some(b), Some(a)) => match (b.key(&change.table), a.key(&change.table)) {
                (Some(kb), Some(ka)) => encode_key(&kb) != encode_key(&ka),
                _ => false,
            },
            _ => false,
        };
    if !moved {
        return vec![(change, origin)];
    }
    let delete = RowChange {
        table: change.table.clone(),
        op: Op::Delete,
        before: change.before.clone(),
        after: None,
        marker: change.marker.clone(),
    };
    let insert = RowChange {
        table: change.table.clone(),
        op: Op::Insert,
        // Unchanged TOAST values come from the old row.
        after: change
            .after
            .as_ref()
            .map(|a| filled(a, change.before.as_ref())),
        before: None,
        marker: change.marker,
    };
    vec![(delete, origin.clone()), (insert, origin)]
}

/// The identity key a change acts on: the key it finds the row by.
fn identity(change: &RowChange) -> Option<&Row> {
    match change.op {
        Op::Insert => change.after.as_ref(),
        _ => change.before.as_ref().or(change.after.as_ref()),
    }
}

/// The rows the batch changes more than once inside one source transaction
/// (a delete and an insert of the same key, an insert then an update, an
/// upsert twice, a key moved and then updated...), followed through key
/// changes. Returns, per change, the chain it belongs to (only chains of two
/// or more).
fn find_chains(pending: &[(RowChange, ChangeOrigin)]) -> (Vec<Option<usize>>, Vec<Chain>) {
    let mut chain_of: Vec<Option<usize>> = vec![None; pending.len()];
    let mut members: Vec<Vec<usize>> = Vec::new();
    // (table, current key) -> chain, for the source transaction at hand;
    // tables by their place in `tables`.
    let mut current: HashMap<(usize, Vec<u8>), usize> = HashMap::default();
    let mut tables: Vec<&TableName> = Vec::new();
    let mut txn: Option<SourcePosition> = None;
    for (i, (change, origin)) in pending.iter().enumerate() {
        if txn != Some(origin.position) {
            txn = Some(origin.position);
            current.clear();
        }
        let table = match tables.iter().position(|t| **t == change.table.table) {
            Some(slot) => slot,
            None => {
                tables.push(&change.table.table);
                tables.len() - 1
            }
        };
        let Some(key) = key_of(change, identity(change)) else {
            continue;
        };
        let id = (table, key);
        let chain = match current.remove(&id) {
            Some(c) => {
                members[c].push(i);
                c
            }
            None => {
                members.push(vec![i]);
                members.len() - 1
            }
        };
        // A delete whose old image holds only the key (replica identity
        // 'key') carries no vector: it is applied without conflict detection
        // (conflict::decide), and what the transaction writes on the key
        // afterwards is a new row, decided against the key's absence. Joined
        // to one net change, a delete and an insert of the key were compared
        // by the insert's vector alone, which knows nothing of the deleted
        // row: a false conflict (parked under manual, the sites apart).
        if change.op == Op::Delete
            && !change
                .before
                .as_ref()
                .is_some_and(|b| b.0.iter().all(Option::is_some))
        {
            continue;
        }
        // Where the row is now: its new key, or the deleted key, where an
        // insert of the same transaction recreates it.
        let key = id.1;
        let now = match change.op {
            Op::Insert => key,
            _ => key_of(change, change.after.as_ref()).unwrap_or(key),
        };
        current.insert((table, now), chain);
    }
    let mut chains = Vec::new();
    for m in members.into_iter().filter(|m| m.len() > 1) {
        for &i in &m {
            chain_of[i] = Some(chains.len());
        }
        let changes: Vec<&RowChange> = m.iter().map(|&i| &pending[i].0).collect();
        let of = |op: Op| m.iter().copied().filter(move |&i| pending[i].0.op == op);
        chains.push(Chain {
            net: net_change(&changes),
            first_delete: of(Op::Delete).next(),
            last_insert: of(Op::Insert).next_back(),
            members: m,
        });
    }
    (chain_of, chains)
}

/// One change with the net effect of a row's changes in one source
/// transaction: the row before the first, the row after the last, and the
/// last change's version (its time is the one the source's row keeps) with
/// everything any of them had seen.
fn net_change(changes: &[&RowChange]) -> Option<RowChange> {
    let (first, last) = (changes.first()?, changes.last()?);
    // Whether the row existed before the transaction is told by the first
    // change's operation, not by its old image: with replica identity 'key'
    // an update carries none (an update and then a delete looked like a row
    // created and removed again, and the delete was lost).
    let existed = first.op != Op::Insert;
    let before = match first.op {
        Op::Insert => None,
        _ => first.before.clone(),
    };
    let mut after: Option<Row> = before.clone();
    for c in changes {
        after = match c.op {
            Op::Insert => c.after.clone(),
            Op::Update => c
                .after
                .as_ref()
                .map(|a| filled(a, after.as_ref().or(c.before.as_ref()))),
            Op::Delete => None,
        };
    }
    let op = match (existed, &after) {
        (false, None) => return None,
        (false, Some(_)) => Op::Insert,
        (true, None) => Op::Delete,
        (true, Some(_)) => Op::Update,
    };
    // A delete finds the row by its old image: the last change's (a delete's
    // key at least) when the first change carried none.
    let before = match op {
        Op::Delete => before.or_else(|| last.before.clone()),
        _ => before,
    };
    let mut marker = last.marker.clone();
    for c in changes {
        marker.vv = marker.vv.merge(&c.marker.vv);
    }
    if let Some(dot) = last.marker.vv.get(last.marker.site) {
        marker.vv.set(last.marker.site, dot);
    }
    Some(RowChange {
        table: first.table.clone(),
        op,
        before,
        after,
        marker,
    })
}

/// Did the decision write the transaction's net change exactly as it came
/// (no conflict, nothing kept or merged)? Then the transaction's own
/// statements can be applied in their order, which keeps every constraint
/// the source kept between the rows.
fn follows(decision: &Decision, net: &RowChange) -> bool {
    if !decision.conflicts.is_empty() || decision.stale {
        return false;
    }
    match (&decision.write, net.op) {
        (Some(w), Op::Delete) => w.op == Op::Delete,
        (Some(w), _) => match (&w.after, &net.after) {
            (Some(a), Some(b)) => {
                w.op != Op::Delete
                    && w.marker.resolution == Resolution::None
                    && a.0.len() == b.0.len()
                    && rows_equal(&net.table, a, b)
            }
            _ => false,
        },
        (None, _) => false,
    }
}

/// The outcome of deciding one change (or a chain's net change).
fn record_decision(
    out: &mut Resolved,
    change: &RowChange,
    origin: &ChangeOrigin,
    key: &[u8],
    had_tombstone: bool,
    decision: &Decision,
) {
    if decision.stale {
        out.stale += 1;
    }
    if !decision.conflicts.is_empty() {
        let described = crate::sink::describe_key(change);
        for c in &decision.conflicts {
            out.conflicts.push((
                change.table.clone(),
                c.clone(),
                origin.clone(),
                described.clone(),
            ));
        }
    }
    if let Some(t) = decision.tombstone.clone() {
        out.tombstone(&change.table, key, t);
    }
    if let Some(w) = &decision.write {
        if w.op != Op::Delete && had_tombstone {
            out.revive(&change.table, key);
        }
    }
}

/// Decide every change in order. `states` holds the target's state for every
/// key of [`keys_by_table`] (absent keys count as never seen).
///
/// A row changed several times by one source transaction is decided once, by
/// the transaction's net change against the target's state before it (the
/// versions of one transaction are one version): each statement alone would
/// be compared with what the transaction's own earlier statement just wrote.
/// When the net change applies as it came, the statements are applied in
/// their own order; otherwise the decided write takes the place of the
/// first (the last, for a delete; see [`Reborn`] for a row deleted and
/// inserted again). A row that met a conflict is carried to the next batches
/// of its transaction ([`Carry`]); `complete`: the last transaction of the
/// batch ends with it (no later batch continues it).
pub(crate) fn resolve(
    me: u32,
    policy_of: impl Fn(&TableName) -> TablePolicy,
    pending: Vec<(RowChange, ChangeOrigin)>,
    mut states: HashMap<(TableName, Vec<u8>), Local>,
    now_us: i64,
    carry: &mut Carry,
    complete: bool,
) -> Resolved {
    let mut out = Resolved::default();
    let mut policies: HashMap<TableName, TablePolicy> = HashMap::default();
    let pending: Vec<(RowChange, ChangeOrigin)> =
        pending.into_iter().flat_map(split_key_change).collect();
    let (chain_of, chains) = find_chains(&pending);
    // The transaction a later batch may continue: its carried rows' versions
    // that must flow back wait for its end.
    let open_txn = pending
        .last()
        .map(|(_, o)| o.position)
        .filter(|_| !complete);
    // Per chain: whether its statements are applied as they came, and the
    // decided write and next state waiting for the chain's last statement.
    let mut following: Vec<bool> = vec![false; chains.len()];
    let mut deferred: Vec<Option<(Decision, Vec<u8>)>> = (0..chains.len()).map(|_| None).collect();
    // Per chain written as a deleted and re-inserted row (see `Reborn`).
    let mut reborn: Vec<Option<Reborn>> = (0..chains.len()).map(|_| None).collect();
    // Per chain decided again with the rows an earlier batch carried (see
    // `Carry`): `Some(delete)` for one whose row goes, written at its last
    // change.
    let mut continued: Vec<Option<Option<RowChange>>> = (0..chains.len()).map(|_| None).collect();
    for (i, (change, origin)) in pending.into_iter().enumerate() {
        carry.at(origin.position, &mut out);
        let table = change.table.table.clone();
        let policy = policies
            .entry(table.clone())
            .or_insert_with(|| policy_of(&table));
        let Some(key) = key_of(&change, identity(&change)) else {
            // No key (cannot happen for tables with a primary key): apply as is.
            out.writes.push((change, origin));
            continue;
        };
        let new_key = key_of(&change, change.after.as_ref()).unwrap_or_else(|| key.clone());
        if let Some(c) = chain_of[i] {
            if let Some(gone) = &mut continued[c] {
                if chains[c].members.last() == Some(&i) {
                    if let Some(w) = gone.take() {
                        out.writes.push((w, origin));
                    }
                }
                continue;
            }
        }
        let first_here = chain_of[i].is_none_or(|c| chains[c].members.first() == Some(&i));
        // (Most transactions meet no conflict: no lookup then.)
        if first_here && !carry.rows.is_empty() {
            if let Some(carried) = carry.rows.get_mut(&(table.clone(), key.clone())) {
                // This batch's part of the row's changes: the change, or its
                // chain's net change.
                let part = match chain_of[i] {
                    Some(c) => chains[c].net.clone(),
                    None => Some(change.clone()),
                };
                let net = match (carried.net.take(), part) {
                    (Some(n), Some(p)) => net_change(&[&n, &p]),
                    (None, p) => p,
                    (n, None) => n,
                };
                let mut decision = match &net {
                    Some(n) => decide(me, policy, n, &carried.before_txn, now_us),
                    // Created and removed again: the target's row as it was.
                    None => Decision {
                        write: None,
                        conflicts: Vec::new(),
                        stale: false,
                        next: match &carried.before_txn {
                            Local::Present(lr) => Local::Present(LocalRow {
                                row: lr.row.clone(),
                                marker: Some(version_marker(me, policy, &change.table, lr)),
                                stamp: Stamp::Synced,
                            }),
                            gone => gone.clone(),
                        },
                        tombstone: None,
                    },
                };
                carried.forward_owed = forwards(&decision) && open_txn == Some(origin.position);
                if carried.forward_owed {
                    unflag(&mut decision);
                }
                // The row's records: upserted over the first change's, and
                // those of kinds this decision no longer finds withdrawn.
                let kinds: Vec<ConflictKind> = decision.conflicts.iter().map(|c| c.kind).collect();
                for k in &carried.kinds {
                    if !kinds.contains(k) {
                        out.withdrawn.push((carried.origin.clone(), *k));
                    }
                }
                let described = crate::sink::describe_key(net.as_ref().unwrap_or(&change));
                for c in &decision.conflicts {
                    out.conflicts.push((
                        change.table.clone(),
                        c.clone(),
                        carried.origin.clone(),
                        described.clone(),
                    ));
                }
                carried.kinds = kinds;
                carried.net = net;
                // From what the earlier batches wrote to the decided state.
                let current = states
                    .remove(&(table.clone(), key.clone()))
                    .unwrap_or(Local::Absent(None));
                if let Local::Present(lr) = &mut decision.next {
                    // A user's version the decision keeps as it was, which an
                    // earlier batch wrote over: put back as the version it is.
                    if lr.stamp != Stamp::Synced
                        && transition(&change.table, &current, &Local::Present(lr.clone()))
                            .is_some()
                    {
                        lr.marker = Some(version_marker(me, policy, &change.table, lr));
                        lr.stamp = Stamp::Synced;
                    }
                }
                match (&current, &decision.next) {
                    (_, Local::Absent(Some(t))) => out.tombstone(&change.table, &key, t.clone()),
                    (Local::Absent(Some(_)), _) => out.revive(&change.table, &key),
                    _ => {}
                }
                carried.current = decision.next.clone();
                let write = transition(&change.table, &current, &decision.next);
                let goes = matches!(decision.next, Local::Absent(_));
                states.insert((table, key), decision.next);
                match chain_of[i] {
                    // A row that goes goes at its last change, after the
                    // rows that depended on it changed.
                    Some(c) if goes => continued[c] = Some(write),
                    Some(c) => {
                        continued[c] = Some(None);
                        if let Some(w) = write {
                            out.writes.push((w, origin));
                        }
                    }
                    None => {
                        if let Some(w) = write {
                            out.writes.push((w, origin));
                        }
                    }
                }
                continue;
            }
        }
        if let Some(c) = chain_of[i] {
            if !first_here {
                statement_of_chain(
                    &mut out,
                    &mut states,
                    &chains[c],
                    i,
                    (change, origin),
                    following[c],
                    &mut deferred[c],
                    &mut reborn[c],
                );
                continue;
            }
        }
        // The row's first change in the batch (or its chain's): decided by
        // the change, or the chain's net change, against the target's state.
        let local = states
            .remove(&(table.clone(), key.clone()))
            .unwrap_or(Local::Absent(None));
        let had_tombstone = matches!(local, Local::Absent(Some(_)));
        let net = match chain_of[i] {
            Some(c) => match &chains[c].net {
                Some(net) => net,
                None => {
                    // Created and removed again inside the transaction: the
                    // source never committed the row, there is nothing to send.
                    states.insert((table.clone(), key.clone()), local);
                    continue;
                }
            },
            None => &change,
        };
        let mut decision = decide(me, policy, net, &local, now_us);
        record_decision(&mut out, net, &origin, &key, had_tombstone, &decision);
        if departed(&decision) {
            let forward_owed = forwards(&decision) && open_txn == Some(origin.position);
            if forward_owed {
                unflag(&mut decision);
            }
            carry.keep(
                &table,
                &key,
                Carried {
                    table: change.table.clone(),
                    origin: origin.clone(),
                    before_txn: local.clone(),
                    net: Some(net.clone()),
                    kinds: decision.conflicts.iter().map(|c| c.kind).collect(),
                    current: decision.next.clone(),
                    forward_owed,
                },
            );
        }
        let Some(c) = chain_of[i] else {
            if new_key != key {
                states.insert((table.clone(), key.clone()), Local::Absent(None));
            }
            states.insert((table, new_key), decision.next);
            if let Some(w) = decision.write {
                out.writes.push((w, origin));
            }
            continue;
        };
        let chain = &chains[c];
        let Some(net) = &chain.net else {
            continue;
        };
        // The first statement must find the row as the source did: an
        // insert a free key, an update or delete the row.
        let same_start = matches!(local, Local::Present(_)) == (change.op != Op::Insert);
        following[c] = same_start && follows(&decision, net);
        let net_key = key_of(net, net.after.as_ref()).unwrap_or_else(|| key.clone());
        if following[c] {
            states.insert((table.clone(), key.clone()), local);
            deferred[c] = Some((decision, net_key));
        } else if let Some(r) = Reborn::of(chain, net, &local, &decision) {
            reborn[c] = Some(r);
        } else {
            if net_key != key {
                states.insert((table.clone(), key.clone()), Local::Absent(None));
            }
            let Decision { write, next, .. } = decision;
            if net.op == Op::Delete {
                // Deleted last: in place of the last statement, after the
                // rows that depended on it changed.
                deferred[c] = Some((
                    Decision {
                        write,
                        conflicts: Vec::new(),
                        stale: false,
                        next,
                        tombstone: None,
                    },
                    net_key,
                ));
            } else {
                states.insert((table.clone(), net_key), next);
                if let Some(w) = write {
                    out.writes.push((w, origin.clone()));
                }
            }
        }
        statement_of_chain(
            &mut out,
            &mut states,
            chain,
            i,
            (change, origin),
            following[c],
            &mut deferred[c],
            &mut reborn[c],
        );
    }
    if complete {
        carry.finish(&mut out);
    }
    // Each marker written records which columns its checksum covers: once
    // the table's columns change on both sites, a row's content is no longer
    // checked against it (`conflict::marker_describes`).
    for (w, _) in out.writes.iter_mut() {
        if w.marker.crc != 0 {
            w.marker.shape = crate::canonical::encode::shape_checksum(&w.table);
        }
    }
    out
}

/// One statement of a chain (its first included, after the chain was
/// decided): written as the source made it when the chain follows, the
/// decided write in its place otherwise.
#[allow(clippy::too_many_arguments)]
fn statement_of_chain(
    out: &mut Resolved,
    states: &mut HashMap<(TableName, Vec<u8>), Local>,
    chain: &Chain,
    i: usize,
    (change, origin): (RowChange, ChangeOrigin),
    following: bool,
    deferred: &mut Option<(Decision, Vec<u8>)>,
    reborn: &mut Option<Reborn>,
) {
    let table = change.table.table.clone();
    let Some(key) = key_of(&change, identity(&change)) else {
        return;
    };
    let new_key = key_of(&change, change.after.as_ref()).unwrap_or_else(|| key.clone());
    let first = chain.members.first() == Some(&i);
    let last = chain.members.last() == Some(&i);
    if let Some(r) = reborn {
        // The row is gone from the chain's first delete to its last
        // insert, as on the source; the decided row comes back there.
        if chain.first_delete == Some(i) {
            if let Some(d) = r.delete.take() {
                out.writes.push((d, origin.clone()));
            }
        }
        if chain.last_insert == Some(i) {
            if let Some(row) = r.row.take() {
                out.writes.push((
                    RowChange {
                        table: change.table.clone(),
                        op: Op::Insert,
                        before: None,
                        after: Some(row.row.clone()),
                        marker: row.marker.clone().unwrap_or_else(|| change.marker.clone()),
                    },
                    origin,
                ));
                states.insert((table, key), Local::Present(row));
            }
        }
        return;
    }
    if !following {
        // The decided write went in place of the first statement, or waits
        // for the last (a delete).
        if last && !first {
            if let Some((decision, net_key)) = deferred.take() {
                states.insert((table, net_key), decision.next);
                if let Some(w) = decision.write {
                    out.writes.push((w, origin));
                }
            }
        }
        return;
    }
    // The statement as the source made it, on the row its transaction's
    // earlier statements left here; the last one carries the decided
    // version.
    if last {
        if let Some((decision, net_key)) = deferred.take() {
            let marker = decision
                .write
                .as_ref()
                .map(|w| w.marker.clone())
                .unwrap_or_else(|| change.marker.clone());
            if new_key != key {
                states.insert((table.clone(), key.clone()), Local::Absent(None));
            }
            states.insert((table, net_key), decision.next);
            out.writes.push((with_marker(change, marker), origin));
        }
        return;
    }
    let marker = deferred
        .as_ref()
        .and_then(|(d, _)| d.write.as_ref().map(|w| w.marker.clone()))
        .unwrap_or_else(|| change.marker.clone());
    if new_key != key || change.op == Op::Delete {
        states.insert((table.clone(), key.clone()), Local::Absent(None));
    }
    let mut marker = marker;
    // Only the transaction's last version of the row flows back, if any.
    marker.resolution = Resolution::None;
    let write = with_marker(change, marker);
    if let Some(net) = deferred.as_ref().and_then(|(d, _)| d.write.clone()) {
        out.fallbacks.push((out.writes.len(), net));
    }
    if let Some(after) = &write.after {
        states.insert(
            (table, new_key),
            Local::Present(LocalRow {
                row: after.clone(),
                marker: Some(write.marker.clone()),
                stamp: Stamp::Synced,
            }),
        );
    }
    out.writes.push((write, origin));
}

/// A chain that deletes its row and inserts it again (sysbench's delete and
/// re-insert, parent and children replaced), decided with a conflict or a
/// change of its own (not `follows`): rather than the decided row written in
/// place of the chain's first statement, the target's row is deleted where
/// the source deleted it first and the decided row inserted where the
/// source inserted it last. The transaction's other statements then find
/// the row absent or present as the source did: a parent deleted and
/// inserted again after its children were deleted, while a child that met
/// a conflict stayed in place, was refused by the foreign key (and the
/// sites parted).
///
/// Only for a decision that writes a row its marker describes exactly
/// (`Stamp::Synced`), so that deleting and inserting it keeps the version it
/// is. A row the decision leaves alone (parked, stale) stays in place, and
/// the foreign-key case above is then refused and quarantined as before.
struct Reborn {
    /// The transient delete of the target's row, until written.
    delete: Option<RowChange>,
    /// The decided row, until written.
    row: Option<LocalRow>,
}

impl Reborn {
    fn of(chain: &Chain, net: &RowChange, local: &Local, decision: &Decision) -> Option<Reborn> {
        let (Some(first_delete), Some(last_insert)) = (chain.first_delete, chain.last_insert)
        else {
            return None;
        };
        // A decision that writes nothing (parked, stale, already the row)
        // leaves the target's row alone: a parked conflict would also be
        // taken for superseded by the write (`ConflictStore::applied`).
        if net.op == Op::Delete || last_insert < first_delete || decision.write.is_none() {
            return None;
        }
        let (Local::Present(now), Local::Present(next)) = (local, &decision.next) else {
            return None;
        };
        if next.stamp != Stamp::Synced || next.marker.is_none() {
            return None;
        }
        let mut marker = next.marker.clone()?;
        // Only the re-inserted row may flow back (a forwarded version).
        marker.resolution = Resolution::None;
        Some(Reborn {
            delete: Some(RowChange {
                table: net.table.clone(),
                op: Op::Delete,
                before: Some(now.row.clone()),
                after: None,
                marker,
            }),
            row: Some(next.clone()),
        })
    }
}

/// `change` written with `marker`, its checksum that of the row it writes
/// (kept from `marker` when the change does not carry every column: the
/// decided version's checksum covers the whole row).
fn with_marker(mut change: RowChange, mut marker: Marker) -> RowChange {
    if let Some(crc) = change
        .after
        .as_ref()
        .filter(|a| a.0.iter().all(Option::is_some))
        .and_then(|a| row_checksum(&change.table, a))
    {
        marker.crc = crc;
    }
    change.marker = marker;
    change
}

/// Does a decided write record a marker that does not describe the row it
/// leaves on the target? The row it leaves is its new image, over the row
/// it changes for an update (`before`: the target's row the decision saw;
/// the sink sets only the columns the new image carries). Checked only
/// where both are known in full and the marker has a checksum. `Some` with
/// the reason: a defect, which the site would later take for a row changed
/// behind duplex's back (`unsynced_local_edit`).
pub(crate) fn misdescribed(write: &RowChange) -> Option<String> {
    if write.op == Op::Delete || write.marker.crc == 0 {
        return None;
    }
    let after = write.after.as_ref()?;
    // Checked on every write: the row is only copied where an update's
    // unchanged columns must be filled in from its old image.
    let filled_in;
    let row = match write.op {
        Op::Update if after.0.iter().any(Option::is_none) => {
            filled_in = filled(after, write.before.as_ref());
            &filled_in
        }
        _ => after,
    };
    if !row.0.iter().all(Option::is_some) {
        return None;
    }
    let crc = row_checksum(&write.table, row)?;
    (crc != write.marker.crc).then(|| {
        format!(
            "the {} of {} {} records checksum {} in its marker, but leaves a row with checksum {crc}: {row:?}",
            write.op,
            write.table.table,
            crate::sink::describe_key(write),
            write.marker.crc,
        )
    })
}

#[cfg(test)]
mod tests {
    //! `resolve` on its own: a batch of incoming changes against given
    //! target states, as an applier decides it (the databases are in
    //! tests/scenarios/same_key_txn.rs and same_key_conflicts.rs).

    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::canonical::{ColumnSchema, Op, Row, RowChange, SourcePosition, TableName, Value};
    use crate::conflict::{ConflictKind, Local, LocalRow, Policy, Stamp, TablePolicy, Tombstone};
    use crate::marker::{Dot, Marker, Resolution, VersionVector, MARKER_FORMAT_VERSION};

    /// The target site; the source is site 1.
    const ME: u32 = 2;
    const SRC: u32 = 1;

    fn schema() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            table: TableName::new("public", "t"),
            columns: ["id", "a", "b"]
                .iter()
                .map(|n| ColumnSchema {
                    name: (*n).into(),
                    type_name: "integer".into(),
                })
                .collect(),
            key: vec![0],
        })
    }

    fn row(id: i64, a: i64, b: i64) -> Row {
        Row(vec![
            Some(Value::Int(id)),
            Some(Value::Int(a)),
            Some(Value::Int(b)),
        ])
    }

    /// A key-only old image (PostgreSQL replica identity DEFAULT).
    fn key_only(id: i64) -> Row {
        Row(vec![Some(Value::Int(id)), None, None])
    }

    fn vv(entries: &[(u32, u64, i64)]) -> VersionVector {
        VersionVector(
            entries
                .iter()
                .map(|&(s, c, t)| (s, Dot::at(c, t)))
                .collect(),
        )
    }

    fn marker(site: u32, vv: VersionVector, ts: i64) -> Marker {
        Marker {
            format: MARKER_FORMAT_VERSION,
            vv,
            site,
            ts,
            crc: 0,
            shape: 0,
            resolution: Resolution::None,
            cols: BTreeMap::new(),
        }
    }

    /// A change of source transaction `txn` (site 1, counter `txn`, time
    /// `t`) of a row whose marker column held `prior`.
    fn change(
        op: Op,
        before: Option<Row>,
        after: Option<Row>,
        prior: &VersionVector,
        txn: u64,
        t: i64,
    ) -> RowChange {
        let mut v = prior.clone();
        v.set(SRC, Dot::at(txn, t));
        RowChange {
            table: schema(),
            op,
            before,
            after,
            marker: marker(SRC, v, t),
        }
    }

    /// The withdrawn records by change index (all of transaction 20 here).
    fn withdrawn(r: &Resolved) -> Vec<(u32, ConflictKind)> {
        r.withdrawn
            .iter()
            .map(|(o, k)| {
                assert_eq!(o.position, SourcePosition::PgLsn(20));
                (o.index, *k)
            })
            .collect()
    }

    fn origin(txn: u64, index: u32) -> ChangeOrigin {
        ChangeOrigin::at(SourcePosition::PgLsn(txn), index)
    }

    fn synced(r: Row, v: VersionVector, site: u32, ts: i64) -> Local {
        Local::Present(LocalRow {
            row: r,
            marker: Some(marker(site, v, ts)),
            stamp: Stamp::Synced,
        })
    }

    fn key(id: i64) -> Vec<u8> {
        encode_key(&[Value::Int(id)])
    }

    fn run(
        policy: Policy,
        pending: Vec<(RowChange, ChangeOrigin)>,
        states: Vec<(i64, Local)>,
    ) -> Resolved {
        run_carried(policy, pending, states, &mut Carry::default(), true)
    }

    /// `complete`: the last transaction of `pending` ends in it.
    fn run_carried(
        policy: Policy,
        pending: Vec<(RowChange, ChangeOrigin)>,
        states: Vec<(i64, Local)>,
        carry: &mut Carry,
        complete: bool,
    ) -> Resolved {
        let table = schema().table.clone();
        let states: super::HashMap<(TableName, Vec<u8>), Local> = states
            .into_iter()
            .map(|(id, l)| ((table.clone(), key(id)), l))
            .collect();
        resolve(
            ME,
            |_| TablePolicy {
                policy,
                owners: BTreeMap::new(),
            },
            pending,
            states,
            1_000_000,
            carry,
            complete,
        )
    }

    /// The target's rows after the writes, as a sink applies them in order
    /// (key -> row; an update changes the columns its new image carries).
    fn apply(
        start: Vec<(i64, Row)>,
        writes: &[(RowChange, ChangeOrigin)],
    ) -> BTreeMap<Vec<u8>, Row> {
        let mut rows: BTreeMap<Vec<u8>, Row> =
            start.into_iter().map(|(id, r)| (key(id), r)).collect();
        let s = schema();
        for (w, _) in writes {
            let k = |r: &Row| encode_key(&r.key(&s).expect("key"));
            match w.op {
                Op::Insert => {
                    let a = w.after.clone().expect("insert image");
                    assert!(rows.insert(k(&a), a).is_none(), "insert of an existing key");
                }
                Op::Update => {
                    let a = w.after.as_ref().expect("update image");
                    let old = w.before.as_ref().map(k).unwrap_or_else(|| k(a));
                    if let Some(mut r) = rows.remove(&old) {
                        for (i, v) in a.0.iter().enumerate() {
                            if v.is_some() {
                                r.0[i] = v.clone();
                            }
                        }
                        rows.insert(k(&r), r);
                    }
                }
                Op::Delete => {
                    let b = w.before.as_ref().expect("delete image");
                    rows.remove(&k(b));
                }
            }
        }
        rows
    }

    /// Rows by their id, to apply more writes to.
    fn by_id(rows: BTreeMap<Vec<u8>, Row>) -> Vec<(i64, Row)> {
        rows.into_values()
            .map(|r| match r.0[0] {
                Some(Value::Int(id)) => (id, r),
                _ => panic!("no key"),
            })
            .collect()
    }

    /// The tombstones after a sink stored them (`write_tombstones`: the
    /// recorded ones, then the revived keys removed).
    fn tombstones_after(start: &[i64], out: &Resolved) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = start.iter().map(|&id| key(id)).collect();
        for (_, k, _) in &out.tombstones {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        for (_, k) in &out.revived {
            keys.retain(|x| x != k);
        }
        keys.sort();
        keys
    }

    /// Replica identity 'key': an update carries no old image and a delete
    /// only the key. An update then a delete of the row in one transaction
    /// deletes it (it was lost: the net change looked like a row created and
    /// removed again).
    #[test]
    fn key_identity_update_then_delete_deletes() {
        let prior = vv(&[(SRC, 10, 100)]);
        let pending = vec![
            (
                change(Op::Update, None, Some(row(5, 1, 0)), &prior, 20, 200),
                origin(20, 1),
            ),
            (
                change(Op::Delete, Some(key_only(5)), None, &prior, 20, 200),
                origin(20, 2),
            ),
        ];
        for policy in [Policy::LastWriterWins, Policy::Manual] {
            let out = run(
                policy,
                pending.clone(),
                vec![(5, synced(row(5, 0, 0), prior.clone(), SRC, 100))],
            );
            let rows = apply(vec![(5, row(5, 0, 0))], &out.writes);
            assert!(rows.is_empty(), "{policy:?}: the row stayed: {rows:?}");
            assert!(out.conflicts.is_empty(), "{policy:?}");
        }
    }

    /// Replica identity 'key': two updates of a row that a user deleted here
    /// meanwhile are an update of a deleted row (recorded), not the insert
    /// of a new one (applied without a record).
    #[test]
    fn key_identity_updates_of_a_row_deleted_here_are_recorded() {
        // The row was written here once: the source's vector holds this site.
        let prior = vv(&[(SRC, 10, 100), (ME, 15, 150)]);
        let pending = vec![
            (
                change(Op::Update, None, Some(row(5, 1, 0)), &prior, 20, 200),
                origin(20, 1),
            ),
            (
                change(Op::Update, None, Some(row(5, 2, 0)), &prior, 20, 200),
                origin(20, 2),
            ),
        ];
        let out = run(
            Policy::LastWriterWins,
            pending,
            vec![(5, Local::Absent(None))],
        );
        let kinds: Vec<ConflictKind> = out.conflicts.iter().map(|c| c.1.kind).collect();
        assert_eq!(kinds, vec![ConflictKind::UpdateDelete]);
        assert_eq!(out.conflicts[0].1.incoming.row, Some(row(5, 2, 0)));
        let rows = apply(vec![], &out.writes);
        assert_eq!(rows.get(&key(5)), Some(&row(5, 2, 0)));
    }

    /// Replica identity 'key': a delete carries only the key, so it applies
    /// without conflict detection (README, Limits). A delete and an insert of
    /// the key in one transaction (sysbench) is no conflict either, whatever
    /// versions the target's row had seen (it was compared by its vector,
    /// which knows nothing of the deleted row: a false update_update, parked
    /// under manual).
    #[test]
    fn key_identity_delete_then_insert_is_no_conflict() {
        // The target's row holds versions of both sites.
        let seen = vv(&[(SRC, 10, 100), (ME, 15, 150)]);
        let pending = vec![
            (
                change(
                    Op::Delete,
                    Some(key_only(5)),
                    None,
                    &VersionVector::default(),
                    20,
                    200,
                ),
                origin(20, 1),
            ),
            (
                change(
                    Op::Insert,
                    None,
                    Some(row(5, 7, 7)),
                    &VersionVector::default(),
                    20,
                    200,
                ),
                origin(20, 2),
            ),
        ];
        for policy in [Policy::LastWriterWins, Policy::Manual] {
            let out = run(
                policy,
                pending.clone(),
                vec![(5, synced(row(5, 0, 0), seen.clone(), ME, 150))],
            );
            assert!(
                out.conflicts.is_empty(),
                "{policy:?}: {:?}",
                out.conflicts.iter().map(|c| c.1.kind).collect::<Vec<_>>()
            );
            let rows = apply(vec![(5, row(5, 0, 0))], &out.writes);
            assert_eq!(rows.get(&key(5)), Some(&row(5, 7, 7)), "{policy:?}");
        }
    }

    /// Two source transactions in one batch: the first inserts a key that
    /// has a tombstone here, the second deletes it again. The key must end
    /// with the second delete's tombstone (the sinks record tombstones, then
    /// remove the revived keys' ones).
    #[test]
    fn tombstone_of_a_later_delete_outlives_an_earlier_revival() {
        let gone = Local::Absent(Some(Tombstone {
            vv: vv(&[(SRC, 10, 100)]),
            site: SRC,
            ts: 100,
        }));
        let none = VersionVector::default();
        let pending = vec![
            (
                change(Op::Insert, None, Some(row(5, 1, 1)), &none, 20, 200),
                origin(20, 1),
            ),
            (
                change(
                    Op::Delete,
                    Some(row(5, 1, 1)),
                    None,
                    &vv(&[(SRC, 20, 200)]),
                    30,
                    300,
                ),
                origin(30, 1),
            ),
        ];
        let out = run(Policy::LastWriterWins, pending, vec![(5, gone)]);
        assert!(apply(vec![], &out.writes).is_empty());
        assert_eq!(tombstones_after(&[5], &out), vec![key(5)]);
    }

    /// A chain that deletes and re-inserts its row, decided with a conflict
    /// (last writer wins: the target's later version stays): the target's
    /// row is deleted where the source deleted it and the decided row
    /// inserted where the source inserted it, so the statements in between
    /// (a parent deleted and inserted again, on a child) find the row gone
    /// as the source did. It was written in place of the delete, and stayed.
    #[test]
    fn a_deleted_and_reinserted_row_in_conflict_is_absent_in_between() {
        let prior = vv(&[(SRC, 10, 100)]);
        // Site 2's user changed row 5 later than the source's transaction.
        let local = Local::Present(LocalRow {
            row: row(5, 0, 9),
            marker: Some(marker(SRC, prior.clone(), 100)),
            stamp: Stamp::User { t: Some(300) },
        });
        let pending = vec![
            (
                change(Op::Delete, Some(row(5, 0, 0)), None, &prior, 20, 200),
                origin(20, 1),
            ),
            // Another row's statement between the two (a parent's delete).
            (
                change(Op::Delete, Some(row(6, 0, 0)), None, &prior, 20, 200),
                origin(20, 2),
            ),
            (
                change(
                    Op::Insert,
                    None,
                    Some(row(5, 1, 0)),
                    &VersionVector::default(),
                    20,
                    200,
                ),
                origin(20, 3),
            ),
        ];
        let out = run(
            Policy::LastWriterWins,
            pending,
            vec![
                (5, local),
                (6, synced(row(6, 0, 0), prior.clone(), SRC, 100)),
            ],
        );
        let kinds: Vec<ConflictKind> = out.conflicts.iter().map(|c| c.1.kind).collect();
        assert_eq!(kinds, vec![ConflictKind::UpdateUpdate]);
        let ops: Vec<(Op, Option<i64>)> = out
            .writes
            .iter()
            .map(|(w, _)| {
                let image = w.after.as_ref().or(w.before.as_ref()).expect("image");
                let id = match image.0[0] {
                    Some(Value::Int(id)) => Some(id),
                    _ => None,
                };
                (w.op, id)
            })
            .collect();
        assert_eq!(
            ops,
            vec![
                (Op::Delete, Some(5)),
                (Op::Delete, Some(6)),
                (Op::Insert, Some(5))
            ]
        );
        let rows = apply(vec![(5, row(5, 0, 9)), (6, row(6, 0, 0))], &out.writes);
        assert_eq!(rows.into_values().collect::<Vec<_>>(), vec![row(5, 0, 9)]);
        // The kept row is written with the version that has seen both.
        let inserted = &out.writes[2].0.marker;
        assert_eq!(inserted.site, ME);
        assert!(inserted.vv.get(SRC).is_some_and(|d| d.c == 20));
    }

    /// The target's states after `out` was written over `before` (what the
    /// sinks read back for the next batch).
    fn states_after(before: Vec<(i64, Local)>, out: &Resolved) -> Vec<(i64, Local)> {
        let mut states: BTreeMap<i64, Local> = before.into_iter().collect();
        for (w, _) in &out.writes {
            let image = w.after.as_ref().or(w.before.as_ref()).expect("image");
            let Some(Value::Int(id)) = image.0[0] else {
                panic!("key")
            };
            let next = match (w.op, states.remove(&id)) {
                (Op::Delete, _) => Local::Absent(None),
                (_, Some(Local::Present(mut lr))) => {
                    for (i, v) in w.after.as_ref().expect("image").0.iter().enumerate() {
                        if v.is_some() {
                            lr.row.0[i] = v.clone();
                        }
                    }
                    lr.marker = Some(w.marker.clone());
                    lr.stamp = Stamp::Synced;
                    Local::Present(lr)
                }
                _ => Local::Present(LocalRow {
                    row: w.after.clone().expect("image"),
                    marker: Some(w.marker.clone()),
                    stamp: Stamp::Synced,
                }),
            };
            states.insert(id, next);
        }
        for (_, k, t) in &out.tombstones {
            let id = (0..1000).find(|&i| &key(i) == k).expect("key");
            states.insert(id, Local::Absent(Some(t.clone())));
        }
        states.into_iter().collect()
    }

    /// One source transaction changes row 3 (an update, then a delete more
    /// than a batch later) while the target's user changed it concurrently.
    /// Site priority for the source: its update wins, but the transaction's
    /// net change is a delete, and a delete never wins against a concurrent
    /// write: the target keeps its row (and records one delete_update), as
    /// the source's side decides (it has no row: the target's version comes
    /// back). The delete followed the update's write as its successor: the
    /// row was deleted here, recreated there.
    #[test]
    fn a_conflict_is_decided_again_by_a_later_batch_of_the_transaction() {
        let prior = vv(&[(SRC, 10, 100)]);
        let mine = || {
            Local::Present(LocalRow {
                row: row(3, 0, 9),
                marker: Some(marker(SRC, prior.clone(), 100)),
                stamp: Stamp::User { t: Some(300) },
            })
        };
        let mut carry = Carry::default();
        let first = run_carried(
            Policy::SitePriority(SRC),
            vec![(
                change(
                    Op::Update,
                    Some(row(3, 0, 0)),
                    Some(row(3, 1, 0)),
                    &prior,
                    20,
                    200,
                ),
                origin(20, 1),
            )],
            vec![(3, mine())],
            &mut carry,
            false,
        );
        assert_eq!(first.conflicts[0].1.kind, ConflictKind::UpdateUpdate);
        let second = run_carried(
            Policy::SitePriority(SRC),
            vec![(
                change(Op::Delete, Some(row(3, 1, 0)), None, &prior, 20, 200),
                origin(20, 600),
            )],
            states_after(vec![(3, mine())], &first),
            &mut carry,
            true,
        );
        let kinds: Vec<(ConflictKind, u32)> = second
            .conflicts
            .iter()
            .map(|c| (c.1.kind, c.2.index))
            .collect();
        assert_eq!(kinds, vec![(ConflictKind::DeleteUpdate, 1)]);
        assert_eq!(
            withdrawn(&second),
            vec![(origin(20, 1).index, ConflictKind::UpdateUpdate)]
        );
        let rows = apply(
            by_id(apply(vec![(3, row(3, 0, 9))], &first.writes)),
            &second.writes,
        );
        assert_eq!(rows.into_values().collect::<Vec<_>>(), vec![row(3, 0, 9)]);
        assert!(tombstones_after(&[], &second).is_empty());
    }

    /// A version that must flow back (the target keeps its row against the
    /// transaction's delete) waits for the transaction's end: written
    /// flagged in one batch and changed again in a later one, both flagged
    /// versions reached the source with the transaction's one counter, and
    /// the source kept the first. Here the delete comes first (kept row, to
    /// forward), then the transaction inserts the row again and wins by
    /// priority: nothing flows back. And a row whose last word is the delete
    /// is forwarded once, at the transaction's end.
    #[test]
    fn a_carried_row_is_forwarded_once_at_the_end_of_its_transaction() {
        let prior = vv(&[(SRC, 10, 100)]);
        let mine = |id| {
            Local::Present(LocalRow {
                row: row(id, 0, 9),
                marker: Some(marker(SRC, prior.clone(), 100)),
                stamp: Stamp::User { t: Some(300) },
            })
        };
        let flagged = |out: &Resolved| {
            out.writes
                .iter()
                .filter(|(w, _)| w.marker.resolution == Resolution::Forward)
                .map(|(w, _)| (w.op, w.after.clone()))
                .collect::<Vec<_>>()
        };
        let start = vec![(1, mine(1)), (2, mine(2))];
        let mut carry = Carry::default();
        let first = run_carried(
            Policy::SitePriority(SRC),
            vec![
                (
                    change(Op::Delete, Some(row(1, 0, 0)), None, &prior, 20, 200),
                    origin(20, 1),
                ),
                (
                    change(
                        Op::Update,
                        Some(row(2, 0, 0)),
                        Some(row(2, 5, 5)),
                        &prior,
                        20,
                        200,
                    ),
                    origin(20, 2),
                ),
            ],
            start.clone(),
            &mut carry,
            false,
        );
        assert_eq!(
            flagged(&first),
            vec![],
            "nothing flagged while the transaction goes on"
        );
        let between = states_after(start.clone(), &first);
        let second = run_carried(
            Policy::SitePriority(SRC),
            vec![
                (
                    change(
                        Op::Insert,
                        None,
                        Some(row(1, 7, 7)),
                        &VersionVector::default(),
                        20,
                        200,
                    ),
                    origin(20, 700),
                ),
                (
                    change(Op::Delete, Some(row(2, 5, 5)), None, &prior, 20, 200),
                    origin(20, 701),
                ),
            ],
            between.clone(),
            &mut carry,
            false,
        );
        assert_eq!(flagged(&second), vec![]);
        // The transaction ends (an empty batch at the group's commit).
        let last = run_carried(Policy::SitePriority(SRC), vec![], vec![], &mut carry, true);
        assert_eq!(flagged(&last), vec![(Op::Update, Some(row(2, 0, 9)))]);
        let rows = apply(
            by_id(apply(
                by_id(apply(
                    vec![(1, row(1, 0, 9)), (2, row(2, 0, 9))],
                    &first.writes,
                )),
                &second.writes,
            )),
            &last.writes,
        );
        // Row 1: the transaction's row (priority); row 2: the kept row.
        assert_eq!(
            rows.into_values().collect::<Vec<_>>(),
            vec![row(1, 7, 7), row(2, 0, 9)]
        );
        let records: Vec<(ConflictKind, u32)> = first
            .conflicts
            .iter()
            .chain(&second.conflicts)
            .map(|c| (c.1.kind, c.2.index))
            .collect();
        assert_eq!(
            records,
            vec![
                (ConflictKind::DeleteUpdate, 1),
                (ConflictKind::UpdateUpdate, 2),
                (ConflictKind::UpdateUpdate, 1),
                (ConflictKind::DeleteUpdate, 2),
            ]
        );
        assert_eq!(
            withdrawn(&second),
            vec![
                (origin(20, 1).index, ConflictKind::DeleteUpdate),
                (origin(20, 2).index, ConflictKind::UpdateUpdate)
            ]
        );
    }

    /// A row inserted and updated in one transaction, applied as the source
    /// made it: were the insert refused (a constraint of the target only),
    /// its quarantine record is the transaction's net row, not the insert's.
    #[test]
    fn an_earlier_statement_of_a_following_chain_records_the_net_row() {
        let none = VersionVector::default();
        let out = run(
            Policy::LastWriterWins,
            vec![
                (
                    change(Op::Insert, None, Some(row(5, 1, 0)), &none, 20, 200),
                    origin(20, 1),
                ),
                (
                    change(
                        Op::Update,
                        Some(row(5, 1, 0)),
                        Some(row(5, 2, 0)),
                        &none,
                        20,
                        200,
                    ),
                    origin(20, 2),
                ),
            ],
            vec![],
        );
        assert!(out.conflicts.is_empty());
        let ops: Vec<Op> = out.writes.iter().map(|(w, _)| w.op).collect();
        assert_eq!(ops, vec![Op::Insert, Op::Update]);
        let fallbacks: Vec<(usize, Option<Row>)> = out
            .fallbacks
            .iter()
            .map(|(i, w)| (*i, w.after.clone()))
            .collect();
        assert_eq!(fallbacks, vec![(0, Some(row(5, 2, 0)))]);
    }

    /// A small deterministic generator for the model below.
    struct Gen(u64);

    impl Gen {
        fn below(&mut self, n: u64) -> u64 {
            // xorshift64*
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n.max(1)
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// Who wrote a row of the model target, as the PostgreSQL sink tells it
    /// (`PgTarget::stamp`): a user (commit time), or the applier, in a
    /// committed transaction or in the open one.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Writer {
        User(i64),
        Applier { committed: bool },
    }

    #[derive(Debug, Clone)]
    struct ModelRow {
        row: Row,
        marker: Option<Marker>,
        writer: Writer,
    }

    /// The model target: rows and tombstones by id.
    #[derive(Debug, Clone, Default)]
    struct Target {
        rows: BTreeMap<i64, ModelRow>,
        tombstones: BTreeMap<i64, Tombstone>,
        /// The keys whose rows the open target transaction has locked.
        locked: std::collections::BTreeSet<i64>,
    }

    fn id_of(r: &Row) -> i64 {
        match r.0[0] {
            Some(Value::Int(id)) => id,
            _ => panic!("no key"),
        }
    }

    fn crc_of(r: &Row) -> u32 {
        row_checksum(&schema(), r).expect("checksum")
    }

    impl Target {
        /// What the sink reads back for the keys of `pending`.
        fn read(&mut self, pending: &[(RowChange, ChangeOrigin)]) -> Vec<(i64, Local)> {
            let mut out = Vec::new();
            for (_, keys) in keys_by_table(pending) {
                for k in keys {
                    let Value::Int(id) = k.values[0] else {
                        panic!("key")
                    };
                    let local = match self.rows.get(&id) {
                        Some(m) => {
                            // FOR UPDATE
                            self.locked.insert(id);
                            let stamp = match m.writer {
                                Writer::User(t) => Stamp::User { t: Some(t) },
                                Writer::Applier { committed: true } => Stamp::Synced,
                                // No commit timestamp yet: the checksum decides.
                                Writer::Applier { committed: false } => {
                                    if m.marker
                                        .as_ref()
                                        .is_some_and(|mk| mk.crc != 0 && mk.crc == crc_of(&m.row))
                                    {
                                        Stamp::Synced
                                    } else {
                                        Stamp::User { t: None }
                                    }
                                }
                            };
                            Local::Present(LocalRow {
                                row: m.row.clone(),
                                marker: m.marker.clone(),
                                stamp,
                            })
                        }
                        None => Local::Absent(self.tombstones.get(&id).cloned()),
                    };
                    out.push((id, local));
                }
            }
            out
        }

        /// The writes as the PostgreSQL sink executes them: an update sets
        /// the columns its new image carries (and the marker), on the row
        /// found by its old key. A write the target refuses (an insert of a
        /// key a user inserted meanwhile) is quarantined, and so are the
        /// batch's later writes of its row that set only some columns
        /// (`applier::Refused`); one that finds no row changes nothing; all
        /// are counted in `missed`.
        fn write(&mut self, out: &Resolved, carry: &mut Carry, missed: &mut u64) {
            // As the sinks keep it (`applier::Refused`).
            let mut refused = crate::sink::applier::Refused::default();
            for (w, _) in &out.writes {
                if refused.follows(w) {
                    refused.record(w);
                    carry.forget_row(w);
                    *missed += 1;
                    continue;
                }
                match w.op {
                    Op::Insert => {
                        let a = w.after.clone().expect("insert image");
                        let id = id_of(&a);
                        self.locked.insert(id);
                        if self.rows.contains_key(&id) {
                            // The target refuses it (a unique key).
                            refused.record(w);
                            carry.forget_row(w);
                            *missed += 1;
                            continue;
                        }
                        self.rows.insert(
                            id,
                            ModelRow {
                                row: a,
                                marker: Some(w.marker.clone()),
                                writer: Writer::Applier { committed: false },
                            },
                        );
                    }
                    Op::Update => {
                        let a = w.after.as_ref().expect("update image");
                        let id = id_of(w.before.as_ref().unwrap_or(a));
                        self.locked.insert(id);
                        let Some(mut m) = self.rows.remove(&id) else {
                            *missed += 1;
                            continue;
                        };
                        for (i, v) in a.0.iter().enumerate() {
                            if v.is_some() {
                                m.row.0[i] = v.clone();
                            }
                        }
                        m.marker = Some(w.marker.clone());
                        m.writer = Writer::Applier { committed: false };
                        let new_id = id_of(&m.row);
                        self.locked.insert(new_id);
                        if self.rows.contains_key(&new_id) {
                            panic!("key change onto existing key {new_id}");
                        }
                        self.rows.insert(new_id, m);
                    }
                    Op::Delete => {
                        let b = w.before.as_ref().expect("delete image");
                        self.locked.insert(id_of(b));
                        if self.rows.remove(&id_of(b)).is_none() {
                            *missed += 1;
                        }
                    }
                }
            }
            for (_, k, t) in &out.tombstones {
                let id = (0..100).find(|&i| &key(i) == k).expect("key");
                self.tombstones.insert(id, t.clone());
            }
            for (_, k) in &out.revived {
                let id = (0..100).find(|&i| &key(i) == k).expect("key");
                self.tombstones.remove(&id);
            }
        }

        /// A user's transaction on a key the applier's open transaction
        /// holds no lock on (a row it has neither read nor written, or a
        /// key it found free): commits at once, in the user's time.
        fn interfere(&mut self, g: &mut Gen) {
            let id = g.below(MODEL_KEYS as u64) as i64;
            if self.locked.contains(&id) {
                return;
            }
            let value = Some(Value::Int(g.below(3) as i64));
            match self.rows.get_mut(&id) {
                Some(m) => {
                    m.row.0[1] = value;
                    m.row.0[2] = Some(Value::Int(8));
                    m.writer = Writer::User(400);
                }
                None => {
                    self.rows.insert(
                        id,
                        ModelRow {
                            row: Row(vec![Some(Value::Int(id)), value, Some(Value::Int(8))]),
                            marker: None,
                            writer: Writer::User(400),
                        },
                    );
                }
            }
        }

        /// Every row the applier wrote is described by its marker: read
        /// back, it is the version the marker names, not a local edit.
        fn misdescribed(&self) -> Vec<(i64, ModelRow)> {
            self.rows
                .iter()
                .filter(|(_, m)| matches!(m.writer, Writer::Applier { .. }))
                .filter(|(_, m)| {
                    m.marker
                        .as_ref()
                        .is_some_and(|mk| mk.crc != 0 && mk.crc != crc_of(&m.row))
                })
                .map(|(id, m)| (*id, m.clone()))
                .collect()
        }
    }

    const MODEL_KEYS: i64 = 4;

    /// One source transaction of `txn` (time `t`) on the source's rows
    /// (id -> row and the vector its marker column holds), as its change
    /// stream carries it: complete new images; old images complete (replica
    /// identity full) or, now and then, the key only.
    fn source_txn(
        g: &mut Gen,
        source: &mut BTreeMap<i64, (Row, VersionVector)>,
        txn: u64,
        t: i64,
    ) -> Vec<(RowChange, ChangeOrigin)> {
        let mut out = Vec::new();
        let n = 1 + g.below(6);
        for index in 0..n {
            let id = g.below(MODEL_KEYS as u64) as i64;
            let value = g.below(3) as i64;
            let old_image = |g: &mut Gen, r: &Row| {
                if g.chance(20) {
                    key_only(id_of(r))
                } else {
                    r.clone()
                }
            };
            let (op, before, after, prior) = match source.get(&id).cloned() {
                None => {
                    let r = row(id, value, g.below(3) as i64);
                    source.insert(id, (r.clone(), VersionVector::default()));
                    (Op::Insert, None, Some(r), VersionVector::default())
                }
                Some((old, prior)) => match g.below(4) {
                    0 => {
                        source.remove(&id);
                        (Op::Delete, Some(old_image(g, &old)), None, prior)
                    }
                    1 => {
                        // The key moves (to a free key), its marker with it.
                        let to = g.below(MODEL_KEYS as u64) as i64;
                        if source.contains_key(&to) {
                            continue;
                        }
                        let mut r = old.clone();
                        r.0[0] = Some(Value::Int(to));
                        source.remove(&id);
                        source.insert(to, (r.clone(), prior.clone()));
                        (Op::Update, Some(old.clone()), Some(r), prior)
                    }
                    _ => {
                        let mut r = old.clone();
                        r.0[1 + g.below(2) as usize] = Some(Value::Int(value));
                        source.insert(id, (r.clone(), prior.clone()));
                        (Op::Update, Some(old_image(g, &old)), Some(r), prior)
                    }
                },
            };
            out.push((
                change(op, before, after, &prior, txn, t),
                origin(txn, index as u32 + 1),
            ));
        }
        out
    }

    /// The target's and the source's state of one key before the
    /// transaction: the version both have, a concurrent one on either side,
    /// a row flagged to flow back, tombstones.
    fn model_start(
        g: &mut Gen,
        target: &mut Target,
        source: &mut BTreeMap<i64, (Row, VersionVector)>,
    ) {
        let common = vv(&[(SRC, 5, 50)]);
        for id in 0..MODEL_KEYS {
            let content = row(id, g.below(3) as i64, g.below(3) as i64);
            let source_has = g.chance(70);
            if source_has {
                source.insert(id, (content.clone(), common.clone()));
            }
            let synced = |r: Row, site: u32, v: VersionVector, ts: i64| ModelRow {
                marker: Some(Marker {
                    crc: crc_of(&r),
                    ..marker(site, v, ts)
                }),
                row: r,
                writer: Writer::Applier { committed: true },
            };
            let edited = row(id, g.below(3) as i64, 7);
            match g.below(7) {
                0 => {}
                1 => {
                    target.tombstones.insert(
                        id,
                        Tombstone {
                            vv: common.clone(),
                            site: SRC,
                            ts: 50,
                        },
                    );
                }
                2 => {
                    // Deleted here concurrently, by a version of this site.
                    let mut v = common.clone();
                    v.set(ME, Dot::at(0, 150));
                    target.tombstones.insert(
                        id,
                        Tombstone {
                            vv: v,
                            site: ME,
                            ts: 150,
                        },
                    );
                }
                3 => {
                    target
                        .rows
                        .insert(id, synced(content, SRC, common.clone(), 50));
                }
                4 => {
                    // A version of this site that flows back (a kept row).
                    let mut v = common.clone();
                    v.set(ME, Dot::at(0, 150));
                    let mut m = synced(edited, ME, v, 150);
                    if let Some(mk) = m.marker.as_mut() {
                        mk.resolution = Resolution::Forward;
                    }
                    target.rows.insert(id, m);
                }
                _ => {
                    // A user's edit here, earlier or later than the source's.
                    let t = if g.chance(50) { 100 } else { 300 };
                    target.rows.insert(
                        id,
                        ModelRow {
                            row: edited,
                            marker: Some(Marker {
                                crc: crc_of(&content),
                                ..marker(SRC, common.clone(), 50)
                            }),
                            writer: Writer::User(t),
                        },
                    );
                }
            }
        }
    }

    /// Random source transactions over a few keys, each split over one to
    /// three batches (`Carry` across them), against random target states
    /// (concurrent versions, rows flagged to flow back, tombstones), under
    /// every policy: every row the applier writes reads back as the version
    /// its marker describes, and every write's marker describes the row it
    /// leaves (`misdescribed`).
    #[test]
    fn written_rows_are_the_versions_their_markers_describe() {
        let policies = [
            Policy::LastWriterWins,
            Policy::SitePriority(SRC),
            Policy::SitePriority(ME),
            Policy::Manual,
            Policy::FieldMerge {
                tie: crate::conflict::Tie::LastWriterWins,
            },
        ];
        let (mut stats_conflicts, mut stats_batches, mut stats_errors) = (0, 0, 0);
        for seed in 1..=20_000u64 {
            let mut g = Gen(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let policy = policies[g.below(policies.len() as u64) as usize];
            let mut target = Target::default();
            let mut source = BTreeMap::new();
            model_start(&mut g, &mut target, &mut source);
            let start = target.clone();
            let mut txns = vec![source_txn(&mut g, &mut source, 20, 200)];
            if g.chance(40) {
                txns.push(source_txn(&mut g, &mut source, 30, 250));
            }
            // Batches: each transaction cut in up to three parts; a part may
            // share its batch with the next transaction's first part.
            let mut batches: Vec<(Vec<(RowChange, ChangeOrigin)>, bool)> = Vec::new();
            for txn in txns {
                let len = txn.len();
                let mut cuts: Vec<usize> = (0..g.below(3))
                    .map(|_| 1 + g.below(len as u64) as usize)
                    .filter(|&c| c < len)
                    .collect();
                cuts.sort();
                cuts.dedup();
                let mut parts = Vec::new();
                let mut from = 0;
                for c in cuts.into_iter().chain([len]) {
                    parts.push(txn[from..c].to_vec());
                    from = c;
                }
                let joins = !batches.is_empty() && g.chance(50);
                for (i, part) in parts.into_iter().enumerate() {
                    if i == 0 && joins {
                        let (b, complete) = batches.last_mut().expect("batch");
                        b.extend(part);
                        *complete = false;
                    } else {
                        batches.push((part, false));
                    }
                }
                // The transaction's last part ends it.
                if let Some((_, complete)) = batches.last_mut() {
                    *complete = true;
                }
            }
            let mut carry = Carry::default();
            let mut log = Vec::new();
            let users = g.chance(50);
            for (pending, complete) in batches {
                let states = target.read(&pending);
                let out = run_carried(
                    policy,
                    pending.clone(),
                    states.clone(),
                    &mut carry,
                    complete,
                );
                log.push(format!(
                    "batch (complete {complete}):\n  pending {:?}\n  states {:?}\n  writes {:?}",
                    pending
                        .iter()
                        .map(|(c, _)| (c.op, &c.before, &c.after))
                        .collect::<Vec<_>>(),
                    states,
                    out.writes
                        .iter()
                        .map(|(w, _)| (w.op, &w.before, &w.after, &w.marker))
                        .collect::<Vec<_>>(),
                ));
                for (w, _) in &out.writes {
                    if let Some(why) = misdescribed(w) {
                        panic!(
                            "seed {seed} {policy:?}: {why}\nstart {start:?}\n{}",
                            log.join("\n")
                        );
                    }
                }
                stats_conflicts += out.conflicts.len();
                stats_batches += 1;
                if users {
                    // Between the applier's read and its statements.
                    target.interfere(&mut g);
                }
                target.write(&out, &mut carry, &mut stats_errors);
                if users && g.chance(50) {
                    target.interfere(&mut g);
                }
                let bad = target.misdescribed();
                assert!(
                    bad.is_empty(),
                    "seed {seed} {policy:?}: rows whose marker does not describe them: {bad:?}\nstart {start:?}\n{}",
                    log.join("\n")
                );
            }
        }
        // The model reaches what it is for: conflicts, and writes the target
        // refuses (or that follow a refused one).
        assert!(
            stats_conflicts > 1000 && stats_errors > 100 && stats_batches > 20_000,
            "{stats_conflicts} conflicts, {stats_errors} refused writes, {stats_batches} batches"
        );
    }
}
