//! The decision function on its own, and a two-site model: random user writes
//! on both sides, changes delivered in random interleavings, both sides
//! deciding with [`decide`] exactly as the appliers do. At quiescence both
//! sides must hold the same rows.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::canonical::encode::row_checksum;
use crate::canonical::{ColumnSchema, TableName};

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

/// One site of the model.
#[derive(Default, Clone)]
struct Site {
    id: u32,
    /// The table is under field merge: the source tags columns.
    field_merge: bool,
    rows: BTreeMap<i64, LocalRow>,
    tombstones: BTreeMap<i64, Tombstone>,
    /// The site's commit-position counter.
    counter: u64,
    /// Captured changes not yet delivered to the peer.
    outbox: VecDeque<RowChange>,
    conflicts: Vec<Conflict>,
}

impl Site {
    fn new(id: u32) -> Site {
        Site {
            id,
            ..Site::default()
        }
    }

    fn next_dot(&mut self, t: i64) -> Dot {
        self.counter += 10;
        Dot::at(self.counter, t)
    }

    /// What the source captures for a user write: the marker column's vector
    /// with the own entry set (the sources' own code).
    fn capture(&mut self, op: Op, before: Option<&LocalRow>, after: Option<Row>, t: i64) {
        let dot = self.next_dot(t);
        let s = schema();
        let prior = before.and_then(|b| b.marker.as_ref()).map(|m| m.to_json());
        let stamping = crate::source::Stamping {
            field_merge_tables: if self.field_merge {
                [s.table.name.clone()].into_iter().collect()
            } else {
                Default::default()
            },
            ..Default::default()
        };
        let marker = crate::source::stamp::user_write(
            &s,
            self.id,
            dot,
            prior.as_deref(),
            None,
            after.as_ref(),
            &stamping,
        );
        self.outbox.push_back(RowChange {
            table: s,
            op,
            before: before.map(|b| b.row.clone()),
            after,
            marker,
        });
    }

    fn user_insert(&mut self, id: i64, a: i64, b: i64, t: i64) {
        if self.rows.contains_key(&id) {
            return;
        }
        let r = row(id, a, b);
        self.rows.insert(
            id,
            LocalRow {
                row: r.clone(),
                marker: None,
                stamp: Stamp::User { t: Some(t) },
            },
        );
        self.capture(Op::Insert, None, Some(r), t);
    }

    /// Set column `col` (1 = a, 2 = b) to `value`.
    fn user_update(&mut self, id: i64, col: usize, value: i64, t: i64) {
        let Some(old) = self.rows.get(&id).cloned() else {
            return;
        };
        let mut r = old.row.clone();
        r.0[col] = Some(Value::Int(value));
        if r == old.row {
            // The server writes no new version for a no-op (MySQL logs none).
            return;
        }
        self.rows.insert(
            id,
            LocalRow {
                row: r.clone(),
                marker: old.marker.clone(),
                stamp: Stamp::User { t: Some(t) },
            },
        );
        self.capture(Op::Update, Some(&old), Some(r), t);
    }

    fn user_delete(&mut self, id: i64, t: i64) {
        let Some(old) = self.rows.remove(&id) else {
            return;
        };
        self.capture(Op::Delete, Some(&old), None, t);
    }

    /// The applier on this site takes one change from the peer.
    fn apply(&mut self, change: &RowChange, policy: &TablePolicy, now: i64) {
        let id = match change
            .before
            .as_ref()
            .or(change.after.as_ref())
            .and_then(|r| r.0[0].clone())
        {
            Some(Value::Int(i)) => i,
            _ => panic!("no key"),
        };
        let local = match self.rows.get(&id) {
            Some(r) => Local::Present(r.clone()),
            None => Local::Absent(self.tombstones.get(&id).cloned()),
        };
        let d = decide(self.id, policy, change, &local, now);
        self.conflicts.extend(d.conflicts.iter().cloned());
        match &d.next {
            Local::Present(r) => {
                self.rows.insert(id, r.clone());
                self.tombstones.remove(&id);
            }
            Local::Absent(t) => {
                self.rows.remove(&id);
                if let Some(t) = t {
                    self.tombstones.insert(id, t.clone());
                }
            }
        }
        // A version flagged for forwarding is captured by this site's source
        // although the applier wrote it.
        if let Some(w) = &d.write {
            if w.marker.resolution == Resolution::Forward {
                let dot = self.next_dot(w.marker.ts);
                let fwd = Marker::forwarded(Some(&w.marker.to_json()), self.id, dot.c, false)
                    .expect("flagged marker forwards");
                let after = match &d.next {
                    Local::Present(r) => Some(r.row.clone()),
                    Local::Absent(_) => None,
                };
                self.outbox.push_back(RowChange {
                    table: schema(),
                    op: w.op,
                    before: w.before.clone(),
                    after,
                    marker: fwd,
                });
            }
        }
    }

    fn content(&self) -> BTreeMap<i64, Row> {
        self.rows.iter().map(|(k, v)| (*k, v.row.clone())).collect()
    }
}

/// A user write's version time is `early` ticks before the model's clock:
/// a MariaDB site's is its statement's start time, which two writes of a
/// row can share (`early` 1 after a write of the same site) and which can
/// be earlier than the row's previous version's (`early` 2). PostgreSQL's
/// commit timestamps can also repeat and step back a little.
#[derive(Debug, Clone)]
enum Action {
    Insert {
        site: bool,
        id: i64,
        a: i64,
        early: i64,
    },
    Update {
        site: bool,
        id: i64,
        col: usize,
        value: i64,
        early: i64,
    },
    Delete {
        site: bool,
        id: i64,
        early: i64,
    },
    Deliver {
        to_second: bool,
        n: usize,
    },
}

/// How early a write's version time is: 0, or 1 (the time of the model's
/// previous action, often a write of the same row and site: a shared time),
/// and with `stepping_back` also 2 (before the row's previous version).
fn arb_early(stepping_back: bool) -> BoxedStrategy<i64> {
    if stepping_back {
        prop_oneof![6 => Just(0i64), 1 => Just(1), 1 => Just(2)].boxed()
    } else {
        prop_oneof![6 => Just(0i64), 2 => Just(1)].boxed()
    }
}

fn arb_action(keys: i64, deletes: bool, col_per_site: bool) -> impl Strategy<Value = Action> {
    arb_action_timed(keys, deletes, col_per_site, false)
}

fn arb_action_timed(
    keys: i64,
    deletes: bool,
    col_per_site: bool,
    stepping_back: bool,
) -> impl Strategy<Value = Action> {
    let arb_early = move || arb_early(stepping_back);
    let insert = (any::<bool>(), 0..keys, 0i64..5, arb_early())
        .prop_map(|(site, id, a, early)| Action::Insert { site, id, a, early });
    let update = (any::<bool>(), 0..keys, 1usize..3, 0i64..5, arb_early()).prop_map(
        move |(site, id, col, value, early)| {
            // Field-merge runs: site 1 writes only `a`, site 2 only `b`.
            let col = if col_per_site {
                if site {
                    2
                } else {
                    1
                }
            } else {
                col
            };
            Action::Update {
                site,
                id,
                col,
                value,
                early,
            }
        },
    );
    let delete = (any::<bool>(), 0..keys, arb_early())
        .prop_map(|(site, id, early)| Action::Delete { site, id, early });
    let deliver =
        (any::<bool>(), 1usize..4).prop_map(|(to_second, n)| Action::Deliver { to_second, n });
    if deletes {
        prop_oneof![2 => insert, 4 => update, 1 => delete, 4 => deliver].boxed()
    } else {
        prop_oneof![4 => update, 3 => deliver].boxed()
    }
}

/// Run `actions`, then deliver everything (forwarded versions included) until
/// both outboxes are empty.
fn run(actions: &[Action], policy: &TablePolicy, preload: i64) -> (Site, Site) {
    let mut s1 = Site::new(1);
    let mut s2 = Site::new(2);
    s1.field_merge = matches!(policy.policy, Policy::FieldMerge { .. });
    s2.field_merge = s1.field_merge;
    let mut clock = 1_000i64;
    // Rows both sides start with, synced.
    for id in 0..preload {
        clock += 1;
        s1.user_insert(id, 0, 0, clock);
    }
    while !(s1.outbox.is_empty() && s2.outbox.is_empty()) {
        clock += 1;
        if let Some(c) = s1.outbox.pop_front() {
            s2.apply(&c, policy, clock);
        }
        if let Some(c) = s2.outbox.pop_front() {
            s1.apply(&c, policy, clock);
        }
    }
    for action in actions {
        clock += 1;
        match *action {
            Action::Insert { site, id, a, early } => {
                let s = if site { &mut s2 } else { &mut s1 };
                s.user_insert(id, a, a, clock - early)
            }
            Action::Update {
                site,
                id,
                col,
                value,
                early,
            } => {
                let s = if site { &mut s2 } else { &mut s1 };
                s.user_update(id, col, value, clock - early)
            }
            Action::Delete { site, id, early } => {
                let s = if site { &mut s2 } else { &mut s1 };
                s.user_delete(id, clock - early)
            }
            Action::Deliver { to_second, n } => {
                for _ in 0..n {
                    clock += 1;
                    if to_second {
                        if let Some(c) = s1.outbox.pop_front() {
                            s2.apply(&c, policy, clock);
                        }
                    } else if let Some(c) = s2.outbox.pop_front() {
                        s1.apply(&c, policy, clock);
                    }
                }
            }
        }
    }
    let mut rounds = 0;
    while !(s1.outbox.is_empty() && s2.outbox.is_empty()) {
        rounds += 1;
        assert!(rounds < 10_000, "forwarding does not settle");
        clock += 1;
        if let Some(c) = s1.outbox.pop_front() {
            s2.apply(&c, policy, clock);
        }
        if let Some(c) = s2.outbox.pop_front() {
            s1.apply(&c, policy, clock);
        }
    }
    (s1, s2)
}

fn whole_row_policies() -> impl Strategy<Value = TablePolicy> {
    prop_oneof![
        Just(TablePolicy::default()),
        Just(TablePolicy {
            policy: Policy::SitePriority(1),
            owners: BTreeMap::new()
        }),
        Just(TablePolicy {
            policy: Policy::SitePriority(2),
            owners: BTreeMap::new()
        }),
        Just(TablePolicy {
            policy: Policy::LastWriterWins,
            owners: [("b".to_string(), 2u32)].into_iter().collect()
        }),
    ]
}

fn policies() -> impl Strategy<Value = TablePolicy> {
    prop_oneof![
        Just(TablePolicy::default()),
        Just(TablePolicy {
            policy: Policy::SitePriority(1),
            owners: BTreeMap::new()
        }),
        Just(TablePolicy {
            policy: Policy::SitePriority(2),
            owners: BTreeMap::new()
        }),
        Just(TablePolicy {
            policy: Policy::FieldMerge {
                tie: Tie::LastWriterWins
            },
            owners: BTreeMap::new()
        }),
        Just(TablePolicy {
            policy: Policy::FieldMerge {
                tie: Tie::SitePriority(2)
            },
            owners: BTreeMap::new()
        }),
        Just(TablePolicy {
            policy: Policy::LastWriterWins,
            owners: [("b".to_string(), 2u32)].into_iter().collect()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Whatever the interleaving, both sides end with the same rows.
    #[test]
    fn both_sides_converge(
        policy in whole_row_policies(),
        actions in prop::collection::vec(arb_action(4, true, false), 0..60),
    ) {
        let (s1, s2) = run(&actions, &policy, 0);
        prop_assert_eq!(s1.content(), s2.content());
    }

    /// The same when a site's version times step back: a MariaDB site's is
    /// its statement's start time, so of two sessions updating one row the
    /// later writer can carry the earlier time. Open: the model finds
    /// divergent seeds within some 10,000 cases (about 1,000 before a
    /// site's versions were ordered by its log; see docs/architecture.md,
    /// Conflicts). Run with --ignored.
    #[test]
    #[ignore = "version times that step back can still make the sites diverge (see docs/architecture.md, Conflicts)"]
    fn both_sides_converge_with_version_times_stepping_back(
        policy in whole_row_policies(),
        actions in prop::collection::vec(arb_action_timed(4, true, false, true), 0..60),
    ) {
        let (s1, s2) = run(&actions, &policy, 0);
        prop_assert_eq!(s1.content(), s2.content());
    }

    /// Field merge: site 1 only changes `a`, site 2 only `b`: at the end every
    /// row holds each site's last value of its own column.
    // Open: a user who sets a column back to the value duplex last wrote (A -> B
    // -> A) leaves no trace the site itself can read, while its source tags the
    // column as changed; the two sides can then disagree on that column. The
    // model finds such seeds within a few hundred cases. Run with --ignored.
    #[test]
    fn field_merge_keeps_both_sides_edits(
        actions in prop::collection::vec(arb_action(3, false, true), 0..60),
    ) {
        let policy = TablePolicy { policy: Policy::FieldMerge { tie: Tie::LastWriterWins }, owners: BTreeMap::new() };
        let mut last: BTreeMap<(i64, usize), i64> = BTreeMap::new();
        for a in &actions {
            if let Action::Update { id, col, value, .. } = a {
                last.insert((*id, *col), *value);
            }
        }
        let (s1, s2) = run(&actions, &policy, 3);
        prop_assert_eq!(s1.content(), s2.content());
        for ((id, col), value) in last {
            prop_assert_eq!(s1.rows[&id].row.0[col].clone(), Some(Value::Int(value)));
        }
    }

    /// Field merge over random inserts, updates and deletes, both sites
    /// writing the same columns. Open: when a site sets a column back to the
    /// value duplex last wrote (A -> B -> A) while the other site changes that
    /// column, the tags cannot show which came last, and the sites can pick
    /// differently. Run with --ignored to see a seed.
    #[test]
    #[ignore = "field merge of the same column with A-B-A edits can diverge (see docs/architecture.md, Conflicts)"]
    fn both_sides_converge_under_field_merge(
        policy in policies(),
        actions in prop::collection::vec(arb_action(4, true, false), 0..60),
    ) {
        let (s1, s2) = run(&actions, &policy, 0);
        prop_assert_eq!(s1.content(), s2.content());
    }

    /// Ownership: column `b` belongs to site 2. Whatever site 1 writes into it,
    /// both sides end with site 2's value (or the initial one).
    #[test]
    fn owned_column_takes_only_its_owners_values(
        actions in prop::collection::vec(arb_action(3, false, false), 0..60),
    ) {
        let policy = TablePolicy { policy: Policy::LastWriterWins, owners: [("b".to_string(), 2u32)].into_iter().collect() };
        let mut last_by_owner: BTreeMap<i64, i64> = BTreeMap::new();
        for a in &actions {
            if let Action::Update { site: true, id, col: 2, value, .. } = a {
                last_by_owner.insert(*id, *value);
            }
        }
        let (s1, s2) = run(&actions, &policy, 3);
        prop_assert_eq!(s1.content(), s2.content());
        for id in 0..3 {
            let expected = last_by_owner.get(&id).copied().unwrap_or(0);
            prop_assert_eq!(s2.rows[&id].row.0[2].clone(), Some(Value::Int(expected)));
        }
    }
}

fn change(
    op: Op,
    before: Option<Row>,
    after: Option<Row>,
    vv: &[(u32, u64, i64)],
    site: u32,
    ts: i64,
) -> RowChange {
    RowChange {
        table: schema(),
        op,
        before,
        after,
        marker: Marker {
            format: MARKER_FORMAT_VERSION,
            vv: VersionVector(vv.iter().map(|&(s, c, t)| (s, Dot::at(c, t))).collect()),
            site,
            ts,
            crc: 0,
            shape: 0,
            resolution: Resolution::None,
            cols: BTreeMap::new(),
        },
    }
}

fn synced(r: Row, vv: &[(u32, u64, i64)], site: u32, ts: i64) -> LocalRow {
    let crc = row_checksum(&schema(), &r).unwrap_or(0);
    LocalRow {
        row: r,
        marker: Some(Marker {
            format: MARKER_FORMAT_VERSION,
            vv: VersionVector(vv.iter().map(|&(s, c, t)| (s, Dot::at(c, t))).collect()),
            site,
            ts,
            crc,
            shape: crate::canonical::encode::shape_checksum(&schema()),
            resolution: Resolution::None,
            cols: BTreeMap::new(),
        }),
        stamp: Stamp::Synced,
    }
}

#[test]
fn a_newer_version_applies_without_conflict() {
    // Site 1 holds site 2's version 10; site 2 wrote again (20) having seen it.
    let local = Local::Present(synced(row(1, 1, 1), &[(2, 10, 100)], 2, 100));
    let c = change(
        Op::Update,
        Some(row(1, 1, 1)),
        Some(row(1, 2, 1)),
        &[(2, 20, 200)],
        2,
        200,
    );
    let d = decide(1, &TablePolicy::default(), &c, &local, 0);
    assert!(d.conflicts.is_empty());
    let w = d.write.expect("writes");
    assert_eq!(w.op, Op::Update);
    assert_eq!(w.after, Some(row(1, 2, 1)));
}

#[test]
fn an_older_version_is_dropped_as_stale() {
    let local = Local::Present(synced(row(1, 2, 1), &[(2, 20, 200)], 2, 200));
    let c = change(
        Op::Update,
        Some(row(1, 1, 1)),
        Some(row(1, 1, 1)),
        &[(2, 10, 100)],
        2,
        100,
    );
    let d = decide(1, &TablePolicy::default(), &c, &local, 0);
    assert!(d.stale && d.write.is_none() && d.conflicts.is_empty());
}

#[test]
fn concurrent_updates_conflict_and_the_later_wins() {
    // Local: a user write on site 1 at time 300, after site 2's version 10.
    let mut lr = synced(row(1, 1, 1), &[(2, 10, 100)], 2, 100);
    lr.row = row(1, 5, 1);
    lr.stamp = Stamp::User { t: Some(300) };
    let local = Local::Present(lr);
    // Incoming: site 2 wrote at 250 without seeing site 1's write.
    let c = change(
        Op::Update,
        Some(row(1, 1, 1)),
        Some(row(1, 1, 7)),
        &[(2, 20, 250)],
        2,
        250,
    );
    let d = decide(1, &TablePolicy::default(), &c, &local, 0);
    assert_eq!(d.conflicts.len(), 1);
    assert_eq!(d.conflicts[0].kind, ConflictKind::UpdateUpdate);
    assert_eq!(d.conflicts[0].outcome, Outcome::LocalKept);
    // The local row keeps its content and records that it has seen site 2's.
    let w = d.write.expect("marker update");
    assert_eq!(w.marker.vv.get(2), Some(Dot::at(20, 250)));
    // Its own entry: the user's version, known by its time and content.
    let own_crc = crate::canonical::encode::row_checksum(&schema(), &row(1, 5, 1)).unwrap();
    assert_eq!(w.marker.vv.get(1), Some(Dot::at(0, 300).with_crc(own_crc)));
    // Field merge keeps both columns: the versions carry column tags.
    let fm = TablePolicy {
        policy: Policy::FieldMerge {
            tie: Tie::LastWriterWins,
        },
        owners: BTreeMap::new(),
    };
    let s = schema();
    let base_dot = Dot::at(10, 100);
    let base_tags = column_tags(&s, &row(1, 1, 1), None, 2, base_dot);
    let Local::Present(mut lr) = local else {
        unreachable!()
    };
    if let Some(m) = lr.marker.as_mut() {
        m.cols = base_tags.clone();
    }
    let base_marker = lr.marker.clone();
    let mut c = c;
    c.marker.cols = column_tags(&s, &row(1, 1, 7), base_marker.as_ref(), 2, Dot::at(20, 250));
    let d = decide(1, &fm, &c, &Local::Present(lr), 0);
    assert_eq!(d.conflicts[0].outcome, Outcome::Merged);
    assert_eq!(d.write.expect("merged").after, Some(row(1, 5, 7)));
}

#[test]
fn a_write_beats_a_concurrent_delete() {
    let mut lr = synced(row(1, 1, 1), &[(2, 10, 100)], 2, 100);
    lr.row = row(1, 5, 1);
    lr.stamp = Stamp::User { t: Some(300) };
    let c = change(
        Op::Delete,
        Some(row(1, 1, 1)),
        None,
        &[(2, 20, 400)],
        2,
        400,
    );
    let d = decide(1, &TablePolicy::default(), &c, &Local::Present(lr), 0);
    assert_eq!(d.conflicts[0].kind, ConflictKind::DeleteUpdate);
    assert_eq!(d.conflicts[0].outcome, Outcome::LocalKept);
    assert!(matches!(d.next, Local::Present(_)));
    // The deleting side recreates the row from the update it receives.
    let c = change(
        Op::Update,
        Some(row(1, 1, 1)),
        Some(row(1, 5, 1)),
        &[(1, 30, 300), (2, 10, 100)],
        1,
        300,
    );
    let d = decide(2, &TablePolicy::default(), &c, &Local::Absent(None), 0);
    // The update has seen site 2's version: the row was deleted there.
    assert_eq!(d.conflicts[0].kind, ConflictKind::UpdateDelete);
    assert_eq!(d.conflicts[0].outcome, Outcome::Recreated);
    assert_eq!(d.write.expect("insert").op, Op::Insert);
    // A row created on site 1 and only ever changed there: site 2 cannot tell
    // whether a user deleted it or it never arrived.
    let c = change(
        Op::Update,
        Some(row(1, 1, 1)),
        Some(row(1, 5, 1)),
        &[(1, 30, 300)],
        1,
        300,
    );
    let d = decide(2, &TablePolicy::default(), &c, &Local::Absent(None), 0);
    assert_eq!(d.conflicts[0].kind, ConflictKind::UpdateMissing);
    assert_eq!(d.conflicts[0].outcome, Outcome::Recreated);
}

#[test]
fn a_version_of_this_site_it_no_longer_holds_was_deleted_here() {
    // Site 1's row, copied to site 2 by the initial sync, comes back in site
    // 2's copy after a user on site 1 deleted it: it stays deleted.
    let copied = change(
        Op::Insert,
        None,
        Some(row(1, 1, 1)),
        &[(1, COPY_COUNTER, 100)],
        1,
        100,
    );
    let d = decide(1, &TablePolicy::default(), &copied, &Local::Absent(None), 0);
    assert!(
        d.write.is_none() && d.conflicts.is_empty() && d.stale,
        "{d:?}"
    );
    // Site 2 changed it after site 1's version: an update against a delete,
    // which the update wins (the row comes back, recorded).
    let changed = change(
        Op::Update,
        Some(row(1, 1, 1)),
        Some(row(1, 5, 1)),
        &[(1, COPY_COUNTER, 100), (2, 30, 300)],
        2,
        300,
    );
    let d = decide(
        1,
        &TablePolicy::default(),
        &changed,
        &Local::Absent(None),
        0,
    );
    assert_eq!(d.conflicts[0].kind, ConflictKind::UpdateDelete);
    assert!(d.write.is_some());
}

#[test]
fn manual_parks_the_incoming_version() {
    let mut lr = synced(row(1, 1, 1), &[(2, 10, 100)], 2, 100);
    lr.row = row(1, 5, 1);
    lr.stamp = Stamp::User { t: Some(300) };
    let c = change(
        Op::Update,
        Some(row(1, 1, 1)),
        Some(row(1, 1, 7)),
        &[(2, 20, 250)],
        2,
        250,
    );
    let manual = TablePolicy {
        policy: Policy::Manual,
        owners: BTreeMap::new(),
    };
    let d = decide(1, &manual, &c, &Local::Present(lr), 0);
    assert_eq!(d.conflicts[0].outcome, Outcome::Parked);
    assert!(d.write.is_none());
}

#[test]
fn identical_concurrent_versions_merge_silently() {
    // A row created alike on both sites before they were linked: the initial
    // sync finds it on both, neither version has seen the other.
    let local = LocalRow {
        row: row(1, 2, 3),
        marker: None,
        stamp: Stamp::User { t: Some(100) },
    };
    let manual = TablePolicy {
        policy: Policy::Manual,
        owners: BTreeMap::new(),
    };
    for policy in [TablePolicy::default(), manual.clone()] {
        let c = change(
            Op::Insert,
            None,
            Some(row(1, 2, 3)),
            &[(2, COPY_COUNTER, 150)],
            2,
            150,
        );
        let d = decide(1, &policy, &c, &Local::Present(local.clone()), 0);
        assert!(d.conflicts.is_empty(), "{:?}", d.conflicts);
        // The versions still merge: the written version has seen both.
        let w = d.write.expect("the merged version is written");
        assert_eq!(w.after, Some(row(1, 2, 3)));
        assert!(w.marker.vv.get(1).is_some() && w.marker.vv.get(2).is_some());
        assert_eq!(
            w.marker.crc,
            row_checksum(&schema(), &row(1, 2, 3)).unwrap_or(0)
        );
    }
    // Different content is a conflict, as before.
    let c = change(
        Op::Insert,
        None,
        Some(row(1, 2, 4)),
        &[(2, COPY_COUNTER, 150)],
        2,
        150,
    );
    for policy in [TablePolicy::default(), manual] {
        let d = decide(1, &policy, &c, &Local::Present(local.clone()), 0);
        assert_eq!(d.conflicts.len(), 1);
        assert_eq!(d.conflicts[0].kind, ConflictKind::InsertInsert);
    }
}

#[test]
fn a_change_of_the_seeded_row_follows_it() {
    // Both sites held row(1, 0, 0) before the link began capturing them.
    let seed = |stamp| LocalRow {
        row: row(1, 0, 0),
        marker: None,
        stamp,
    };
    let update = change(
        Op::Update,
        Some(row(1, 0, 0)),
        Some(row(1, 4, 0)),
        &[(2, 20, 500)],
        2,
        500,
    );
    let policy = TablePolicy {
        policy: Policy::SitePriority(1),
        owners: BTreeMap::new(),
    };
    let d = decide(
        1,
        &policy,
        &update,
        &Local::Present(seed(Stamp::Seed { t: Some(900) })),
        0,
    );
    assert!(d.conflicts.is_empty(), "{:?}", d.conflicts);
    let w = d.write.expect("applied");
    assert_eq!(w.after, Some(row(1, 4, 0)));
    // The seed takes no entry (every version has seen it): the written
    // vector is the incoming one, so the peer's next change follows it.
    assert_eq!(w.marker.vv, update.marker.vv);
    let next = change(
        Op::Update,
        Some(row(1, 4, 0)),
        Some(row(1, 5, 0)),
        &[(2, 30, 600)],
        2,
        600,
    );
    let d = decide(1, &policy, &next, &d.next, 0);
    assert!(d.conflicts.is_empty() && !d.stale, "{:?}", d.conflicts);
    assert_eq!(d.write.expect("applied").after, Some(row(1, 5, 0)));
    let delete = change(
        Op::Delete,
        Some(row(1, 0, 0)),
        None,
        &[(2, 20, 500)],
        2,
        500,
    );
    let d = decide(
        1,
        &policy,
        &delete,
        &Local::Present(seed(Stamp::Seed { t: None })),
        0,
    );
    assert!(d.conflicts.is_empty());
    assert_eq!(d.write.expect("deleted").op, Op::Delete);
    // A row changed since the capture began is a version of its own, even
    // with the update's old content: concurrent, settled by the policy.
    let d = decide(
        1,
        &policy,
        &update,
        &Local::Present(seed(Stamp::User { t: Some(900) })),
        0,
    );
    assert_eq!(d.conflicts[0].kind, ConflictKind::UpdateUpdate);
    // So is a seeded row whose content is not where the update started.
    let mut other = seed(Stamp::Seed { t: Some(900) });
    other.row = row(1, 0, 9);
    let d = decide(1, &policy, &update, &Local::Present(other), 0);
    assert_eq!(d.conflicts[0].kind, ConflictKind::UpdateUpdate);
}

#[test]
fn an_edit_outside_the_change_stream_is_recorded() {
    let mut lr = synced(row(1, 1, 1), &[(2, 10, 100)], 2, 100);
    // Same marker, different content, still written "by duplex" as far as the
    // stamp can tell (e.g. changed with replication suppressed).
    lr.row = row(1, 9, 9);
    let c = change(
        Op::Update,
        Some(row(1, 1, 1)),
        Some(row(1, 2, 1)),
        &[(2, 20, 200)],
        2,
        200,
    );
    let d = decide(1, &TablePolicy::default(), &c, &Local::Present(lr), 0);
    assert_eq!(d.conflicts[0].kind, ConflictKind::UnsyncedLocalEdit);
    assert_eq!(d.write.expect("applies").after, Some(row(1, 2, 1)));
}

#[test]
fn later_changes_of_the_same_transaction_apply() {
    // Every change of one source transaction carries the transaction's dot:
    // the second change of a row must not look like a replay of the first.
    let local = Local::Present(synced(row(1, 1, 1), &[(2, 20, 200)], 2, 200));
    let c = change(
        Op::Update,
        Some(row(1, 1, 1)),
        Some(row(1, 3, 1)),
        &[(2, 20, 200)],
        2,
        200,
    );
    let d = decide(1, &TablePolicy::default(), &c, &local, 0);
    assert!(!d.stale && d.conflicts.is_empty());
    assert_eq!(d.write.expect("applies").after, Some(row(1, 3, 1)));
    let c = change(
        Op::Delete,
        Some(row(1, 3, 1)),
        None,
        &[(2, 20, 200)],
        2,
        200,
    );
    let d = decide(1, &TablePolicy::default(), &c, &local, 0);
    assert_eq!(d.write.expect("deletes").op, Op::Delete);
}

/// The checksum of `r`, as a source sets it in its version's dot.
fn crc_of(r: &Row) -> u32 {
    row_checksum(&schema(), r).unwrap_or(0)
}

fn field_merge() -> TablePolicy {
    TablePolicy {
        policy: Policy::FieldMerge {
            tie: Tie::LastWriterWins,
        },
        owners: BTreeMap::new(),
    }
}

/// Site 2 (MariaDB: a version's time is its statement's start time) wrote
/// `b` twice with one time, 500. Site 1 saw the first write, then changed
/// `a`. That version has not seen site 2's second write, whatever the equal
/// time says: it is concurrent with it. (Taken as having seen it, it
/// silently overwrote `b` with the first write's value, on both sites.)
#[test]
fn a_version_with_this_sites_time_but_another_row_has_not_seen_it() {
    let first = row(1, 0, 1);
    let base = synced(row(1, 0, 0), &[(1, 10, 100)], 1, 100);
    let mut local = base.clone();
    local.row = row(1, 0, 2);
    local.stamp = Stamp::User { t: Some(500) };
    let mut c = change(
        Op::Update,
        Some(first.clone()),
        Some(row(1, 1, 1)),
        &[(1, 30, 600), (2, 20, 500)],
        1,
        600,
    );
    c.marker
        .vv
        .set(2, Dot::at(20, 500).with_crc(crc_of(&first)));
    c.marker
        .vv
        .set(1, Dot::at(30, 600).with_crc(crc_of(&row(1, 1, 1))));
    let d = decide(
        2,
        &TablePolicy::default(),
        &c,
        &Local::Present(local.clone()),
        0,
    );
    assert_eq!(d.conflicts.len(), 1, "{:?}", d.conflicts);
    assert_eq!(d.conflicts[0].kind, ConflictKind::UpdateUpdate);
    // Under field merge both edits survive: site 1's `a`, site 2's `b`.
    let s = schema();
    let base_tags = column_tags(&s, &base.row, None, 1, Dot::at(10, 100));
    local.marker.as_mut().expect("marker").cols = base_tags.clone();
    let base_marker = local.marker.clone();
    c.marker.cols = column_tags(
        &s,
        &row(1, 1, 1),
        Some(&Marker {
            cols: column_tags(
                &s,
                &first,
                base_marker.as_ref(),
                2,
                Dot::at(20, 500).with_crc(crc_of(&first)),
            ),
            ..base_marker.clone().expect("marker")
        }),
        1,
        c.marker.vv.get(1).expect("own dot"),
    );
    let d = decide(2, &field_merge(), &c, &Local::Present(local), 0);
    assert_eq!(d.write.expect("merged").after, Some(row(1, 1, 2)));
    // The same versions told apart when they are the same: the incoming
    // version has seen exactly the local row, and follows it.
    let mut seen = base.clone();
    seen.row = first.clone();
    seen.stamp = Stamp::User { t: Some(500) };
    let mut c2 = change(
        Op::Update,
        Some(first.clone()),
        Some(row(1, 1, 1)),
        &[(1, 30, 600)],
        1,
        600,
    );
    c2.marker
        .vv
        .set(2, Dot::at(20, 500).with_crc(crc_of(&first)));
    let d = decide(2, &TablePolicy::default(), &c2, &Local::Present(seen), 0);
    assert!(d.conflicts.is_empty(), "{:?}", d.conflicts);
    assert_eq!(d.write.expect("applies").after, Some(row(1, 1, 1)));
}

/// The other side of the same story: site 1 holds site 2's first write
/// (counter 20, time 500) under its own later edit; site 2's second write
/// (counter 40, the same time) arrives. It is new here: where both entries
/// carry a log position the counters decide, not the time (taken for the
/// version already seen, it was dropped as stale).
#[test]
fn a_peer_version_sharing_a_time_with_one_seen_here_is_new() {
    let first = row(1, 0, 1);
    let mut local = synced(first.clone(), &[(2, 20, 500)], 2, 500);
    if let Some(m) = local.marker.as_mut() {
        m.vv.set(2, Dot::at(20, 500).with_crc(crc_of(&first)));
    }
    local.row = row(1, 1, 1);
    local.stamp = Stamp::User { t: Some(600) };
    let second = row(1, 0, 2);
    let mut c = change(Op::Update, Some(first), Some(second.clone()), &[], 2, 500);
    c.marker
        .vv
        .set(2, Dot::at(40, 500).with_crc(crc_of(&second)));
    let d = decide(1, &TablePolicy::default(), &c, &Local::Present(local), 0);
    assert!(!d.stale, "dropped as already seen");
    assert_eq!(d.conflicts.len(), 1, "{:?}", d.conflicts);
    assert_eq!(d.conflicts[0].kind, ConflictKind::UpdateUpdate);
}

/// Site 1 kept its own version of a row against site 2's in the initial
/// sync and wrote its marker: its own entry has a time and no counter. Site
/// 1's copy then read the row with that marker and sent it to site 2, which
/// still holds its seed (the version site 1's marker has seen). Site 2 has
/// not seen site 1's version: the copy follows the seed. (An absent entry
/// was taken to know every version without a counter, and the copy was
/// dropped as stale: the sites kept different rows.)
#[test]
fn a_version_named_by_time_alone_is_not_known_to_a_vector_without_its_site() {
    let seed = row(5, 0, 0);
    let seed_crc = crc_of(&seed);
    let local = LocalRow {
        row: seed,
        marker: None,
        stamp: Stamp::Seed { t: Some(100) },
    };
    let kept = row(5, -1, 0);
    let mut c = change(Op::Insert, None, Some(kept.clone()), &[], 1, 200);
    c.marker.vv.set(1, Dot::at(0, 200).with_crc(crc_of(&kept)));
    c.marker
        .vv
        .set(2, Dot::at(COPY_COUNTER, 100).with_crc(seed_crc));
    let d = decide(2, &TablePolicy::default(), &c, &Local::Present(local), 0);
    assert!(!d.stale, "dropped as already seen");
    assert_eq!(d.write.expect("applies").after, Some(kept));
}
