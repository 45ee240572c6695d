//! The engine-independent half of conflict handling in a sink: which keys a
//! batch of incoming changes touches, and, given the target's state for those
//! keys, what to write (`conflict::decide` per change, in order, each decision
//! seeing the state the previous ones left).

use std::collections::HashMap;
use std::sync::Arc;

use crate::canonical::encode::encode_value;
use crate::canonical::{Op, Row, RowChange, TableName, TableSchema, Value};
use crate::conflict::{decide, Conflict, Local, TablePolicy, Tombstone};
use crate::sink::quarantine::ChangeOrigin;

/// Now, in µs since the Unix epoch: the time of versions an applier creates.
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

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
    let mut seen: HashMap<(TableName, Vec<u8>), ()> = HashMap::new();
    for (change, _) in pending {
        for image in [change.before.as_ref(), change.after.as_ref()]
            .into_iter()
            .flatten()
        {
            let Some(values) = image.key(&change.table) else {
                continue;
            };
            let encoded = encode_key(&values);
            if seen
                .insert((change.table.table.clone(), encoded.clone()), ())
                .is_some()
            {
                continue;
            }
            let key = KeyRef { encoded, values };
            match out.iter_mut().find(|(s, _)| s.table == change.table.table) {
                Some((_, keys)) => keys.push(key),
                None => out.push((change.table.clone(), vec![key])),
            }
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
    pub stale: u64,
}

fn key_of(change: &RowChange, image: Option<&Row>) -> Option<Vec<u8>> {
    image
        .and_then(|r| r.key(&change.table))
        .map(|v| encode_key(&v))
}

/// Decide every change in order. `states` holds the target's state for every
/// key of [`keys_by_table`] (absent keys count as never seen).
pub(crate) fn resolve(
    me: u32,
    policy_of: impl Fn(&TableName) -> TablePolicy,
    pending: Vec<(RowChange, ChangeOrigin)>,
    mut states: HashMap<(TableName, Vec<u8>), Local>,
    now_us: i64,
) -> Resolved {
    let mut out = Resolved::default();
    let mut policies: HashMap<TableName, TablePolicy> = HashMap::new();
    for (change, origin) in pending {
        let table = change.table.table.clone();
        let policy = policies
            .entry(table.clone())
            .or_insert_with(|| policy_of(&table));
        let identity = match change.op {
            Op::Insert => change.after.as_ref(),
            _ => change.before.as_ref().or(change.after.as_ref()),
        };
        let Some(key) = key_of(&change, identity) else {
            // No key (cannot happen for tables with a primary key): apply as is.
            out.writes.push((change, origin));
            continue;
        };
        let new_key = key_of(&change, change.after.as_ref()).unwrap_or_else(|| key.clone());
        // Taken out: the decision's `next` state replaces it below.
        let local = states
            .remove(&(table.clone(), key.clone()))
            .unwrap_or(Local::Absent(None));
        let had_tombstone = matches!(local, Local::Absent(Some(_)));
        let decision = decide(me, policy, &change, &local, now_us);
        if decision.stale {
            out.stale += 1;
        }
        if !decision.conflicts.is_empty() {
            let described = crate::sink::describe_key(&change);
            for c in decision.conflicts {
                out.conflicts
                    .push((change.table.clone(), c, origin.clone(), described.clone()));
            }
        }
        if let Some(t) = decision.tombstone.clone() {
            out.tombstones.push((change.table.clone(), key.clone(), t));
        }
        if let Some(w) = &decision.write {
            if w.op != Op::Delete && had_tombstone {
                out.revived.push((change.table.clone(), key.clone()));
            }
        }
        if new_key != key {
            states.insert((table.clone(), key.clone()), Local::Absent(None));
        }
        states.insert((table, new_key), decision.next);
        if let Some(w) = decision.write {
            out.writes.push((w, origin));
        }
    }
    out
}
