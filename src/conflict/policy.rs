//! Conflict policies, per table and (for ownership) per column.

use std::collections::BTreeMap;

/// How a tie is broken inside field-level merge (both sides changed the same
/// column), and the two whole-row policies that do the same for a whole row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tie {
    /// The later version time wins; equal times go to the higher site id.
    LastWriterWins,
    /// The named site's version wins; between versions of other sites,
    /// last-writer-wins.
    SitePriority(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The default.
    #[default]
    LastWriterWins,
    SitePriority(u32),
    /// Concurrent changes to different columns both survive (decided with the
    /// incoming change's before image); the same column falls back to `tie`.
    FieldMerge {
        tie: Tie,
    },
    /// The incoming version is parked in the conflicts table and the local one
    /// stays until a DBA settles it.
    Manual,
}

impl Policy {
    /// The name stored in the control schema and the conflicts table.
    /// The policy with its parameters, for a DBA.
    pub fn describe(&self) -> String {
        match self {
            Policy::LastWriterWins => "last_writer_wins".into(),
            Policy::SitePriority(s) => format!("site_priority (site {s} wins)"),
            Policy::FieldMerge {
                tie: Tie::LastWriterWins,
            } => "field_merge (same column: last_writer_wins)".into(),
            Policy::FieldMerge {
                tie: Tie::SitePriority(s),
            } => {
                format!("field_merge (same column: site {s} wins)")
            }
            Policy::Manual => "manual".into(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Policy::LastWriterWins => "last_writer_wins",
            Policy::SitePriority(_) => "site_priority",
            Policy::FieldMerge { .. } => "field_merge",
            Policy::Manual => "manual",
        }
    }

    /// Build from the control schema's columns: the policy name, the priority
    /// site (for `site_priority`, and for `field_merge` with a site tie) and
    /// the field-merge tie name.
    pub fn from_config(
        name: &str,
        priority_site: Option<u32>,
        merge_tie: Option<&str>,
    ) -> Result<Policy, String> {
        let site = |what: &str| {
            priority_site
                .ok_or_else(|| format!("{what} needs priority_site (the id of the site that wins)"))
        };
        match name {
            "last_writer_wins" => Ok(Policy::LastWriterWins),
            "site_priority" => Ok(Policy::SitePriority(site("site_priority")?)),
            "field_merge" => {
                let tie = match merge_tie.unwrap_or("last_writer_wins") {
                    "last_writer_wins" => Tie::LastWriterWins,
                    "site_priority" => Tie::SitePriority(site("field_merge with merge_tie site_priority")?),
                    other => {
                        return Err(format!(
                            "unknown merge_tie '{other}' (expected last_writer_wins or site_priority)"
                        ))
                    }
                };
                Ok(Policy::FieldMerge { tie })
            }
            "manual" => Ok(Policy::Manual),
            other => Err(format!(
                "unknown conflict policy '{other}' (expected last_writer_wins, site_priority, field_merge or manual)"
            )),
        }
    }
}

/// A table's policy and its owned columns (column -> owning site).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TablePolicy {
    pub policy: Policy,
    pub owners: BTreeMap<String, u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_with_clear_errors() {
        assert_eq!(
            Policy::from_config("last_writer_wins", None, None),
            Ok(Policy::LastWriterWins)
        );
        assert_eq!(
            Policy::from_config("site_priority", Some(2), None),
            Ok(Policy::SitePriority(2))
        );
        assert!(Policy::from_config("site_priority", None, None)
            .unwrap_err()
            .contains("priority_site"));
        assert_eq!(
            Policy::from_config("field_merge", Some(1), Some("site_priority")),
            Ok(Policy::FieldMerge {
                tie: Tie::SitePriority(1)
            })
        );
        assert!(Policy::from_config("newest", None, None)
            .unwrap_err()
            .contains("unknown conflict policy 'newest'"));
    }
}
