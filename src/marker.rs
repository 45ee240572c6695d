//! The marker column: per-row version metadata that only duplex's applier writes.
//!
//! Each synced table carries one extra column (default `_duplex`). It holds the
//! row's version vector (site id -> that site's commit position when it last
//! wrote the row), the site and commit time of the newest write, and a crc32 of
//! the row's canonical content as the applier wrote it. A user write leaves the
//! column alone, so the source can tell a user write from an echo of duplex's own
//! write (the checksum no longer matches the content), and the next change
//! carries the vector forward without any trigger or extra write in the user's
//! transaction. Stored as JSON text (jsonb on PostgreSQL, JSON on MySQL) so a
//! DBA can read it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Current version of the marker's JSON layout.
pub const MARKER_FORMAT_VERSION: u32 = 1;

/// Default name of the marker column.
pub const DEFAULT_MARKER_COLUMN: &str = "_duplex";

/// Site id -> counter (the site's commit position of its newest write to the row).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct VersionVector(pub BTreeMap<u32, u64>);

impl VersionVector {
    pub fn get(&self, site: u32) -> u64 {
        self.0.get(&site).copied().unwrap_or(0)
    }

    /// Raise `site`'s entry to `counter` (entries never go down).
    pub fn advance(&mut self, site: u32, counter: u64) {
        let entry = self.0.entry(site).or_insert(0);
        if counter > *entry {
            *entry = counter;
        }
    }

    /// Pointwise maximum.
    pub fn merge(&self, other: &VersionVector) -> VersionVector {
        let mut out = self.clone();
        for (&site, &counter) in &other.0 {
            out.advance(site, counter);
        }
        out
    }

    /// `self` has seen everything `other` has.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other
            .0
            .iter()
            .all(|(&site, &counter)| self.get(site) >= counter)
    }
}

/// The content of the marker column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Layout version.
    #[serde(rename = "v")]
    pub format: u32,
    pub vv: VersionVector,
    /// Site of the newest write.
    pub site: u32,
    /// Commit time of the newest write, microseconds since the Unix epoch.
    pub ts: i64,
    /// crc32 of the row's canonical encoding as written (see `canonical::encode`);
    /// 0 when the source could not know the whole row (key-only replica
    /// identity and an unchanged TOAST value).
    pub crc: u32,
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

    /// The marker a captured user write carries to the peer: the vector the
    /// row held (read from the marker column in the change's new image, else
    /// its old image; user writes leave that column alone) with `site`'s entry
    /// advanced to the write's commit-position counter. Invalid JSON in the
    /// column (someone wrote it by hand) counts as a row never synced.
    pub fn for_user_write(
        after_text: Option<&str>,
        before_text: Option<&str>,
        site: u32,
        counter: u64,
        ts: i64,
        crc: u32,
        table: &dyn std::fmt::Display,
    ) -> Marker {
        let prior = match Marker::parse(after_text.or(before_text)) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(table = %table, error = %e, "marker column holds invalid JSON; treating the row as never synced");
                None
            }
        };
        let mut vv = prior.map(|m| m.vv).unwrap_or_default();
        vv.advance(site, counter);
        Marker {
            format: MARKER_FORMAT_VERSION,
            vv,
            site,
            ts,
            crc,
        }
    }

    pub fn to_json(&self) -> String {
        // Serialising plain integers and maps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let mut vv = VersionVector::default();
        vv.advance(1, 100);
        vv.advance(2, u64::MAX);
        let m = Marker {
            format: MARKER_FORMAT_VERSION,
            vv,
            site: 2,
            ts: 1_700_000_000_000_000,
            crc: 0xdead_beef,
        };
        let text = m.to_json();
        assert_eq!(Marker::parse(Some(&text)).ok().flatten(), Some(m));
        assert_eq!(Marker::parse(None).ok().flatten(), None);
        assert!(Marker::parse(Some("not json")).is_err());
    }

    #[test]
    fn vector_dominance_and_merge() {
        let a = VersionVector([(1, 5), (2, 3)].into_iter().collect());
        let b = VersionVector([(1, 4), (2, 3)].into_iter().collect());
        let c = VersionVector([(1, 4), (2, 9)].into_iter().collect());
        assert!(a.dominates(&b));
        assert!(!b.dominates(&a));
        assert!(!a.dominates(&c) && !c.dominates(&a));
        let m = a.merge(&c);
        assert!(m.dominates(&a) && m.dominates(&c));
        assert_eq!(m.get(2), 9);
    }
}
