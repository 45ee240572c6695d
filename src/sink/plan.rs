//! The decided writes of one round arranged into multi-row statements.
//!
//! Under an OLTP load a round holds many small source transactions whose
//! writes alternate between operations and tables (an UPDATE, an INSERT, an
//! UPDATE, ...). Taken in order, every write would be a statement of its
//! own. A write may join an earlier statement of its table, operation and
//! column shape when nothing between that statement and the write touches
//! the write's row: the rows a round writes are already decided and locked,
//! so only each row's own order matters, and writes of different rows
//! commute, unless the table has a constraint or trigger across rows (a
//! unique index besides the key, a foreign key the target checks, triggers
//! that fire): then the target says to keep its writes in order
//! ([`WriteRules::keep_order`]) and they only join the round's last
//! statement; where its statements run triggers that may touch other tables
//! (triggers that fire, foreign-key actions), no later write of any table
//! moves before them ([`WriteRules::barrier`]). Columns the target fills
//! itself (a sequence default, `clock_timestamp()`) may then be filled in
//! another order than the source's: they are the target's own values
//! either way.

use rustc_hash::FxHashMap as HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::canonical::{ChangeOrigin, Op, RowChange};
use crate::sink::target::Batch;

/// What the target allows a write's statement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteRules {
    /// Most rows of this shape in one statement (1: alone).
    pub max_rows: usize,
    /// Writes of this table keep their order in the round.
    pub keep_order: bool,
    /// The table's statements run triggers that may read or write other
    /// tables (its triggers fire; foreign-key actions run): no later write
    /// of any table moves before them.
    pub barrier: bool,
}

/// The statements of one round, in the order they are to run.
#[derive(Default)]
pub(crate) struct StatementPlan {
    batches: Vec<Batch>,
    /// Per row (hash of table and key): the last statement that writes it.
    /// Two rows sharing a hash only keep an order they did not need.
    last_write: HashMap<u64, usize>,
    /// Writes planned so far (their sequence numbers).
    writes: usize,
    /// The first statement a write may join: the one after the last
    /// statement of a barrier table ([`WriteRules::barrier`]).
    barrier: usize,
}

impl StatementPlan {
    /// Plan the next decided write of the round; `shape`: the columns it
    /// writes (`sink::shape_of`, which the rules were asked for).
    pub fn push(
        &mut self,
        change: RowChange,
        shape: Vec<usize>,
        origin: ChangeOrigin,
        fallback: Option<RowChange>,
        rules: WriteRules,
    ) {
        let rows = row_hashes(&change);
        // Compared by value, not by hash: a key change must never pass for
        // an unchanged key (its statement sets the key columns).
        let key_changed = change.op == Op::Update
            && match (&change.before, &change.after) {
                (Some(b), Some(a)) => b.key(&change.table) != a.key(&change.table),
                _ => false,
            };
        // A key change goes alone, so that swapped keys never meet in one
        // statement.
        let alone = rules.max_rows <= 1 || key_changed;
        let after = rows
            .iter()
            .filter_map(|h| self.last_write.get(h).copied())
            .max();
        let fits = |b: &Batch| {
            Arc::ptr_eq(&b.table, &change.table)
                && !b.key_changed
                && b.op == change.op
                && b.shape == shape
                && b.rows.len() < rules.max_rows
        };
        let joined = if alone {
            None
        } else if rules.keep_order {
            self.batches
                .len()
                .checked_sub(1)
                .filter(|&last| fits(&self.batches[last]) && after.is_none_or(|a| a < last))
        } else {
            let from = after.map_or(0, |a| a + 1).max(self.barrier);
            (from..self.batches.len()).find(|&i| fits(&self.batches[i]))
        };
        let index = match joined {
            Some(i) => i,
            None => {
                self.batches.push(Batch {
                    table: change.table.clone(),
                    op: change.op,
                    shape,
                    rows: Vec::new(),
                    key_changed,
                    origins: Vec::new(),
                    fallbacks: Vec::new(),
                    seq: Vec::new(),
                });
                self.batches.len() - 1
            }
        };
        for h in rows {
            self.last_write.insert(h, index);
        }
        if rules.barrier {
            self.barrier = self.barrier.max(index + 1);
        }
        let batch = &mut self.batches[index];
        batch.rows.push(change);
        batch.origins.push(origin);
        batch.fallbacks.push(fallback);
        batch.seq.push(self.writes);
        self.writes += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The statements, in the order they are to run.
    pub fn into_batches(self) -> Vec<Batch> {
        self.batches
    }
}

/// The rows a write touches, hashed with their table: the row it finds and,
/// for a key change, the one it leaves (two entries only then).
fn row_hashes(change: &RowChange) -> Vec<u64> {
    let mut out: Vec<u64> = Vec::with_capacity(2);
    for image in [change.before.as_ref(), change.after.as_ref()]
        .into_iter()
        .flatten()
    {
        let Some(key) = image.key(&change.table) else {
            continue;
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        change.table.table.hash(&mut h);
        crate::sink::resolve::encode_key(&key).hash(&mut h);
        let h = h.finish();
        if !out.contains(&h) {
            out.push(h);
        }
    }
    out
}

/// The writes of `batches` (from index `from`) in the order they were
/// decided: (statement, row) pairs, to apply one by one.
pub(crate) fn in_decided_order(batches: &[Batch], from: usize) -> Vec<(usize, usize)> {
    let mut order: Vec<(usize, usize, usize)> = batches
        .iter()
        .enumerate()
        .skip(from)
        .flat_map(|(b, batch)| batch.seq.iter().enumerate().map(move |(r, &s)| (s, b, r)))
        .collect();
    order.sort_unstable();
    order.into_iter().map(|(_, b, r)| (b, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::{ColumnSchema, Row, TableName, TableSchema, Value};
    use crate::marker::Marker;

    fn table(name: &str) -> Arc<TableSchema> {
        Arc::new(TableSchema {
            table: TableName::new("public", name),
            columns: ["id", "v"]
                .iter()
                .map(|n| ColumnSchema {
                    name: (*n).into(),
                    type_name: "text".into(),
                })
                .collect(),
            key: vec![0],
        })
    }

    fn row(id: i64, v: &str) -> Row {
        Row(vec![Some(Value::Int(id)), Some(Value::Text(v.into()))])
    }

    fn change(t: &Arc<TableSchema>, op: Op, before: Option<i64>, after: Option<i64>) -> RowChange {
        RowChange {
            table: t.clone(),
            op,
            before: before.map(|k| row(k, "old")),
            after: after.map(|k| row(k, "new")),
            marker: Marker::default(),
        }
    }

    const REORDER: WriteRules = WriteRules {
        max_rows: 100,
        keep_order: false,
        barrier: false,
    };
    const IN_ORDER: WriteRules = WriteRules {
        max_rows: 100,
        keep_order: true,
        barrier: false,
    };
    const BARRIER: WriteRules = WriteRules {
        max_rows: 100,
        keep_order: true,
        barrier: true,
    };

    fn plan(writes: Vec<RowChange>, rules: WriteRules) -> Vec<Batch> {
        let mut p = StatementPlan::default();
        for w in writes {
            let shape = crate::sink::shape_of(&w);
            p.push(w, shape, ChangeOrigin::outside_stream(), None, rules);
        }
        p.into_batches()
    }

    fn shape(batches: &[Batch]) -> Vec<(Op, Vec<usize>)> {
        batches.iter().map(|b| (b.op, b.seq.clone())).collect()
    }

    #[test]
    fn alternating_updates_and_inserts_of_other_rows_make_two_statements() {
        let t = table("t");
        let mut writes = Vec::new();
        for i in 0..4 {
            writes.push(change(&t, Op::Update, Some(i), Some(i)));
            writes.push(change(&t, Op::Insert, None, Some(100 + i)));
        }
        let batches = plan(writes, REORDER);
        assert_eq!(
            shape(&batches),
            vec![
                (Op::Update, vec![0, 2, 4, 6]),
                (Op::Insert, vec![1, 3, 5, 7])
            ]
        );
    }

    #[test]
    fn a_rows_writes_keep_their_order() {
        let t = table("t");
        // Insert 1, update 2, delete 1, update 3, insert 1 again.
        let writes = vec![
            change(&t, Op::Insert, None, Some(1)),
            change(&t, Op::Update, Some(2), Some(2)),
            change(&t, Op::Delete, Some(1), None),
            change(&t, Op::Update, Some(3), Some(3)),
            change(&t, Op::Insert, None, Some(1)),
        ];
        let batches = plan(writes, REORDER);
        // The delete of 1 comes after its insert; the second insert of 1
        // after the delete, in a statement of its own.
        assert_eq!(
            shape(&batches),
            vec![
                (Op::Insert, vec![0]),
                (Op::Update, vec![1, 3]),
                (Op::Delete, vec![2]),
                (Op::Insert, vec![4]),
            ]
        );
    }

    #[test]
    fn a_key_change_goes_alone_and_orders_both_its_rows() {
        let t = table("t");
        let writes = vec![
            change(&t, Op::Insert, None, Some(5)),
            change(&t, Op::Update, Some(1), Some(2)),
            change(&t, Op::Insert, None, Some(1)),
            change(&t, Op::Insert, None, Some(6)),
            change(&t, Op::Update, Some(2), Some(2)),
        ];
        let batches = plan(writes, REORDER);
        assert_eq!(
            shape(&batches),
            vec![
                (Op::Insert, vec![0, 3]),
                (Op::Update, vec![1]),
                (Op::Insert, vec![2]),
                (Op::Update, vec![4]),
            ]
        );
    }

    #[test]
    fn a_table_that_keeps_order_only_joins_the_last_statement() {
        let t = table("t");
        let writes = vec![
            change(&t, Op::Update, Some(1), Some(1)),
            change(&t, Op::Insert, None, Some(2)),
            change(&t, Op::Update, Some(3), Some(3)),
            change(&t, Op::Update, Some(4), Some(4)),
        ];
        let batches = plan(writes, IN_ORDER);
        assert_eq!(
            shape(&batches),
            vec![
                (Op::Update, vec![0]),
                (Op::Insert, vec![1]),
                (Op::Update, vec![2, 3]),
            ]
        );
    }

    #[test]
    fn tables_interleave_and_a_full_statement_starts_another() {
        let (t, u) = (table("t"), table("u"));
        let rules = WriteRules {
            max_rows: 2,
            keep_order: false,
            barrier: false,
        };
        let writes = vec![
            change(&t, Op::Insert, None, Some(1)),
            change(&u, Op::Insert, None, Some(1)),
            change(&t, Op::Insert, None, Some(2)),
            change(&u, Op::Insert, None, Some(2)),
            change(&t, Op::Insert, None, Some(3)),
        ];
        let batches = plan(writes, rules);
        assert_eq!(
            shape(&batches),
            vec![
                (Op::Insert, vec![0, 2]),
                (Op::Insert, vec![1, 3]),
                (Op::Insert, vec![4]),
            ]
        );
        assert_eq!(
            in_decided_order(&batches, 0),
            vec![(0, 0), (1, 0), (0, 1), (1, 1), (2, 0)]
        );
        assert_eq!(in_decided_order(&batches, 1), vec![(1, 0), (1, 1), (2, 0)]);
    }

    /// A parent whose triggers fire (a cascading foreign key runs in the
    /// origin role): a child insert decided after the parent's delete and
    /// insert must not move before them, or the cascade would delete it.
    #[test]
    fn no_write_moves_before_a_statement_whose_triggers_fire() {
        let (child, parent) = (table("child"), table("parent"));
        let mut p = StatementPlan::default();
        let mut push = |c: RowChange, rules| {
            let shape = crate::sink::shape_of(&c);
            p.push(c, shape, ChangeOrigin::outside_stream(), None, rules)
        };
        push(change(&child, Op::Insert, None, Some(9)), REORDER);
        push(change(&parent, Op::Delete, Some(5), None), BARRIER);
        push(change(&parent, Op::Insert, None, Some(5)), BARRIER);
        push(change(&child, Op::Insert, None, Some(7)), REORDER);
        assert_eq!(
            shape(&p.into_batches()),
            vec![
                (Op::Insert, vec![0]),
                (Op::Delete, vec![1]),
                (Op::Insert, vec![2]),
                (Op::Insert, vec![3]),
            ]
        );
    }

    #[test]
    fn an_update_without_an_old_image_keeps_its_key() {
        let t = table("t");
        let mut update = change(&t, Op::Update, None, Some(1));
        update.before = None;
        let batches = plan(
            vec![update, change(&t, Op::Update, Some(2), Some(2))],
            REORDER,
        );
        assert_eq!(shape(&batches), vec![(Op::Update, vec![0, 1])]);
        assert!(!batches[0].key_changed);
    }
}
