//! The marker column: per-row version metadata that only duplex's applier writes.
//!
//! Each synced table carries one extra column (default `_duplex`). It holds the
//! row's version vector, the site and time of the version the applier wrote, and
//! a crc32 of the row's content as stored. User writes leave the column alone;
//! no trigger and no extra write in the user's transaction is needed:
//!
//! * the source that captures a user write on site S takes the vector from the
//!   marker column in the row image and sets S's own entry to the write's
//!   commit position and version time (a [`Dot`]);
//! * the applier on the peer compares that vector with the target row's
//!   current one (see `crate::conflict`) and writes the winner's vector.
//!
//! A site never needs its own counter for a row it holds locally: it recognises
//! its own latest version by the version time, which it can read from the row
//! itself (PostgreSQL: the commit timestamp of the row's `xmin`; MySQL: the
//! stamp column the server maintains). See docs/architecture.md, "Conflicts".
//! Stored as JSON text (jsonb on PostgreSQL, JSON on MySQL) so a DBA can read it.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Current version of the marker's JSON layout.
pub const MARKER_FORMAT_VERSION: u32 = 2;

/// Default name of the marker column.
pub const DEFAULT_MARKER_COLUMN: &str = "_duplex";

/// One site's entry in a version vector: the site's commit position of the
/// newest write of this row that the version has seen (`c`), and that write's
/// version time in µs since the Unix epoch (`t`, which identifies the version on
/// its own site). `c == 0` with `t != 0` is a site's own entry in its own
/// marker when it resolved a conflict over a local version it has not read
/// back from its log yet: only `t` is known there, and only `t` is needed.
///
/// A version time alone does not identify a version: a MariaDB site's is the
/// start time of the statement that wrote it, which two sessions updating one
/// row can share, and which a session that `SET TIMESTAMP` gives to every
/// write. `crc` is the checksum of the version's row (`canonical::encode`;
/// 0 where it is not known: a delete, a row not known whole, a marker
/// written before it existed), so that two versions with one time and
/// different content stay apart (see [`Dot::same_version_time`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dot {
    pub c: u64,
    pub t: i64,
    pub crc: u32,
}

/// The row checksum of a delete's dot: no row. (A real row's checksum is
/// this value once in 2^32 rows; the cost is a conflict that was not one.)
pub const DELETED_ROW_CRC: u32 = 0xDE1E_7ED0;

impl Dot {
    /// The dot at counter `c` and time `t`, its row's checksum not known.
    pub const fn at(c: u64, t: i64) -> Dot {
        Dot { c, t, crc: 0 }
    }

    /// The same dot for a version whose row has checksum `crc`.
    pub const fn with_crc(self, crc: u32) -> Dot {
        Dot { crc, ..self }
    }

    /// Do the two dots name one version of a site by its time: the same
    /// time and, where both know it, the same row checksum?
    pub fn same_version_time(self, other: Dot) -> bool {
        self.t == other.t && (self.crc == 0 || other.crc == 0 || self.crc == other.crc)
    }
}

impl Serialize for Dot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.crc == 0 {
            (self.c, self.t).serialize(s)
        } else {
            (self.c, self.t, self.crc).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Dot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dot, D::Error> {
        // Layout 1 stored a bare counter; a dot without its row's checksum
        // is a pair.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Triple(u64, i64, u32),
            Pair(u64, i64),
            Counter(u64),
        }
        Ok(match Form::deserialize(d)? {
            Form::Triple(c, t, crc) => Dot { c, t, crc },
            Form::Pair(c, t) => Dot::at(c, t),
            Form::Counter(c) => Dot::at(c, 0),
        })
    }
}

/// Site id -> [`Dot`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionVector(pub BTreeMap<u32, Dot>);

impl VersionVector {
    pub fn get(&self, site: u32) -> Option<Dot> {
        self.0.get(&site).copied()
    }

    /// Counter of `site` (0 when absent).
    pub fn counter(&self, site: u32) -> u64 {
        self.0.get(&site).map(|d| d.c).unwrap_or(0)
    }

    /// Replace `site`'s entry.
    pub fn set(&mut self, site: u32, dot: Dot) {
        self.0.insert(site, dot);
    }

    /// Pointwise maximum.
    pub fn merge(&self, other: &VersionVector) -> VersionVector {
        let mut out = self.clone();
        for (&site, &dot) in &other.0 {
            let entry = out.0.entry(site).or_insert(dot);
            // Derived order: by counter, then by time, so merging is
            // commutative even for inconsistent inputs.
            *entry = (*entry).max(dot);
        }
        out
    }

    /// `self` has seen everything `other` has (every counter at least as high).
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other
            .0
            .iter()
            .all(|(&site, dot)| self.counter(site) >= dot.c)
    }
}

/// What the marker says about how a row version came to be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// An ordinary applied version: never sent back to its origin.
    #[default]
    None,
    /// The applier wrote a version the peer does not have (a conflict settled
    /// here, a DBA's choice, an owned column kept): the source forwards it to
    /// the peer although duplex wrote it.
    Forward,
    /// The row is about to be deleted by a forwarded delete; this marker only
    /// carries the vector into the delete's old image and is not forwarded.
    PreDelete,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Resolution {
    fn is_none(&self) -> bool {
        *self == Resolution::None
    }
}

/// The content of the marker column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Layout version.
    #[serde(rename = "v")]
    pub format: u32,
    pub vv: VersionVector,
    /// Site of this version (the writer, or the site that settled a conflict).
    pub site: u32,
    /// This version's time, µs since the Unix epoch: what last-writer-wins
    /// compares.
    pub ts: i64,
    /// crc32 of the row's canonical encoding as stored (see
    /// `canonical::encode`); 0 when the source could not know the whole row
    /// (key-only replica identity and an unchanged TOAST value).
    pub crc: u32,
    /// Which columns `crc` covers: the checksum of their names
    /// (`canonical::encode::shape_checksum`); 0 when not recorded (an
    /// older duplex). Once a table's columns change (a column dropped on
    /// both sites), a row's content can no longer be checked against `crc`.
    #[serde(default, rename = "sh", skip_serializing_if = "is_zero")]
    pub shape: u32,
    #[serde(default, rename = "r", skip_serializing_if = "Resolution::is_none")]
    pub resolution: Resolution,
    /// Tables under field-level merge only: for each column, the checksum of
    /// its value and the version (time, site) that set it. See
    /// `conflict::column_tags`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cols: BTreeMap<String, ColumnTag>,
}

/// Which version set a column's value: `[crc, site, counter, time]` in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColumnTag {
    /// crc32 of the value's canonical encoding.
    pub crc: u32,
    /// The version that set the value: its site and that site's dot.
    pub site: u32,
    pub dot: Dot,
}

impl Serialize for ColumnTag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let d = self.dot;
        if d.crc == 0 {
            (self.crc, self.site, d.c, d.t).serialize(s)
        } else {
            (self.crc, self.site, d.c, d.t, d.crc).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for ColumnTag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ColumnTag, D::Error> {
        // The setter's row checksum is left out where it is not known.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Five(u32, u32, u64, i64, u32),
            Four(u32, u32, u64, i64),
        }
        let (crc, site, dot) = match Form::deserialize(d)? {
            Form::Five(crc, site, c, t, row_crc) => (crc, site, Dot { c, t, crc: row_crc }),
            Form::Four(crc, site, c, t) => (crc, site, Dot::at(c, t)),
        };
        Ok(ColumnTag { crc, site, dot })
    }
}

impl Marker {
    /// Parse the marker column's text. A NULL column (a row duplex never wrote)
    /// gives `Ok(None)`.
    pub fn parse(text: Option<&str>) -> Result<Option<Marker>, serde_json::Error> {
        match text {
            None => Ok(None),
            Some(t) => serde_json::from_str(t).map(Some),
        }
    }

    /// Parse, treating invalid JSON (someone wrote the column by hand) as a row
    /// never synced, with a warning naming the table.
    pub fn parse_lenient(text: Option<&str>, table: &dyn std::fmt::Display) -> Option<Marker> {
        match Marker::parse(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(table = %table, error = %e, "marker column holds invalid JSON; treating the row as never synced");
                None
            }
        }
    }

    /// The marker a captured user write carries to the peer: the vector the
    /// row held (read from the marker column in the change's new image, else
    /// its old image; user writes leave that column alone) with `site`'s entry
    /// set to the write's commit-position counter and version time.
    pub fn for_user_write(
        after_text: Option<&str>,
        before_text: Option<&str>,
        site: u32,
        dot: Dot,
        crc: u32,
        table: &dyn std::fmt::Display,
    ) -> Marker {
        let prior = Marker::parse_lenient(after_text.or(before_text), table);
        let mut vv = prior.map(|m| m.vv).unwrap_or_default();
        vv.set(site, dot);
        Marker {
            format: MARKER_FORMAT_VERSION,
            vv,
            site,
            ts: dot.t,
            crc,
            shape: 0,
            resolution: Resolution::None,
            cols: BTreeMap::new(),
        }
    }

    /// For a row written by duplex's applier on `site`: the marker to forward
    /// when the applier flagged the version for forwarding (see
    /// [`Resolution::Forward`]), with `site`'s own entry given the counter of
    /// the transaction that wrote it. `None` for every other applied row.
    /// `delete`: the row is a delete's old image, forwarded when its marker
    /// says [`Resolution::PreDelete`].
    pub fn forwarded(text: Option<&str>, site: u32, counter: u64, delete: bool) -> Option<Marker> {
        // Cheap test first: most of duplex's own rows are not flagged.
        if !text?.contains("\"r\":") {
            return None;
        }
        let mut m = Marker::parse(text).ok().flatten()?;
        let wanted = if delete {
            Resolution::PreDelete
        } else {
            Resolution::Forward
        };
        if m.resolution != wanted {
            return None;
        }
        let mut own = m.vv.get(site).unwrap_or(Dot::at(0, m.ts));
        own.c = counter;
        m.vv.set(site, own);
        m.resolution = Resolution::None;
        Some(m)
    }

    pub fn to_json(&self) -> String {
        // Serialising plain integers and maps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Now, in µs since the Unix epoch: the time of versions an applier creates.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Name of duplex's marker table in each MySQL/MariaDB site's database: a
/// row of it in a transaction marks the transaction as duplex's own.
pub const MYSQL_MARKER_TABLE: &str = "_duplex_applied";

/// duplex's tombstone table on a MySQL/MariaDB site (in the synced schema).
pub const MYSQL_TOMBSTONES_TABLE: &str = "_duplex_tombstones";

/// duplex's journal outbox on a MySQL/MariaDB site (see `journal::outbox`).
pub const MYSQL_JOURNAL_TABLE: &str = "_duplex_journal";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vv(entries: &[(u32, u64, i64)]) -> VersionVector {
        VersionVector(
            entries
                .iter()
                .map(|&(s, c, t)| (s, Dot::at(c, t)))
                .collect(),
        )
    }

    #[test]
    fn json_round_trip() {
        let m = Marker {
            format: MARKER_FORMAT_VERSION,
            vv: vv(&[(1, 100, 5), (2, u64::MAX, -3)]),
            site: 2,
            ts: 1_700_000_000_000_000,
            crc: 0xdead_beef,
            shape: 0,
            resolution: Resolution::None,
            cols: BTreeMap::new(),
        };
        let text = m.to_json();
        assert!(!text.contains("\"r\""), "{text}");
        assert_eq!(Marker::parse(Some(&text)).ok().flatten(), Some(m.clone()));
        let forwarded = Marker {
            resolution: Resolution::Forward,
            ..m
        };
        let text = forwarded.to_json();
        assert!(text.contains("\"r\":\"forward\""), "{text}");
        assert_eq!(Marker::parse(Some(&text)).ok().flatten(), Some(forwarded));
        assert_eq!(Marker::parse(None).ok().flatten(), None);
        assert!(Marker::parse(Some("not json")).is_err());
    }

    #[test]
    fn layout_1_markers_still_parse() {
        let m = Marker::parse(Some(
            r#"{"v":1,"vv":{"1":42,"2":7},"site":1,"ts":9,"crc":3}"#,
        ))
        .ok()
        .flatten()
        .expect("parses");
        assert_eq!(m.vv.get(1), Some(Dot::at(42, 0)));
        assert_eq!(m.vv.counter(2), 7);
    }

    #[test]
    fn user_write_sets_own_entry_and_keeps_the_rest() {
        let prior = Marker {
            format: 2,
            vv: vv(&[(1, 10, 100), (2, 20, 200)]),
            site: 2,
            ts: 200,
            crc: 1,
            shape: 0,
            resolution: Resolution::None,
            cols: BTreeMap::new(),
        }
        .to_json();
        let m = Marker::for_user_write(Some(&prior), None, 1, Dot::at(30, 300), 9, &"t");
        assert_eq!(m.vv, vv(&[(1, 30, 300), (2, 20, 200)]));
        assert_eq!((m.site, m.ts, m.crc), (1, 300, 9));
    }

    #[test]
    fn only_flagged_rows_are_forwarded() {
        let applied = Marker {
            format: 2,
            vv: vv(&[(1, 10, 100), (2, 0, 555)]),
            site: 2,
            ts: 555,
            crc: 1,
            shape: 0,
            resolution: Resolution::None,
            cols: BTreeMap::new(),
        };
        assert_eq!(
            Marker::forwarded(Some(&applied.to_json()), 2, 77, false),
            None
        );
        let flagged = Marker {
            resolution: Resolution::Forward,
            ..applied.clone()
        };
        let m = Marker::forwarded(Some(&flagged.to_json()), 2, 77, false).expect("forwarded");
        assert_eq!(m.vv, vv(&[(1, 10, 100), (2, 77, 555)]));
        assert_eq!(m.resolution, Resolution::None);
        let pre_delete = Marker {
            resolution: Resolution::PreDelete,
            ..applied
        };
        assert_eq!(
            Marker::forwarded(Some(&pre_delete.to_json()), 2, 77, false),
            None
        );
        assert!(Marker::forwarded(Some(&pre_delete.to_json()), 2, 77, true).is_some());
    }

    /// Vectors whose dots are consistent: a site's counter determines the time
    /// (as in reality, where a counter is a commit position on that site).
    fn arb_vector() -> impl Strategy<Value = VersionVector> {
        prop::collection::btree_map(1u32..5, 0u64..6, 0..5).prop_map(|m| {
            VersionVector(
                m.into_iter()
                    .map(|(s, c)| (s, Dot::at(c, (c as i64) * 1000 + i64::from(s))))
                    .collect(),
            )
        })
    }

    /// Missing entries and zero counters mean the same.
    fn normal(v: &VersionVector) -> VersionVector {
        VersionVector(
            v.0.iter()
                .filter(|(_, d)| d.c > 0)
                .map(|(&s, &d)| (s, d))
                .collect(),
        )
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in arb_vector(), b in arb_vector()) {
            prop_assert_eq!(a.merge(&b), b.merge(&a));
        }

        #[test]
        fn merge_is_associative(a in arb_vector(), b in arb_vector(), c in arb_vector()) {
            prop_assert_eq!(a.merge(&b).merge(&c), a.merge(&b.merge(&c)));
        }

        #[test]
        fn merge_is_idempotent(a in arb_vector(), b in arb_vector()) {
            prop_assert_eq!(a.merge(&a), a.clone());
            prop_assert_eq!(a.merge(&b).merge(&b), a.merge(&b));
        }

        #[test]
        fn merge_is_the_least_upper_bound(a in arb_vector(), b in arb_vector(), c in arb_vector()) {
            let m = a.merge(&b);
            prop_assert!(m.dominates(&a) && m.dominates(&b));
            if c.dominates(&a) && c.dominates(&b) {
                prop_assert!(c.dominates(&m));
            }
        }

        #[test]
        fn dominance_is_reflexive(a in arb_vector()) {
            prop_assert!(a.dominates(&a));
        }

        #[test]
        fn dominance_is_antisymmetric(a in arb_vector(), b in arb_vector()) {
            if a.dominates(&b) && b.dominates(&a) {
                prop_assert_eq!(normal(&a), normal(&b));
            }
        }

        #[test]
        fn dominance_is_transitive(a in arb_vector(), b in arb_vector(), c in arb_vector()) {
            // Build a chain so that the premise holds often, not by luck.
            let ab = a.merge(&b);
            let abc = ab.merge(&c);
            prop_assert!(abc.dominates(&ab) && ab.dominates(&a) && abc.dominates(&a));
            if a.dominates(&b) && b.dominates(&c) {
                prop_assert!(a.dominates(&c));
            }
        }
    }
}
